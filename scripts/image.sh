#!/usr/bin/env bash
# Builds the diffkeeper image (Dockerfile, FROM scratch) from the static binaries of `just build`:
# by default a multi-arch OCI index with linux/amd64 and linux/arm64.
#
#   scripts/image.sh [--bin-dir [ARCH=]DIR]... [--platform LIST] [--bake BTF_DIR]
#                    [--btf-bundle FILE] [--tag NAME:TAG] [--save FILE]
#
#   --bin-dir   where one architecture's diffkeeper-init and diffkeeper-sidecar are; ARCH is amd64
#               (the default when ARCH= is left out) or arm64. Defaults:
#               ${CARGO_TARGET_DIR:-target}/{x86_64,aarch64}-unknown-linux-musl/release
#   --platform  comma-separated platforms (default linux/amd64,linux/arm64). With two or more the
#               result is an OCI image index, built with podman (docker 20.10 cannot build one
#               without buildx); with one, a plain image with docker or podman as before.
#   --bake      a directory of <release>.btf / <release>.btf.tar.xz files, or a BTFHub-shaped tree
#               <distro>/<version>/<arch>/<release>.btf[.tar.xz]; copied to /opt/diffkeeper/btf
#   --btf-bundle  a BTF bundle made by `just btfgen`; baked as /opt/diffkeeper/btf/bundle.dkbtf,
#               where diffkeeper-init looks by default (checked to start with the bundle magic)
#   --tag       image name (default diffkeeper:<workspace version>)
#   --save      index: the OCI archive of the index (default target/image/<name>-<tag>.oci.tar);
#               one platform: also write a `docker save` archive
#
# Index: the platforms are built in a private, throw-away podman store under target/image/store
# (podman 4.3's `podman images` fails on every image while a manifest list it built sits in the
# store, so no list ever enters the shared one), pushed as an OCI archive with all platforms, and
# the host's platform from that archive is pulled into podman's store as NAME:TAG, runnable.
#
# Engine (one platform): docker when its client is installed, else podman
# (DIFFKEEPER_IMAGE_ENGINE=docker|podman forces one). When no Docker daemon answers, a private
# dockerd is started in the background for the duration of the script and stopped by its PID.
#
# Sourcing this file (tests do) only defines the functions: engine_up, engine_down, engine,
# image_build, image_build_index and elf_arch.
set -euo pipefail

IMAGE_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE_WORK_DIR="$IMAGE_REPO_ROOT/target/image"
ENGINE=""
STARTED_DOCKERD_PID=""

image_log() { echo "image: $*" >&2; }
image_die() { echo "image: error: $*" >&2; exit 1; }

workspace_version() {
  sed -n '/^\[workspace.package\]/,/^\[/{s/^version = "\(.*\)"/\1/p}' "$IMAGE_REPO_ROOT/Cargo.toml"
}

# Runs the chosen engine's client: `engine build ...`, `engine run ...`.
engine() { "$ENGINE" "$@"; }

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() {
  command -v dockerd >/dev/null 2>&1 \
    || image_die "no Docker daemon answers and dockerd is not installed (apt-get install docker.io, or use podman)"
  mkdir -p "$IMAGE_WORK_DIR"
  local log="$IMAGE_WORK_DIR/dockerd.log"
  # No bridge and no iptables rules: image builds here need no network, and the host's
  # firewall stays untouched.
  dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 &
  STARTED_DOCKERD_PID=$!
  local waited=0
  until docker_answers; do
    if ! kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null; then
      STARTED_DOCKERD_PID=""
      tail -n 20 "$log" >&2
      image_die "dockerd exited at start (log above, full log in $log)"
    fi
    ((waited++ < 60)) || image_die "dockerd did not answer within 30 s (log: $log)"
    sleep 0.5
  done
  image_log "started dockerd (pid $STARTED_DOCKERD_PID, log $log)"
}

