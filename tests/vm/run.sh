#!/usr/bin/env bash
# tests/vm/run.sh BIN_DIR [--arch x86_64|arm64] [--kernel 6.1|6.12] [--only GLOB] ...: the matrix
# under qemu (details: tests/vm/harness/__main__.py, or run.sh --help).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONDONTWRITEBYTECODE=1
PYTHONPATH="$here" exec python3 -m harness "$@"
