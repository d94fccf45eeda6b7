#!/usr/bin/env bash
# Builds the memlens wheel into target/wheels/: the memlens command, the `memlens` Python
# package (pytest plugin, IPython magic) and libmemlens_tracer.so inside that package.
#
#   collector/python/build_wheel.sh            # needs the viewer in www/dist (./dev build-viewer)
#   MEMLENS_WHEEL_NO_VIEWER=1 collector/python/build_wheel.sh   # a wheel without `memlens report`/`view`
#
# maturin comes from a project-local venv (target/wheel-tools), created on first use.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
say() { printf '\033[1m[wheel]\033[0m %s\n' "$*"; }

if [ ! -f www/dist/index.html ] && [ "${MEMLENS_WHEEL_NO_VIEWER:-0}" != 1 ]; then
  echo "build_wheel.sh: www/dist has no viewer; run ./dev build-viewer first" \
    "(or set MEMLENS_WHEEL_NO_VIEWER=1)" >&2
  exit 1
fi

TOOLS=$ROOT/target/wheel-tools
if ! "$TOOLS/bin/maturin" --version >/dev/null 2>&1; then
  say "pip install maturin into $TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q 'maturin>=1.5,<2'
fi

say "cargo build --release -p memlens-tracer"
cargo build --release -p memlens-tracer

# maturin builds one crate; the tracer cdylib joins the Python package as a data file.
STAGE=$ROOT/target/wheel-stage
rm -rf "$STAGE" && mkdir -p "$STAGE"
cp collector/python/pyproject.toml README.md "$STAGE/"
cp -r collector/python/memlens "$STAGE/memlens"
find "$STAGE/memlens" -name __pycache__ -prune -exec rm -rf {} +
cp target/release/libmemlens_tracer.so "$STAGE/memlens/"
# The release profile keeps line tables for backtraces; a wheel does not need them.
if command -v strip >/dev/null; then strip --strip-debug "$STAGE/memlens/libmemlens_tracer.so"; fi

say "maturin build --release (py3-none-linux_x86_64: the binary and tracer do not link libpython)"
# --compatibility linux: the tracer is not checked by maturin's manylinux audit (it is package
# data), so the wheel claims no manylinux policy; it needs this machine's glibc or newer.
rm -f target/wheels/memlens-*.whl
(cd "$STAGE" && "$TOOLS/bin/maturin" build --release --compatibility linux \
  --target-dir "$ROOT/target" --out "$ROOT/target/wheels")
say "built $(ls target/wheels/memlens-*.whl)"
