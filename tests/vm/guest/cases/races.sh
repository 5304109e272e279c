# races.sh MODE EXPECT OBJECT: the journal against two races under --attach MODE (system BTF,
# --ebpf-object OBJECT), one sidecar (diffkeeper-scenario --races): a dup2 onto the written fd
# while a thread's write() of tens of MiB runs (a file, then /dev/null as the decoy), and 5,000
# symlinkat() calls while another thread changes the name's first byte every millisecond. The
# write lines must name the file written, with its byte count; no journaled name may be one never
# created, and every created one is journaled or covered by a flagged line on its directory.
. /vm/lib.sh
mode=$1 expect=$2 object=$3
mkdir -p /tmp/case/btf-cache
diffkeeper-scenario --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend "$expect" \
    --races --workdir /tmp/case --ready-timeout 35 -- \
    --attach "$mode" --ebpf-object "$object" --btf-cache-dir /tmp/case/btf-cache
