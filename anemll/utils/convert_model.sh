#!/bin/sh
# convert_model.sh - ANEMLL's conversion script, as ../shared/seed/convert_model.md describes it:
#   ./anemll/utils/convert_model.sh --model <hf dir> --output <dir> [options]
# A thin wrapper: every option goes unchanged to `anemll convert` (run with --help for the list).
# The binary is $ANEMLL if set, else bin/anemll of this checkout (built by `make`).
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${ANEMLL:-$root/bin/anemll}
if [ ! -x "$bin" ]; then
    echo "error: $bin not found; build it first with 'make' in $root" >&2
    exit 1
fi
exec "$bin" convert "$@"
