#!/usr/bin/env bash
# The image, for real: hadolint; `scripts/image.sh` builds the multi-arch OCI index (linux/amd64 +
# linux/arm64, podman) twice, plain and with two BTFs baked in (a plain .btf and a BTFHub-shaped
# .btf.tar.xz tree); both manifests of each index are inspected from the OCI archive (platform,
# ELF machine and static linking of the binaries in each platform's layer, size, baked files);
# then the amd64 image of the index runs the way the Kubernetes manifests do (uid 65532,
# read-only root, no capabilities, no network) and diffkeeper-init provisions from the baked
# directory into a mounted cache volume.
#
# How the container sees /sys: the engine mounts the host's sysfs, so /sys/kernel/btf/vmlinux
# is visible and init would rightly use the system BTF and touch nothing. An empty read-only
# bind mount over /sys/kernel/btf hides it, as on a node whose kernel has no BTF; together
# with --kernel-release naming a baked release, init must take the baked path.
#
# usage: tests/packaging/image_test.sh BIN_DIR [ARM64_BIN_DIR]
#   BIN_DIR: the x86_64 binaries; ARM64_BIN_DIR defaults to the aarch64 directory next to it.
set -euo pipefail
# shellcheck source=tests/packaging/lib.sh
source "$(dirname "$0")/lib.sh"
bin_dir="$(cd "${1:?usage: $0 BIN_DIR [ARM64_BIN_DIR]}" && pwd)"
arm64_bin_dir="${2:-$(dirname "$(dirname "$bin_dir")")/aarch64-unknown-linux-musl/release}"
[[ -d $arm64_bin_dir ]] || { echo "image_test: $arm64_bin_dir is missing: run just build (both architectures)" >&2; exit 1; }
arm64_bin_dir="$(cd "$arm64_bin_dir" && pwd)"

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

# The multi-stage Dockerfile of docs/deploy.md (for builders with internet access) is linted too:
# every ```dockerfile block of docs/deploy.md, and there must be one.
python3 - "$repo/docs/deploy.md" "$work/readme-dockerfile" <<'EOF'
import os, re, sys
text = open(sys.argv[1]).read() if os.path.exists(sys.argv[1]) else ""
for i, block in enumerate(re.findall(r"^```dockerfile\n(.*?)^```", text, re.M | re.S)):
    open(f"{sys.argv[2]}.{i}", "w").write(block)
EOF
readme_blocks=("$work"/readme-dockerfile.*)
if [[ -e ${readme_blocks[0]} ]]; then
  for block in "${readme_blocks[@]}"; do
    check "hadolint: docs/deploy.md's dockerfile block ${block##*.} is clean" hadolint --failure-threshold style "$block"
  done
else
  fail "hadolint: docs/deploy.md's multi-stage Dockerfile" "docs/deploy.md has no \`\`\`dockerfile block (the multi-stage build for connected builders)"
fi

plain_release="6.1.0-99-pkgtest-amd64"   # baked as <release>.btf
tree_release="6.1.0-98-pkgtest-amd64"    # baked as debian/12/x86_64/<release>.btf.tar.xz
mkdir -p "$work/bake" "$work/host/etc" "$work/empty"
cp "$SYSTEM_BTF" "$work/bake/$plain_release.btf"
pack_btf_archive "$SYSTEM_BTF" "$work/bake/debian/12/x86_64" "$tree_release.btf"
echo "not a BTF, must not be baked" >"$work/bake/README.txt"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n' >"$work/host/etc/os-release"

DIFFKEEPER_IMAGE_ENGINE=podman engine_up
version="$(workspace_version)"

# expect_index NAME ARCHIVE BAKED(yes|no): PASS/FAIL lines about both manifests of the index.
expect_index() {
  python3 "$repo/scripts/oci_inspect.py" "$2" >"$work/index.json" || { fail "$1: OCI archive readable" "see stderr"; return 0; }
  python3 - "$1" "$work/index.json" "$3" "$version" "$plain_release" "$tree_release" <<'PY'
import json, sys
name, path, baked, version, plain_release, tree_release = sys.argv[1:]
d = json.load(open(path))
def check(what, ok, detail):
    print(f"PASS {name}: {what}" if ok else f"FAIL {name}: {what}: {detail}")
check("an OCI image index", d["index_media_type"] == "application/vnd.oci.image.index.v1+json", d["index_media_type"])
plats = sorted(m["platform"] for m in d["manifests"])
check("platforms linux/amd64 + linux/arm64", plats == ["linux/amd64", "linux/arm64"], plats)
machine = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
for m in d["manifests"]:
    p = m["platform"]
    check(f"{p}: config says {p}", m["config_platform"] == p, m["config_platform"])
    check(f"{p}: default user 65532", m["user"] == "65532:65532", m["user"])
    check(f"{p}: OCI version label", m["labels"].get("org.opencontainers.image.version") == version, m["labels"])
    for b in ("diffkeeper-init", "diffkeeper-sidecar", "diffkeeper"):
        elf = m["elf"].get(f"usr/local/bin/{b}")
        check(f"{p}: {b} is a static {machine.get(p)} ELF", elf == {"machine": machine.get(p), "static": True}, elf)
    check(f"{p}: cache dir present", "var/cache/diffkeeper/btf/" in m["files"], m["files"])
    btfs = sorted(f for f in m["files"] if f.startswith("opt/diffkeeper/btf/") and not f.endswith("/"))
    if baked == "no":
        check(f"{p}: /opt/diffkeeper/btf is empty", btfs == [], btfs)
        check(f"{p}: image size <= 9 MB", m["uncompressed_bytes"] <= 9_000_000, f"{m['uncompressed_bytes']} bytes")
        print(f"INFO {p}: {m['uncompressed_bytes']} bytes ({m['compressed_bytes']} compressed), {m['digest']}")
    else:
        want = [f"opt/diffkeeper/btf/{plain_release}.btf", f"opt/diffkeeper/btf/debian/12/x86_64/{tree_release}.btf.tar.xz"]
        check(f"{p}: only the two BTF files are baked", btfs == want, btfs)
PY
}

