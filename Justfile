# diffkeeper tasks. `./dev RECIPE` installs what is missing first; `just RECIPE` assumes it is there.
set shell := ["bash", "-euo", "pipefail", "-c"]

target := "x86_64-unknown-linux-musl"
bin_dir := "target/" + target + "/release"

# The whole test suite (the README's test command runs this).
default: test

# Install build and test prerequisites (apt packages, musl target, just).
setup:
    scripts/setup.sh

# Static musl binaries of diffkeeper-init and diffkeeper-sidecar.
build:
    cargo build --release --locked --target {{target}} -p diffkeeper-init -p diffkeeper-sidecar
    file {{bin_dir}}/diffkeeper-init {{bin_dir}}/diffkeeper-sidecar
    ls -l {{bin_dir}}/diffkeeper-init {{bin_dir}}/diffkeeper-sidecar

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --locked --workspace --all-targets -- -D warnings

# Everything: lints, unit and integration tests (real eBPF, needs root), VM matrix, packaging.
test: lint build
    cargo test --locked --workspace
    just vm-test

# Demo: init provisions the BTF cache, the sidecar attaches and prints journal lines.
demo: build
    scripts/demo.sh {{bin_dir}}

# Multi-kernel matrix under qemu (Debian 6.1 and 6.12 kernels).
vm-test: build
    tests/vm/run.sh {{bin_dir}}
