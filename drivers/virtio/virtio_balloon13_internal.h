/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Virtio memory balloon, device ID 13: the driver's structures and the
 * functions its KUnit suite (tests/) reaches.  The wire format is
 * <linux/virtio_balloon13.h>.
 */
#ifndef _VIRTIO_BALLOON13_INTERNAL_H
#define _VIRTIO_BALLOON13_INTERNAL_H

#include <linux/types.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/wait.h>
#include <linux/notifier.h>
#include <linux/mmzone.h>
#include <linux/page_reporting.h>
#include <linux/log2.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_balloon13.h>

#include "virtio_balloon13_compat.h"

/* Smallest block the driver serves: one 4 KiB x86 page. */
#define VB13_MIN_PAGE_BITS	12

/*
 * A page-list message is one device-readable buffer: the 8-byte header,
 * then the addresses.  One descriptor each, so any ring can carry one (a
 * queue of a single entry included) and no indirect table is needed.
 *
 * A message names at most page_list_kib of memory (a module parameter;
 * see the admin guide for how the default was measured); the first of an
 * inflation run names 1 MiB, so the device starts at once whatever the
 * block size, and what the guest holds unsent or in flight stays bounded
 * by VB13_NR_MSGS times the cap.  The address array is sized for the cap,
 * at most 64 KiB (8191 addresses), one allocation made at probe.
 */
#define VB13_MSG_BUF_MAX	VIRTIO_BALLOON13_MSG_MAX_LEN
#define VB13_MSG_ADDRS_MAX	\
	((VB13_MSG_BUF_MAX - sizeof(struct virtio_balloon13_resp_hdr)) / \
	 sizeof(__le64))
/* Page-list buffers: up to this many in flight, one ring entry each. */
#define VB13_NR_MSGS		4
/* Request buffers kept posted on inputq, so bursts of requests aren't lost. */
#define VB13_NR_REQS		8

/**
 * struct vb13_geom - block geometry and message limits
 * @page_bits: log2 of the block size in bytes
 * @block_order: buddy order of one block (0 when a block is <= PAGE_SIZE)
 * @sub_shift: log2 of blocks per page (non-zero only when a block is
 *	smaller than PAGE_SIZE, e.g. 4 KiB blocks on a 64 KiB-page guest)
 * @max_order: largest buddy order allocated; bounded so that one chunk
 *	always fits an empty message, by addresses and by bytes
 * @msg_addrs: addresses one message holds
 * @msg_pages: pages of memory one message names at most (the byte cap)
 */
struct vb13_geom {
	unsigned int page_bits;
	unsigned int block_order;
	unsigned int sub_shift;
	unsigned int max_order;
	unsigned int msg_addrs;
	unsigned long msg_pages;
};

/**
 * struct vb13_msg - one page-list message and the chunks it names
 * @buf: header and addresses, sent as one descriptor; allocated at probe
 * @nr: addresses filled in @buf
 * @pages: pages of memory those addresses name
 * @chunks: allocated chunks (head pages linked through page->lru) whose
 *	blocks this message names.  They can't be freed while the device
 *	holds the message.
 * @listed: pages taken off the kernel's balloon list that this (WITHDRAW)
 *	message names; their page_private() is 0, as the balloon core wants
 *	of a page it may still find
 * @list: on free_msgs, or on done_msgs once the device returned it
 * @withdraw: a WITHDRAW message (VIRTIO_BALLOON13_F_WITHDRAW): its chunks
 *	leave the balloon, and are freed, once the device returns it
 * @queued: the device holds it (under the out_lock)
 * @own: a balloon migration's message, whose sender waits for it: its
 *	return doesn't wake the resize worker (which would take vb->lock
 *	from the migrations that follow)
 * @old: a WITHDRAW of a page that balloon migration replaced, or whose
 *	memory goes offline: it is not on @chunks (the migration core links
 *	it through its lru), and this message holds a reference to it until
 *	the device returns it
 * @moved: @old was replaced by a new page (it counts in blocks_migrated,
 *	not blocks_withdrawn)
 */
