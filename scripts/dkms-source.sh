#!/usr/bin/env bash
# Lay out the driver's DKMS source tree: what the Debian package installs
# under /usr/src/virtio-balloon13-<version>/ and what make check builds with
# DKMS.  Prints DEST.
#
#   scripts/dkms-source.sh DEST
#
# DEST gets the kernel source files (scripts/lib.sh: VB13_KERNEL_PATHS, the
# one place that says where they are), at their paths in the repository,
# and dkms.conf made from debian/dkms.conf.in with
#   @VERSION@     the package's upstream version (debian/changelog)
#   @MODULE_DIR@  where kbuild leaves virtio_balloon13.ko (the directory of
#                 the kbuild file that names it)
# The file that declares MODULE_LICENSE gets MODULE_VERSION(@VERSION@)
# after it, so `modinfo` shows the package's version; sources that already
# declare a MODULE_VERSION must declare that same version.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -eq 1 ] || { echo "usage: dkms-source.sh DEST" >&2; exit 2; }
dest=$1
ver=$(vb13_version)
[ -n "$ver" ] || vb13_die "no version in debian/changelog"
mapfile -t files < <(vb13_kernel_files)
[ ${#files[@]} -gt 0 ] || vb13_die "no kernel source files (VB13_KERNEL_PATHS)"
moddir=$(vb13_module_dir) || vb13_die "no Kbuild or Makefile names virtio_balloon13.o"

rm -rf "$dest"
mkdir -p "$dest"
(cd "$VB13_TOP" && cp --parents -p "${files[@]}" "$dest/")

# The module's own MODULE_LICENSE: in a .c file next to the kbuild file
# that names it (not the KUnit modules' in their own directory).
lic=$(for f in "${files[@]}"; do
	case $f in *.c) ;; *) continue ;; esac
	[ "$(dirname "$f")" = "$moddir" ] && grep -q '^MODULE_LICENSE(' "$dest/$f" && echo "$f"
done || true)
[ "$(printf '%s\n' "$lic" | grep -c .)" = 1 ] ||
	vb13_die "want exactly one .c file with MODULE_LICENSE in $moddir, found: ${lic:-none}"
have=$(sed -n 's/^MODULE_VERSION("\(.*\)");.*/\1/p' "$dest/$lic")
if [ -z "$have" ]; then
	sed -i "/^MODULE_LICENSE(/a MODULE_VERSION(\"$ver\");" "$dest/$lic"
elif [ "$have" != "$ver" ]; then
	vb13_die "$lic declares MODULE_VERSION(\"$have\"), debian/changelog says $ver"
fi

sed -e "s|@VERSION@|$ver|g" -e "s|@MODULE_DIR@|$moddir|g" \
	"$VB13_TOP/debian/dkms.conf.in" >"$dest/dkms.conf"
echo "$dest"
