#!/usr/bin/env bash
# The native device's QEMU patch series, made from qemu/.
#
# qemu/ holds the native device-13 device the way it is maintained: its
# own files at their paths in QEMU's tree (qemu/device/), the few lines
# it adds to QEMU's existing files (qemu/device.hooks.patch) and its commit
# message (qemu/device.msg).  Next to them are the two small patches of the
# series that are not the device: 0001 (a build tweak for this project's
# QEMU) and 0002 (the wire-format header, made by qemu-std-header.sh), and
# the device set of the project's QEMU (devices.mak).  The series sent
# upstream, and applied by build-qemu.sh and qemu-fuzz.sh, is made from
# them by `generate`; it is not kept in git.
#
# The device patch is made by git from QEMU $QEMU_VERSION's own copies of
# the files the hooks change, so its index lines and diffstat are what
# `git format-patch` gives in a QEMU tree.
#
# Usage:
#   qemu-series.sh generate DIR   write the series (NNNN-*.patch) into DIR
#   qemu-series.sh key            print a hash of everything the series is
#                                 made from (build caches are keyed by it)
#   qemu-series.sh explode PATCH  take a device patch made in a QEMU git tree
#                                 (git format-patch -1 --zero-commit
#                                 --abbrev=8 --no-signature) apart into
#                                 qemu/device/, device.hooks.patch and
#                                 device.msg
#   qemu-series.sh check          TAP: the series is made, the device's
#                                 files are all in it, and QEMU's
#                                 checkpatch.pl passes the device patch
set -euo pipefail
. "$(dirname "$0")/lib.sh"

q=$VB13_TOP/qemu
die() { echo "qemu-series.sh: $*" >&2; exit 2; }

# The files of the series' inputs, in a fixed order.
inputs() {
	(cd "$q" && find . -type f ! -name README.md | LC_ALL=C sort)
}

key() {
	(
		echo "$QEMU_VERSION"
		cat "${BASH_SOURCE[0]}"
		cd "$q"
		inputs | while IFS= read -r f; do
			echo "== $f"
			cat "$f"
		done
	) | sha256sum | cut -c1-12
}

# The top directory of QEMU's orig tarball (its first entry; tar stops
# on the closed pipe, which pipefail would count as a failure).
qemu_top() {
	(set +o pipefail; tar -tf "$1" 2>/dev/null | head -n1 | cut -d/ -f1)
}

