#!/usr/bin/env bash
# Packaging tests (`just packaging-test`, part of `just test`): the image built and run for real,
# the Kubernetes manifests rendered and validated, least privilege proven. Needs root.
# Each suite prints PASS/FAIL lines; a suite that dies without a FAIL line counts as one failure.
#
# usage: tests/packaging/run.sh BIN_DIR [ARM64_BIN_DIR]
#   BIN_DIR: the x86_64 static binaries; ARM64_BIN_DIR: the aarch64 ones (the image test builds
#   the multi-arch index from both; default: the aarch64 directory next to BIN_DIR).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin_dir="${1:?usage: tests/packaging/run.sh BIN_DIR [ARM64_BIN_DIR] (the directories of the static binaries)}"
arm64_args=("${@:2}")
log_dir="$(mktemp -d /tmp/diffkeeper-packaging.XXXXXX)"
passed=0 failed=0

for suite in image_test.sh manifests_test.py helm_chart_test.py caps_test.sh pod_sidecar_test.sh recorder_e2e_test.sh kube_play_test.sh; do
  echo "== packaging: $suite"
  "$here/$suite" "$bin_dir" "${arm64_args[@]}" 2>"$log_dir/$suite.stderr" | tee "$log_dir/$suite.out"
  rc=${PIPESTATUS[0]}
  p=$(grep -c '^PASS ' "$log_dir/$suite.out")
  f=$(grep -c '^FAIL ' "$log_dir/$suite.out")
  if ((rc != 0 && f == 0)); then
    echo "FAIL $suite: exited with status $rc; its stderr:"
    tail -n 20 "$log_dir/$suite.stderr"
    f=1
  fi
  passed=$((passed + p)) failed=$((failed + f))
done

if ((failed)); then
  echo "== failures:"
  grep -h '^FAIL ' "$log_dir"/*.out
fi
rm -rf "$log_dir"
echo "packaging: $passed passed, $failed failed"
((failed == 0))
