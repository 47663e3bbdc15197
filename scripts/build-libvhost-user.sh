#!/usr/bin/env bash
# Build QEMU's libvhost-user (and its glib helper libvhost-user-glib) as
# standalone static libraries and print the install prefix.
#
# Only subprojects/libvhost-user and the few headers its symlinks point at
# (include/qemu/{atomic,compiler}.h, include/standard-headers/linux) are taken
# from the QEMU orig tarball; the subproject's own meson.build builds them.
# Its meson.build installs nothing, so the results are copied by hand into
#
#   $VB13_CACHE/libvhost-user-<qemu version>-<hash of this script>/
#       include/libvhost-user.h libvhost-user-glib.h standard-headers/linux/*.h
#       lib/libvhost-user.a lib/libvhost-user-glib.a
#       lib/pkgconfig/libvhost-user-glib.pc
#       src/libvhost-user.c libvhost-user.h libvhost-user-glib.[ch]
#       src/include/{atomic,compiler}.h
#
# (src/ lets host/ build the library again with ASan, and with coverage
# for fuzzing.)
#
# The prefix is keyed by the QEMU version and this script, so a run with
# nothing changed only prints it.  Concurrent runs serialise on a lock.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-10)
prefix=$VB13_CACHE/libvhost-user-$QEMU_VERSION-$hash
stamp=$prefix/.complete

if [ -f "$stamp" ]; then
	echo "$prefix"
	exit 0
fi

exec 9>"$VB13_CACHE/.libvhost-user.lock"
flock 9
if [ -f "$stamp" ]; then		# another run finished it meanwhile
	echo "$prefix"
	exit 0
fi

bash "$VB13_TOP/scripts/setup.sh"
tarball=$(bash "$VB13_TOP/scripts/fetch-qemu-src.sh")
command -v meson >/dev/null || vb13_die "meson not found (scripts/setup.sh installs it)"

work=$(mktemp -d "$VB13_CACHE/libvhost-user-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
top=qemu-$QEMU_VERSION

vb13_log "extracting libvhost-user from $(basename "$tarball")"
tar -xJf "$tarball" -C "$work" \
	"$top/subprojects/libvhost-user" \
	"$top/include/qemu/atomic.h" "$top/include/qemu/compiler.h" \
	"$top/include/standard-headers/linux"
src=$work/$top/subprojects/libvhost-user

vb13_log "building in $work"
nice meson setup --buildtype=debugoptimized -Ddefault_library=static \
	"$work/build" "$src" >"$work/meson-setup.log" 2>&1 ||
	{ cat "$work/meson-setup.log" >&2; vb13_die "meson setup failed"; }
nice ninja -C "$work/build" -j2 >"$work/ninja.log" 2>&1 ||
	{ cat "$work/ninja.log" >&2; vb13_die "ninja failed"; }
"$work/build/link-test" || vb13_die "link-test failed"

stage=$prefix.tmp
rm -rf "$stage" "$prefix"
mkdir -p "$stage/include/standard-headers/linux" "$stage/lib/pkgconfig"
# meson makes thin archives (they name objects in the build tree, which is
# deleted): pack the objects into ordinary archives instead.
for lib in vhost-user vhost-user-glib; do
	ar rcs "$stage/lib/lib$lib.a" "$work/build/lib$lib.a.p/"*.o
done
install -m 0644 "$src/libvhost-user.h" "$src/libvhost-user-glib.h" "$stage/include/"
mkdir -p "$stage/src/include"
install -m 0644 "$src/libvhost-user.c" "$src/libvhost-user.h" \
	"$src/libvhost-user-glib.c" "$src/libvhost-user-glib.h" "$stage/src/"
cp -L "$src/include/atomic.h" "$src/include/compiler.h" "$stage/src/include/"
# Copy through the symlink into a real directory; only the headers that
# libvhost-user.h pulls in are needed, but the set is small.
cp -L "$src"/standard-headers/linux/*.h "$stage/include/standard-headers/linux/"
cat >"$stage/lib/pkgconfig/libvhost-user-glib.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libvhost-user-glib
Description: QEMU $QEMU_VERSION libvhost-user with its glib main-loop helper (static)
Version: $QEMU_VERSION
Requires: glib-2.0
Libs: -L\${libdir} -lvhost-user-glib -lvhost-user -pthread
Cflags: -I\${includedir}
PC
touch "$stage/.complete"
mv "$stage" "$prefix"
vb13_log "installed in $prefix"
echo "$prefix"
