# diffkeeper tasks. `./dev RECIPE` installs what is missing first; `just RECIPE` assumes it is there.
set shell := ["bash", "-euo", "pipefail", "-c"]

target := "x86_64-unknown-linux-musl"
# Where cargo puts the static binaries (CARGO_TARGET_DIR respected): x86_64, which the tests run,
# and aarch64 (cross-built, see scripts/build.sh).
target_dir := env_var_or_default("CARGO_TARGET_DIR", "target")
bin_dir := target_dir + "/" + target + "/release"
arm64_bin_dir := target_dir + "/aarch64-unknown-linux-musl/release"

# The whole test suite (the README's test command runs this).
default: test

# Install build and test prerequisites (apt packages, musl targets, just, zig + cargo-zigbuild).
setup:
    scripts/setup.sh

# Static musl binaries of diffkeeper-init and diffkeeper-sidecar for x86_64 and aarch64, checked
# (static, ELF machine, size limits) and listed.
build:
    scripts/build.sh x86_64 aarch64

# The same for one architecture (x86_64 or aarch64), for quicker local rebuilds.
build-arch ARCH:
    scripts/build.sh {{ARCH}}

# Regenerate the committed eBPF objects ebpf/obj/{x86_64,aarch64}/diffkeeper{,-compat}.bpf.o from ebpf/c (needs clang + libbpf-dev).
ebpf:
    DIFFKEEPER_UPDATE_BPF_OBJ=1 cargo build --locked -p diffkeeper-ebpf
    cargo test --locked -p diffkeeper-ebpf -- object:: check::

# The set-up's pip step from a fresh venv (real pip, PyPI): installs, is idempotent, names failures.
setup-test:
    tests/setup/run.sh

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --locked --workspace --all-targets -- -D warnings

# Everything: lints, unit and integration tests (real eBPF, needs root), VM matrix, packaging.
test: lint build setup-test
    cargo test --locked --workspace
    just bench-smoke
    just vm-test
    just packaging-test

# Demo: init provisions the BTF cache, the sidecar attaches and prints journal lines.
demo: (build-arch "x86_64")
    scripts/demo.sh {{bin_dir}}

# Multi-kernel matrix under qemu (x86_64: Debian 5.10, 6.1, 6.12; arm64: Debian 6.1) -> target/vm/;
# ARGS go to tests/vm/run.sh (e.g. --arch arm64, --kernel 5.10, --only 'init.*').
vm-test *ARGS: build
    cargo build --release --locked --target {{target}} -p diffkeeper-tests --bin diffkeeper-scenario --bin diffkeeper-btf-edit
    cargo build --release --locked -p diffkeeper-btfgen
    cargo zigbuild --release --locked --target aarch64-unknown-linux-musl -p diffkeeper-tests --bin diffkeeper-scenario
    tests/vm/run.sh {{bin_dir}} --arm64-bin-dir {{arm64_bin_dir}} {{ARGS}}

# The BTF bundle: every kernel of a BTFHub-shaped ARCHIVE_DIR (<distro>/<version>/<arch>/<release>.btf.tar.xz)
# minimised with bpftool for every eBPF object under ebpf/obj, in one indexed file OUT (e.g. bundle.dkbtf).
btfgen ARCHIVE_DIR OUT:
    cargo build --release --locked -p diffkeeper-btfgen
    {{target_dir}}/release/diffkeeper-btfgen --objects ebpf/obj "{{ARCHIVE_DIR}}" "{{OUT}}"

# Minimal BTF for both diffkeeper eBPF objects of the kernel's architecture (bpftool gen min_core_btf), usable as <cache>/<release>.btf.
min-btf KERNEL_BTF OUT:
    tests/vm/min-btf.sh "{{KERNEL_BTF}}" "{{OUT}}"

# The multi-arch container image (OCI index of linux/amd64 + linux/arm64, FROM scratch, the static
# binaries): `just image [--bake BTF_DIR] [--tag NAME:TAG] [--save FILE.oci.tar] [--platform LIST]`.
image *ARGS: build
    scripts/image.sh --bin-dir amd64={{bin_dir}} --bin-dir arm64={{arm64_bin_dir}} {{ARGS}}

# Image built and run, Kubernetes manifests validated, least privilege proven (needs root).
packaging-test: build
    tests/packaging/run.sh {{bin_dir}} {{arm64_bin_dir}}

# Benchmarks (root): each metric next to its peer, same run -> stdout, target/bench/results.md (ARGS: bench/bench.py --help).
bench *ARGS: _bench-build
    python3 bench/bench.py --bin-dir {{bin_dir}} {{ARGS}}

# The bench harness with tiny sizes (run by `test`): fails only if a row produced no number.
bench-smoke: _bench-build
    python3 bench/bench.py --bin-dir {{bin_dir}} --smoke

_bench-build:
    cargo build --release --locked --target {{target}} -p diffkeeper-init -p diffkeeper-sidecar -p diffkeeper-store -p diffkeeper-bench
    cargo build --release --locked -p diffkeeper-btfgen