plain_oci="$work/plain.oci.tar"
index_oci="$work/index.oci.tar"
# The default image: nothing baked.
image_build_index "" "$plain_tag" "$plain_oci" "amd64=$bin_dir" "arm64=$arm64_bin_dir" 2>"$work/build.log" \
  || { cat "$work/build.log" >&2; exit 1; }
pass "multi-arch index builds (podman, FROM scratch, nothing baked)"
expect_index "default index" "$plain_oci" no

image_build_index "$work/bake" "$tag" "$index_oci" "amd64=$bin_dir" "arm64=$arm64_bin_dir" 2>"$work/build.log" \
  || { cat "$work/build.log" >&2; exit 1; }
pass "multi-arch index builds (podman, FROM scratch, 2 BTFs baked)"
expect_index "baked index" "$index_oci" yes

# The image that runs below is the index's amd64 image: its id is the amd64 config's digest (the
# config names the layers by their uncompressed digests; pulling recompresses, so the manifest
# digest itself changes).
amd64_config="$(python3 -c 'import json,sys; print([m["config_digest"] for m in json.load(open(sys.argv[1]))["manifests"] if m["platform"] == "linux/amd64"][0])' "$work/index.json")"
expect_eq "the local $tag is the index's amd64 image" "${amd64_config#sha256:}" "$(engine image inspect -f '{{.Id}}' "$tag")"
expect_eq "the local $tag is linux/amd64" "linux/amd64" "$(engine image inspect -f '{{.Os}}/{{.Architecture}}' "$tag")"

# Bad input is refused with a message naming it: binaries of the wrong architecture, an unknown
# platform, and an index through docker.
if (image_build_index "" "$plain_tag" "$work/bad.oci.tar" "arm64=$bin_dir") >/dev/null 2>"$work/bad.log"; then
  fail "index: x86_64 binaries given as arm64 are refused" "image_build_index succeeded"
else
  expect_in "index: x86_64 binaries given as arm64 are refused" "is a amd64 binary, not arm64: wrong --bin-dir for arm64" "$work/bad.log"
fi
if "$repo/scripts/image.sh" --platform linux/s390x >/dev/null 2>"$work/bad.log"; then
  fail "image.sh: --platform linux/s390x is refused" "it succeeded"
else
  expect_in "image.sh: --platform linux/s390x is refused" "supported are linux/amd64 and linux/arm64" "$work/bad.log"
fi
if DIFFKEEPER_IMAGE_ENGINE=docker "$repo/scripts/image.sh" >/dev/null 2>"$work/bad.log"; then
  fail "image.sh: an index through docker is refused" "it succeeded"
else
  expect_in "image.sh: an index through docker is refused" "a multi-arch index needs podman" "$work/bad.log"
fi

# Runs a container as the pods do: default user 65532, read-only root, no capabilities, no
# network, no privilege escalation, system BTF hidden.
run_hardened() {
  engine run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
    -v "$work/empty:/sys/kernel/btf:ro" "$@"
}

# --- --version of both binaries
out="$(engine run --rm --network none "$tag" --version 2>&1 || true)"
expect_eq "run IMAGE --version (diffkeeper-init)" "diffkeeper-init $version" "$out"
out="$(engine run --rm --network none --entrypoint /usr/local/bin/diffkeeper-sidecar "$tag" --version 2>&1 || true)"
expect_eq "run --entrypoint diffkeeper-sidecar IMAGE --version" "diffkeeper-sidecar $version" "$out"

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
mountpoint="$(engine volume inspect -f '{{.Mountpoint}}' "$volume")"
same_file "baked archive extracted byte-identical into the named volume" "$SYSTEM_BTF" "$mountpoint/$tree_release.btf"

# --- nothing baked for this release, downloads off, --required: exit 1 naming what is missing
set +e
run_hardened -v "$work/cache:/var/cache/diffkeeper/btf" "$tag" \
  --kernel-release 6.1.0-97-notbaked-amd64 --disable-btfhub-download --required >"$work/missing.log" 2>&1
rc=$?
set -e
expect_eq "release not baked + --required: exit 1" "1" "$rc"
expect_in "release not baked: the error names the release" "6.1.0-97-notbaked-amd64" "$work/missing.log"
