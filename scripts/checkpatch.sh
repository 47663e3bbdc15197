#!/usr/bin/env bash
# Check the driver's kernel C files with the kernel's own
# scripts/checkpatch.pl --strict, from the cached linux-source-6.12 tree
# that scripts/kunit.sh sets up.  Exit status 0 only if checkpatch reports
# no error, warning or check at all.
#
# usage: scripts/checkpatch.sh [FILE...]   (default: *.[ch] kunit/*.[ch])
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$VB13_TOP"
if [ $# -eq 0 ]; then
	shopt -s nullglob
	set -- *.[ch] kunit/*.[ch]
	shopt -u nullglob
	files=()
	for f in "$@"; do
		case $f in *.mod.c) ;; *) files+=("$f") ;; esac
	done
	set -- "${files[@]}"
fi
for f in "$@"; do
	[ -f "$f" ] || { vb13_log "no such file: $f"; exit 2; }
done
tree=$(bash scripts/kunit.sh --prepare 2>/dev/null)
perl "$tree/scripts/checkpatch.pl" --strict --no-tree --quiet --show-types -f "$@"
