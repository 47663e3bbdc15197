/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Virtio memory balloon, device ID 13 (OASIS VIRTIO-28): wire format and
 * the driver's internal interfaces shared by its files and its KUnit suite.
 */
#ifndef _VIRTIO_BALLOON13_H
#define _VIRTIO_BALLOON13_H

#include <linux/types.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/wait.h>
#include <linux/notifier.h>
#include <linux/mmzone.h>
#include <linux/log2.h>
#include <linux/virtio_ids.h>

#ifndef VIRTIO_ID_MEMORY_BALLOON
#define VIRTIO_ID_MEMORY_BALLOON	13
#endif

/* --- Device configuration layout ----------------------------------------- */

/* Read-only; "cannot change" while the driver is bound. */
struct virtio_balloon13_config {
	/* Block size of the balloon is 2^page_bits bytes. */
	__le32 page_bits;
};

/* --- Requests: device -> driver on inputq --------------------------------- */

#define VIRTIO_BALLOON13_REQ_RESIZE	0	/* value: target size in bytes */
#define VIRTIO_BALLOON13_REQ_STATS	1	/* value: unused */

struct virtio_balloon13_req {
	__le32 type;
	__le32 reserved;
	__le64 value;
};

/* --- Responses: driver -> device on outputq -------------------------------- */

#define VIRTIO_BALLOON13_RESP_PAGES	0
#define VIRTIO_BALLOON13_RESP_STATS	1

/*
 * Common header of every outputq message.  The proposal's structs are
 * unpacked C, so natural alignment puts the 64-bit array at offset 8: the
 * padding is made explicit here.
 */
struct virtio_balloon13_resp_hdr {
	__le32 type;
	__le32 reserved;
};

/* A page list: header, then one guest-physical address per block. */
struct virtio_balloon13_pages {
	struct virtio_balloon13_resp_hdr hdr;
	__le64 page[];
};

#define VIRTIO_BALLOON13_TAG_SWAP_IN	0	/* bytes */
#define VIRTIO_BALLOON13_TAG_SWAP_OUT	1	/* bytes */
#define VIRTIO_BALLOON13_TAG_MAJFLT	2
#define VIRTIO_BALLOON13_TAG_MINFLT	3
#define VIRTIO_BALLOON13_TAG_MEMFREE	4	/* bytes */
#define VIRTIO_BALLOON13_TAG_MEMTOT	5	/* bytes */
#define VIRTIO_BALLOON13_NR_TAGS	6

struct virtio_balloon13_stat {
	__le64 tag;
	__le64 value;
};

struct virtio_balloon13_stats {
	struct virtio_balloon13_resp_hdr hdr;
	struct virtio_balloon13_stat s[VIRTIO_BALLOON13_NR_TAGS];
};

/* --- Driver internals ----------------------------------------------------- */

/*
 * The largest buddy order the allocator serves.  MAX_ORDER changed meaning
 * in 6.4 and became MAX_PAGE_ORDER in 6.8; MAX_ORDER_NR_PAGES has always
 * been the page count of the largest allocation.
 */
#define VB13_MAX_ORDER		const_ilog2(MAX_ORDER_NR_PAGES)

/* Smallest block the driver serves: one 4 KiB x86 page. */
#define VB13_MIN_PAGE_BITS	12

/*
 * Address array of a page-list message: 64 KiB, i.e. 8192 addresses, 32 MiB
 * of 4 KiB blocks or 16 GiB of 2 MiB blocks per message.  The device handles
 * a whole message with one sorted, coalesced pass, so a bigger message means
 * fewer round trips; 64 KiB still comes from a single order-4 slab
 * allocation made once at probe.  If that fails, probe falls back to smaller
 * arrays but never below one page (at least 4 KiB of addresses).  The header
 * travels in a descriptor of its own, so the array is a power of two and
 * power-of-two chunks fill it exactly.
 */
#define VB13_MSG_BYTES_MAX	(64 * 1024)
#define VB13_MSG_BYTES_MIN	PAGE_SIZE
/* Page-list messages in flight at once: the device works while we allocate. */
#define VB13_NR_MSGS		4
/* Request buffers kept posted on inputq, so bursts of requests aren't lost. */
#define VB13_NR_REQS		8

/**
 * struct vb13_geom - block geometry derived from page_bits
 * @page_bits: log2 of the block size in bytes
 * @block_order: buddy order of one block (0 when a block is <= PAGE_SIZE)
 * @sub_shift: log2 of blocks per page (non-zero only when a block is
 *	smaller than PAGE_SIZE, e.g. 4 KiB blocks on a 64 KiB-page guest)
 * @max_order: largest buddy order allocated; bounded so that one chunk's
 *	addresses always fit into one message
 */
struct vb13_geom {
	unsigned int page_bits;
	unsigned int block_order;
	unsigned int sub_shift;
	unsigned int max_order;
};

/**
 * struct vb13_msg - one page-list message and the chunks it names
 * @hdr: the message header, sent as the first descriptor
 * @addrs: the address array, sent as the second; allocated once at probe
 * @nr: addresses filled in @addrs
 * @chunks: allocated chunks (head pages linked through page->lru) whose
 *	blocks this message names.  They can't be freed until the device has
 *	returned the message.
 * @list: on free_msgs, or on the device while in flight
 */
struct vb13_msg {
	struct virtio_balloon13_resp_hdr hdr;
	__le64 *addrs;
	unsigned int nr;
	struct list_head chunks;
	struct list_head list;
};

/**
 * struct vb13_counters - statistics shown in debugfs
 *
 * Written under the balloon lock or from the single request worker; read
 * without locks (each read is a single word, so torn values can't happen).
 */
