#!/usr/bin/env bash
# min-btf.sh KERNEL_BTF OUT [BPF_OBJECT...]: a BTF with only the types diffkeeper's CO-RE objects
# relocate against (`bpftool gen min_core_btf`), usable in the cache in place of the full file.
# KERNEL_BTF: a raw BTF (/sys/kernel/btf/vmlinux, a BTFHub <release>.btf) or an ELF vmlinux.
# Default objects: both, modern and compat, of the kernel's architecture (ebpf/obj/<arch>/), so
# one file serves whichever the sidecar loads. The architecture is read from the BTF (arm64
# kernels have `struct user_pt_regs`, x86_64 ones `struct pt_regs` with `orig_ax`);
# DIFFKEEPER_ARCH=x86_64|aarch64 overrides it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
usage="usage: min-btf.sh KERNEL_BTF OUT [BPF_OBJECT...]"
kernel_btf=${1:?$usage}
out=${2:?$usage}
shift 2
objects=("$@")
[ -r "$kernel_btf" ] || { echo "min-btf: cannot read kernel BTF $kernel_btf" >&2; exit 1; }
command -v bpftool >/dev/null || { echo "min-btf: bpftool not found (apt-get install bpftool)" >&2; exit 1; }
if [ ${#objects[@]} -eq 0 ]; then
    arch=${DIFFKEEPER_ARCH:-}
    if [ -z "$arch" ]; then
        types=$(bpftool btf dump file "$kernel_btf" | grep -E "^\[[0-9]+\] STRUCT '(user_pt_regs|pt_regs)'|^	'orig_ax'" || true)
        case $types in
            *"'user_pt_regs'"*) arch=aarch64 ;;
            *"'orig_ax'"*) arch=x86_64 ;;
            *) echo "min-btf: cannot tell the architecture of $kernel_btf (no user_pt_regs, no pt_regs.orig_ax): set DIFFKEEPER_ARCH=x86_64|aarch64" >&2; exit 1 ;;
        esac
    fi
    case $arch in
        x86_64|aarch64) ;;
        *) echo "min-btf: no eBPF objects for architecture $arch (x86_64, aarch64)" >&2; exit 1 ;;
    esac
    objects=("$repo/ebpf/obj/$arch/diffkeeper.bpf.o" "$repo/ebpf/obj/$arch/diffkeeper-compat.bpf.o")
fi
for object in "${objects[@]}"; do
    [ -r "$object" ] || { echo "min-btf: cannot read the eBPF object $object (it is committed in ebpf/obj/<arch>/; 'just ebpf' rebuilds it)" >&2; exit 1; }
done
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
bpftool gen min_core_btf "$kernel_btf" "$tmp" "${objects[@]}"
mv "$tmp" "$out"
echo "min-btf: $out ($(stat -c %s "$out") bytes, from $kernel_btf for $(printf '%s ' "${objects[@]#"$repo"/}"))" >&2
