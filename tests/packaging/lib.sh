# shellcheck shell=bash
# Shared by the packaging suites: result lines that tests/packaging/run.sh counts.
#   PASS <name>
#   FAIL <name>: <what was expected, what happened>
# A suite exits non-zero when it cannot run at all; run.sh counts that as a failure too.
# Sourcing it also brings scripts/image.sh's functions (engine_up, image_build, ...) and $repo.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/image.sh
source "$repo/scripts/image.sh"

# The sidecar's readiness line up to the backend's name (cli/src/ready.rs, READY_PREFIX).
# shellcheck disable=SC2034 # used by the suites
READY_LINE="diffkeeper-sidecar ready: backend="

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

# check NAME COMMAND...: PASS when COMMAND succeeds, else FAIL with its output.
check() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then pass "$name"; else fail "$name" "$(printf '%s' "$out" | tail -n 15)"; fi
}

# expect_in NAME NEEDLE FILE: PASS when FILE contains NEEDLE (fixed string).
expect_in() {
  if grep -qF -- "$2" "$3"; then pass "$1"; else fail "$1" "expected \"$2\" in $3, got: $(tail -n 15 "$3")"; fi
}

# expect_not_in NAME NEEDLE FILE
expect_not_in() {
  if grep -qF -- "$2" "$3"; then fail "$1" "did not expect \"$2\" in $3: $(grep -F -- "$2" "$3" | head -n 3)"; else pass "$1"; fi
}

# same_file NAME EXPECTED ACTUAL: byte-identical.
same_file() {
  if [[ -f $3 ]] && cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$3 is missing or differs from $2"; fi
}

# json_field FILE KEY: a top-level string/number field of a JSON file (status files).
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null; }

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
  if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "expected \"$2\", got \"$3\""; fi
}

# The running kernel's BTF: the real payload every provisioning test moves around.
export SYSTEM_BTF=/sys/kernel/btf/vmlinux

# pack_btf_archive SRC DIR NAME: DIR/NAME.tar.xz holding one member NAME (what BTFHub ships).
pack_btf_archive() {
  local src="$1" dir="$2" name="$3" stage
  stage="$(mktemp -d)"
  cp "$src" "$stage/$name"
  mkdir -p "$dir"
  tar -C "$stage" -cJf "$dir/$name.tar.xz" "$name"
  rm -rf "$stage"
}