# Picks the engine and makes sure it can build and run; a dockerd started here is stopped by
# engine_down (callers set `trap engine_down EXIT`).
engine_up() {
  case "${DIFFKEEPER_IMAGE_ENGINE:-}" in
    docker | podman) ENGINE="$DIFFKEEPER_IMAGE_ENGINE" ;;
    "") if command -v docker >/dev/null 2>&1; then ENGINE=docker
        elif command -v podman >/dev/null 2>&1; then ENGINE=podman
        else image_die "neither docker nor podman is installed (apt-get install docker.io)"; fi ;;
    *) image_die "DIFFKEEPER_IMAGE_ENGINE=$DIFFKEEPER_IMAGE_ENGINE: use docker or podman" ;;
  esac
  command -v "$ENGINE" >/dev/null 2>&1 || image_die "$ENGINE is not installed"
  if [[ $ENGINE == docker ]]; then
    docker_answers || start_dockerd
  else
    # Podman's default ulimits ask for more than a session without CAP_SYS_RESOURCE may set.
    local conf="$IMAGE_WORK_DIR/containers.conf"
    mkdir -p "$IMAGE_WORK_DIR"
    printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' >"$conf"
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$conf}"
  fi
}

engine_down() {
  local pid="$STARTED_DOCKERD_PID" waited=0
  [[ -n $pid ]] || return 0
  STARTED_DOCKERD_PID=""
  kill "$pid" 2>/dev/null || true
  # An exited child stays a zombie until waited for, so "running" means not in state Z.
  while [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [^Z]* ]] && ((waited++ < 200)); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  image_log "stopped dockerd (pid $pid)"
}

# Copies only BTF files (regular files named *.btf or *.btf.tar.xz, keeping their relative path,
# so BTFHub-shaped trees stay trees) from $1 into $2.
stage_baked_btfs() {
  local from="$1" to="$2" count=0 rel
  [[ -d $from ]] || image_die "--bake $from: not a directory"
  while IFS= read -r -d '' rel; do
    install -D -m 0644 "$from/$rel" "$to/$rel"
    count=$((count + 1))
  done < <(cd "$from" && find . -type f \( -name '*.btf' -o -name '*.btf.tar.xz' \) -printf '%P\0')
  ((count > 0)) || image_die "--bake $from: no *.btf or *.btf.tar.xz files in it"
  image_log "baking $count BTF file(s) from $from into /opt/diffkeeper/btf"
}

# elf_arch FILE: the OCI architecture (amd64, arm64) of an ELF executable, "none" when FILE is
# not ELF, or "e_machine=N" for other machines.
elf_arch() {
  local magic machine
  magic="$(od -An -c -N4 "$1" 2>/dev/null | tr -d ' ')"
  [[ $magic == '177ELF' ]] || { echo none; return 0; }
  machine="$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')"
  case "$machine" in
    62) echo amd64 ;;
    183) echo arm64 ;;
    *) echo "e_machine=$machine" ;;
  esac
}

# stage_bundle FILE CONTEXT_BTF_DIR: the bundle, checked to be one, as bundle.dkbtf.
stage_bundle() {
  local from="$1" to="$2"
  [[ -f $from ]] || image_die "--btf-bundle $from: no such file (make one with \`just btfgen ARCHIVE_DIR OUT\`)"
  [[ $(head -c 6 "$from") == DKBTFB ]] || image_die "--btf-bundle $from: not a BTF bundle (no DKBTFB magic); make it with \`just btfgen\`"
  install -D -m 0644 "$from" "$to/bundle.dkbtf"
  image_log "baking the BTF bundle $from ($(stat -c %s "$from") bytes) as /opt/diffkeeper/btf/bundle.dkbtf"
}

# stage_context CONTEXT BAKE_DIR(or "") ARCH=BIN_DIR...: the build context of the Dockerfile,
# with each architecture's binaries in bin/ARCH/, checked to be executables of that architecture.
stage_context() {
  local context="$1" bake_dir="$2" pair arch dir bin got
  shift 2
  rm -rf "$context"
  mkdir -p "$context/btf" "$context/cache"
  for pair in "$@"; do
    arch="${pair%%=*}" dir="${pair#*=}"
    for bin in diffkeeper-init diffkeeper-sidecar diffkeeper; do
      [[ -x $dir/$bin ]] || image_die "$dir/$bin is missing: run \`just build\` first"
      got="$(elf_arch "$dir/$bin")"
      [[ $got == "$arch" ]] || image_die "$dir/$bin is a $got binary, not $arch: wrong --bin-dir for $arch"
    done
    install -D -m 0755 "$dir/diffkeeper-init" "$context/bin/$arch/diffkeeper-init"
    install -D -m 0755 "$dir/diffkeeper-sidecar" "$context/bin/$arch/diffkeeper-sidecar"
    install -D -m 0755 "$dir/diffkeeper" "$context/bin/$arch/diffkeeper"
  done
  [[ -z $bake_dir ]] || stage_baked_btfs "$bake_dir" "$context/btf"
  [[ -z ${IMAGE_BTF_BUNDLE:-} ]] || stage_bundle "$IMAGE_BTF_BUNDLE" "$context/btf"
}