struct vb13_msg {
	struct virtio_balloon13_pages *buf;
	bool withdraw;
	bool queued;
	bool own;
	struct page *old;
	bool moved;
	unsigned int nr;
	unsigned long pages;
	struct list_head chunks;
	struct list_head listed;
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
	u64 blocks_unsent_freed;
	u64 messages_pages;
	u64 messages_withdraw;
	u64 messages_stats;
	u64 alloc_failures;
	u64 pressure_releases;
	u64 pressure_blocks;
	u64 hotplug_blocks;
	u64 blocks_migrated;
	u64 stats_coalesced;
	u64 request_budget_hits;
	/* VIRTIO_BALLOON13_F_FULL_STATS */
	u64 requests_stats_interval;
	u64 stats_pushed;
	/* VIRTIO_BALLOON13_F_REPORTING, written by the reporting worker */
	u64 messages_report;
	u64 report_bytes;
	u64 report_skipped;
	u64 report_aborted;
};

/* Ranges one REPORT message carries: one report call's worth of pages. */
#define VB13_REPORT_RANGES	PAGE_REPORTING_CAPACITY

/*
 * Messages whose sender waits until the device has returned them
 * (vb13_out_send_wait()): one slot each, a slot's message at most once on
 * the device.
 */
enum vb13_sync_slot {
	VB13_SYNC_REPORT,	/* REPORT, from the page reporting worker */
	VB13_NR_SYNC,
};

enum vb13_sync_state {
	VB13_SYNC_IDLE,
	VB13_SYNC_ON_DEVICE,	/* added to outputq, not yet returned */
	VB13_SYNC_USED,		/* the device returned it used */
	VB13_SYNC_RESET,	/* the device was reset while it held it */
};

/**
 * struct vb13_sync - an outputq message its sender waits for
 * @state: enum vb13_sync_state, under the balloon's out_lock.  The
 *	slot's address is the virtqueue token of its message.
 */
struct vb13_sync {
	unsigned int state;
};

struct virtio_device;
struct virtqueue;
struct dentry;
struct shrinker;

enum vb13_vq {
	VB13_VQ_INPUT,
	VB13_VQ_OUTPUT,
	VB13_NR_VQS,
};

/**
 * struct virtio_balloon13 - one device instance
 *
 * Lock order: @lock, then vb13_ram_lock (the RAM accounting seqlock in
 * virtio_balloon13.c), then @out_lock.  Pages are allocated without
 * @lock held, because an allocation may reclaim and the OOM notifier and
 * the shrinker take @lock; nothing allocates memory while holding it.
 */
struct virtio_balloon13 {
	struct virtio_device *vdev;
	/* Valid while @live; NULL otherwise. */
	struct virtqueue *vqs[VB13_NR_VQS];
	struct vb13_geom geom;
	/*
	 * Queues exist and buffers are posted: set by a successful start,
	 * cleared by stop.  Only probe, remove, freeze and restore touch it,
	 * and the virtio core never runs two of them at once.
	 */
	bool live;
	/* Request buffers posted and page lists used: sized to the rings. */
	unsigned int nr_reqs;
	unsigned int nr_msgs;

	/* Request worker: inputq, stats, target updates.  Single-threaded. */
	struct work_struct req_work;
	/* Resize worker: inflate/deflate toward the target; owns backoff. */
	struct delayed_work resize_work;
	/* Woken when an outputq buffer comes back. */
	wait_queue_head_t out_wq;
	/*
	 * True while the device is not live (from the start of stop until a
	 * start succeeds).  Set and cleared under @out_lock, and every work
	 * item is queued under it after checking it, so nothing is queued
	 * once stop has begun.
	 */
	bool stop;
	/* The request worker notifies inputq once the device is started. */
	bool in_kick;
	/*
	 * This is a kdump kernel (cached at probe): the balloon stays empty,
	 * whatever the device asks, so makedumpfile has the memory.
	 */
	bool in_kdump;
	/*
	 * outputq failed other than by being full: no message can go out,
	 * so the balloon only gives memory back.  Under @lock.
	 */
	bool broken;

	/*
	 * Request buffers: the only memory the device writes.  Their own
	 * allocation, whole cache lines each (see vb13_req_stride()), so
	 * that on non-coherent DMA no CPU store to a neighbouring field or
	 * buffer shares a line with them.
	 */
	struct virtio_balloon13_req *reqs;

	/*
	 * Serialises outputq access (add/get/kick) between the two workers,
	 * and guards @stats_busy, @stats_pending, @done_msgs, @on_device,
	 * @stop and @in_kick.
	 */
	spinlock_t out_lock;
	struct virtio_balloon13_stats *stats_buf;
	bool stats_busy;	/* stats_buf is on the device */
	bool stats_pending;	/* a STATS came in while it was */
	struct list_head done_msgs;	/* returned by the device, not yet reaped */
	unsigned int on_device;		/* page-list messages the device holds */
	unsigned int withdraw_on_device;	/* of those, WITHDRAW messages */

