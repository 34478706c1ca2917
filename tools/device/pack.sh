#!/usr/bin/env bash
# Pack the release binaries tools/device/check.sh needs (hark, harkd, hark-loadbench) into one
# stripped .tar.xz, small enough to travel to a device machine with the repository (64 MiB in
# all). One xz stream with a large window lets hark and harkd share their common code.
#
#   tools/device/pack.sh OUT.tar.xz [BIN_DIR]      # BIN_DIR: target/release by default
#
# Build the CUDA binaries first (see the header of check.sh). The bundle must go under an
# ignored path (target/...) that the device run names in `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: tools/device/pack.sh OUT.tar.xz [BIN_DIR]}
bin=${2:-target/release}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for b in hark harkd hark-loadbench; do
    [ -x "$bin/$b" ] || { echo "pack.sh: $bin/$b is missing" >&2; exit 1; }
    strip -o "$stage/$b" "$bin/$b"
done
mkdir -p "$(dirname "$out")"
tar -C "$stage" -cf - hark harkd hark-loadbench | xz -9 -T1 >"$out"
echo "$out: $(du -h "$out" | cut -f1) (stripped: $(du -ch "$stage"/* | tail -n 1 | cut -f1))"
