#!/usr/bin/env bash
# Tests the memlens wheel as a user gets it: builds it once (build_wheel.sh), then for each
# interpreter installs it with pytest, pytest-xdist, ipython and numpy (from PyPI) into a
# fresh venv of that interpreter, and runs collector/python/tests with that venv's pytest.
# Needs the viewer in www/dist (./dev build-viewer) and network access to PyPI (pip's cache
# makes re-runs fast).
#
#   collector/python/test_wheel.sh [PYTEST ARGS]           # python3 from PATH
#   MEMLENS_WHEEL_PYTHONS="/path/to/python3.9 /path/to/python3.13" collector/python/test_wheel.sh
#
# Several interpreters run two at a time (this project's machines have 2 cores), each into
# its own venv (target/wheel-test-venv-3.X) and log; a log is printed when its run ends.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
collector/python/build_wheel.sh
WHEEL=$(ls "$ROOT"/target/wheels/memlens-*.whl)
read -r -a PYTHONS <<< "${MEMLENS_WHEEL_PYTHONS:-python3}"

# test_one PYTHON [PYTEST ARGS]: a fresh venv of PYTHON with the wheel, and the tests.
test_one() {
  local python=$1; shift
  local version; version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  local venv=$ROOT/target/wheel-test-venv-$version
  echo "[wheel] Python $("$python" -c 'import platform; print(platform.python_version())') ($python)"
  rm -rf "$venv"
  if "$python" -c 'import ensurepip' 2>/dev/null; then
    "$python" -m venv "$venv"
  else
    # Debian's CPython (3.14 here) leaves ensurepip to a package of its own: the venv gets
    # pip from the interpreter's.
    "$python" -m venv --without-pip "$venv"
    "$python" -m pip --python "$venv/bin/python" install -q pip
  fi
  "$venv/bin/pip" install -q "$WHEEL" pytest pytest-xdist ipython numpy
  MEMLENS_TEST_VENV=$venv MEMLENS_TEST_WHEEL=$WHEEL \
    "$venv/bin/pytest" -p no:cacheprovider -q collector/python/tests "$@"
}

if [ ${#PYTHONS[@]} = 1 ]; then
  test_one "${PYTHONS[0]}" "$@"
  exit
fi
LOGS=$ROOT/target/wheel-test-logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
pids=() failed=()
report() {  # waits for the run at index $1, prints its log, notes a failure
  local i=$1
  if ! wait "${pids[$i]}"; then failed+=("${PYTHONS[$i]}"); fi
  cat "$LOGS/$i.log"
}
for i in "${!PYTHONS[@]}"; do
  test_one "${PYTHONS[$i]}" "$@" > "$LOGS/$i.log" 2>&1 &
  pids[i]=$!
  if [ "$i" -ge 1 ]; then report $((i - 1)); fi
done
report $((${#PYTHONS[@]} - 1))
if [ ${#failed[@]} != 0 ]; then
  echo "[wheel] failed with: ${failed[*]}" >&2
  exit 1
fi
