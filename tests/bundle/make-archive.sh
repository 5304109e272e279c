#!/usr/bin/env bash
# make-archive.sh OUT_DIR: a BTFHub-shaped archive (<distro>/<version>/<arch>/<release>.btf.tar.xz)
# from every real kernel BTF the VM harness has cached (Debian 5.10/bullseye, 6.1 and 6.12/bookworm
# amd64, 6.1 arm64; `just vm-test` downloads them), each packed as BTFHub packs it (`tar cJf`), plus
# three broken entries btfgen must report and skip:
#   debian/12/x86_64/0.0.0-truncated.btf.tar.xz   a real archive cut in half
#   debian/12/x86_64/0.0.0-notbtf.btf.tar.xz      a valid tar.xz whose .btf is a text file
#   debian/12/amd64/<release>.btf.tar.xz          a real archive under a non-BTFHub arch dir
# DIFFKEEPER_VM_CACHE (default /var/cache/diffkeeper-vm) is where the harness caches kernels.
set -euo pipefail
out=${1:?usage: make-archive.sh OUT_DIR}
cache=${DIFFKEEPER_VM_CACHE:-/var/cache/diffkeeper-vm}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pack DISTRO VERSION ARCH BTF_FILE: DISTRO/VERSION/ARCH/<release>.btf.tar.xz, as `tar cJf` does.
pack() {
  local dir="$out/$1/$2/$3" release
  release=$(basename "$4" .btf)
  mkdir -p "$dir"
  cp "$4" "$work/$release.btf"
  tar cJf "$dir/$release.btf.tar.xz" -C "$work" "$release.btf"
  rm "$work/$release.btf"
  echo "$dir/$release.btf.tar.xz"
}

found=0
for btf in "$cache"/kernels/*/*.btf "$cache"/arm64/kernels/*/*.btf; do
  [ -f "$btf" ] || continue
  release=$(basename "$btf" .btf)
  case "$release" in
    5.10.*) version=11 ;;
    *) version=12 ;;
  esac
  case "$release" in
    *-arm64) arch=arm64 ;;
    *) arch=x86_64 ;;
  esac
  pack debian "$version" "$arch" "$btf" >/dev/null
  echo "make-archive: debian/$version/$arch/$release.btf.tar.xz from $btf" >&2
  found=$((found + 1))
  last_amd64=${last_amd64:-}
  [ "$arch" != x86_64 ] || last_amd64=$btf
done
[ "$found" -gt 0 ] || { echo "make-archive: no kernel BTF under $cache/{,arm64/}kernels/ (run \`just vm-test\` once to fetch them, or set DIFFKEEPER_VM_CACHE)" >&2; exit 1; }

# Broken entries.
good=$(pack debian 12 amd64 "$last_amd64")
mkdir -p "$out/debian/12/x86_64"
head -c "$(($(stat -c %s "$good") / 2))" "$good" >"$out/debian/12/x86_64/0.0.0-truncated.btf.tar.xz"
echo "this is not BTF" >"$work/0.0.0-notbtf.btf"
tar cJf "$out/debian/12/x86_64/0.0.0-notbtf.btf.tar.xz" -C "$work" 0.0.0-notbtf.btf
echo "make-archive: $found real kernels and 3 broken entries in $out" >&2