struct vb13_counters {
	u64 requests_resize;
	u64 requests_stats;
	u64 requests_unknown;
	u64 requests_malformed;
	u64 spurious_callbacks;
	u64 targets_clamped;
	u64 blocks_inflated;
	u64 blocks_withdrawn;
	u64 messages_pages;
	u64 messages_stats;
	u64 alloc_failures;
	u64 pressure_releases;
	u64 stats_coalesced;
};

struct virtio_device;
struct virtqueue;
struct dentry;

enum vb13_vq {
	VB13_VQ_INPUT,
	VB13_VQ_OUTPUT,
	VB13_NR_VQS,
};

/**
 * struct virtio_balloon13 - one device instance
 *
 * Lock order: @lock, then @out_lock.  Pages are allocated and freed back to
 * the buddy allocator without @lock held whenever the allocation can enter
 * reclaim, because the OOM notifier takes @lock.
 */
struct virtio_balloon13 {
	struct virtio_device *vdev;
	struct virtqueue *vqs[VB13_NR_VQS];
	struct vb13_geom geom;

	/* Request worker: inputq, stats, target updates.  Single-threaded. */
	struct work_struct req_work;
	/* Resize worker: inflate/deflate toward the target; owns backoff. */
	struct delayed_work resize_work;
	/* Woken when an outputq buffer comes back. */
	wait_queue_head_t out_wq;
	/*
	 * Set (under @out_lock, read with READ_ONCE elsewhere) when the
	 * device goes away; stops both workers from requeueing themselves.
	 */
	bool stop;

	struct virtio_balloon13_req reqs[VB13_NR_REQS];

	/*
	 * Serialises outputq access (add/get/kick) between the two workers,
	 * and guards @stats_busy, @stats_pending, @done_msgs and @stop.
	 */
	spinlock_t out_lock;
	struct virtio_balloon13_stats *stats_buf;
	bool stats_busy;	/* stats_buf is on the device */
	bool stats_pending;	/* a STATS came in while it was */
	struct list_head done_msgs;	/* returned by the device, not yet reaped */
	unsigned int on_device;		/* page-list messages the device holds */

	/*
	 * Guards the block accounting below, the message lists and the
	 * chunk lists.  Taken by the resize worker and by the OOM notifier.
	 */
	struct mutex lock;
	struct vb13_msg msgs[VB13_NR_MSGS];
	unsigned int msg_max;		/* addresses per message */
	struct list_head free_msgs;	/* idle message buffers */
	struct vb13_msg *fill;		/* message being filled, or NULL */
	/* Blocks named by messages not yet reaped, @fill included. */
	unsigned long in_flight_blocks;
	/* Chunks the device has acknowledged, by buddy order. */
	struct list_head acked[VB13_MAX_ORDER + 1];
	unsigned long nr_blocks;	/* blocks held, acked or not */

	/*
	 * Target in blocks as last requested by the device, before the
	 * floor is applied.  Written by the request worker, read by the
	 * resize worker: READ_ONCE/WRITE_ONCE.
	 */
	unsigned long target_blocks;
	u64 target_bytes;

	/* Resize worker state (only touched by it, or while it is stopped). */
	unsigned int backoff_ms;
	unsigned int alloc_order;	/* order to try first */
	bool held_by_floor;
	unsigned long oom_hold_until;	/* jiffies; inflation paused before */

	struct notifier_block oom_nb;
	struct vb13_counters cnt;
	struct dentry *debugfs;
};

/* Wire length of a STATS response carrying @n statistics. */
static inline size_t vb13_stats_len(unsigned int n)
{
	return sizeof(struct virtio_balloon13_resp_hdr) +
	       n * sizeof(struct virtio_balloon13_stat);
}

struct page;

/* pagelist.c: geometry, chunks and the page-list hot path */
int vb13_geom_init(struct vb13_geom *g, u32 page_bits, unsigned int msg_max);
unsigned long vb13_chunk_blocks(const struct vb13_geom *g, unsigned int order);
unsigned long vb13_blocks_to_pages(const struct vb13_geom *g,
				   unsigned long blocks);
unsigned long vb13_pages_to_blocks(const struct vb13_geom *g,
				   unsigned long pages);
unsigned int vb13_encode_chunk(const struct vb13_geom *g, __le64 *dst,
			       phys_addr_t base, unsigned int order);
unsigned long vb13_target_blocks(const struct vb13_geom *g, u64 bytes,
				 unsigned long max_blocks, bool *clamped);
unsigned int vb13_chunk_order(struct page *page);
struct page *vb13_alloc_chunk(const struct vb13_geom *g, unsigned int order);
unsigned long vb13_free_chunk(struct page *page);
void vb13_split_chunk(struct page *page, unsigned long keep_from,
		      struct list_head *rest);
bool vb13_msg_room(const struct vb13_geom *g, const struct vb13_msg *msg,
		   unsigned int msg_max, unsigned int order);
unsigned int vb13_msg_add(const struct vb13_geom *g, struct vb13_msg *msg,
			  struct page *page);
unsigned int vb13_msg_len(const struct vb13_msg *msg);
void vb13_msg_init(struct vb13_msg *msg);

/* stats.c */
unsigned int vb13_fill_stats(struct virtio_balloon13_stats *st);

#if IS_ENABLED(CONFIG_KUNIT)
/* virtio_balloon13_main.c internals the KUnit suite reaches */
extern unsigned int vb13_floor_mib;
extern bool vb13_oom_release;
extern unsigned int vb13_oom_release_mib;
extern unsigned int vb13_oom_hold_ms;
unsigned long vb13_floor_pages(void);
unsigned long vb13_max_blocks(struct virtio_balloon13 *vb);
#endif

#endif /* _VIRTIO_BALLOON13_H */
