# virtio_balloon13's x86_64 device set, for configure --without-default-devices
# (copied into configs/devices/x86_64-softmmu/ by scripts/build-qemu.sh).
# The generic vhost-user device has no Kconfig symbol of its own: it is built
# whenever VIRTIO_PCI is on and configure has --enable-vhost-user.
CONFIG_Q35=y
CONFIG_VIRTIO_PCI=y
# QEMU's own balloon (device 5): the anchor benchmarks compare against.
CONFIG_VIRTIO_BALLOON=y
CONFIG_VIRTIO_SERIAL=y
# The native device 13 (0003-hw-virtio-add-virtio-balloon13.patch).
CONFIG_VIRTIO_BALLOON13=y
# pcie-root-port, for hot-plugging devices on q35.
CONFIG_PCIE_PORT=y
