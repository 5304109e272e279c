# cell.sh BTF MODE EXPECT [OBJECT]: one matrix cell, the sidecar's journal scenario with the
# given BTF (system | full | min | none | broken) and --attach MODE; EXPECT: the backend it must
# end on; OBJECT: --ebpf-object (default auto).
. /vm/lib.sh
btf=$1 mode=$2 expect=$3 object=${4:-auto}
cache=/tmp/case/btf-cache
mkdir -p "$cache"
case "$btf" in
full) cp /sys/kernel/btf/vmlinux "$cache/$RELEASE.btf" ;;       # exact copy of the kernel's BTF
min) cp "/vm/btf/min/$RELEASE.btf" "$cache/$RELEASE.btf" ;;      # made on the host by `just min-btf`
broken) cp "/vm/btf/broken/$RELEASE.btf" "$cache/$RELEASE.btf" ;; # wrong member offset
esac
hide=--hide-system-btf
[ "$btf" = system ] && hide=
# --verbose: the sidecar's log (ready line, BTF line, fallback reasons) goes to the case log.
diffkeeper-scenario --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend "$expect" \
    --workdir /tmp/case --ready-timeout 35 --verbose $hide -- --attach "$mode" --ebpf-object "$object" --btf-cache-dir "$cache"
