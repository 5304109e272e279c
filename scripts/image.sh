#!/usr/bin/env bash
# Builds the diffkeeper image (Dockerfile, FROM scratch) from the static binaries of `just build`.
#
#   scripts/image.sh [--bin-dir DIR] [--bake BTF_DIR] [--tag NAME:TAG] [--save FILE.tar]
#
#   --bin-dir  where diffkeeper-init and diffkeeper-sidecar are
#              (default target/x86_64-unknown-linux-musl/release)
#   --bake     a directory of <release>.btf / <release>.btf.tar.xz files, or a BTFHub-shaped tree
#              <distro>/<version>/<arch>/<release>.btf[.tar.xz]; copied to /opt/diffkeeper/btf
#   --tag      image name (default diffkeeper:<workspace version>)
#   --save     also write the image as a `docker save` archive (to load on another machine)
#
# Engine: docker when its client is installed, else podman (DIFFKEEPER_IMAGE_ENGINE=docker|podman
# forces one). When no Docker daemon answers, a private dockerd is started in the background for
# the duration of the script and stopped by its PID at the end.
#
# Sourcing this file (tests do) only defines the functions: engine_up, engine_down, engine, and
# image_build.
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

# image_build BIN_DIR BAKE_DIR(or "") TAG: stages the context and builds.
image_build() {
  local bin_dir="$1" bake_dir="$2" tag="$3" bin
  local context="$IMAGE_WORK_DIR/context"
  for bin in diffkeeper-init diffkeeper-sidecar; do
    [[ -x $bin_dir/$bin ]] || image_die "$bin_dir/$bin is missing: run \`just build\` first"
  done
  rm -rf "$context"
  mkdir -p "$context/bin" "$context/btf" "$context/cache"
  install -m 0755 "$bin_dir/diffkeeper-init" "$bin_dir/diffkeeper-sidecar" "$context/bin/"
  [[ -z $bake_dir ]] || stage_baked_btfs "$bake_dir" "$context/btf"
  local revision
  revision="$(git -C "$IMAGE_REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  # The classic builder: it needs nothing beyond the daemon, while newer docker clients send
  # BuildKit builds through the buildx plugin, which Debian's docker.io does not ship.
  DOCKER_BUILDKIT=0 engine build --quiet -f "$IMAGE_REPO_ROOT/Dockerfile" -t "$tag" \
    --build-arg "VERSION=$(workspace_version)" --build-arg "REVISION=$revision" "$context" >/dev/null
  image_log "built $tag ($(engine image inspect -f '{{.Size}}' "$tag") bytes)"
}

image_main() {
  local bin_dir="$IMAGE_REPO_ROOT/target/x86_64-unknown-linux-musl/release" bake_dir="" tag="" save=""
  while (($#)); do
    case "$1" in
      --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
      --bake) bake_dir="${2:?--bake needs a directory}"; shift 2 ;;
      --tag) tag="${2:?--tag needs NAME:TAG}"; shift 2 ;;
      --save) save="${2:?--save needs a file}"; shift 2 ;;
      -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return 0 ;;
      *) image_die "unknown argument: $1 (see --help)" ;;
    esac
  done
  [[ -n $tag ]] || tag="diffkeeper:$(workspace_version)"
  trap engine_down EXIT
  trap 'exit 130' INT TERM  # so the EXIT trap stops a dockerd started here
  engine_up
  image_build "$bin_dir" "$bake_dir" "$tag"
  if [[ -n $save ]]; then
    engine save -o "$save" "$tag"
    image_log "saved $tag to $save ($(stat -c %s "$save") bytes)"
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  image_main "$@"
fi
