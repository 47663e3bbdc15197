# SPDX-License-Identifier: GPL-2.0
# virtio_balloon13 — out-of-tree build of the driver and the project's
# top-level targets.  kbuild itself reads ./Kbuild, which builds
# drivers/virtio/virtio_balloon13.ko from the sources laid out as in a
# kernel tree.

# Debian's own tools first: the tests import the Python modules setup.sh
# installs with apt (python3-libvirt, python3-qemu-qmp), which a python3
# earlier in PATH (pyenv, a venv) would not see.
export PATH := /usr/sbin:/usr/bin:/sbin:/bin:$(PATH)

KDIR ?= /lib/modules/$(shell uname -r)/build
KBUILD_ARGS := -C $(KDIR) M=$(CURDIR) CONFIG_VIRTIO_BALLOON13=m

.PHONY: all modules install clean check check-debug demo kunit bench bench-devices host host-test fuzz fuzz-qemu lint help soak spec spec-draft deb install-qemu qemu-series

all: modules

modules:
	$(MAKE) $(KBUILD_ARGS) modules

# Installs into /lib/modules/<release>/extra and runs depmod.
install: modules
	$(MAKE) $(KBUILD_ARGS) INSTALL_MOD_DIR=extra modules_install
	depmod -a $(shell $(MAKE) -s -C $(KDIR) kernelrelease 2>/dev/null || uname -r)

clean:
	$(MAKE) $(KBUILD_ARGS) clean 2>/dev/null || true
	rm -f drivers/virtio/*.o drivers/virtio/*.ko drivers/virtio/*.mod* drivers/virtio/.*.cmd
	rm -rf out
	$(MAKE) -C host clean 2>/dev/null || true

# The host tools need glib, json-glib and libvhost-user: setup.sh (root)
# only when glib's are missing; libvhost-user is built once and cached
# (never QEMU).
host:
	@pkg-config --exists glib-2.0 json-glib-1.0 2>/dev/null || bash scripts/setup.sh
	$(MAKE) -C host

host-test: host
	$(MAKE) -C host test

# balloon13d's libFuzzer harnesses, FUZZ_SECONDS (default 300) each, and
# QEMU's generic-fuzz on the native device (an ASan build of QEMU).
fuzz: host fuzz-qemu
	$(MAKE) -C host fuzz

fuzz-qemu:
	bash scripts/qemu-fuzz.sh run $(or $(FUZZ_SECONDS),300)

# Every test: kernel checks, host unit tests, KUnit, end-to-end VMs, bench smoke.
check:
	bash scripts/check.sh

# Every end-to-end scenario on the debug kernel (make check runs a subset),
# and the checks that its KASAN, lockdep, kmemleak, ... are really on.
check-debug:
	python3 tests/e2e/run.py --series 6.12-debug
	python3 tests/debug-kernel/check.py

lint:
	bash scripts/kernel-checks.sh

# The Debian package virtio-balloon13-dkms (out/deb/); install it with
# apt install ./out/deb/virtio-balloon13-dkms_*_all.deb
deb:
	bash scripts/setup.sh
	bash scripts/make-deb.sh
# The project's QEMU (scripts/build-qemu.sh: KVM and TCG, virtio-blk and
# -net, both kinds of device 13), copied to PREFIX (bin/, share/qemu/).
PREFIX ?= /usr/local
install-qemu:
	bash scripts/build-qemu.sh --install $(PREFIX)

# The native device's QEMU patch series, made from qemu/, in out/qemu-series.
qemu-series:
	bash scripts/qemu-series.sh generate out/qemu-series

kunit:
	bash scripts/kunit.sh --series 6.12 --out out/kunit-6.12
	bash scripts/kunit.sh --series 7.2 --out out/kunit-7.2

demo:
	bash scripts/demo.sh

# A randomized life-cycle run in VMs: make soak DURATION=1h [SEED=N] [SERIES=6.12]
DURATION ?= 1h
soak: host
	python3 tests/e2e/soak.py --duration $(DURATION) $(if $(SEED),--seed $(SEED)) $(if $(SERIES),--series $(SERIES))

bench:
	bash bench/run.sh

# The device side of a fragmented balloon alone: bench/results/devices.md.
bench-devices: host
	python3 bench/devices.py --out bench/results

# The device-13 chapter (spec/): PDF and HTML in out/spec.  Fails while a
# measured figure in spec/measured.tex is missing; spec-draft builds anyway.
spec:
	bash spec/deps.sh
	$(MAKE) -C spec

spec-draft:
	bash spec/deps.sh
	$(MAKE) -C spec draft

help:
	@echo "make [KDIR=...]   build virtio_balloon13.ko against KDIR (default: running kernel)"
	@echo "make install      install it under /lib/modules/<release>/extra and depmod"
	@echo "make check        every test; ends with 'N passed, N failed, N skipped'"
	@echo "make check-debug  every e2e scenario on the KASAN/lockdep kernel (slow)"
	@echo "make demo         boot a VM and show the balloon working"
	@echo "make bench        benchmarks against QEMU's virtio-balloon (device 5)"
	@echo "make bench-devices  the devices' waits and downtime with a fragmented balloon"
	@echo "make lint         checkpatch --strict, sparse and W=1 on every kernel series"
	@echo "make deb          the Debian package virtio-balloon13-dkms in out/deb/"
	@echo "make fuzz         balloon13d's fuzz harnesses, FUZZ_SECONDS=300 each"
	@echo "make install-qemu PREFIX=/usr/local   the project's QEMU with both device-13 kinds"
	@echo "make qemu-series  the native device's QEMU patch series (from qemu/) in out/qemu-series"
	@echo "make fuzz         balloon13d's fuzz harnesses and QEMU's generic-fuzz of the native device, FUZZ_SECONDS=300 each"
	@echo "make soak DURATION=1h   randomized suspend/unplug/reboot/stress run in VMs"
	@echo "make spec         the device-13 spec chapter, PDF and HTML (out/spec)"
