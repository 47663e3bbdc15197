#!/usr/bin/env bash
# apt-get / apt-cache against Debian unstable, without installing anything
# from it: a sources list, package lists and a download cache of its own
# under $VB13_CACHE/sid-apt, and no dpkg status (so nothing looks
# installed).  Lists are fetched on first use; `sid-apt.sh update` fetches
# them again.  One apt at a time (flock).
#
#   scripts/sid-apt.sh apt-cache search --names-only '^linux-binary-7\.2'
#   (cd DIR && scripts/sid-apt.sh apt-get download linux-source-7.2)
#   scripts/sid-apt.sh update
set -euo pipefail
. "$(dirname "$0")/lib.sh"

d=$VB13_CACHE/sid-apt
mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
# The archive this machine's own sources name, with unstable as the suite.
mirror=$(grep -rhE '^[[:space:]]*(deb|URIs:)' /etc/apt/sources.list \
	/etc/apt/sources.list.d/ 2>/dev/null | grep -oE 'https?://[^ ]+/debian/?( |$)' |
	head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}
want=$(printf 'deb [signed-by=%s] %s unstable main\ndeb-src [signed-by=%s] %s unstable main\n' \
	"$keyring" "${mirror%/}" "$keyring" "${mirror%/}")
[ "$(cat "$d/sources.list" 2>/dev/null)" = "$want" ] || printf '%s\n' "$want" >"$d/sources.list"

opts=(-o "Dir::Etc::sourcelist=$d/sources.list" -o Dir::Etc::sourceparts=-
	-o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache"
	-o Dir::State::status=/dev/null -o APT::Sandbox::User=root)

exec 8>"$d/.lock"
flock 8
update() { apt-get "${opts[@]}" -qq update; }
if ! ls "$d/lists/"*_InRelease >/dev/null 2>&1; then
	vb13_log "fetching Debian unstable's package lists"
	update
fi
[ $# -gt 0 ] || { echo "usage: $0 update | apt-get ARGS | apt-cache ARGS" >&2; exit 2; }
case $1 in
update) update ;;
apt-get|apt-cache) cmd=$1; shift; "$cmd" "${opts[@]}" "$@" ;;
*) echo "sid-apt.sh: want update, apt-get or apt-cache, not '$1'" >&2; exit 2 ;;
esac
