# replay.sh MODE EXPECT OBJECT SEEDS STEPS: the journal's replay contract under --attach MODE
# (system BTF, --ebpf-object OBJECT): one sidecar; first the parity workload (one scripted change
# of every kind, each step's lines against the ones it must produce), then SEEDS seeded storms of
# STEPS operations of every kind without pauses, each in a directory of its own; replaying the
# journal under each must give the real tree, and seq/ts must never go back (diffkeeper-scenario
# --replay-storms prints the failing seeds).
. /vm/lib.sh
mode=$1 expect=$2 object=$3 seeds=$4 steps=$5
mkdir -p /tmp/case/btf-cache
diffkeeper-scenario --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend "$expect" \
    --replay-storms "$seeds" --steps "$steps" --workdir /tmp/case --ready-timeout 30 -- \
    --attach "$mode" --ebpf-object "$object" --btf-cache-dir /tmp/case/btf-cache
