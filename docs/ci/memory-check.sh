#!/usr/bin/env bash
# Records the same command in a base and a head checkout of a project, compares the two
# recordings and writes a Markdown report for a pull-request comment.
#
#   docs/ci/memory-check.sh BASE_DIR HEAD_DIR OUT_DIR -- python-script.py [args...]
#
# Environment: MEMLENS (the memlens binary; default: memlens on PATH), FAIL_IF (thresholds
# for `memlens diff --fail-if`, default "peak>+10%,leaks>+1MiB").
# Writes OUT_DIR/{base,head}.memlens, OUT_DIR/diff.md, OUT_DIR/report/ (the head recording's
# static viewer) and exits like `memlens diff`: 1 when a threshold is crossed.
set -euo pipefail
[ $# -ge 5 ] && [ "$4" = "--" ] || { sed -n '2,11s/^# \{0,1\}//p' "$0" >&2; exit 2; }
base=$(cd "$1" && pwd); head=$(cd "$2" && pwd); out=$3; shift 4
memlens=${MEMLENS:-memlens}
mkdir -p "$out"; out=$(cd "$out" && pwd)

(cd "$base" && "$memlens" run -q -o "$out/base.memlens" "$@")
(cd "$head" && "$memlens" run -q -o "$out/head.memlens" "$@")
"$memlens" report "$out/head.memlens" -o "$out/report"
status=0
"$memlens" diff "$out/base.memlens" "$out/head.memlens" --format markdown \
  --fail-if "${FAIL_IF:-peak>+10%,leaks>+1MiB}" > "$out/diff.md" || status=$?
cat "$out/diff.md"
exit "$status"
