# virtio_balloon13's x86_64 device set, for configure --without-default-devices
# (copied into configs/devices/x86_64-softmmu/ by scripts/build-qemu.sh):
# what a KVM or TCG guest on q35 needs to run with disks, a network and
# either kind of device 13, and no more, so the build stays quick.
CONFIG_Q35=y
CONFIG_VIRTIO_PCI=y
# Disks (raw, qcow2 and the other built-in formats) and user networking.
CONFIG_VIRTIO_BLK=y
CONFIG_VIRTIO_NET=y
CONFIG_VIRTIO_RNG=y
CONFIG_VIRTIO_SERIAL=y
# pcie-root-port, for hot-plugging devices on q35.
CONFIG_PCIE_PORT=y
# QEMU's own balloon (device 5): the anchor benchmarks compare against.
CONFIG_VIRTIO_BALLOON=y
# The native device 13 (qemu/device/, the series' last patch).
CONFIG_VIRTIO_BALLOON13=y
# The generic vhost-user device (vhost-user-test-device-pci, creatable
# since QEMU 10.2), for balloon13d.
CONFIG_VHOST_USER_TEST=y
# intel-iommu: the iommu e2e scenario puts the native device behind it
# (iommu_platform=on) on the DMA-API debugging guest kernel.
CONFIG_VTD=y
