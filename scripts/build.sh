#!/usr/bin/env bash
# Builds the static musl binaries diffkeeper-init, diffkeeper-sidecar and diffkeeper (the store
# reader) for each architecture named (default: both) and checks every one: statically linked,
# the right ELF machine, within the size limits (init <= 3.5 MB, sidecar <= 4 MB, diffkeeper
# <= 2 MB, decimal MB as in BENCHMARKS.md).
#
#   scripts/build.sh [x86_64] [aarch64]
#
# x86_64 is built by plain cargo with Debian's musl-gcc for the C parts (xz, ring). aarch64 is
# cross-built with `cargo zigbuild`: zig (PyPI `ziglang`) is the cross C compiler and linker and
# brings its own aarch64 musl headers and libc, so no sysroot and no foreign apt architecture is
# needed (see docs/how-it-works.md, "Architectures and the build", for the measurements behind the choice).
# Binaries land in ${CARGO_TARGET_DIR:-target}/<triple>/release.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
init_limit=3500000
sidecar_limit=4000000
reader_limit=2000000

die() { echo "build: error: $*" >&2; exit 1; }

# triple ARCH, and the strings `file` prints for that machine.
triple_of() {
  case "$1" in
    x86_64) echo x86_64-unknown-linux-musl ;;
    aarch64) echo aarch64-unknown-linux-musl ;;
    *) die "unknown architecture '$1': use x86_64 or aarch64" ;;
  esac
}
file_machine_of() {
  case "$1" in
    x86_64) echo "x86-64" ;;
    aarch64) echo "ARM aarch64" ;;
  esac
}

build_arch() {
  local arch="$1" triple
  triple="$(triple_of "$arch")"
  rustup target list --installed 2>/dev/null | grep -qx "$triple" \
    || die "Rust target $triple is not installed (rustup target add $triple, or just setup)"
  local cargo_args=(--release --locked --target "$triple" -p diffkeeper-init -p diffkeeper-sidecar -p diffkeeper-store)
  if [[ $arch == x86_64 ]]; then
    cargo build "${cargo_args[@]}" || die "cargo build for $triple failed (output above)"
  else
    command -v cargo-zigbuild >/dev/null 2>&1 \
      || die "cargo-zigbuild is not installed: it cross-builds $triple (pip install cargo-zigbuild ziglang, or just setup)"
    command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1 \
      || die "zig is not installed: cargo-zigbuild needs it for $triple (pip install ziglang, or just setup)"
    cargo zigbuild "${cargo_args[@]}" || die "cargo zigbuild for $triple failed (output above)"
  fi
}

# check_binary ARCH FILE LIMIT: prints `file`'s line and the size; fails naming what is wrong.
check_binary() {
  local arch="$1" bin="$2" limit="$3" desc size
  [[ -x $bin ]] || die "$bin is missing after the build"
  desc="$(file -b "$bin")"
  echo "$bin: $desc"
  [[ $desc == *"$(file_machine_of "$arch")"* ]] \
    || die "$bin is not an $(file_machine_of "$arch") binary: $desc"
  [[ $desc == *"statically linked"* || $desc == *"static-pie linked"* ]] \
    || die "$bin is not statically linked: $desc"
  size="$(stat -c %s "$bin")"
  ((size <= limit)) || die "$bin is $size bytes, over the $limit-byte limit"
}

archs=("$@")
((${#archs[@]})) || archs=(x86_64 aarch64)
for arch in "${archs[@]}"; do triple_of "$arch" >/dev/null; done
command -v file >/dev/null 2>&1 || die "file(1) is not installed (apt-get install file, or just setup)"

for arch in "${archs[@]}"; do
  start=$SECONDS
  build_arch "$arch"
  echo "build: $arch built in $((SECONDS - start)) s" >&2
done

listing=()
for arch in "${archs[@]}"; do
  dir="$target_dir/$(triple_of "$arch")/release"
  check_binary "$arch" "$dir/diffkeeper-init" "$init_limit"
  check_binary "$arch" "$dir/diffkeeper-sidecar" "$sidecar_limit"
  check_binary "$arch" "$dir/diffkeeper" "$reader_limit"
  listing+=("$dir/diffkeeper-init" "$dir/diffkeeper-sidecar" "$dir/diffkeeper")
done
ls -l "${listing[@]}"
echo "build: ${#listing[@]} static binaries, all within the size limits (init <= $init_limit, sidecar <= $sidecar_limit, diffkeeper <= $reader_limit bytes)"
