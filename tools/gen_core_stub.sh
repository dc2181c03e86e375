#!/usr/bin/env bash
# Regenerates python/resnet_cpp/_core.pyi (the type stub shipped with the package) from the
# built _core module; tests/test_core_stub.py fails when a binding changed and this was not
# run. Needs pybind11-stubgen (in the test extra) and a built _core in python/resnet_cpp:
#   tools/gen_core_stub.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
PYTHONPATH="$root/python" python3 -m pybind11_stubgen resnet_cpp._core -o "$tmp" >/dev/null
cp "$tmp/resnet_cpp/_core.pyi" "$root/python/resnet_cpp/_core.pyi"
echo "wrote python/resnet_cpp/_core.pyi"
