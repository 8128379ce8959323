#!/bin/sh
# Installs the Debian 12 packages anemll-c needs to build, test and run.
# Run as root (CI does); on a workstation: sudo scripts/install-deps.sh
set -eu
PKGS="build-essential pkg-config ca-certificates
      libcjson-dev libprotobuf-c-dev protobuf-c-compiler libyaml-dev libpcre2-dev
      libopenblas-dev libcmocka-dev
      clang llvm libclang-rt-14-dev valgrind"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
