/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Virtio memory balloon, device ID 13 (OASIS VIRTIO-28).
 *
 * This header is BSD licensed so that anyone can use the definitions to
 * implement compatible drivers and devices.  spec/ holds the normative
 * text; this header only names and lays out what crosses the wire.
 *
 * The device is modern-only (VIRTIO_F_VERSION_1): every field is
 * little-endian.  Structures are not packed; where natural alignment
 * would leave a hole, the padding is an explicit field that the writer
 * sets to 0.  Sizes, in bytes: config 4, request 16, message header 8,
 * statistic 16, range 16.
 */
#ifndef _LINUX_VIRTIO_BALLOON13_H
#define _LINUX_VIRTIO_BALLOON13_H

#include <linux/types.h>
#include <linux/virtio_types.h>

/* --- Feature bits ---------------------------------------------------------- */

/*
 * The driver names the blocks it takes back in a WITHDRAW message and
 * reuses them only once the device has returned it; the device counts the
 * balloon from messages alone.  Without it, the driver withdraws a block
 * by accessing it again.
 */
#define VIRTIO_BALLOON13_F_WITHDRAW		0
/* The driver reports free memory in REPORT messages; the device discards it. */
#define VIRTIO_BALLOON13_F_REPORTING		1
/*
 * Statistics tags beyond the base six (the virtio-balloon tags 6 to 15 and
 * memory pressure), and the STATS_INTERVAL request.
 */
#define VIRTIO_BALLOON13_F_FULL_STATS		2
/*
 * The driver may give balloon memory back, without being asked, when the
 * guest would otherwise run out of memory.
 */
#define VIRTIO_BALLOON13_F_PRESSURE_RELEASE	3

/* --- Configuration layout ------------------------------------------------- */

struct virtio_balloon13_config {
	/*
	 * A block is 2^page_bits bytes: the unit the balloon grows and
	 * shrinks by.  Cannot change.
	 */
	__le32 page_bits;
};

/* The range of page_bits a device may offer: 4 KiB to 1 TiB blocks. */
#define VIRTIO_BALLOON13_PAGE_BITS_MIN		12
#define VIRTIO_BALLOON13_PAGE_BITS_MAX		40

/* --- Requests: device to driver, on inputq --------------------------------- */

/* value: the target size of the balloon, in bytes. */
#define VIRTIO_BALLOON13_REQ_RESIZE		0
/* value: 0.  The driver answers with one STATS message. */
#define VIRTIO_BALLOON13_REQ_STATS		1
/*
 * VIRTIO_BALLOON13_F_FULL_STATS only.  value: milliseconds between STATS
 * messages the driver sends unasked; 0 stops them.
 */
#define VIRTIO_BALLOON13_REQ_STATS_INTERVAL	2

/* One request per device-writable buffer of 16 bytes. */
struct virtio_balloon13_req {
	__le32 type;		/* VIRTIO_BALLOON13_REQ_* */
	__le32 reserved;	/* written as 0, ignored by the driver */
	__le64 value;
};

/* --- Messages: driver to device, on outputq -------------------------------- */

/* struct virtio_balloon13_pages: blocks the balloon now holds. */
#define VIRTIO_BALLOON13_RESP_PAGES		0
/* struct virtio_balloon13_stats: the guest's statistics. */
#define VIRTIO_BALLOON13_RESP_STATS		1
/*
 * VIRTIO_BALLOON13_F_WITHDRAW only.  struct virtio_balloon13_pages:
 * blocks leaving the balloon.
 */
#define VIRTIO_BALLOON13_RESP_WITHDRAW		2
/*
 * VIRTIO_BALLOON13_F_REPORTING only.  struct virtio_balloon13_report:
 * free guest memory the device may discard.
 */
#define VIRTIO_BALLOON13_RESP_REPORT		3

/*
 * Drivers send messages of at most this many bytes, and devices accept
 * every message up to it.
 */
#define VIRTIO_BALLOON13_MSG_MAX_LEN		65536

