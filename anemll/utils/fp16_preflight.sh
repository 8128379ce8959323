#!/usr/bin/env bash
# fp16_preflight.sh - the seed's one-command fp16 check before conversion:
#   ./anemll/utils/fp16_preflight.sh --model <path> [--report PATH] [--no-sweep] [other preflight options]
# Runs `bin/anemll preflight` of the checkout this script sits in (../../bin/anemll relative to
# it, symlinks resolved); every option is passed through (see `bin/anemll preflight --help`).
# The report goes to tests/dev/logs/fp16_preflight_<YYYYmmdd_HHMMSS>.json under the current
# directory unless --report says otherwise. Exit status: that of anemll preflight (0 compatible,
# 1 not compatible or an error, 2 bad usage).
set -euo pipefail

script=$(readlink -f "${BASH_SOURCE[0]}")
root=$(cd "$(dirname "$script")/../.." && pwd)
bin=$root/bin/anemll
if [ ! -x "$bin" ]; then
    echo "error: $bin not found: build it first with 'make' in $root" >&2
    exit 1
fi
exec "$bin" preflight "$@"
