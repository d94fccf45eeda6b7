#!/usr/bin/env bash
# Tests the memlens wheel as a user gets it: builds it (build_wheel.sh), installs it with
# pytest, pytest-xdist, ipython and numpy (from PyPI) into a fresh venv, and runs
# collector/python/tests with that venv's pytest. Needs the viewer in www/dist
# (./dev build-viewer) and network access to PyPI (pip's cache makes re-runs fast).
#
#   collector/python/test_wheel.sh [PYTEST ARGS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
collector/python/build_wheel.sh
WHEEL=$(ls "$ROOT"/target/wheels/memlens-*.whl)
VENV=$ROOT/target/wheel-test-venv
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "$WHEEL" pytest pytest-xdist ipython numpy
MEMLENS_TEST_VENV=$VENV MEMLENS_TEST_WHEEL=$WHEEL \
  "$VENV/bin/pytest" -p no:cacheprovider -q collector/python/tests "$@"