/*
 * Every message starts with this header.  A message is one device-readable
 * buffer; its length is the sum of its descriptors' lengths, and the
 * number of entries after the header follows from it.
 */
struct virtio_balloon13_resp_hdr {
	__le32 type;		/* VIRTIO_BALLOON13_RESP_* */
	__le32 reserved;	/* must be 0 */
};

/*
 * PAGES and WITHDRAW: n >= 1 guest-physical addresses, each a multiple of
 * the block size, each naming the one whole block that starts there.
 * Length: 8 + 8 * n bytes.
 */
struct virtio_balloon13_pages {
	struct virtio_balloon13_resp_hdr hdr;
	__le64 page[];
};

/* A run of guest-physical memory: both fields are multiples of the block size. */
struct virtio_balloon13_range {
	__le64 addr;
	__le64 len;		/* bytes, > 0 */
};

/* REPORT: n >= 1 ranges of free memory.  Length: 8 + 16 * n bytes. */
struct virtio_balloon13_report {
	struct virtio_balloon13_resp_hdr hdr;
	struct virtio_balloon13_range range[];
};

/*
 * Statistics tags.  Tags 0 to 15 mean what the virtio-balloon (device 5)
 * tags of the same number mean, in the same unit; 6 and up need
 * VIRTIO_BALLOON13_F_FULL_STATS.  A statistic the driver cannot determine
 * is left out, never sent as 0.
 */
#define VIRTIO_BALLOON13_TAG_SWAP_IN		0	/* bytes swapped in */
#define VIRTIO_BALLOON13_TAG_SWAP_OUT		1	/* bytes swapped out */
#define VIRTIO_BALLOON13_TAG_MAJFLT		2	/* major faults */
#define VIRTIO_BALLOON13_TAG_MINFLT		3	/* minor faults */
#define VIRTIO_BALLOON13_TAG_MEMFREE		4	/* bytes unused */
#define VIRTIO_BALLOON13_TAG_MEMTOT		5	/* bytes of memory */
#define VIRTIO_BALLOON13_TAG_AVAIL		6	/* bytes available */
#define VIRTIO_BALLOON13_TAG_CACHES		7	/* bytes reclaimable without I/O */
#define VIRTIO_BALLOON13_TAG_HTLB_PGALLOC	8	/* hugetlb page allocations */
#define VIRTIO_BALLOON13_TAG_HTLB_PGFAIL	9	/* failed hugetlb allocations */
#define VIRTIO_BALLOON13_TAG_OOM_KILL		10	/* OOM kills */
#define VIRTIO_BALLOON13_TAG_ALLOC_STALL	11	/* allocation stalls */
#define VIRTIO_BALLOON13_TAG_ASYNC_SCAN		12	/* bytes scanned by kswapd */
#define VIRTIO_BALLOON13_TAG_DIRECT_SCAN	13	/* bytes scanned directly */
#define VIRTIO_BALLOON13_TAG_ASYNC_RECLAIM	14	/* bytes reclaimed by kswapd */
#define VIRTIO_BALLOON13_TAG_DIRECT_RECLAIM	15	/* bytes reclaimed directly */
/*
 * Memory pressure stall information: microseconds, since boot, during
 * which at least one task (SOME) or every non-idle task (FULL) waited
 * for memory.
 */
#define VIRTIO_BALLOON13_TAG_PSI_SOME_US	16
#define VIRTIO_BALLOON13_TAG_PSI_FULL_US	17
#define VIRTIO_BALLOON13_TAG_NR			18

struct virtio_balloon13_stat {
	__le64 tag;		/* VIRTIO_BALLOON13_TAG_* */
	__le64 value;
};

/* STATS: n >= 1 statistics, each tag at most once.  Length: 8 + 16 * n. */
struct virtio_balloon13_stats {
	struct virtio_balloon13_resp_hdr hdr;
	struct virtio_balloon13_stat s[];
};

#endif /* _LINUX_VIRTIO_BALLOON13_H */
