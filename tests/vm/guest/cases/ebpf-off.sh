# ebpf-off.sh: the journal scenario with eBPF switched off (--enable-ebpf=false): the sidecar
# must go straight to inotify, say why, and produce the full inotify journal.
. /vm/lib.sh
diffkeeper-scenario --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend inotify \
    --workdir /tmp/case --ready-timeout 35 --verbose -- --enable-ebpf=false
