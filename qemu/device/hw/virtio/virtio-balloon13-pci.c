/*
 * Virtio memory balloon (device ID 13) PCI bindings
 *
 * Copyright (c) 2025 The virtio_balloon13 authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"

#include "hw/virtio/virtio-pci.h"
#include "hw/qdev-properties.h"
#include "hw/virtio/virtio-balloon13.h"
#include "qapi/error.h"
#include "qemu/module.h"
#include "qom/object.h"

typedef struct VirtIOBalloon13PCI VirtIOBalloon13PCI;

/*
 * virtio-balloon13-pci: This extends VirtioPCIProxy.
 */
#define TYPE_VIRTIO_BALLOON13_PCI "virtio-balloon13-pci-base"
DECLARE_INSTANCE_CHECKER(VirtIOBalloon13PCI, VIRTIO_BALLOON13_PCI,
                         TYPE_VIRTIO_BALLOON13_PCI)

struct VirtIOBalloon13PCI {
    VirtIOPCIProxy parent_obj;
    VirtIOBalloon13 vdev;
};

static const Property virtio_balloon13_pci_properties[] = {
    DEFINE_PROP_BIT("ioeventfd", VirtIOPCIProxy, flags,
                    VIRTIO_PCI_FLAG_USE_IOEVENTFD_BIT, true),
    DEFINE_PROP_UINT32("vectors", VirtIOPCIProxy, nvectors,
                       DEV_NVECTORS_UNSPECIFIED),
};

static void virtio_balloon13_pci_realize(VirtIOPCIProxy *vpci_dev,
                                         Error **errp)
{
    VirtIOBalloon13PCI *dev = VIRTIO_BALLOON13_PCI(vpci_dev);
    DeviceState *vdev = DEVICE(&dev->vdev);

    /* One vector per queue and one for configuration changes. */
    if (vpci_dev->nvectors == DEV_NVECTORS_UNSPECIFIED) {
        vpci_dev->nvectors = VIRTIO_BALLOON13_NUM_VQS + 1;
    }
    /* A modern-only device: there is no legacy interface to offer. */
    virtio_pci_force_virtio_1(vpci_dev);
    qdev_realize(vdev, BUS(&vpci_dev->bus), errp);
}

static void virtio_balloon13_pci_class_init(ObjectClass *klass,
                                            const void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioPCIClass *k = VIRTIO_PCI_CLASS(klass);
    PCIDeviceClass *pcidev_k = PCI_DEVICE_CLASS(klass);

    k->realize = virtio_balloon13_pci_realize;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    pcidev_k->revision = VIRTIO_PCI_ABI_VERSION;
    pcidev_k->class_id = PCI_CLASS_OTHERS;
    device_class_set_props(dc, virtio_balloon13_pci_properties);
}

static void virtio_balloon13_pci_instance_init(Object *obj)
{
    VirtIOBalloon13PCI *dev = VIRTIO_BALLOON13_PCI(obj);
    static const char *const aliases[] = {
        "guest-stats", "guest-stats-polling-interval", "target-size",
        "size", "counters", "x-hold-output", "x-scan-now",
        "x-output-max-us", "x-scan-batch-max-us",
    };

    virtio_instance_init_common(obj, &dev->vdev, sizeof(dev->vdev),
                                TYPE_VIRTIO_BALLOON13);
    for (int i = 0; i < ARRAY_SIZE(aliases); i++) {
        object_property_add_alias(obj, aliases[i], OBJECT(&dev->vdev),
                                  aliases[i]);
    }
}

static const VirtioPCIDeviceTypeInfo virtio_balloon13_pci_info = {
    .base_name = TYPE_VIRTIO_BALLOON13_PCI,
    .generic_name = "virtio-balloon13-pci",
    .instance_size = sizeof(VirtIOBalloon13PCI),
    .instance_init = virtio_balloon13_pci_instance_init,
    .class_init = virtio_balloon13_pci_class_init,
};

static void virtio_balloon13_pci_register(void)
{
    virtio_pci_types_register(&virtio_balloon13_pci_info);
}

type_init(virtio_balloon13_pci_register)
