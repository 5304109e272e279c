#!/usr/bin/env bash
# The state recorder end to end with the image under podman, as k8s/components/state-recorder
# runs it: named volumes for the app's state, the store and a fresh state volume to restore into.
#
#   1. diffkeeper-sidecar (uid 0, only BPF, PERFMON and DAC_READ_SEARCH, read-only root,
#      containerd-style seccomp) with --store on the store volume, the state volume read-only;
#   2. an app container (uid 65532, busybox from the host in a FROM-scratch image) writes its
#      state: files, appends, an atomic save (tmp + mv), chmod +x, a directory renamed with files
#      inside, deletes, an empty directory, a symlink, a hard link, 4 KiB changed in a 1 MiB file,
#      names with spaces and UTF-8; then the sidecar gets SIGTERM (it records what is queued and
#      syncs the store before it exits);
#   3. the image's `diffkeeper export` of the store, and the image's `diffkeeper-init
#      --restore-from/--restore-to` (uid 65532, no capabilities) into a fresh volume;
#   4. both trees compared with the app's by tree_diff.py: types, modes, owners, contents, link
#      targets, hard-link groups.
#
# usage: tests/packaging/recorder_e2e_test.sh BIN_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/packaging/lib.sh
source "$here/lib.sh"
bin_dir="$(cd "${1:?usage: $0 BIN_DIR}" && pwd)"

