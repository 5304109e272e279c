#!/usr/bin/env bash
# The image, for real: hadolint, `scripts/image.sh` builds it with two BTFs baked in (a plain
# .btf and a BTFHub-shaped .btf.tar.xz tree), then containers run it the way the Kubernetes
# manifests do (uid 65532, read-only root, no capabilities, no network) and diffkeeper-init
# provisions from the baked directory into a mounted cache volume.
#
# How the container sees /sys: the engine mounts the host's sysfs, so /sys/kernel/btf/vmlinux
# is visible and init would rightly use the system BTF and touch nothing. An empty read-only
# bind mount over /sys/kernel/btf hides it, as on a node whose kernel has no BTF; together
# with --kernel-release naming a baked release, init must take the baked path.
#
# usage: tests/packaging/image_test.sh BIN_DIR
set -euo pipefail
# shellcheck source=tests/packaging/lib.sh
source "$(dirname "$0")/lib.sh"
bin_dir="$(cd "${1:?usage: $0 BIN_DIR}" && pwd)"

# --- hadolint (and proof that it does flag a bad Dockerfile, so a silent linter cannot pass)
check "hadolint: Dockerfile is clean" hadolint --failure-threshold style "$repo/Dockerfile"
if printf 'FROM debian\nRUN apt-get install -y curl\n' | hadolint - >/dev/null 2>&1; then
  fail "hadolint: flags a bad Dockerfile" "hadolint accepted apt-get install without pinning or --no-install-recommends"
else
  pass "hadolint: flags a bad Dockerfile"
fi

work="$(mktemp -d /tmp/diffkeeper-image-test.XXXXXX)"
tag="diffkeeper:pkgtest-$$"
plain_tag="diffkeeper:pkgtest-plain-$$"
volume="diffkeeper-pkgtest-$$"
cleanup() {
  if [[ -n $ENGINE ]]; then
    engine volume rm -f "$volume" >/dev/null 2>&1 || true
    engine image rm -f "$tag" "$plain_tag" >/dev/null 2>&1 || true
  fi
  engine_down
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The README's multi-stage Dockerfile (for builders with internet access) is linted too: every
# ```dockerfile block of README.md, and there must be one.
python3 - "$repo/README.md" "$work/readme-dockerfile" <<'EOF'
import os, re, sys
text = open(sys.argv[1]).read() if os.path.exists(sys.argv[1]) else ""
for i, block in enumerate(re.findall(r"^```dockerfile\n(.*?)^```", text, re.M | re.S)):
    open(f"{sys.argv[2]}.{i}", "w").write(block)
EOF
readme_blocks=("$work"/readme-dockerfile.*)
if [[ -e ${readme_blocks[0]} ]]; then
  for block in "${readme_blocks[@]}"; do
    check "hadolint: README.md's dockerfile block ${block##*.} is clean" hadolint --failure-threshold style "$block"
  done
else
  fail "hadolint: README.md's multi-stage Dockerfile" "README.md has no \`\`\`dockerfile block (the multi-stage build for connected builders)"
fi

plain_release="6.1.0-99-pkgtest-amd64"   # baked as <release>.btf
tree_release="6.1.0-98-pkgtest-amd64"    # baked as debian/12/x86_64/<release>.btf.tar.xz
mkdir -p "$work/bake" "$work/host/etc" "$work/empty"
cp "$SYSTEM_BTF" "$work/bake/$plain_release.btf"
pack_btf_archive "$SYSTEM_BTF" "$work/bake/debian/12/x86_64" "$tree_release.btf"
echo "not a BTF, must not be baked" >"$work/bake/README.txt"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n' >"$work/host/etc/os-release"

engine_up
# The default image: nothing baked, /opt/diffkeeper/btf empty.
image_build "$bin_dir" "" "$plain_tag" 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
size="$(engine image inspect -f '{{.Size}}' "$plain_tag")"
echo "INFO image $plain_tag (nothing baked): $size bytes ($((size / 1024)) KiB)"
engine create --name "pkgtest-plain-$$" "$plain_tag" >/dev/null
baked_in_plain="$(engine export "pkgtest-plain-$$" | tar -t | grep -c '^opt/diffkeeper/btf/.' || true)"
engine rm "pkgtest-plain-$$" >/dev/null
expect_eq "default image: /opt/diffkeeper/btf is empty" "0" "$baked_in_plain"

image_build "$bin_dir" "$work/bake" "$tag" 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
pass "image builds ($ENGINE, FROM scratch, 2 BTFs baked)"
size="$(engine image inspect -f '{{.Size}}' "$tag")"
echo "INFO image $tag: $size bytes ($((size / 1024)) KiB) with 2 baked BTFs of $(stat -c %s "$SYSTEM_BTF") bytes each (one xz-compressed)"

expect_eq "image: default user is 65532" "65532:65532" "$(engine image inspect -f '{{.Config.User}}' "$tag")"
expect_eq "image: OCI version label" "$(workspace_version)" \
  "$(engine image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$tag")"

