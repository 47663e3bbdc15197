// SPDX-License-Identifier: GPL-2.0-only
/*
 * Placeholder for the virtio_balloon13 driver: an empty module, so that the
 * KUnit suite and its fake device build before the driver exists.
 */
#include <linux/module.h>

MODULE_DESCRIPTION("Virtio memory balloon (device 13) - placeholder");
MODULE_LICENSE("GPL");