stock_profile=/usr/share/containers/seccomp.json
[[ -f $stock_profile ]] || { echo "podman's $stock_profile is missing (apt-get install podman)" >&2; exit 1; }
work="$(mktemp -d /tmp/diffkeeper-recorder-e2e.XXXXXX)"
tag="localhost/diffkeeper:recorder-e2e-$$"
app_tag="localhost/diffkeeper-test-app:recorder-e2e-$$"
volumes=(state store restored)
sidecar="diffkeeper-recorder-sidecar-$$"
started=$SECONDS
cleanup() {
  podman rm -f "$sidecar" >/dev/null 2>&1 || true
  for v in "${volumes[@]}"; do podman volume rm -f "dk-e2e-$v-$$" >/dev/null 2>&1 || true; done
  podman image rm -f "$tag" "$app_tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DIFFKEEPER_IMAGE_ENGINE=podman engine_up
image_build "$bin_dir" "" "$tag" 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
mkdir -p "$work/app/bin"
cp /bin/busybox "$work/app/bin/"
for applet in sh printf mkdir mv rm ln chmod dd sleep; do ln -s busybox "$work/app/bin/$applet"; done
printf 'FROM scratch\nCOPY bin/ /bin/\nENV PATH=/bin\n' >"$work/app/Containerfile"
podman build --quiet -t "$app_tag" "$work/app" >/dev/null
"$here/seccomp_containerd_style.py" "$stock_profile" "$work/containerd-style.json"

# Named volumes; the state volumes belong to the app's uid, as fsGroup makes them in a pod.
declare -A mountpoint
for v in "${volumes[@]}"; do
  podman volume create "dk-e2e-$v-$$" >/dev/null
  mountpoint[$v]="$(podman volume inspect -f '{{.Mountpoint}}' "dk-e2e-$v-$$")"
done
# podman gives a named volume to the uid of the first container that mounts it: the app's
# uid (65532) mounts the state volumes first, as fsGroup makes them the app's in a pod.
for v in state restored; do
  podman run --rm --network none --user 65532:65532 -v "dk-e2e-$v-$$:/vol" "$app_tag" sh -c 'test -w /vol'
done
store_mount="dk-e2e-store-$$:/var/lib/diffkeeper/store"

# 1. the sidecar
podman run -d --name "$sidecar" --network none --read-only --security-opt no-new-privileges \
  --user 0 --cap-drop ALL --cap-add BPF --cap-add PERFMON --cap-add DAC_READ_SEARCH \
  --security-opt "seccomp=$work/containerd-style.json" --tmpfs /tmp:size=4m \
  -v "dk-e2e-state-$$:/state:ro" -v "$store_mount" \
  --entrypoint /usr/local/bin/diffkeeper-sidecar "$tag" \
  --state-dir /state --store /var/lib/diffkeeper/store --store-sync-ms 100 >/dev/null
for ((i = 0; i < 200; i++)); do
  podman logs "$sidecar" 2>&1 | grep -qF "$READY_LINE" && break
  [[ $(podman inspect -f '{{.State.Running}}' "$sidecar") == true ]] || break
  sleep 0.1
done
podman logs "$sidecar" >"$work/sidecar.stdout" 2>"$work/sidecar.log"
expect_in "sidecar with --store is ready (tracepoint, containerd-style seccomp)" "${READY_LINE}tracepoint" "$work/sidecar.log"

# 2. the app: its state in phases, a short pause between them as an app's writes have
cat >"$work/app.sh" <<'APP'
set -e
cd /state
printf 'first line\n' >notes.txt
printf '[main]\nport = 80\n' >config.ini
printf '#!/bin/sh\necho run\n' >run.sh
mkdir -p dir/sub old 'répertoire'
printf 'a in sub\n' >dir/sub/a.txt
printf 'b in dir\n' >dir/b.txt
printf 'to be removed\n' >old/x.txt
dd if=/dev/urandom of=blob.bin bs=4096 count=256 2>/dev/null
sleep 0.3
printf 'appended %s\n' 1 2 3 >>notes.txt
printf '[main]\nport = 8080\nsaved = yes\n' >.config.ini.swp
mv .config.ini.swp config.ini
chmod 0755 run.sh
sleep 0.3
mv dir dir2
rm -r old
rm dir2/b.txt
mkdir empty
ln -s config.ini cfg.link
ln notes.txt notes.hard
dd if=/dev/urandom of=blob.bin bs=4096 count=1 seek=128 conv=notrunc 2>/dev/null
printf 'spaces and UTF-8\n' >'my file ü.txt'
printf 'oui\n' >'répertoire/ça va.txt'
APP
check "app container (uid 65532) writes its state" podman run --rm --network none --read-only \
  --user 65532:65532 --cap-drop ALL -v "dk-e2e-state-$$:/state" -v "$work/app.sh:/app.sh:ro" \
  "$app_tag" sh /app.sh
sleep 1
podman stop -t 20 "$sidecar" >/dev/null
podman logs "$sidecar" >"$work/sidecar.stdout" 2>"$work/sidecar.log"
expect_eq "sidecar exit code after SIGTERM" "0" "$(podman inspect -f '{{.State.ExitCode}}' "$sidecar")"
expect_not_in "nothing skipped or lost by capture" '"content":"' "$work/sidecar.stdout"

entries="$(find "${mountpoint[state]}" -mindepth 1 | wc -l)"
# notes.txt notes.hard config.ini cfg.link run.sh blob.bin empty dir2 dir2/sub dir2/sub/a.txt
# répertoire répertoire/ça va.txt 'my file ü.txt'
expect_eq "the app's tree holds every entry the app left" "13" "$entries"

# 3. the image's diffkeeper export (as the image's user, 65532, like the app: what it writes is
# the app's), and diffkeeper-init's restore into a fresh volume
chmod 0711 "$work"
install -d -o 65532 -g 65532 "$work/export"
check "diffkeeper export (the image's) of the store" podman run --rm --network none --read-only \
  --cap-drop ALL -v "$store_mount:ro" -v "$work/export:/out" --entrypoint /usr/local/bin/diffkeeper "$tag" \
  export --store /var/lib/diffkeeper/store --out /out/tree
check "diffkeeper-init --restore-from/--restore-to (uid 65532, no capabilities) into a fresh volume" \
  podman run --rm --network none --read-only --security-opt no-new-privileges --user 65532:65532 \
  --cap-drop ALL --tmpfs /tmp:size=4m -v "$store_mount:ro" -v "dk-e2e-restored-$$:/state" "$tag" \
  --restore-from=/var/lib/diffkeeper/store --restore-to=/state --btf-cache-dir=/tmp/btf

# 4. the app's tree, the export and the restored volume
check "the export equals the app's tree (types, modes, owners, contents, links)" \
  "$here/tree_diff.py" "${mountpoint[state]}" "$work/export/tree"
check "the restored volume equals the app's tree (types, modes, owners, contents, links)" \
  "$here/tree_diff.py" "${mountpoint[state]}" "${mountpoint[restored]}"
"$here/tree_diff.py" "${mountpoint[state]}" "${mountpoint[restored]}" | tail -n 1 | sed 's/^/INFO restored: /'
# The comparison can fail: a copy with one mode changed must differ.
cp -a "${mountpoint[restored]}" "$work/tampered"
chmod 0600 "$work/tampered/run.sh"
if "$here/tree_diff.py" "${mountpoint[state]}" "$work/tampered" >"$work/tampered.diff"; then
  fail "tree_diff.py sees a changed mode" "it found no difference"
else
  expect_in "tree_diff.py sees a changed mode" "run.sh: mode 755, got 600" "$work/tampered.diff"
fi
echo "INFO recorder end to end: $((SECONDS - started)) s"
