#!/usr/bin/env bash
# Fuzz the native device 13 with QEMU's generic-fuzz (tests/qtest/fuzz), in
# a build of QEMU with libFuzzer and ASan (Debian's clang), and replay the
# corpus kept in tests/qemu-fuzz/corpus/.
#
#   qemu-fuzz.sh build            build (or find) qemu-fuzz-x86_64; print it
#   qemu-fuzz.sh run [SECONDS]    fuzz generic-fuzz-virtio-balloon13 for
#                                 SECONDS (FUZZ_SECONDS, default 300); new
#                                 inputs go to the corpus, crashes to
#                                 out/qemu-fuzz/
#   qemu-fuzz.sh replay           run every corpus input once; TAP, one
#                                 line: qemu/fuzz/virtio-balloon13/replay
#
# The build is cached like build-qemu.sh's, in
# $VB13_CACHE/qemu-fuzz-$QEMU_VERSION-<hash of this script and of qemu/>.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

target=generic-fuzz-virtio-balloon13
corpus=$VB13_TOP/tests/qemu-fuzz/corpus
key=$( (cat "${BASH_SOURCE[0]}"
	bash "$VB13_TOP/scripts/qemu-series.sh" key) | sha256sum | cut -c1-12)
out=$VB13_CACHE/qemu-fuzz-$QEMU_VERSION-$key
bin=$out/qemu-fuzz-x86_64

build() {
	[ -x "$bin" ] && [ -f "$out/.complete" ] && { echo "$bin"; return; }
	exec 9>"$VB13_CACHE/build-qemu-fuzz.lock"
	flock 9
	[ -x "$bin" ] && [ -f "$out/.complete" ] && { echo "$bin"; return; }
	bash "$VB13_TOP/scripts/setup.sh" >&2
	local tarball tmp=$out.tmp src=$VB13_CACHE/qemu-fuzz-build-$QEMU_VERSION
	tarball=$(bash "$VB13_TOP/scripts/fetch-qemu-src.sh")
	# One path whatever the hash, so that ccache finds earlier builds.
	rm -rf "$tmp" "$src" && mkdir -p "$tmp" "$src"
	vb13_log "building QEMU $QEMU_VERSION for fuzzing in $tmp (log: $tmp/build.log)"
	tar -xf "$tarball" -C "$src" --strip-components=1 --no-same-owner
	local patchdir=$tmp/series
	bash "$VB13_TOP/scripts/qemu-series.sh" generate "$patchdir"
	export CCACHE_DIR=$VB13_CACHE/ccache
	(
		cd "$src" || exit 1
		for p in "$patchdir"/*.patch; do
			patch -p1 --quiet --no-backup-if-mismatch <"$p" || exit 1
		done
		cp "$VB13_TOP/qemu/devices.mak" configs/devices/x86_64-softmmu/vb13.mak &&
			mkdir build && cd build || exit 1
		CC="ccache clang" CXX="ccache clang++" ../configure \
			--python=/usr/bin/python3 --target-list=x86_64-softmmu \
			--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu \
			--disable-install-blobs --without-default-features \
			--without-default-devices --with-devices-x86_64=vb13 \
			--enable-tcg --enable-vhost-user --enable-fuzzing \
			--enable-asan --enable-ubsan || exit 1
		nice -n 10 ninja -j2 qemu-fuzz-x86_64 || exit 1
	) >"$tmp/build.log" 2>&1 || {
		tail -n 40 "$tmp/build.log" >&2
		vb13_die "QEMU fuzz build failed; full log in $tmp/build.log"
	}
	install -m 0755 "$src/build/qemu-fuzz-x86_64" "$tmp/qemu-fuzz-x86_64"
	rm -rf "$src"
	touch "$tmp/.complete"
	mv "$tmp" "$out"
	echo "$bin"
}

# ASan and libFuzzer settings for every run: leaks are QEMU's own at exit.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

case "${1:-}" in
build)
	build
	;;
run)
	secs=${2:-${FUZZ_SECONDS:-300}}
	fuzz=$(build)
	mkdir -p "$corpus" "$VB13_TOP/out/qemu-fuzz"
	cd "$VB13_TOP/out/qemu-fuzz"
	"$fuzz" --fuzz-target=$target -max_total_time="$secs" \
		-print_final_stats=1 "$corpus"
	;;
replay)
	echo "TAP version 13"
	echo "1..1"
	fuzz=$(build 2>/dev/null) || {
		echo "not ok 1 - qemu/fuzz/virtio-balloon13/replay # build failed"
		exit 1
	}
	n=$(find "$corpus" -type f | wc -l)
	if [ "$n" = 0 ]; then
		echo "not ok 1 - qemu/fuzz/virtio-balloon13/replay # empty corpus"
		exit 1
	fi
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	if (cd "$(mktemp -d)" && "$fuzz" --fuzz-target=$target -runs=0 \
		"$corpus") >"$log" 2>&1; then
		echo "ok 1 - qemu/fuzz/virtio-balloon13/replay # $n inputs"
	else
		echo "not ok 1 - qemu/fuzz/virtio-balloon13/replay"
		tail -n 30 "$log" | sed 's/^/# /'
		exit 1
	fi
	;;
*)
	echo "usage: qemu-fuzz.sh build | run [SECONDS] | replay" >&2
	exit 2
	;;
esac
