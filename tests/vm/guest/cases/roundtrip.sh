# roundtrip.sh MODE EXPECT [OBJECT]: the state recorder's round trip (diffkeeper-scenario
# --roundtrip) with the system BTF and --attach MODE: the sidecar with --store, a workload in
# phases, a `cp -a` snapshot after each, and `diffkeeper export --at T_i` held against snapshot i.
. /vm/lib.sh
mode=$1 expect=$2 object=${3:-auto}
mkdir -p /tmp/case/btf-cache
TMPDIR=/tmp/case diffkeeper-scenario --roundtrip --diffkeeper /usr/local/bin/diffkeeper \
    --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend "$expect" \
    -- --attach "$mode" --ebpf-object "$object" --btf-cache-dir /tmp/case/btf-cache
