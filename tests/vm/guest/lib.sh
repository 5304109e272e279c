# Sourced by the case scripts.
# shellcheck disable=SC2034 # used by the case scripts
RELEASE=$(uname -r)
# The sidecar's readiness line up to the backend's name (cli/src/ready.rs, READY_PREFIX).
READY_LINE="diffkeeper-sidecar ready: backend="
export RUST_BACKTRACE=1

# Lines the host harness collects as evidence: "@evidence KEY=VALUE".
evidence() { echo "@evidence $1=$2"; }

# without_sysfs_btf CMD...: CMD in a private mount namespace where /sys/kernel/btf is an empty
# directory, i.e. a kernel without system BTF as far as CMD can tell.
without_sysfs_btf() {
    unshare -m --propagation private \
        sh -c 'mount --bind /var/empty /sys/kernel/btf && exec "$@"' without_sysfs_btf "$@"
}