revision() { git -C "$IMAGE_REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown; }

# image_build BIN_DIR BAKE_DIR(or "") TAG: one image, for the architecture of BIN_DIR's binaries,
# built by the engine of engine_up and tagged TAG in its store.
image_build() {
  local bin_dir="$1" bake_dir="$2" tag="$3" arch platform_args=()
  local context="$IMAGE_WORK_DIR/context"
  [[ -x $bin_dir/diffkeeper-init ]] || image_die "$bin_dir/diffkeeper-init is missing: run \`just build\` first"
  arch="$(elf_arch "$bin_dir/diffkeeper-init")"
  [[ $arch == amd64 || $arch == arm64 ]] || image_die "$bin_dir/diffkeeper-init is a $arch binary, not amd64 or arm64"
  stage_context "$context" "$bake_dir" "$arch=$bin_dir"
  if [[ $ENGINE == podman ]]; then
    platform_args=(--platform "linux/$arch")
  elif [[ $arch != amd64 ]]; then
    image_die "docker's classic builder here builds linux/amd64 only; use podman (DIFFKEEPER_IMAGE_ENGINE=podman) for $arch"
  fi
  # The classic builder: it needs nothing beyond the daemon, while newer docker clients send
  # BuildKit builds through the buildx plugin, which Debian's docker.io does not ship. It does not
  # set TARGETARCH, so it is passed.
  DOCKER_BUILDKIT=0 engine build --quiet -f "$IMAGE_REPO_ROOT/Dockerfile" -t "$tag" "${platform_args[@]}" \
    --build-arg "TARGETARCH=$arch" --build-arg "VERSION=$(workspace_version)" \
    --build-arg "REVISION=$(revision)" "$context" >/dev/null
  image_log "built $tag (linux/$arch, $(engine image inspect -f '{{.Size}}' "$tag") bytes)"
}

# Podman on the private store of image_build_index (vfs: nothing stays mounted under target/).
private_podman() {
  podman --root "$IMAGE_WORK_DIR/store/root" --runroot "$IMAGE_WORK_DIR/store/run" --storage-driver vfs "$@"
}

# image_build_index BAKE_DIR(or "") TAG OUT ARCH=BIN_DIR...: an OCI index with one linux/ARCH image
# per pair, written to the OCI archive OUT; the host's platform is pulled into podman's store as
# TAG. Needs podman (engine_up with DIFFKEEPER_IMAGE_ENGINE=podman).
image_build_index() {
  local bake_dir="$1" tag="$2" out="$3" pair platforms=""
  shift 3
  local context="$IMAGE_WORK_DIR/context" list="localhost/diffkeeper-index:build"
  [[ $ENGINE == podman ]] || image_die "a multi-arch index needs podman (docker 20.10 without buildx cannot build one); install podman or pass one --platform"
  for pair in "$@"; do platforms+="${platforms:+,}linux/${pair%%=*}"; done
  stage_context "$context" "$bake_dir" "$@"
  mkdir -p "$(dirname "$out")"
  private_podman rmi -a -f >/dev/null 2>&1 || true
  private_podman manifest rm "$list" >/dev/null 2>&1 || true
  # Podman sets TARGETARCH per platform; nothing runs in the build, so no emulation is involved.
  private_podman build --quiet --platform "$platforms" --manifest "$list" -f "$IMAGE_REPO_ROOT/Dockerfile" \
    --build-arg "VERSION=$(workspace_version)" --build-arg "REVISION=$(revision)" "$context" >/dev/null \
    || image_die "podman build --platform $platforms failed (output above)"
  rm -f "$out"
  private_podman manifest push --quiet --all --format oci "$list" "oci-archive:$out:$tag" \
    || image_die "podman manifest push of $platforms to oci-archive:$out failed (output above)"
  private_podman manifest rm "$list" >/dev/null
  private_podman rmi -a -f >/dev/null 2>&1 || true
  image_log "wrote the OCI index ($platforms) of $tag to $out ($(stat -c %s "$out") bytes)"
  local summary
  summary="$(python3 "$IMAGE_REPO_ROOT/scripts/oci_inspect.py" --summary "$out")" \
    || image_die "$out is not a readable OCI archive"
  sed 's/^/image: /' <<<"$summary" >&2
  # The host platform's image, runnable from podman's store as TAG.
  local id
  id="$(podman pull --quiet "oci-archive:$out:$tag")" || image_die "podman pull of the host platform from $out failed"
  podman tag "$id" "$tag"
  image_log "pulled the $(podman image inspect -f '{{.Os}}/{{.Architecture}}' "$tag") image of the index into podman's store as $tag"
}

image_main() {
  local target_dir="${CARGO_TARGET_DIR:-$IMAGE_REPO_ROOT/target}"
  local amd64_dir="$target_dir/x86_64-unknown-linux-musl/release"
  local arm64_dir="$target_dir/aarch64-unknown-linux-musl/release"
  local platform_list="linux/amd64,linux/arm64" bake_dir="" tag="" save="" value
  while (($#)); do
    case "$1" in
      --bin-dir)
        value="${2:?--bin-dir needs [ARCH=]DIR}"
        case "$value" in
          amd64=*) amd64_dir="${value#amd64=}" ;;
          arm64=*) arm64_dir="${value#arm64=}" ;;
          *=*) image_die "--bin-dir $value: the architecture is amd64 or arm64" ;;
          *) amd64_dir="$value" ;;
        esac
        shift 2 ;;
      --platform) platform_list="${2:?--platform needs a list such as linux/amd64,linux/arm64}"; shift 2 ;;
      --bake) bake_dir="${2:?--bake needs a directory}"; shift 2 ;;
      --btf-bundle) IMAGE_BTF_BUNDLE="${2:?--btf-bundle needs a file}"; shift 2 ;;
      --tag) tag="${2:?--tag needs NAME:TAG}"; shift 2 ;;
      --save) save="${2:?--save needs a file}"; shift 2 ;;
      -h | --help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return 0 ;;
      *) image_die "unknown argument: $1 (see --help)" ;;
    esac
  done
  [[ -n $tag ]] || tag="diffkeeper:$(workspace_version)"
  local platform pairs=()
  IFS=',' read -r -a platforms <<<"$platform_list"
  for platform in "${platforms[@]}"; do
    case "$platform" in
      linux/amd64) pairs+=("amd64=$amd64_dir") ;;
      linux/arm64) pairs+=("arm64=$arm64_dir") ;;
      *) image_die "--platform $platform: supported are linux/amd64 and linux/arm64" ;;
    esac
  done
  ((${#pairs[@]})) || image_die "--platform '$platform_list' names no platform"
  trap engine_down EXIT
  trap 'exit 130' INT TERM  # so the EXIT trap stops a dockerd started here
  if ((${#pairs[@]} > 1)); then
    [[ ${DIFFKEEPER_IMAGE_ENGINE:-podman} == podman ]] \
      || image_die "DIFFKEEPER_IMAGE_ENGINE=$DIFFKEEPER_IMAGE_ENGINE: a multi-arch index needs podman (docker 20.10 without buildx cannot build one); pass one --platform for a docker image"
    DIFFKEEPER_IMAGE_ENGINE=podman engine_up
    [[ -n $save ]] || save="$IMAGE_WORK_DIR/$(tr '/:' '--' <<<"$tag").oci.tar"
    image_build_index "$bake_dir" "$tag" "$save" "${pairs[@]}"
  else
    engine_up
    image_build "${pairs[0]#*=}" "$bake_dir" "$tag"
    if [[ -n $save ]]; then
      engine save -o "$save" "$tag"
      image_log "saved $tag to $save ($(stat -c %s "$save") bytes)"
    fi
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  image_main "$@"
fi
