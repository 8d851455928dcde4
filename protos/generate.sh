#!/usr/bin/env bash
# Regenerates the committed Python gRPC code under sluice/v1 from protos/.
# With --check, generates into a scratch folder and fails if the committed code is stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-"$root/.venv/bin/python"}
out="$root"
if [[ "${1:-}" == "--check" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out/sluice/v1"
"$python" -m grpc_tools.protoc -I"$root/protos" \
  --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" \
  "$root"/protos/sluice/v1/*.proto
touch "$out/sluice/v1/__init__.py"
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -q "$out/sluice/v1" "$root/sluice/v1" -x __pycache__; then
    echo "generated gRPC code in sluice/v1 is stale: run protos/generate.sh and commit" >&2
    exit 1
  fi
  echo "generated gRPC code is up to date"
fi