# The file list: two binaries, the baked BTFs (tree kept, README.txt filtered out), the cache dir.
engine create --name "pkgtest-$$" "$tag" >/dev/null
engine export "pkgtest-$$" | tar -t | sort >"$work/files"
engine rm "pkgtest-$$" >/dev/null
for path in usr/local/bin/diffkeeper-init usr/local/bin/diffkeeper-sidecar \
  "opt/diffkeeper/btf/$plain_release.btf" "opt/diffkeeper/btf/debian/12/x86_64/$tree_release.btf.tar.xz" \
  var/cache/diffkeeper/btf/; do
  expect_in "image contains /$path" "$path" "$work/files"
done
expect_not_in "image: only BTF files are baked" "README.txt" "$work/files"

# Runs a container as the pods do: default user 65532, read-only root, no capabilities, no
# network, no privilege escalation, system BTF hidden.
run_hardened() {
  engine run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
    -v "$work/empty:/sys/kernel/btf:ro" "$@"
}

# --- --version of both binaries
version="$(workspace_version)"
out="$(engine run --rm --network none "$tag" --version 2>&1 || true)"
expect_eq "docker run IMAGE --version (diffkeeper-init)" "diffkeeper-init $version" "$out"
out="$(engine run --rm --network none --entrypoint /usr/local/bin/diffkeeper-sidecar "$tag" --version 2>&1 || true)"
expect_eq "docker run --entrypoint diffkeeper-sidecar IMAGE --version" "diffkeeper-sidecar $version" "$out"

# --- init provisions a baked plain .btf into a bind-mounted cache dir owned by 65532
mkdir -p "$work/cache"
chown 65532:65532 "$work/cache"
if run_hardened -v "$work/cache:/var/cache/diffkeeper/btf" "$tag" \
  --kernel-release "$plain_release" --disable-btfhub-download --required >"$work/plain.log" 2>&1; then
  pass "init in the image provisions a baked .btf (exit 0)"
else
  fail "init in the image provisions a baked .btf (exit 0)" "$(tail -n 15 "$work/plain.log")"
fi
same_file "baked .btf copied byte-identical into the cache volume" "$SYSTEM_BTF" "$work/cache/$plain_release.btf"
expect_eq "cache file owned by uid 65532" "65532" "$(stat -c %u "$work/cache/$plain_release.btf" 2>/dev/null)"
expect_eq "status file records source=baked" "baked" "$(json_field "$work/cache/$plain_release.json" source)"
expect_not_in "the hidden system BTF was not used" "system BTF /sys/kernel/btf/vmlinux is present" "$work/plain.log"

# --- a second run is a cache hit and rewrites nothing
before="$(stat -c %Y.%i "$work/cache/$plain_release.btf")"
run_hardened -v "$work/cache:/var/cache/diffkeeper/btf" "$tag" \
  --kernel-release "$plain_release" --disable-btfhub-download --required >"$work/hit.log" 2>&1 || true
expect_in "second run: cache hit logged" "cached BTF /var/cache/diffkeeper/btf/$plain_release.btf is valid" "$work/hit.log"
expect_eq "second run: the cached file is untouched" "$before" "$(stat -c %Y.%i "$work/cache/$plain_release.btf")"

# --- a BTFHub-shaped baked tree, found through the host's os-release under --host-root, into a
#     fresh named volume (writable for 65532 only because the image's cache dir is owned by it)
engine volume create "$volume" >/dev/null
if run_hardened -v "$volume:/var/cache/diffkeeper/btf" -v "$work/host/etc/os-release:/host/etc/os-release:ro" \
  "$tag" --host-root /host --kernel-release "$tree_release" --disable-btfhub-download --required \
  >"$work/tree.log" 2>&1; then
  pass "init in the image extracts a baked BTFHub tree archive into a named volume (exit 0)"
else
  fail "init in the image extracts a baked BTFHub tree archive into a named volume (exit 0)" "$(tail -n 15 "$work/tree.log")"
fi
expect_in "distro read from the host's os-release" "distro debian 12" "$work/tree.log"
if [[ $ENGINE == docker ]]; then
  mountpoint="$(engine volume inspect -f '{{.Mountpoint}}' "$volume")"
  same_file "baked archive extracted byte-identical into the named volume" "$SYSTEM_BTF" "$mountpoint/$tree_release.btf"
fi

# --- nothing baked for this release, downloads off, --required: exit 1 naming what is missing
set +e
run_hardened -v "$work/cache:/var/cache/diffkeeper/btf" "$tag" \
  --kernel-release 6.1.0-97-notbaked-amd64 --disable-btfhub-download --required >"$work/missing.log" 2>&1
rc=$?
set -e
expect_eq "release not baked + --required: exit 1" "1" "$rc"
expect_in "release not baked: the error names the release" "6.1.0-97-notbaked-amd64" "$work/missing.log"