# The device patch on stdout, made by git in a scratch tree holding QEMU's
# own copies of the hooked files.
device_patch() {
	local tarball tmp top author date
	local -a hooked
	tarball=$(bash "$VB13_TOP/scripts/fetch-qemu-src.sh")
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	mapfile -t hooked < <(sed -n 's|^diff --git a/\([^ ]*\) b/.*|\1|p' \
		"$q/device.hooks.patch")
	[ ${#hooked[@]} -gt 0 ] || die "device.hooks.patch names no file"
	top=$(qemu_top "$tarball")
	mkdir "$tmp/src"
	tar -xf "$tarball" -C "$tmp/src" --strip-components=1 \
		"${hooked[@]/#/$top/}"
	author=$(sed -n '1s/^Author: //p' "$q/device.msg")
	date=$(sed -n '2s/^Date: //p' "$q/device.msg")
	[ -n "$author" ] && [ -n "$date" ] ||
		die "device.msg must start with Author: and Date: lines"
	(
		cd "$tmp/src"
		export GIT_AUTHOR_NAME=${author% <*} GIT_AUTHOR_EMAIL=${author##*<}
		GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL%>}
		export GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME
		export GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
		export GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date
		export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_SYSTEM=/dev/null
		git init -q .
		git add -A
		git commit -q -m base
		git apply --index "$q/device.hooks.patch"
		cp -r "$q/device/." .
		git add -A
		tail -n +4 "$q/device.msg" | git commit -q --cleanup=verbatim -F -
		git format-patch -1 --stdout --zero-commit --abbrev=8 \
			--no-signature
	)
}

generate() {
	local dir=$1
	mkdir -p "$dir"
	rm -f "$dir"/*.patch
	cp "$q"/0001-*.patch "$q"/0002-*.patch "$dir/"
	device_patch >"$dir/0003-hw-virtio-add-virtio-balloon13.patch"
}

explode() {
	local patch=$1
	[ -f "$patch" ] || die "no such patch: $patch"
	python3 - "$patch" "$q" <<'EOF'
import os, re, shutil, subprocess, sys, tempfile
patch, q = sys.argv[1], sys.argv[2]
text = open(patch).read()
head, _, rest = text.partition("\n---\n")
m = re.search(r"^From: (.*)\nDate: (.*)\nSubject: \[PATCH\] (.*?)\n\n", head,
              re.M | re.S)
if not m:
    sys.exit("qemu-series.sh: %s: no From/Date/Subject header" % patch)
subject = " ".join(m.group(3).split("\n "))
body = head[m.end():]
diffs = re.split(r"(?m)^(?=diff --git )", rest)[1:]
hooks, new = [], []
for d in diffs:
    path = re.match(r"diff --git a/(\S+) b/", d).group(1)
    (new if "\nnew file mode " in d.split("@@", 1)[0] else hooks).append(
        (path, d))
if any("\ndeleted file mode " in d or "\nrename " in d for _, d in hooks):
    sys.exit("qemu-series.sh: deletions and renames are not supported")
with open(os.path.join(q, "device.msg"), "w") as f:
    f.write("Author: %s\nDate: %s\n\n%s\n\n%s\n" % (m.group(1), m.group(2),
                                                  subject, body.rstrip("\n")))
with open(os.path.join(q, "device.hooks.patch"), "w") as f:
    f.write("".join(d for _, d in hooks))
dev = os.path.join(q, "device")
shutil.rmtree(dev, ignore_errors=True)
os.makedirs(dev)
# git apply outside any repository: in one it would resolve the paths
# from the top of the repository, not from qemu/device/.
with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, "new.patch"), "w") as t:
        t.write("".join(d for _, d in new))
    os.mkdir(os.path.join(tmp, "tree"))
    subprocess.run(["git", "apply", os.path.join(tmp, "new.patch")],
                   cwd=os.path.join(tmp, "tree"), check=True,
                   env=dict(os.environ, GIT_CEILING_DIRECTORIES=tmp))
    shutil.copytree(os.path.join(tmp, "tree"), dev, dirs_exist_ok=True)
print("qemu-series.sh: %d new files in qemu/device/, %d files hooked"
      % (len(new), len(hooks)))
EOF
}

check() {
	local n=0 failed=0 tmp dev f
	ok() { n=$((n + 1)); echo "ok $n - $1"; }
	notok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; shift; echo "# $*"; }
	echo "TAP version 13"
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	if ! generate "$tmp/series" 2>"$tmp/err"; then
		notok "qemu/series/generate" "$(tail -n 5 "$tmp/err")"
		echo "1..$n"
		return 1
	fi
	ok "qemu/series/generate"
	dev=$(ls "$tmp"/series/0003-*.patch)
	# Every file under qemu/device/ is a new file of the patch, whole.
	local missing=""
	while IFS= read -r f; do
		grep -qxF "+++ b/$f" "$dev" || missing="$missing $f"
	done < <(cd "$q/device" && find . -type f | sed 's|^\./||' | sort)
	if [ -n "$missing" ]; then
		notok "qemu/series/device-files" "not in the patch:$missing"
	else
		ok "qemu/series/device-files"
	fi
	# QEMU's own style checker on the device patch, from QEMU's tree.
	local tarball top
	tarball=$(bash "$VB13_TOP/scripts/fetch-qemu-src.sh")
	top=$(qemu_top "$tarball")
	mkdir "$tmp/qemu"
	tar -xf "$tarball" -C "$tmp/qemu" --strip-components=1 \
		"$top/scripts/checkpatch.pl"
	if (cd "$tmp/qemu" && perl scripts/checkpatch.pl --no-tree "$dev") \
		>"$tmp/cp" 2>&1; then
		ok "qemu/series/checkpatch"
		echo "# $(grep '^total:' "$tmp/cp")"
	else
		notok "qemu/series/checkpatch" \
			"$(grep -E '^(ERROR|WARNING|total)' "$tmp/cp" | head -n 5)"
	fi
	echo "1..$n"
	return $failed
}

case ${1:-} in
generate) [ $# -eq 2 ] || die "usage: $0 generate DIR"; generate "$2" ;;
key) key ;;
explode) [ $# -eq 2 ] || die "usage: $0 explode PATCH"; explode "$2" ;;
check) check ;;
*) die "usage: $0 generate DIR | key | explode PATCH | check" ;;
esac
