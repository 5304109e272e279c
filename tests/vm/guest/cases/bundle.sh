# bundle.sh MODE EXPECT: the offline path on a real kernel. diffkeeper-init provisions the cache
# from the BTF bundle the host made with diffkeeper-btfgen (/vm/btf/bundle/<release>.btf is that
# bundle file), with sysfs BTF hidden, downloads disabled, no baked per-kernel file and no network
# interface; then the sidecar runs the journal scenario with --attach MODE from that cache (sysfs
# BTF still hidden) and must end on EXPECT.
. /vm/lib.sh
mode=$1 expect=$2
cache=/tmp/case/btf-cache
mkdir -p "$cache"
evidence net_ifaces "$(ls /sys/class/net | grep -v '^lo$' | tr '\n' ',')"
echo "== diffkeeper-init from the bundle"
without_sysfs_btf diffkeeper-init --btf-cache-dir "$cache" --baked-btf-dir /var/empty \
    --btf-bundle "/vm/btf/bundle/$RELEASE.btf" --disable-btfhub-download --required
evidence init_rc "$?"
[ -f "$cache/$RELEASE.json" ] && evidence init_status "$(tr -d '\n ' <"$cache/$RELEASE.json")"
[ -f "$cache/$RELEASE.btf" ] && evidence cache_btf_bytes "$(wc -c <"$cache/$RELEASE.btf")"
echo "== the journal scenario with --attach $mode from that cache"
diffkeeper-scenario --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend "$expect" \
    --workdir /tmp/case --ready-timeout 35 --verbose --hide-system-btf -- --attach "$mode" \
    --btf-cache-dir "$cache"
