/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Wire format of the virtio memory balloon, device ID 13 (OASIS VIRTIO-28),
 * as the device sees it.  Every field is little-endian; the device is
 * modern-only (VIRTIO_F_VERSION_1), so there is no legacy byte order.
 *
 * The proposal writes its structs without "packed"; natural alignment puts
 * every u64 array at offset 8, and we name that padding "reserved".
 */
#ifndef BALLOON13_WIRE_H
#define BALLOON13_WIRE_H

#include <stdint.h>

/* ---- virtqueues ---------------------------------------------------- */

enum b13_vq {
	B13_VQ_INPUT = 0,	/* device -> driver: requests, guest buffers */
	B13_VQ_OUTPUT = 1,	/* driver -> device: page lists and stats */
	B13_NUM_VQS = 2,
};

/* ---- config space (read-only, cannot change) ----------------------- */

struct b13_config {
	uint32_t page_bits;	/* __le32: block size is 2^page_bits bytes */
};
_Static_assert(sizeof(struct b13_config) == 4, "config is 4 bytes");

/* ---- requests, inputq, device-writable ----------------------------- */

#define B13_REQ_RESIZE	0	/* value = target balloon size in bytes */
#define B13_REQ_STATS	1	/* value unused (0) */

struct b13_req {
	uint32_t type;		/* __le32 */
	uint32_t reserved;	/* __le32, 0 */
	uint64_t value;		/* __le64 */
};
_Static_assert(sizeof(struct b13_req) == 16, "request is 16 bytes");

/* ---- messages, outputq, device-readable ---------------------------- */

#define B13_RESP_PAGES	0	/* header + __le64 page[n], n >= 1 */
#define B13_RESP_STATS	1	/* header + struct b13_stat s[n], n >= 1 */

struct b13_msg_hdr {
	uint32_t type;		/* __le32 */
	uint32_t reserved;	/* __le32, 0 */
};
_Static_assert(sizeof(struct b13_msg_hdr) == 8, "message header is 8 bytes");

struct b13_stat {
	uint64_t tag;		/* __le64, B13_TAG_* */
	uint64_t value;		/* __le64 */
};
_Static_assert(sizeof(struct b13_stat) == 16, "stat is 16 bytes");

#define B13_TAG_SWAP_IN		0	/* bytes swapped in */
#define B13_TAG_SWAP_OUT	1	/* bytes swapped out */
#define B13_TAG_MAJFLT		2	/* major faults */
#define B13_TAG_MINFLT		3	/* minor faults */
#define B13_TAG_MEMFREE		4	/* bytes not used for anything */
#define B13_TAG_MEMTOT		5	/* bytes of memory in total */
#define B13_NUM_TAGS		6

#endif /* BALLOON13_WIRE_H */
