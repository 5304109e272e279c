# verifier.sh OBJECT: loads every program of /vm/obj/OBJECT with the kernel's own BTF, twice:
# verifier-stats (one program at a time, one `VERIFIER prog=… processed=…` line each) and
# `bpftool prog loadall` (the whole object, as a loader would; pinned, listed, unpinned).
. /vm/lib.sh
obj=/vm/obj/$1
verifier-stats "$obj"
evidence stats_rc $?
pins=/sys/fs/bpf/dk-verifier
bpftool prog loadall "$obj" "$pins" >/tmp/case/bpftool.out 2>&1
rc=$?
evidence bpftool_loadall_rc $rc
# On a refusal the last lines name the reason (libbpf prints the verifier log before them).
[ "$rc" = 0 ] || tail -n 4 /tmp/case/bpftool.out
evidence bpftool_loaded "$(bpftool prog show 2>/dev/null | grep -c ' name dk_')"
rm -rf "$pins"