	/*
	 * VIRTIO_BALLOON13_F_FULL_STATS: STATS pushed every
	 * @stats_interval_ms (0: none) by @stats_work, which only marks an
	 * answer due (stats_pending) for the request worker.  The interval
	 * is written by the request worker and survives freeze and restore.
	 */
	struct delayed_work stats_work;
	unsigned int stats_interval_ms;

	/*
	 * Messages a sender waits for, under @out_lock; @out_returned counts
	 * every buffer the device gave back (a sender waiting for ring room
	 * watches it), @out_notifying the senders between adding a message
	 * and notifying the device, which a stop waits out before deleting
	 * the queues.
	 */
	struct vb13_sync sync[VB13_NR_SYNC];
	unsigned long out_returned;
	unsigned int out_notifying;

	/*
	 * VIRTIO_BALLOON13_F_REPORTING: registered with the page reporting
	 * core (one device in the system at a time) between a successful
	 * start and a stop; @report_buf holds one REPORT message.
	 */
	struct page_reporting_dev_info pr_dev_info;
	struct virtio_balloon13_report *report_buf;
	bool reporting;

	/*
	 * Guards the block accounting below, the message lists and the
	 * chunk lists.  Taken by the resize worker, the OOM notifier and the
	 * shrinker; never held across an allocation.
	 */
	struct mutex lock;
	struct vb13_msg msgs[VB13_NR_MSGS];
	struct list_head free_msgs;	/* idle message buffers */
	/*
	 * Message being filled, or NULL.  Only the resize worker (or stop,
	 * with the worker cancelled) sets it; the OOM notifier and the
	 * shrinker may take chunks out of it.
	 */
	struct vb13_msg *fill;
	/* Pages the next message may name: grows from one chunk to the cap. */
	unsigned long msg_limit;
	/* Blocks named by messages not yet reaped, @fill included. */
	unsigned long in_flight_blocks;
	/*
	 * Of those, blocks in WITHDRAW messages: still held, already
	 * leaving.  The balloon's size toward the target is @nr_blocks less
	 * these.
	 */
	unsigned long withdrawing;
	/* Chunks the device has acknowledged, by buddy order. */
	struct list_head acked[MAX_PAGE_ORDER + 1];
	/*
	 * Balloon migration (@migratable): acknowledged blocks end up as
	 * single pages on the kernel's balloon list, where compaction and
	 * memory offlining may migrate them (vb13_migratepage()).  Its list
	 * has its own lock; chunks move there from @acked under @lock.
	 */
	struct balloon_dev_info bdev;
	/*
	 * Blocks of at most a page (4 KiB blocks) on a kernel with balloon
	 * migration: acknowledged chunks are split and put on @bdev's list.
	 * Set at probe.
	 */
	bool migratable;
	/*
	 * Memory going offline (MEM_GOING_OFFLINE until MEM_OFFLINE or
	 * MEM_CANCEL_OFFLINE), in pfns, under @lock: a listed page the
	 * offlining migrates leaves the balloon instead (0, 0: none).
	 */
	unsigned long offline_start, offline_end;
	unsigned long nr_blocks;	/* blocks held, acked or not */
	/* The same in pages; written under vb13_ram_lock too. */
	unsigned long held_pages;
	/* Of those, pages in ZONE_MOVABLE; written under vb13_ram_lock too. */
	unsigned long movable_pages;

	/*
	 * Target in blocks as last requested by the device, before the
	 * floor is applied.  Written by the request worker, read by the
	 * resize worker: READ_ONCE/WRITE_ONCE.
	 */
	unsigned long target_blocks;
	u64 target_bytes;

	/*
	 * Resize worker state (only touched by it, or while it is stopped;
	 * the request worker clears @backoff_until for a new target).
	 */
	unsigned int backoff_ms;
	unsigned long backoff_until;	/* jiffies; 0 = no backoff */
	unsigned int alloc_order;	/* order to try first */
	/*
	 * Flags of the next chunk outside ZONE_MOVABLE, for a migratable
	 * balloon: the migratetype whose free pieces it takes.
	 */
	gfp_t alloc_gfp;
	bool held_by_floor;
	/*
	 * The kernel's zones are at the floor and ZONE_MOVABLE has no more:
	 * the target is out of reach because of where the memory is.
	 */
	bool held_by_zones;
	/*
	 * The zones are at their high watermarks and reclaim would find
	 * nothing but the balloon: the last allocation wasn't tried.
	 */
	bool held_by_watermark;
	/* This run found ZONE_MOVABLE without a block free. */
	bool movable_exhausted;
	/*
	 * Pages of small pieces this run took in a row that were no holes
	 * (vb13_in_hole()); once it reaches VB13_SMALL_MISSES, the run
	 * takes no more small pieces and it stays there.
	 */
	unsigned int small_misses;
	/* The task allocating for the balloon; the shrinker leaves it alone. */
	struct task_struct *alloc_task;

