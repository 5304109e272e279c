#!/usr/bin/env bash
# min-btf.sh KERNEL_BTF OUT [BPF_OBJECT...]: a BTF with only the types diffkeeper's CO-RE objects
# relocate against (`bpftool gen min_core_btf`), usable in the cache in place of the full file.
# KERNEL_BTF: a raw BTF (/sys/kernel/btf/vmlinux, a BTFHub <release>.btf) or an ELF vmlinux.
# Default objects: both, modern and compat, so one file serves whichever the sidecar loads.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
usage="usage: min-btf.sh KERNEL_BTF OUT [BPF_OBJECT...]"
kernel_btf=${1:?$usage}
out=${2:?$usage}
shift 2
objects=("$@")
[ ${#objects[@]} -gt 0 ] || objects=("$repo/ebpf/obj/diffkeeper.bpf.o" "$repo/ebpf/obj/diffkeeper-compat.bpf.o")
[ -r "$kernel_btf" ] || { echo "min-btf: cannot read kernel BTF $kernel_btf" >&2; exit 1; }
for object in "${objects[@]}"; do
    [ -r "$object" ] || { echo "min-btf: cannot read the eBPF object $object (it is committed in ebpf/obj/; 'just ebpf' rebuilds it)" >&2; exit 1; }
done
command -v bpftool >/dev/null || { echo "min-btf: bpftool not found (apt-get install bpftool)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
bpftool gen min_core_btf "$kernel_btf" "$tmp" "${objects[@]}"
mv "$tmp" "$out"
echo "min-btf: $out ($(stat -c %s "$out") bytes, from $kernel_btf for $(printf '%s ' "${objects[@]##*/}"))" >&2