	/*
	 * Memory pressure, under @lock: inflation is paused until
	 * @hold_until (jiffies; 0 = no hold), and @pressure_batch is what the
	 * next OOM notification gives back, doubling while they keep coming.
	 */
	unsigned long hold_until;
	unsigned long pressure_batch;
	/*
	 * The pressure episode (jiffies; 0 = none): from an OOM notification
	 * until the hold-off after the last one.  Batches double within it,
	 * and the shrinker's episode mode acts only in it.  Under @lock.
	 */
	unsigned long episode_until;

	struct notifier_block oom_nb;
	struct notifier_block mem_nb;
	/* On vb13_instances, under vb13_instances_lock. */
	struct list_head instance;
	struct shrinker *shrinker;
	struct vb13_counters cnt;
	struct dentry *debugfs;
#if IS_ENABLED(CONFIG_VIRTIO_BALLOON13_KUNIT_TEST)
	/*
	 * KUnit: stands in for vb13_alloc_chunk() when set.  A KUnit static
	 * stub only acts in the test's own thread; chunks are allocated by
	 * the resize worker.
	 */
	struct page *(*alloc_stub)(struct virtio_balloon13 *vb,
				   unsigned int order);
#endif
};

/* Wire length of a STATS response carrying @n statistics. */
static inline size_t vb13_stats_len(unsigned int n)
{
	return sizeof(struct virtio_balloon13_resp_hdr) +
	       n * sizeof(struct virtio_balloon13_stat);
}

/* Statistics a STATS message carries at most: one per tag. */
#define VB13_NR_STATS		VIRTIO_BALLOON13_TAG_NR

#if IS_ENABLED(CONFIG_KUNIT)
struct page;
struct seq_file;

/*
 * What the KUnit suite reaches in virtio_balloon13.c (VISIBLE_IF_KUNIT:
 * static in a kernel without KUnit).
 */
extern unsigned int vb13_floor_mib;
extern int vb13_pressure_release;
extern unsigned int vb13_shrinker_mode;
extern unsigned long vb13_floor_min_bytes;
extern unsigned int vb13_oom_release_mib;
extern unsigned int vb13_oom_hold_ms;
extern unsigned int vb13_page_list_kib;
extern unsigned int vb13_req_budget;
extern bool vb13_fill_holes;

/* Geometry, chunks and the page-list hot path */
int vb13_geom_init(struct vb13_geom *g, u32 page_bits, unsigned int msg_addrs,
		   unsigned long msg_pages);
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
bool vb13_in_hole(struct page *page, unsigned int order);
unsigned long vb13_free_chunk(struct page *page);
void vb13_free_pages(struct page *page, unsigned long nr);
void vb13_split_chunk(struct page *page, unsigned long keep_from,
		      struct list_head *rest);
bool vb13_msg_room(const struct vb13_geom *g, const struct vb13_msg *msg,
		   unsigned int order);
unsigned int vb13_msg_add(const struct vb13_geom *g, struct vb13_msg *msg,
			  struct page *page);
unsigned int vb13_msg_len(const struct vb13_msg *msg);
void vb13_msg_init(struct vb13_msg *msg);

/* Statistics, accounting and debugfs */
unsigned int vb13_fill_stats(struct virtio_balloon13_stats *st, bool full);
int vb13_parse_psi(char *text, u64 *some_us, u64 *full_us);
unsigned long vb13_ram_pages(void);
unsigned long vb13_floor_pages(void);
unsigned long vb13_max_blocks(struct virtio_balloon13 *vb);
int vb13_counters_show(struct seq_file *f, void *offset);
size_t vb13_reqs_size(void);
struct kernel_param;
int vb13_floor_mib_set(const char *val, const struct kernel_param *kp);
#endif

#endif /* _VIRTIO_BALLOON13_INTERNAL_H */
