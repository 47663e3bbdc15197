// SPDX-License-Identifier: GPL-2.0
/*
 * Virtio memory balloon driver, device ID 13 (OASIS VIRTIO-28).
 *
 * The wire format is include/uapi/linux/virtio_balloon13.h; the admin
 * guide describes the sysfs, debugfs and module parameter interface.
 */

/**
 * DOC: Theory of operation
 *
 * The device writes requests into buffers the driver keeps posted on
 * inputq: RESIZE carries a target balloon size in bytes, STATS asks for the
 * guest's memory statistics.  The driver grows the balloon by allocating
 * guest memory and sending the guest-physical address of every block of
 * 2^page_bits bytes on outputq; it shrinks the balloon by simply freeing
 * blocks again ("withdraw by access"): the device notices when the pages
 * are touched.  No message is sent for that.
 *
 * Withdraw by access is only safe with one ordering rule on each side: the
 * device discards a message's blocks before it returns that buffer, and the
 * driver frees a block only after the buffer naming it has come back used.
 * Otherwise the host could discard a page the guest already reuses.  So a
 * chunk lives on its message's list while the device holds the message, and
 * moves to the acknowledged lists when the message returns; only those, and
 * the chunks of the message still being filled (which the device has never
 * seen), are ever freed while the device is live.  Unsent chunks go first:
 * a block the guest is about to take back is never sent.
 *
 * Page-list messages grow in each inflation run: the first names 1 MiB
 * (or one block), each next one twice as much, up to page_list_kib; and a
 * message also goes out whenever the worker stops for any reason (target
 * reached, allocation failure, pressure hold-off).  So the device starts
 * on the first chunk at once and works while the guest allocates the next
 * ones, each message costs a notification and an interrupt only once per
 * up to page_list_kib, and at most VB13_NR_MSGS messages' worth of memory
 * is unsent or in flight.
 *
 * Two work items run on the freezable system workqueue.  The request worker
 * drains inputq (a bounded number of requests per run), re-posts every
 * buffer and answers STATS; it never blocks on the device.  The resize
 * worker owns all allocation and error policy: it moves the balloon toward
 * the target chunk by chunk, re-reading the target between chunks so a new
 * RESIZE redirects it at once, and backs off exponentially (bounded) when
 * the allocator says no; only a different target cuts the backoff short.
 * It never waits for the device either: when every message is in flight,
 * the ring is full, or a deflate needs blocks that are still in flight, it
 * returns and the outputq callback queues it again.  Since that may happen
 * during a backoff or a pressure hold-off, the worker keeps those deadlines
 * itself rather than trusting when it runs.  It frees memory in bounded
 * batches, dropping its lock in between, so the OOM notifier is never kept
 * waiting long.
 *
 * Under memory pressure the balloon gives memory back.  The OOM notifier
 * releases a batch per notification, doubling while notifications keep
 * coming, so a workload that needs much of the balloon gets it in a few
 * rounds of failed reclaim.  Optionally (the shrinker parameter) reclaim
 * may take balloon memory too, during a pressure episode (from an OOM
 * notification until the hold-off ends) or always.  Inflation pauses for
 * a hold-off after the last release; then the balloon moves back to its
 * target.  All of this only when the device offers
 * VIRTIO_BALLOON13_F_PRESSURE_RELEASE: without it the balloon never goes
 * below the device's target on its own.
 *
 * The device is not trusted: request lengths and types are checked, targets
 * are clamped to what the guest can give above its floor, the rings are
 * used at the size the device gave them, and nothing the device says leads
 * to a BUG, a WARN or an unbounded loop.
 */

/**
 * DOC: Chunks, blocks and messages
 *
 * The device names memory in blocks of 2^page_bits bytes.  The driver
 * allocates memory in *chunks*: naturally aligned buddy allocations of
 * order >= block_order, so that one chunk is a whole number of blocks and
 * every block inside it is naturally aligned.  A chunk is described by its
 * head page; the order is kept in page_private() of the head page and the
 * head's lru links the chunk into a message (while the device still holds
 * it) or into the acknowledged lists (once it came back).
 *
 * A chunk is never split across messages: the largest order the driver
 * allocates is capped so that one chunk fits an empty message, both by its
 * addresses and by the memory it names.  When withdrawing part of a chunk,
 * the chunk is split into order-0 pages, the head part is freed and the
 * rest is kept as naturally aligned power-of-two runs marked
 * VB13_CHUNK_SPLIT, whose pages are freed one by one.
 *
 * Every page of a chunk is PageOffline() from allocation until it is
 * freed, as virtio_balloon and vmw_balloon mark theirs: /proc/kcore, kdump
 * and makedumpfile then skip it instead of reading a discarded block and
 * making the host back it again.  The marking is done between
 * page_offline_begin() and page_offline_end(), as virtio_mem does, so a
 * /proc/kcore reader that found a page online never reads it after the
 * device may have discarded it.
 *
 * Nothing here takes locks or talks to the device; the callers own the
 * serialisation (see struct virtio_balloon13).
 */

/**
 * DOC: Statistics
 *
 * Each value is what the proposal's tag asks for, in its unit.  A value
 * the guest cannot determine is left out rather than sent as zero: without
 * CONFIG_VM_EVENT_COUNTERS the swap and fault counts are unknown.
 *
 * With VIRTIO_BALLOON13_F_FULL_STATS the message also carries tags 6 to
 * 15, each computed as virtio_balloon computes its tag of the same number
 * (available memory, page cache, hugetlb allocations, OOM kills, allocation
 * stalls, reclaim scans and steals), and the guest's memory pressure: the
 * "some" and "full" stall totals of /proc/pressure/memory, in microseconds,
 * left out when PSI is off (psi=0, or !CONFIG_PSI).  The device may then
 * also ask for STATS every so many milliseconds (REQ_STATS_INTERVAL): a
 * timer marks an answer due, and the request worker sends it as if the
 * device had asked, so one STATS message is on the device at a time and
 * pushes coalesce with requests.
 */
#include <linux/cache.h>
#include <linux/crash_dump.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/export.h>
#include <linux/fs.h>
#include <linux/uio.h>
#include <linux/gfp.h>
#include <linux/jiffies.h>
#include <linux/log2.h>
#include <linux/memory.h>
#include <linux/memory_hotplug.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/oom.h>
#include <linux/overflow.h>
#include <linux/page-flags.h>
#include <linux/page_reporting.h>
#include <linux/pfn.h>
#include <linux/scatterlist.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/seqlock.h>
#include <linux/shrinker.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/swap.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/vmstat.h>
#include <kunit/visibility.h>

#include "virtio_balloon13_internal.h"

/*
 * Module parameters.  The KUnit suite changes them, and the tunables below
 * them, directly.
 */
VISIBLE_IF_KUNIT
int vb13_floor_mib_set(const char *val, const struct kernel_param *kp);

static const struct kernel_param_ops vb13_floor_mib_ops = {
	.set = vb13_floor_mib_set,
	.get = param_get_uint,
};

VISIBLE_IF_KUNIT unsigned int vb13_floor_mib;
EXPORT_SYMBOL_IF_KUNIT(vb13_floor_mib);
module_param_cb(floor_mib, &vb13_floor_mib_ops, &vb13_floor_mib, 0644);
MODULE_PARM_DESC(floor_mib,
		 "Guest memory in MiB never given to the balloon (0 = auto: max(128 MiB, RAM/16), RAM counting the balloon)");

VISIBLE_IF_KUNIT int vb13_pressure_release = -1;
EXPORT_SYMBOL_IF_KUNIT(vb13_pressure_release);
module_param_named(pressure_release, vb13_pressure_release, int, 0644);
MODULE_PARM_DESC(pressure_release,
		 "Give balloon memory back when the guest would otherwise OOM: -1 when the device offers VIRTIO_BALLOON13_F_PRESSURE_RELEASE, 0 never (default: -1)");

VISIBLE_IF_KUNIT unsigned int vb13_shrinker_mode;
EXPORT_SYMBOL_IF_KUNIT(vb13_shrinker_mode);
module_param_named(shrinker, vb13_shrinker_mode, uint, 0644);
MODULE_PARM_DESC(shrinker,
		 "While pressure release is on, let reclaim take balloon memory too: 0 never, 1 during a pressure episode, 2 always (default: 0)");

/*
 * Tunables, fixed outside the KUnit suite.  The first OOM notification of
 * an episode gives back 16 MiB, and each further one within the hold-off
 * twice the one before; inflation pauses 5 s after the last release; a
 * page-list message names at most 16 MiB.  See the admin guide for how
 * each was measured.
 */
VISIBLE_IF_KUNIT unsigned int vb13_oom_release_mib = 16;
EXPORT_SYMBOL_IF_KUNIT(vb13_oom_release_mib);
VISIBLE_IF_KUNIT unsigned int vb13_oom_hold_ms = 5000;
EXPORT_SYMBOL_IF_KUNIT(vb13_oom_hold_ms);
VISIBLE_IF_KUNIT unsigned int vb13_page_list_kib = 16384;
EXPORT_SYMBOL_IF_KUNIT(vb13_page_list_kib);

/* Automatic floor: never less than this; the suite lowers it. */
#define VB13_FLOOR_MIN		(128 * SZ_1M)
VISIBLE_IF_KUNIT unsigned long vb13_floor_min_bytes = VB13_FLOOR_MIN;
EXPORT_SYMBOL_IF_KUNIT(vb13_floor_min_bytes);
/* Automatic floor: at least 1/2^VB13_FLOOR_SHIFT of guest RAM. */
#define VB13_FLOOR_SHIFT	4
/* First backoff after an allocation failure, in ms; doubles up to the max. */
#define VB13_BACKOFF_MIN_MS	100
#define VB13_BACKOFF_MAX_MS	10000
/*
 * How long a release under pressure waits for the device to return a
 * WITHDRAW message, in ms: OOM waits that long at most per notification.
 */
#define VB13_WITHDRAW_WAIT_MS	1000
/* How long remove/freeze waits for the device to return page lists, in ms. */
#define VB13_DRAIN_MS		5000
/*
 * Most memory freed per hold of the balloon lock: 16 MiB is four order-10
 * frees, or 4096 page frees when chunks were split, a few microseconds to
 * a few hundred; the lock is then dropped and the CPU offered.
 */
#define VB13_FREE_BATCH_BYTES	SZ_16M
/*
 * The first page list of an inflation run names this much (or one block,
 * if larger), so the device starts at once: 1 MiB is about 0.2 ms of
 * allocation with init_on_alloc=1 under TCG.  Each following message may
 * name twice the one before, up to page_list_kib.
 */
#define VB13_FIRST_MSG_BYTES	SZ_1M
/* Shortest interval between STATS pushes (REQ_STATS_INTERVAL), in ms. */
#define VB13_STATS_MIN_MS	100
/*
 * Requests handled per run of the request worker before it requeues: a
 * device that refills buffers as fast as they are posted can't keep it
 * going for ever.  The suite lowers it.
 */
VISIBLE_IF_KUNIT unsigned int vb13_req_budget = 4 * VB13_NR_REQS;
EXPORT_SYMBOL_IF_KUNIT(vb13_req_budget);

/*
 * Take free pieces smaller than a pageblock first (vb13_hole_order()).
 * The suite turns it off where it needs whole pageblocks of ballooned
 * pages.
 */
VISIBLE_IF_KUNIT bool vb13_fill_holes = true;
EXPORT_SYMBOL_IF_KUNIT(vb13_fill_holes);

/* Free pieces of a per-cpu order that make a zone worth filling. */
#define VB13_SMALL_HOLES	1024
/*
 * Pages of small pieces in a row that were no holes: the holes are gone.
 * A pageblock's worth: after a steal, the stolen pageblock is taken and
 * no other; before it, the pieces the per-cpu lists held from earlier
 * frees (their buddies there too) are let through.
 */
#define VB13_SMALL_MISSES	pageblock_nr_pages

enum { VB13_SHRINK_OFF, VB13_SHRINK_PRESSURE, VB13_SHRINK_ALWAYS };

static struct dentry *vb13_debugfs_root;

/* Counters have one writer at a time and lockless readers. */
static inline void vb13_add(u64 *counter, u64 n)
{
	WRITE_ONCE(*counter, *counter + n);
}

#define vb13_inc(vb, field, n) vb13_add(&(vb)->cnt.field, n)

/* --- geometry, chunks and messages ---------------------------------------- */

/**
 * vb13_geom_init() - derive the block geometry and message limits
 * @g: geometry to fill
 * @page_bits: log2 of the block size, as read from config space
 * @msg_addrs: addresses one page-list message holds (>= 1)
 * @msg_pages: pages of memory one message may name (>= 1); raised to one
 *	block when a block is larger
 *
 * Return: 0, or -EINVAL when the guest cannot serve @page_bits: blocks
 * smaller than 4 KiB, or larger than the largest buddy allocation; or
 * when one page's blocks don't fit @msg_addrs.
 */
VISIBLE_IF_KUNIT
int vb13_geom_init(struct vb13_geom *g, u32 page_bits, unsigned int msg_addrs,
		   unsigned long msg_pages)
{
	unsigned int by_addrs, by_pages;

	if (page_bits < VB13_MIN_PAGE_BITS ||
	    page_bits > PAGE_SHIFT + MAX_PAGE_ORDER || !msg_addrs || !msg_pages)
		return -EINVAL;

	g->page_bits = page_bits;
	if (page_bits >= PAGE_SHIFT) {
		g->block_order = page_bits - PAGE_SHIFT;
		g->sub_shift = 0;
	} else {
		g->block_order = 0;
		g->sub_shift = PAGE_SHIFT - page_bits;
		/* One page's blocks must fit a message. */
		if (msg_addrs < (1U << g->sub_shift))
			return -EINVAL;
	}
	g->msg_addrs = msg_addrs;
	g->msg_pages = max(msg_pages, 1UL << g->block_order);
	/* Largest chunk that still fits an empty message both ways. */
	by_addrs = g->block_order + ilog2(msg_addrs >> g->sub_shift);
	by_pages = ilog2(g->msg_pages);
	g->max_order = min3((unsigned int)MAX_PAGE_ORDER, by_addrs, by_pages);
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_geom_init);

/**
 * vb13_chunk_blocks() - number of blocks in a chunk
 * @g: geometry
 * @order: buddy order of the chunk, >= @g->block_order
 *
 * Return: blocks (wire addresses) the chunk contributes.
 */
VISIBLE_IF_KUNIT
unsigned long vb13_chunk_blocks(const struct vb13_geom *g, unsigned int order)
{
	return 1UL << (order - g->block_order + g->sub_shift);
}
EXPORT_SYMBOL_IF_KUNIT(vb13_chunk_blocks);

/**
 * vb13_blocks_to_pages() - pages covered by a number of blocks
 * @g: geometry
 * @blocks: whole blocks; a multiple of the blocks in one page
 *
 * Return: the page count.
 */
VISIBLE_IF_KUNIT
unsigned long vb13_blocks_to_pages(const struct vb13_geom *g,
				   unsigned long blocks)
{
	return (blocks << g->block_order) >> g->sub_shift;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_blocks_to_pages);

/**
 * vb13_pages_to_blocks() - whole blocks in a number of pages
 * @g: geometry
 * @pages: page count
 *
 * Return: the number of whole blocks, rounded down.
 */
VISIBLE_IF_KUNIT
unsigned long vb13_pages_to_blocks(const struct vb13_geom *g,
				   unsigned long pages)
{
	return (pages >> g->block_order) << g->sub_shift;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_pages_to_blocks);

/**
 * vb13_encode_chunk() - write the wire addresses of one chunk
 * @g: geometry
 * @dst: where the first address goes; room for vb13_chunk_blocks() entries
 * @base: guest-physical address of the chunk, aligned to its size
 * @order: buddy order of the chunk
 *
 * This is the per-block hot path: one store per block, nothing else.
 *
 * Return: the number of addresses written.
 */
VISIBLE_IF_KUNIT
unsigned int vb13_encode_chunk(const struct vb13_geom *g, __le64 *dst,
			       phys_addr_t base, unsigned int order)
{
	unsigned int i, n = vb13_chunk_blocks(g, order);
	u64 step = 1ULL << g->page_bits;
	u64 addr = base;

	for (i = 0; i < n; i++, addr += step)
		dst[i] = cpu_to_le64(addr);
	return n;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_encode_chunk);

/**
 * vb13_target_blocks() - turn a RESIZE value into a target in blocks
 * @g: geometry
 * @bytes: target balloon size in bytes, as sent by the (untrusted) device
 * @max_blocks: the most the guest could ever give
 * @clamped: set to whether @bytes asked for more than @max_blocks
 *
 * Rounds down to whole blocks and to whole pages (blocks smaller than a
 * page are only ever given a page at a time), then clamps.  Every u64,
 * including 2^64 - 1, is a valid input.
 *
 * Return: the target in blocks, at most @max_blocks.
 */
VISIBLE_IF_KUNIT
unsigned long vb13_target_blocks(const struct vb13_geom *g, u64 bytes,
				 unsigned long max_blocks, bool *clamped)
{
	u64 blocks = bytes >> g->page_bits;

	blocks = round_down(blocks, 1ULL << g->sub_shift);
	*clamped = blocks > max_blocks;
	return *clamped ? max_blocks : (unsigned long)blocks;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_target_blocks);

/* --- chunks ------------------------------------------------------------- */

/* page_private() of a chunk's head page: order, and whether it was split. */
#define VB13_CHUNK_ORDER_MASK	0xffUL
#define VB13_CHUNK_SPLIT	0x100UL

static void vb13_chunk_set(struct page *page, unsigned int order, bool split)
{
	set_page_private(page, order | (split ? VB13_CHUNK_SPLIT : 0));
}

/**
 * vb13_chunk_order() - buddy order of a chunk
 * @page: the chunk's head page
 *
 * Return: the order recorded when the chunk was created.
 */
VISIBLE_IF_KUNIT
unsigned int vb13_chunk_order(struct page *page)
{
	return page_private(page) & VB13_CHUNK_ORDER_MASK;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_chunk_order);

static struct page *vb13_alloc_chunk_gfp(const struct vb13_geom *g,
					 unsigned int order, gfp_t base,
					 bool free_ok, bool reclaim_ok);

/**
 * vb13_alloc_chunk() - allocate one chunk for the balloon
 * @g: geometry
 * @order: buddy order, >= @g->block_order
 *
 * Every order is first taken from free memory only, neither reclaiming
 * nor waking kswapd, so a fragmented guest falls back to smaller chunks
 * instead of compacting for us.  Only the block order, when free memory
 * has none, may then reclaim (and compact) once; it never retries and
 * never invokes the OOM killer.  Every page of the chunk is marked
 * PageOffline().
 *
 * Context: may sleep; must not be called with the balloon lock held.
 * Return: the head page, or NULL.
 */
VISIBLE_IF_KUNIT __maybe_unused
struct page *vb13_alloc_chunk(const struct vb13_geom *g, unsigned int order)
{
	return vb13_alloc_chunk_gfp(g, order, GFP_HIGHUSER, true, true);
}
EXPORT_SYMBOL_IF_KUNIT(vb13_alloc_chunk);

/*
 * vb13_alloc_chunk() with GFP_HIGHUSER or GFP_HIGHUSER_MOVABLE as @base;
 * @free_ok: try free memory, @reclaim_ok: then reclaim (block order only).
 */
static struct page *vb13_alloc_chunk_gfp(const struct vb13_geom *g,
					 unsigned int order, gfp_t base,
					 bool free_ok, bool reclaim_ok)
{
	gfp_t gfp = base | __GFP_NOWARN | __GFP_NOMEMALLOC | __GFP_NORETRY;
	struct page *page;
	unsigned long i;

	/*
	 * Free memory first, at every order: a chunk the free lists can't
	 * give without reclaim is not worth waking kswapd or compacting for
	 * (that is how a balloon of 2 MiB blocks would take the guest's huge
	 * pages).  Only the block order itself, the last resort, may then
	 * reclaim and compact, once.
	 */
	page = free_ok ? alloc_pages(gfp & ~__GFP_RECLAIM, order) : NULL;
	if (!page && reclaim_ok && order == g->block_order)
		page = alloc_pages(gfp, order);
	if (!page)
		return NULL;
	/* Not while /proc/kcore reads the pages it found online. */
	page_offline_begin();
	for (i = 0; i < 1UL << order; i++)
		__folio_set_offline(page_folio(page + i));
	page_offline_end();
	vb13_chunk_set(page, order, false);
	return page;
}

/**
 * vb13_free_pages() - give independent order-0 pages back
 * @page: the first page
 * @nr: how many consecutive pages, each its own allocation (split)
 *
 * Clears PageOffline() on each before freeing it.
 */
VISIBLE_IF_KUNIT
void vb13_free_pages(struct page *page, unsigned long nr)
{
	unsigned long i;

	for (i = 0; i < nr; i++) {
		__folio_clear_offline(page_folio(page + i));
		__free_page(page + i);
	}
}
EXPORT_SYMBOL_IF_KUNIT(vb13_free_pages);

/**
 * vb13_free_chunk() - give a chunk back to the buddy allocator
 * @page: the chunk's head page, not on any list
 *
 * Clears PageOffline() on every page first.
 *
 * Return: the number of pages freed.
 */
VISIBLE_IF_KUNIT
unsigned long vb13_free_chunk(struct page *page)
{
	unsigned int order = vb13_chunk_order(page);
	bool split = page_private(page) & VB13_CHUNK_SPLIT;
	unsigned long i, nr = 1UL << order;

	set_page_private(page, 0);
	if (split) {
		vb13_free_pages(page, nr);
		return nr;
	}
	for (i = 0; i < nr; i++)
		__folio_clear_offline(page_folio(page + i));
	__free_pages(page, order);
	return nr;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_free_chunk);

/**
 * vb13_split_chunk() - cut the head off a chunk
 * @page: the chunk's head page, not on any list
 * @keep_from: page index where the part to keep starts; a multiple of the
 *	block size in pages, 0 < @keep_from < 2^order
 * @rest: list that receives the kept part as power-of-two runs
 *
 * After this the first @keep_from pages are independent order-0 pages the
 * caller frees with vb13_free_pages(); the rest becomes naturally aligned
 * runs, each at least one block, marked as split chunks and added to
 * @rest.  Every page stays PageOffline().
 */
VISIBLE_IF_KUNIT
void vb13_split_chunk(struct page *page, unsigned long keep_from,
		      struct list_head *rest)
{
	unsigned int order = vb13_chunk_order(page);
	unsigned long end = 1UL << order, pos = keep_from;

	if (!(page_private(page) & VB13_CHUNK_SPLIT))
		split_page(page, order);
	set_page_private(page, 0);

	/* Greedy aligned decomposition of [keep_from, end). */
	while (pos < end) {
		unsigned int run = __ffs(pos);

		while (pos + (1UL << run) > end)
			run--;
		vb13_chunk_set(page + pos, run, true);
		list_add_tail(&page[pos].lru, rest);
		pos += 1UL << run;
	}
}
EXPORT_SYMBOL_IF_KUNIT(vb13_split_chunk);

/* --- messages ----------------------------------------------------------- */

/**
 * vb13_msg_room() - can a chunk of this order join the message?
 * @g: geometry, with the message limits
 * @msg: message being filled
 * @order: order of the candidate chunk
 *
 * Return: true when the chunk's addresses fit and the memory the message
 * names stays within the cap.
 */
VISIBLE_IF_KUNIT
bool vb13_msg_room(const struct vb13_geom *g, const struct vb13_msg *msg,
		   unsigned int order)
{
	return msg->nr + vb13_chunk_blocks(g, order) <= g->msg_addrs &&
	       msg->pages + (1UL << order) <= g->msg_pages;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_msg_room);

/**
 * vb13_msg_add() - name a chunk in a message
 * @g: geometry
 * @msg: message being filled, with room for the chunk (vb13_msg_room())
 * @page: the chunk's head page
 *
 * The chunk now belongs to the message until the device returns it.
 *
 * Return: the number of blocks added.
 */
VISIBLE_IF_KUNIT
unsigned int vb13_msg_add(const struct vb13_geom *g, struct vb13_msg *msg,
			  struct page *page)
{
	unsigned int order = vb13_chunk_order(page), n;

	n = vb13_encode_chunk(g, &msg->buf->page[msg->nr],
			      PFN_PHYS(page_to_pfn(page)), order);
	msg->nr += n;
	msg->pages += 1UL << order;
	list_add_tail(&page->lru, &msg->chunks);
	return n;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_msg_add);

/*
 * Name a page taken off the kernel's balloon list in a WITHDRAW message,
 * with room for it; it is on @msg->listed until the device returns it.
 * Return: the number of blocks added.
 */
static unsigned int vb13_msg_add_listed(const struct vb13_geom *g,
					struct vb13_msg *msg, struct page *page)
{
	unsigned int n;

	n = vb13_encode_chunk(g, &msg->buf->page[msg->nr],
			      PFN_PHYS(page_to_pfn(page)), 0);
	msg->nr += n;
	msg->pages++;
	list_move_tail(&page->lru, &msg->listed);
	return n;
}

/**
 * vb13_msg_len() - wire length of a page-list message
 * @msg: the message, with at least one address
 *
 * Return: 8 + 8 * addresses, in bytes.
 */
VISIBLE_IF_KUNIT
unsigned int vb13_msg_len(const struct vb13_msg *msg)
{
	return struct_size(msg->buf, page, msg->nr);
}
EXPORT_SYMBOL_IF_KUNIT(vb13_msg_len);

/**
 * vb13_msg_init() - prepare an empty message for filling
 * @msg: the message
 */
VISIBLE_IF_KUNIT
void vb13_msg_init(struct vb13_msg *msg)
{
	msg->withdraw = false;
	msg->queued = false;
	msg->own = false;
	msg->old = NULL;
	msg->moved = false;
	msg->nr = 0;
	msg->pages = 0;
	INIT_LIST_HEAD(&msg->chunks);
	INIT_LIST_HEAD(&msg->listed);
	msg->buf->hdr.type = cpu_to_le32(VIRTIO_BALLOON13_RESP_PAGES);
	msg->buf->hdr.reserved = 0;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_msg_init);

/* --- statistics ------------------------------------------------------------ */

static void vb13_put_stat(struct virtio_balloon13_stats *st, unsigned int *n,
			  u64 tag, u64 value)
{
	st->s[*n].tag = cpu_to_le64(tag);
	st->s[*n].value = cpu_to_le64(value);
	(*n)++;
}

/**
 * vb13_parse_psi() - the stall totals of /proc/pressure/memory's text
 * @text: what the file reads, NUL-terminated; split up in place
 * @some_us: set to the "some" line's total=
 * @full_us: set to the "full" line's total=
 *
 * Return: 0, or -EINVAL unless both lines carry a total.
 */
VISIBLE_IF_KUNIT
int vb13_parse_psi(char *text, u64 *some_us, u64 *full_us)
{
	bool some = false, full = false;
	char *line, *total;
	u64 *dst;

	while ((line = strsep(&text, "\n"))) {
		if (str_has_prefix(line, "some "))
			dst = some_us;
		else if (str_has_prefix(line, "full "))
			dst = full_us;
		else
			continue;
		total = strstr(line, " total=");
		if (!total || kstrtou64(total + strlen(" total="), 10, dst))
			return -EINVAL;
		if (dst == some_us)
			some = true;
		else
			full = true;
	}
	return some && full ? 0 : -EINVAL;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_parse_psi);

/*
 * Memory stall totals since boot, in microseconds.  The kernel exports
 * neither psi_system nor psi_show(), so a module reads what
 * /proc/pressure/memory prints; it does not exist while PSI is off.  The
 * file is a seq_file without read_iter (kernel_read() refuses it), so it is
 * read through seq_read_iter() as a read(2) of it would be.
 * Context: process context; sleeps.
 * Return: true when both totals were read.
 */
static bool vb13_psi_mem_us(u64 *some_us, u64 *full_us)
{
	char buf[256];
	struct kvec kv = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
	struct iov_iter iter;
	struct kiocb kiocb;
	struct file *f;
	ssize_t n;

	f = filp_open("/proc/pressure/memory", O_RDONLY, 0);
	if (IS_ERR(f))
		return false;
	if (f->f_op->read_iter) {
		loff_t pos = 0;

		n = kernel_read(f, buf, sizeof(buf) - 1, &pos);
	} else {
		init_sync_kiocb(&kiocb, f);
		iov_iter_kvec(&iter, ITER_DEST, &kv, 1, kv.iov_len);
		n = seq_read_iter(&kiocb, &iter);
	}
	filp_close(f, NULL);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return !vb13_parse_psi(buf, some_us, full_us);
}

/*
 * Tags 6 to 17, for VIRTIO_BALLOON13_F_FULL_STATS.  @events: the VM event
 * counters, or NULL without CONFIG_VM_EVENT_COUNTERS.
 */
static void vb13_fill_full_stats(struct virtio_balloon13_stats *st,
				 unsigned int *n, const unsigned long *events)
{
	unsigned long stall = 0;
	u64 some, full;
	int zid;

	vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_AVAIL,
		      (u64)si_mem_available() << PAGE_SHIFT);
	vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_CACHES,
		      (u64)global_node_page_state(NR_FILE_PAGES) << PAGE_SHIFT);
	if (events) {
#ifdef CONFIG_HUGETLB_PAGE
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_HTLB_PGALLOC,
			      events[HTLB_BUDDY_PGALLOC]);
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_HTLB_PGFAIL,
			      events[HTLB_BUDDY_PGALLOC_FAIL]);
#endif
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_OOM_KILL,
			      events[OOM_KILL]);
		/* One ALLOCSTALL_<zone> event per zone, in zone order. */
		for (zid = 0; zid < MAX_NR_ZONES; zid++)
			stall += events[ALLOCSTALL_NORMAL - ZONE_NORMAL + zid];
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_ALLOC_STALL, stall);
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_ASYNC_SCAN,
			      (u64)vb13_reclaim_pages(events, PGSCAN_KSWAPD)
			      << PAGE_SHIFT);
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_DIRECT_SCAN,
			      (u64)vb13_reclaim_pages(events, PGSCAN_DIRECT)
			      << PAGE_SHIFT);
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_ASYNC_RECLAIM,
			      (u64)vb13_reclaim_pages(events, PGSTEAL_KSWAPD)
			      << PAGE_SHIFT);
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_DIRECT_RECLAIM,
			      (u64)vb13_reclaim_pages(events, PGSTEAL_DIRECT)
			      << PAGE_SHIFT);
	}
	if (vb13_psi_mem_us(&some, &full)) {
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_PSI_SOME_US, some);
		vb13_put_stat(st, n, VIRTIO_BALLOON13_TAG_PSI_FULL_US, full);
	}
}

/**
 * vb13_fill_stats() - fill a STATS response with the guest's current values
 * @st: the response buffer, room for VB13_NR_STATS statistics
 * @full: VIRTIO_BALLOON13_F_FULL_STATS was negotiated: tags 6 to 17 too
 *
 * Context: process context; may sleep (all_vm_events() takes the CPU
 * hotplug lock, the PSI totals are read from procfs).
 * Return: the number of statistics written; the message length is
 * sizeof(header) + n * sizeof(struct virtio_balloon13_stat).
 */
VISIBLE_IF_KUNIT
unsigned int vb13_fill_stats(struct virtio_balloon13_stats *st, bool full)
{
	const unsigned long *ev = NULL;
	unsigned int n = 0;
	struct sysinfo i;
#ifdef CONFIG_VM_EVENT_COUNTERS
	unsigned long events[NR_VM_EVENT_ITEMS];

	all_vm_events(events);
	ev = events;
#endif
	si_meminfo(&i);

	st->hdr.type = cpu_to_le32(VIRTIO_BALLOON13_RESP_STATS);
	st->hdr.reserved = 0;
	if (ev) {
		vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_SWAP_IN,
			      (u64)ev[PSWPIN] << PAGE_SHIFT);
		vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_SWAP_OUT,
			      (u64)ev[PSWPOUT] << PAGE_SHIFT);
		vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_MAJFLT,
			      ev[PGMAJFAULT]);
		/* PGFAULT counts every fault, major ones included. */
		vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_MINFLT,
			      ev[PGFAULT] - ev[PGMAJFAULT]);
	}
	vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_MEMFREE,
		      (u64)i.freeram * i.mem_unit);
	vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_MEMTOT,
		      (u64)i.totalram * i.mem_unit);
	if (full)
		vb13_fill_full_stats(st, &n, ev);
	return n;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_fill_stats);

/* --- block accounting ------------------------------------------------------ */

/*
 * Pages every device 13 balloon holds, changed together with totalram in
 * one write section, so that a reader sees the guest's RAM, balloons
 * counted back in, as one consistent figure.
 */
static DEFINE_SEQLOCK(vb13_ram_lock);
static unsigned long vb13_all_held_pages;

/**
 * vb13_ram_pages() - all of the guest's RAM, counting what balloons hold
 *
 * Return: totalram_pages() plus every page held by a device 13 balloon.
 * It doesn't move as a balloon grows or shrinks.
 */
VISIBLE_IF_KUNIT
unsigned long vb13_ram_pages(void)
{
	unsigned long ram;
	unsigned int seq;

	do {
		seq = read_seqbegin(&vb13_ram_lock);
		ram = totalram_pages() + vb13_all_held_pages;
	} while (read_seqretry(&vb13_ram_lock, seq));
	return ram;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_ram_pages);

/* Managed pages of every ZONE_MOVABLE (memory the kernel can't use). */
static unsigned long vb13_movable_managed(void)
{
	unsigned long pages = 0;
	int nid;

	for_each_online_node(nid)
		pages += zone_managed_pages(&NODE_DATA(nid)->node_zones[ZONE_MOVABLE]);
	return pages;
}

/**
 * vb13_floor_pages() - guest memory never given to the balloon
 *
 * The automatic floor is a share of all the guest's RAM, the balloon
 * counted in, so it stays put as the balloon grows.  It protects MemTotal,
 * not MemAvailable: memory the guest's own tasks and caches use is inside
 * the floor, not on top of it.
 *
 * Return: the floor in pages: floor_mib, or max(128 MiB, RAM/16).
 */
VISIBLE_IF_KUNIT
unsigned long vb13_floor_pages(void)
{
	u64 floor = (u64)READ_ONCE(vb13_floor_mib) * SZ_1M;

	if (!floor)
		floor = max_t(u64, READ_ONCE(vb13_floor_min_bytes),
			      ((u64)vb13_ram_pages() << PAGE_SHIFT) >>
			      VB13_FLOOR_SHIFT);
	return min_t(u64, floor >> PAGE_SHIFT, ULONG_MAX);
}
EXPORT_SYMBOL_IF_KUNIT(vb13_floor_pages);

/**
 * vb13_max_blocks() - the most blocks the balloon may hold
 * @vb: the balloon
 *
 * Return: what the guest has left plus what this balloon holds, less the
 * floor, in whole blocks.
 */
VISIBLE_IF_KUNIT
unsigned long vb13_max_blocks(struct virtio_balloon13 *vb)
{
	unsigned long floor = vb13_floor_pages(), avail, kernel, movable;
	unsigned int seq;

	do {
		seq = read_seqbegin(&vb13_ram_lock);
		avail = totalram_pages() + READ_ONCE(vb->held_pages);
		movable = vb13_movable_managed() + READ_ONCE(vb->movable_pages);
	} while (read_seqretry(&vb13_ram_lock, seq));
	/*
	 * The floor is memory the kernel can use: ZONE_MOVABLE holds only
	 * movable pages, so it can't be in it.  Without ZONE_MOVABLE this
	 * is the floor of all RAM.
	 */
	kernel = avail - min(avail, movable);
	if (kernel <= floor)
		return vb13_pages_to_blocks(&vb->geom, movable);
	return vb13_pages_to_blocks(&vb->geom, avail - floor);
}
EXPORT_SYMBOL_IF_KUNIT(vb13_max_blocks);

/*
 * Pages the balloon may hold outside ZONE_MOVABLE: what the kernel's
 * zones have plus what the balloon holds of them, less the floor.
 */
static unsigned long vb13_kernel_budget(struct virtio_balloon13 *vb)
{
	unsigned long floor = vb13_floor_pages(), kernel;
	unsigned int seq;

	do {
		seq = read_seqbegin(&vb13_ram_lock);
		kernel = totalram_pages() - min(totalram_pages(),
						vb13_movable_managed()) +
			 READ_ONCE(vb->held_pages) -
			 READ_ONCE(vb->movable_pages);
	} while (read_seqretry(&vb13_ram_lock, seq));
	return kernel > floor ? kernel - floor : 0;
}

/*
 * Move @pages between the guest's RAM and the balloon; @pages < 0: out.
 * With @gauge, also the "Balloon:" line of /proc/meminfo: the driver
 * counts there the pages it holds itself, and the kernel's balloon list
 * counts those it holds (a migratable balloon's).
 */
static void vb13_account(struct virtio_balloon13 *vb, struct page *page,
			 long pages, bool gauge)
{
	lockdep_assert_held(&vb->lock);
	write_seqlock(&vb13_ram_lock);
	adjust_managed_page_count(page, -pages);
	if (gauge)
		mod_node_page_state(page_pgdat(page), NR_BALLOON_PAGES, pages);
	vb13_all_held_pages += pages;
	WRITE_ONCE(vb->held_pages, vb->held_pages + pages);
	if (page_zonenum(page) == ZONE_MOVABLE)
		WRITE_ONCE(vb->movable_pages, vb->movable_pages + pages);
	write_sequnlock(&vb13_ram_lock);
}

/*
 * Account a chunk entering the balloon; called with vb->lock held.  A
 * migratable balloon's pages count as inflated once they are on the
 * kernel's balloon list (which counts them), or when they leave the
 * balloon without having been there: each page once either way.
 * @moved: the new page of a migration, which counts in blocks_migrated
 * when it succeeds (and in blocks_inflated when it stays as an extra).
 */
static void vb13_account_in(struct virtio_balloon13 *vb, struct page *page,
			    unsigned long blocks, bool moved)
{
	unsigned long pages = vb13_blocks_to_pages(&vb->geom, blocks);

	vb13_account(vb, page, pages, true);
#ifdef CONFIG_BALLOON
	if (!vb->migratable)
		count_vm_events(BALLOON_INFLATE, pages);
#endif
	WRITE_ONCE(vb->nr_blocks, vb->nr_blocks + blocks);
	if (!moved)
		vb13_inc(vb, blocks_inflated, blocks);
}

/*
 * Account blocks leaving the balloon; called with vb->lock held.  @listed:
 * a page taken off the kernel's balloon list, which counted it out of the
 * gauge and the vm events already.  @moved: the old page of a migration
 * (blocks_migrated counts it, not blocks_withdrawn).
 */
static void vb13_account_out(struct virtio_balloon13 *vb, struct page *page,
			     unsigned long blocks, bool listed, bool moved)
{
	unsigned long pages = vb13_blocks_to_pages(&vb->geom, blocks);

	vb13_account(vb, page, -(long)pages, !listed);
#ifdef CONFIG_BALLOON
	if (vb->migratable && !listed)
		count_vm_events(BALLOON_INFLATE, pages);
	if (!listed)
		count_vm_events(BALLOON_DEFLATE, pages);
#endif
	WRITE_ONCE(vb->nr_blocks, vb->nr_blocks - blocks);
	if (!moved)
		vb13_inc(vb, blocks_withdrawn, blocks);
}

/* Account and free a whole chunk; called with vb->lock held. */
static void vb13_release_chunk(struct virtio_balloon13 *vb, struct page *page)
{
	vb13_account_out(vb, page,
			 vb13_chunk_blocks(&vb->geom, vb13_chunk_order(page)),
			 false, false);
	vb13_free_chunk(page);
}

/*
 * Account and free the pages on @pages, taken off the kernel's balloon
 * list; called with vb->lock held.  The accounting goes by runs of pages
 * of one zone, not page by page: a deflate frees every page of a
 * migratable balloon on its own.
 */
static void vb13_release_listed(struct virtio_balloon13 *vb,
				struct list_head *pages)
{
	struct page *page, *next, *first = NULL;
	unsigned long blocks, run = 0;

	/* Only a migratable balloon (4 KiB blocks) has pages there. */
	if (list_empty(pages))
		return;
	blocks = vb13_chunk_blocks(&vb->geom, 0);
	list_for_each_entry_safe(page, next, pages, lru) {
		list_del(&page->lru);
		if (first && page_zone(page) != page_zone(first)) {
			vb13_account_out(vb, first, run, true, false);
			run = 0;
		}
		if (!run)
			first = page;
		run += blocks;
		vb13_free_chunk(page);
	}
	if (run)
		vb13_account_out(vb, first, run, true, false);
}

/*
 * Free the first @blocks blocks of a chunk that has more, and put the rest
 * on @rest as split runs.  Called with vb->lock held.
 */
static void vb13_release_head(struct virtio_balloon13 *vb, struct page *page,
			      unsigned long blocks, struct list_head *rest)
{
	unsigned long cut = vb13_blocks_to_pages(&vb->geom, blocks);

	vb13_split_chunk(page, cut, rest);
	vb13_account_out(vb, page, blocks, false, false);
	vb13_free_pages(page, cut);
}

/* The freeing batch in blocks: at least one chunk of the largest order. */
static unsigned long vb13_free_batch(struct virtio_balloon13 *vb)
{
	const struct vb13_geom *g = &vb->geom;

	return max(vb13_pages_to_blocks(g, VB13_FREE_BATCH_BYTES >> PAGE_SHIFT),
		   vb13_chunk_blocks(g, g->max_order));
}

/* --- outputq --------------------------------------------------------------- */

/* Queue the resize worker after @delay unless the device is stopping. */
static void vb13_queue_resize(struct virtio_balloon13 *vb, unsigned long delay,
			      bool now)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->out_lock, flags);
	if (!vb->stop) {
		if (now)
			mod_delayed_work(system_freezable_wq, &vb->resize_work,
					 0);
		else
			queue_delayed_work(system_freezable_wq,
					   &vb->resize_work, delay);
	}
	spin_unlock_irqrestore(&vb->out_lock, flags);
}

/*
 * Put one message on outputq, in one descriptor.  Kicking happens outside
 * the lock: a device may answer from inside the notification.
 */
static int vb13_out_add(struct virtio_balloon13 *vb, void *buf,
			unsigned int len, void *token)
{
	struct virtqueue *vq = vb->vqs[VB13_VQ_OUTPUT];
	struct scatterlist sg;
	unsigned long flags;
	bool kick;
	int err;

	sg_init_one(&sg, buf, len);
	spin_lock_irqsave(&vb->out_lock, flags);
	err = virtqueue_add_outbuf(vq, &sg, 1, token, GFP_ATOMIC);
	if (!err && token != vb->stats_buf) {
		struct vb13_msg *msg = token;

		vb->on_device++;
		vb->withdraw_on_device += msg->withdraw;
		msg->queued = true;
	}
	kick = !err && virtqueue_kick_prepare(vq);
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (kick)
		virtqueue_notify(vq);
	return err;
}

/* The sync slot @buf is the token of, or NULL. */
static struct vb13_sync *vb13_sync_of(struct virtio_balloon13 *vb, void *buf)
{
	struct vb13_sync *sync = buf;

	return sync >= vb->sync && sync < vb->sync + VB13_NR_SYNC ? sync : NULL;
}

static void vb13_out_done(struct virtqueue *vq)
{
	struct virtio_balloon13 *vb = vq->vdev->priv;
	bool any = false, kick = false, stats;
	struct vb13_sync *sync;
	unsigned long flags;
	unsigned int len;
	void *buf;

	spin_lock_irqsave(&vb->out_lock, flags);
	while ((buf = virtqueue_get_buf(vq, &len))) {
		any = true;
		vb->out_returned++;
		/* virtio_ring only hands back tokens we gave it. */
		sync = vb13_sync_of(vb, buf);
		if (buf == vb->stats_buf) {
			kick = true;
			vb->stats_busy = false;
		} else if (sync) {
			kick = true;
			sync->state = VB13_SYNC_USED;
			vb->on_device--;
		} else {
			struct vb13_msg *msg = buf;

			kick |= !msg->own;
			list_add_tail(&msg->list, &vb->done_msgs);
			vb->on_device--;
			vb->withdraw_on_device -= msg->withdraw;
			msg->queued = false;
		}
	}
	/* A STATS answer waits for its buffer, or for room on the ring. */
	stats = vb->stats_pending && !vb->stats_busy;
	if (!vb->stop) {
		/*
		 * Any returned buffer may be the ring room a page list
		 * waits for, so the resize worker looks again at once, even
		 * while it pauses: it keeps its own deadlines.  (Not for a
		 * migration's message: the migration waits for it itself.)
		 */
		if (kick)
			mod_delayed_work(system_freezable_wq, &vb->resize_work,
					 0);
		if (stats)
			queue_work(system_freezable_wq, &vb->req_work);
	}
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (any)
		wake_up(&vb->out_wq);
}

/* Has the sync slot's message come back (or the device been reset)? */
static bool vb13_sync_back(struct virtio_balloon13 *vb, struct vb13_sync *sync)
{
	unsigned long flags;
	bool back;

	spin_lock_irqsave(&vb->out_lock, flags);
	back = sync->state != VB13_SYNC_ON_DEVICE;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	return back;
}

/**
 * vb13_out_send_wait() - send a message and wait until the device returns it
 * @vb: the balloon
 * @sync: the message's slot in vb->sync
 * @buf: the message: header and entries, @len bytes
 * @len: its wire length
 * @timeout: jiffies to wait for the device; MAX_SCHEDULE_TIMEOUT waits
 *	until it returns the buffer or is reset
 *
 * For messages naming memory the guest must not use until the device is
 * done with it.  When every outputq entry is taken, waits for one to come
 * back first.  The sleeps are TASK_IDLE: a device taking long is not a
 * hung task.
 *
 * Context: process context; sleeps; called without the balloon lock (a
 * stop may need it to return the buffers it waits for).
 * Return: 0 when the device returned the buffer used; -ESHUTDOWN when the
 * device is stopping: the message was not sent, or the device was reset
 * while holding it, so it acts on none of it any more; -ETIMEDOUT when it
 * is still on the device after @timeout: @buf stays the device's and the
 * slot busy until it returns; -EBUSY when an earlier message of the slot
 * is still there (nothing sent); or another virtqueue error.
 */
static int vb13_out_send_wait(struct virtio_balloon13 *vb,
			      struct vb13_sync *sync, void *buf,
			      unsigned int len, long timeout)
{
	struct virtqueue *vq;
	struct scatterlist sg;
	unsigned long flags, seen;
	unsigned int state;
	bool kick = false;
	int err;

	sg_init_one(&sg, buf, len);
	for (;;) {
		spin_lock_irqsave(&vb->out_lock, flags);
		seen = vb->out_returned;
		vq = vb->vqs[VB13_VQ_OUTPUT];
		if (vb->stop) {
			err = -ESHUTDOWN;
		} else if (sync->state == VB13_SYNC_ON_DEVICE) {
			err = -EBUSY;
		} else {
			err = virtqueue_add_outbuf(vq, &sg, 1, sync, GFP_ATOMIC);
			if (!err) {
				sync->state = VB13_SYNC_ON_DEVICE;
				vb->on_device++;
				vb->out_notifying++;
				kick = virtqueue_kick_prepare(vq);
			}
		}
		spin_unlock_irqrestore(&vb->out_lock, flags);
		if (err != -ENOSPC)
			break;
		/* Ring full: wait for the device to give an entry back. */
		wait_event_idle(vb->out_wq, READ_ONCE(vb->out_returned) != seen ||
				READ_ONCE(vb->stop));
	}
	if (err)
		return err;

	/* The queue lives until vb13_sync_reset() has seen this through. */
	if (kick)
		virtqueue_notify(vq);
	spin_lock_irqsave(&vb->out_lock, flags);
	vb->out_notifying--;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	wake_up(&vb->out_wq);

	wait_event_idle_timeout(vb->out_wq, vb13_sync_back(vb, sync), timeout);
	spin_lock_irqsave(&vb->out_lock, flags);
	state = sync->state;
	if (state != VB13_SYNC_ON_DEVICE)
		sync->state = VB13_SYNC_IDLE;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	switch (state) {
	case VB13_SYNC_USED:
		return 0;
	case VB13_SYNC_RESET:
		return -ESHUTDOWN;
	default:
		return -ETIMEDOUT;
	}
}

/*
 * After a reset, before the queues go: the device no longer acts on the
 * messages senders wait for; wake them, and wait for any sender still
 * notifying the queue.
 */
static void vb13_sync_reset(struct virtio_balloon13 *vb)
{
	unsigned long flags;
	int i;

	spin_lock_irqsave(&vb->out_lock, flags);
	for (i = 0; i < VB13_NR_SYNC; i++)
		if (vb->sync[i].state == VB13_SYNC_ON_DEVICE)
			vb->sync[i].state = VB13_SYNC_RESET;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	wake_up(&vb->out_wq);
	wait_event(vb->out_wq, !READ_ONCE(vb->out_notifying));
}

/*
 * Account and free every block a message names; called with vb->lock
 * held, once the device can no longer touch them.
 */
static void vb13_release_msg(struct virtio_balloon13 *vb, struct vb13_msg *msg)
{
	struct page *page, *next;

	lockdep_assert_held(&vb->lock);
	list_for_each_entry_safe(page, next, &msg->chunks, lru) {
		list_del(&page->lru);
		vb13_release_chunk(vb, page);
	}
	vb13_release_listed(vb, &msg->listed);
	if (msg->old) {
		/*
		 * Replaced by migration (@moved), or gone with its memory:
		 * the balloon core let go of it, and frees it once neither
		 * it nor this message holds it.
		 */
		vb13_account_out(vb, msg->old, vb13_chunk_blocks(&vb->geom, 0),
				 true, msg->moved);
		put_page(msg->old);
		msg->old = NULL;
	}
}

/* Move returned messages' chunks to the acknowledged lists. */
static void vb13_reap(struct virtio_balloon13 *vb)
{
	struct vb13_msg *msg, *tmp;
	struct page *page, *next;
	unsigned long flags;
	LIST_HEAD(done);

	lockdep_assert_held(&vb->lock);
	spin_lock_irqsave(&vb->out_lock, flags);
	list_splice_init(&vb->done_msgs, &done);
	spin_unlock_irqrestore(&vb->out_lock, flags);

	list_for_each_entry_safe(msg, tmp, &done, list) {
		if (msg->withdraw)	/* the device let go of them: free now */
			vb13_release_msg(vb, msg);
		list_for_each_entry_safe(page, next, &msg->chunks, lru)
			list_move(&page->lru,
				  &vb->acked[vb13_chunk_order(page)]);
		vb->in_flight_blocks -= msg->nr;
		if (msg->withdraw)
			vb->withdrawing -= msg->nr;
		vb13_msg_init(msg);
		list_move(&msg->list, &vb->free_msgs);
	}
}

/* Free a message's chunks; the device must not be able to touch them. */
static void vb13_drop_msg(struct virtio_balloon13 *vb, struct vb13_msg *msg)
{
	lockdep_assert_held(&vb->lock);
	vb13_release_msg(vb, msg);
	vb->in_flight_blocks -= msg->nr;
	if (msg->withdraw)
		vb->withdrawing -= msg->nr;
	vb13_msg_init(msg);
}

/*
 * Send the message being filled, if it names anything.
 *
 * Return: 0; -ENOSPC when the ring is full: the message stays in vb->fill
 * and is sent when a buffer comes back (the callback requeues us); or
 * another virtqueue error: outputq is broken, the message (never sent) is
 * freed, and from now on the balloon only gives memory back.
 */
static int vb13_submit(struct virtio_balloon13 *vb)
{
	struct vb13_msg *msg = vb->fill;
	int err;

	lockdep_assert_held(&vb->lock);
	if (!msg || !msg->nr)
		return 0;
	err = vb13_out_add(vb, msg->buf, vb13_msg_len(msg), msg);
	if (err == -ENOSPC)
		return err;
	if (err) {
		if (!READ_ONCE(vb->broken))
			dev_err(&vb->vdev->dev,
				"outputq failed (%d): giving the balloon back\n",
				err);
		WRITE_ONCE(vb->broken, true);
		vb13_inc(vb, blocks_unsent_freed, msg->nr);
		vb13_drop_msg(vb, msg);
		list_add(&msg->list, &vb->free_msgs);
		vb->fill = NULL;
		vb13_queue_resize(vb, 0, true);
		return err;
	}
	vb->fill = NULL;
	vb->msg_limit = min(vb->msg_limit * 2, vb->geom.msg_pages);
	vb13_inc(vb, messages_pages, 1);
	return 0;
}

/*
 * Start an inflation run with a small message: the device starts on the
 * first chunk at once, and the messages grow (vb13_submit() doubles the
 * limit) while the device works.
 */
static void vb13_slow_start(struct virtio_balloon13 *vb)
{
	const struct vb13_geom *g = &vb->geom;

	vb->msg_limit = clamp(VB13_FIRST_MSG_BYTES >> PAGE_SHIFT,
			      1UL << g->block_order, g->msg_pages);
}

/* Has the message being filled room for a chunk of @order? */
static bool vb13_fill_room(struct virtio_balloon13 *vb, unsigned int order)
{
	return vb13_msg_room(&vb->geom, vb->fill, order) &&
	       vb->fill->pages + (1UL << order) <= vb->msg_limit;
}

/* --- giving memory back ----------------------------------------------------- */

/*
 * Free up to @want blocks of the message being filled: the device has never
 * seen them.  Newest chunks go first; with @exact, the last is split so
 * that exactly @want go, otherwise whole chunks only (at most one chunk
 * more than @want).  The chunks that stay are named again from the start.
 * Return: blocks freed.
 */
static unsigned long vb13_free_unsent(struct virtio_balloon13 *vb,
				      unsigned long want, bool exact)
{
	const struct vb13_geom *g = &vb->geom;
	struct vb13_msg *msg = vb->fill;
	unsigned long freed = 0, blocks;
	struct page *page, *next;
	LIST_HEAD(keep);

	lockdep_assert_held(&vb->lock);
	if (!msg || !msg->nr || !want)
		return 0;
	while (freed < want && !list_empty(&msg->chunks)) {
		page = list_last_entry(&msg->chunks, struct page, lru);
		list_del(&page->lru);
		blocks = vb13_chunk_blocks(g, vb13_chunk_order(page));
		if (exact && blocks > want - freed) {
			vb13_release_head(vb, page, want - freed, &keep);
			freed = want;
			break;
		}
		vb13_release_chunk(vb, page);
		freed += blocks;
	}
	/* Name what stays again: the array must match the chunk list. */
	list_splice_init(&msg->chunks, &keep);
	vb->in_flight_blocks -= msg->nr;
	vb13_msg_init(msg);
	list_for_each_entry_safe(page, next, &keep, lru) {
		list_del(&page->lru);
		vb->in_flight_blocks += vb13_msg_add(g, msg, page);
	}
	vb13_inc(vb, blocks_unsent_freed, freed);
	return freed;
}

/*
 * Most pages moved onto or off the kernel's balloon list at once: its lock
 * is held with interrupts off meanwhile.
 */
#define VB13_LIST_BATCH		1024

/*
 * Take up to @want blocks' worth of pages (at least one page) off the
 * kernel's balloon list (a migratable balloon's acknowledged blocks), at
 * most a batch, onto @pages.  They stay PageOffline, with page_private()
 * 0 (the core may still look at them), and are the caller's to free or
 * name in a WITHDRAW.  Called with vb->lock held.
 * Return: blocks taken; fewer than there are when compaction has some.
 */
static unsigned long vb13_take_listed(struct virtio_balloon13 *vb,
				      struct list_head *pages,
				      unsigned long want)
{
	const struct vb13_geom *g = &vb->geom;
	size_t n;

	lockdep_assert_held(&vb->lock);
	if (!vb->migratable || !want)
		return 0;
	n = clamp(want >> g->sub_shift, 1UL, (unsigned long)VB13_LIST_BATCH);
	n = balloon_page_list_dequeue(&vb->bdev, pages, n);
	return n * vb13_chunk_blocks(g, 0);
}

/*
 * Free acknowledged blocks, largest chunks first, until at most @want (with
 * @exact: a chunk larger than what is left is split) or at least @want
 * (whole chunks) have been freed.  A migratable balloon's acknowledged
 * blocks on the kernel's balloon list go last, a page at a time.
 * Return: blocks freed.
 */
static unsigned long vb13_free_acked(struct virtio_balloon13 *vb,
				     unsigned long want, bool exact)
{
	const struct vb13_geom *g = &vb->geom;
	unsigned long freed = 0, n;
	struct page *page, *next;
	int order;

	lockdep_assert_held(&vb->lock);
	for (order = g->max_order; order >= (int)g->block_order && freed < want;
	     order--) {
		struct list_head *head = &vb->acked[order];
		unsigned long blocks = vb13_chunk_blocks(g, order);

		while (!list_empty(head) && freed < want) {
			page = list_first_entry(head, struct page, lru);
			list_del(&page->lru);
			if (exact && blocks > want - freed) {
				LIST_HEAD(rest);

				vb13_release_head(vb, page, want - freed, &rest);
				list_for_each_entry_safe(page, next, &rest, lru)
					list_move(&page->lru,
						  &vb->acked[vb13_chunk_order(page)]);
				return want;
			}
			vb13_release_chunk(vb, page);
			freed += blocks;
		}
	}
	while (freed < want) {
		LIST_HEAD(pages);

		n = vb13_take_listed(vb, &pages, want - freed);
		if (!n)
			break;
		vb13_release_listed(vb, &pages);
		freed += n;
	}
	return freed;
}

/*
 * Cut a chunk in two: its first @cut pages and the rest, each as naturally
 * aligned split runs (at least a block each), on @head and @rest.
 */
static void vb13_cut_chunk(struct page *page, unsigned long cut,
			   struct list_head *head, struct list_head *rest)
{
	unsigned long pos = 0;

	vb13_split_chunk(page, cut, rest);
	while (pos < cut) {
		unsigned int run = pos ? __ffs(pos) : ilog2(cut);

		while (pos + (1UL << run) > cut)
			run--;
		vb13_chunk_set(page + pos, run, true);
		list_add_tail(&page[pos].lru, head);
		pos += 1UL << run;
	}
}

/*
 * VIRTIO_BALLOON13_F_WITHDRAW: name up to @want acknowledged blocks in one
 * WITHDRAW message, largest chunks first (with @exact, a chunk larger than
 * what is left is cut), and send it.  The blocks stay in the balloon, not
 * to be touched, until the device returns the message (vb13_reap() frees
 * them then).
 * Return: blocks named; 0 when there is nothing to withdraw, no message
 * buffer is free, or the ring is full (a returning buffer requeues us).
 */
static unsigned long vb13_withdraw_acked(struct virtio_balloon13 *vb,
					 unsigned long want, bool exact,
					 unsigned long start_pfn,
					 unsigned long end_pfn)
{
	const struct vb13_geom *g = &vb->geom;
	struct page *page, *next;
	struct vb13_msg *msg;
	unsigned long named = 0;
	int order, err;

	lockdep_assert_held(&vb->lock);
	if (!want || list_empty(&vb->free_msgs))
		return 0;
	msg = list_first_entry(&vb->free_msgs, struct vb13_msg, list);
	vb13_msg_init(msg);
	msg->withdraw = true;
	msg->buf->hdr.type = cpu_to_le32(VIRTIO_BALLOON13_RESP_WITHDRAW);
	for (order = g->max_order; order >= (int)g->block_order &&
	     named < want; order--) {
		struct list_head *acked = &vb->acked[order];
		unsigned long blocks = vb13_chunk_blocks(g, order);

		struct page *tmp;

		list_for_each_entry_safe(page, tmp, acked, lru) {
			LIST_HEAD(head);
			LIST_HEAD(rest);

			if (named >= want)
				break;
			if (page_to_pfn(page) < start_pfn ||
			    page_to_pfn(page) >= end_pfn)
				continue;
			if (exact && blocks > want - named) {
				unsigned long cut = vb13_blocks_to_pages(g,
							want - named);

				if (msg->nr + want - named > g->msg_addrs ||
				    msg->pages + cut > g->msg_pages)
					goto send;
				list_del(&page->lru);
				vb13_cut_chunk(page, cut, &head, &rest);
				list_for_each_entry_safe(page, next, &rest, lru)
					list_move(&page->lru,
						  &vb->acked[vb13_chunk_order(page)]);
			} else if (!vb13_msg_room(g, msg, order)) {
				goto send;
			} else {
				list_move(&page->lru, &head);
			}
			list_for_each_entry_safe(page, next, &head, lru) {
				list_del(&page->lru);
				named += vb13_msg_add(g, msg, page);
			}
		}
	}
	/* Then pages off the kernel's balloon list (it has no ranges). */
	if (start_pfn == 0 && end_pfn == ULONG_MAX) {
		unsigned long room = min3(want - named,
					  (unsigned long)(g->msg_addrs - msg->nr),
					  vb13_pages_to_blocks(g, g->msg_pages -
							       msg->pages));
		LIST_HEAD(pages);

		if (room >> g->sub_shift)
			vb13_take_listed(vb, &pages, room);
		list_for_each_entry_safe(page, next, &pages, lru)
			named += vb13_msg_add_listed(g, msg, page);
	}
send:
	if (!named) {
		vb13_msg_init(msg);
		return 0;
	}
	list_del(&msg->list);
	err = vb13_out_add(vb, msg->buf, vb13_msg_len(msg), msg);
	if (err) {
		/* Not sent: the chunks are acknowledged blocks again. */
		list_for_each_entry_safe(page, next, &msg->chunks, lru)
			list_move(&page->lru, &vb->acked[vb13_chunk_order(page)]);
		if (!list_empty(&msg->listed))
			balloon_page_list_enqueue(&vb->bdev, &msg->listed);
		vb13_msg_init(msg);
		list_add(&msg->list, &vb->free_msgs);
		return 0;
	}
	vb->in_flight_blocks += named;
	vb->withdrawing += named;
	vb13_inc(vb, messages_withdraw, 1);
	return named;
}

/*
 * Give up to one batch of @want blocks back, unsent ones first.  With
 * VIRTIO_BALLOON13_F_WITHDRAW, acknowledged blocks are named in a WITHDRAW
 * message and freed once it comes back.
 * Return: blocks freed or leaving; 0 when nothing can go now (the rest is
 * in flight, or nothing is held).
 */
static unsigned long vb13_release(struct virtio_balloon13 *vb,
				  unsigned long want, bool exact)
{
	unsigned long freed;

	lockdep_assert_held(&vb->lock);
	want = min(want, vb13_free_batch(vb));
	freed = vb13_free_unsent(vb, want, exact);
	if (freed >= want)
		return freed;
	if (virtio_has_feature(vb->vdev, VIRTIO_BALLOON13_F_WITHDRAW))
		return freed + vb13_withdraw_acked(vb, want - freed, exact, 0,
						   ULONG_MAX);
	return freed + vb13_free_acked(vb, want - freed, exact);
}

/* --- balloon migration --------------------------------------------------- */

/*
 * How long a migration waits for the device to return each message, in
 * ms.  The migration core (compaction, memory offlining) calls us with the
 * old and the new page locked, one page at a time, as virtio_balloon's
 * waits for its host.
 */
#define VB13_MIGRATE_WAIT_MS	1000

#ifdef CONFIG_BALLOON_MIGRATION
/*
 * Put acknowledged chunks on the kernel's balloon list, as single pages
 * (what balloon migration moves), at most about @budget pages.  From now
 * on that list counts them in "Balloon:" and the vm events.  Called with
 * vb->lock held.
 * Return: pages listed.
 */
static unsigned long vb13_list_acked(struct virtio_balloon13 *vb,
				     unsigned long budget)
{
	const struct vb13_geom *g = &vb->geom;
	unsigned long listed = 0, i, nr;
	struct page *page;
	int order;

	lockdep_assert_held(&vb->lock);
	for (order = g->max_order; order >= 0 && listed < budget; order--) {
		while (!list_empty(&vb->acked[order]) && listed < budget) {
			LIST_HEAD(pages);

			page = list_first_entry(&vb->acked[order], struct page,
						lru);
			list_del(&page->lru);
			nr = 1UL << order;
			if (order && !(page_private(page) & VB13_CHUNK_SPLIT))
				split_page(page, order);
			for (i = 0; i < nr; i++) {
				set_page_private(page + i, 0);
				list_add_tail(&page[i].lru, &pages);
			}
			mod_node_page_state(page_pgdat(page), NR_BALLOON_PAGES,
					    -(long)nr);
			balloon_page_list_enqueue(&vb->bdev, &pages);
			listed += nr;
		}
	}
	return listed;
}

/*
 * List acknowledged chunks, a batch per hold of the lock: all of them
 * with @all (the worker has nothing else to do), else one batch.  A new
 * target stops it (the worker runs again).
 */
static void vb13_list_all_acked(struct virtio_balloon13 *vb, bool all)
{
	unsigned long target = READ_ONCE(vb->target_blocks), n;

	if (!vb->migratable)
		return;
	do {
		mutex_lock(&vb->lock);
		n = vb13_list_acked(vb, VB13_FREE_BATCH_BYTES >> PAGE_SHIFT);
		mutex_unlock(&vb->lock);
		cond_resched();
	} while (n && all && !READ_ONCE(vb->stop) &&
		 READ_ONCE(vb->target_blocks) == target);
}

/* Has the device returned @msg?  (The caller holds vb->lock: no one reaps.) */
static bool vb13_msg_back(struct virtio_balloon13 *vb, struct vb13_msg *msg)
{
	unsigned long flags;
	bool back;

	spin_lock_irqsave(&vb->out_lock, flags);
	back = !msg->queued;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	return back;
}

/*
 * A migration stops waiting for @msg: from now on its return wakes the
 * resize worker like any other's (which reaps it), and at once if it is
 * back already.
 */
static void vb13_msg_disown(struct virtio_balloon13 *vb, struct vb13_msg *msg)
{
	unsigned long flags;
	bool back;

	spin_lock_irqsave(&vb->out_lock, flags);
	msg->own = false;
	back = !msg->queued;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (back)
		vb13_queue_resize(vb, 0, true);
}

/*
 * Wait for the device to return @msg, a migration's own message: at most
 * VB13_MIGRATE_WAIT_MS, or, where a failed migration can't leave the new
 * page with us (VB13_MIGRATE_KEEPS_NEWPAGE), for as long as it takes, as
 * virtio_balloon does.  Called with vb->lock held.
 * Return: true once it is back.
 */
static bool vb13_wait_msg(struct virtio_balloon13 *vb, struct vb13_msg *msg)
{
	if (!VB13_MIGRATE_KEEPS_NEWPAGE) {
		wait_event(vb->out_wq, vb13_msg_back(vb, msg));
		return true;
	}
	return wait_event_timeout(vb->out_wq, vb13_msg_back(vb, msg),
				  msecs_to_jiffies(VB13_MIGRATE_WAIT_MS));
}

/*
 * Name one page in a message of its own and send it: PAGES (the page on
 * its chunk list), or with @withdraw a WITHDRAW whose @old it is (its lru
 * is the migration core's; the caller gave the message a reference).
 * Called with vb->lock held.
 * Return: the message, or NULL when no buffer is free or outputq refused.
 */
static struct vb13_msg *vb13_send_page(struct virtio_balloon13 *vb,
				       struct page *page, bool withdraw)
{
	const struct vb13_geom *g = &vb->geom;
	struct vb13_msg *msg;
	unsigned int n;

	lockdep_assert_held(&vb->lock);
	if (list_empty(&vb->free_msgs))
		return NULL;
	msg = list_first_entry(&vb->free_msgs, struct vb13_msg, list);
	list_del(&msg->list);
	vb13_msg_init(msg);
	msg->own = true;
	if (withdraw) {
		msg->withdraw = true;
		msg->buf->hdr.type = cpu_to_le32(VIRTIO_BALLOON13_RESP_WITHDRAW);
		n = vb13_encode_chunk(g, msg->buf->page,
				      PFN_PHYS(page_to_pfn(page)), 0);
		msg->nr = n;
		msg->pages = 1;
		msg->old = page;
	} else {
		n = vb13_msg_add(g, msg, page);
	}
	if (vb13_out_add(vb, msg->buf, vb13_msg_len(msg), msg)) {
		if (!withdraw)
			list_del(&page->lru);
		vb13_msg_init(msg);
		list_add(&msg->list, &vb->free_msgs);
		return NULL;
	}
	vb->in_flight_blocks += n;
	if (withdraw) {
		vb->withdrawing += n;
		vb13_inc(vb, messages_withdraw, 1);
	} else {
		vb13_inc(vb, messages_pages, 1);
	}
	return msg;
}

/*
 * The old page of a migration leaves the balloon: with
 * VIRTIO_BALLOON13_F_WITHDRAW the device is told and the page kept until
 * it answers (a while here; else until it does, or a reset); without, it
 * is withdrawn by access.  @moved: a new page took its place (else its
 * memory is going offline).  Called with vb->lock held.
 * Return: 0, or -EAGAIN when no WITHDRAW could be sent.
 */
static int vb13_unballoon_old(struct virtio_balloon13 *vb, struct page *page,
			      bool moved)
{
	struct vb13_msg *msg;

	lockdep_assert_held(&vb->lock);
	if (!virtio_has_feature(vb->vdev, VIRTIO_BALLOON13_F_WITHDRAW)) {
		vb13_account_out(vb, page, vb13_chunk_blocks(&vb->geom, 0),
				 true, moved);
		return 0;
	}
	get_page(page);
	msg = vb13_send_page(vb, page, true);
	if (!msg) {
		put_page(page);
		return -EAGAIN;
	}
	/* No one reaps it before we drop vb->lock. */
	msg->moved = moved;
	if (wait_event_timeout(vb->out_wq, vb13_msg_back(vb, msg),
			       msecs_to_jiffies(VB13_MIGRATE_WAIT_MS)))
		vb13_reap(vb);
	else
		vb13_msg_disown(vb, msg);
	return 0;
}

/*
 * A listed page in memory going offline leaves the balloon instead of
 * moving (MEM_GOING_OFFLINE gives back the rest of the range; the worker
 * finds memory elsewhere afterwards).  Called with vb->lock held; drops it.
 */
static int vb13_migrate_out(struct virtio_balloon13 *vb, struct page *page)
{
	unsigned long blocks = vb13_chunk_blocks(&vb->geom, 0);

	if (vb13_unballoon_old(vb, page, false)) {
		mutex_unlock(&vb->lock);
		return -EAGAIN;
	}
	/* The core counts -ENOENT's page out of the vm events only. */
	mod_node_page_state(page_pgdat(page), NR_BALLOON_PAGES,
			    -(long)vb13_blocks_to_pages(&vb->geom, blocks));
	vb13_inc(vb, hotplug_blocks, blocks);
	mutex_unlock(&vb->lock);
	return vb13_balloon_released(&vb->bdev, page);
}

/**
 * vb13_migratepage() - move a ballooned page (balloon_dev_info.migratepage)
 * @bdev: the balloon's balloon_dev_info
 * @newpage: a free page the migration core allocated, locked
 * @page: an acknowledged page it took off our list, locked
 * @mode: the migration mode (every mode waits for the device alike)
 *
 * The device gets @newpage in a PAGES message of its own, and only once
 * it has returned that (so every listed page is an acknowledged one) does
 * @page leave: named in a WITHDRAW first when that is negotiated, else
 * withdrawn by access.  The device's count stays exact.
 *
 * Context: process context; sleeps.  Takes vb->lock (trylock: inflating
 * or deflating holds it, and its allocation may compact).
 * Return: 0 when @newpage replaced @page (the balloon core then lists it
 * and lets go of @page); -ENOENT (or 0, before the core's rework) when
 * @page left the balloon without a replacement (memory going offline);
 * -EAGAIN to be retried; -EBUSY when the device kept @newpage too long:
 * it stays in the balloon, with @page, until the worker gives one back
 * (from 6.10; before, the migration waits for the device as long as it
 * takes, see vb13_wait_msg()).
 */
static int vb13_migratepage(struct balloon_dev_info *bdev,
			    struct page *newpage, struct page *page,
			    enum migrate_mode mode)
{
	struct virtio_balloon13 *vb = container_of(bdev, struct virtio_balloon13,
						   bdev);
	unsigned long blocks = vb13_chunk_blocks(&vb->geom, 0);
	unsigned long pfn = page_to_pfn(page), flags;
	struct vb13_msg *msg;
	bool off;
	int err;

	if (!mutex_trylock(&vb->lock))
		return -EAGAIN;
	if (READ_ONCE(vb->stop) || READ_ONCE(vb->broken) ||
	    list_empty(&vb->free_msgs))
		goto again;
	if (pfn >= vb->offline_start && pfn < vb->offline_end)
		return vb13_migrate_out(vb, page);

	/* 1. The device takes the new page. */
	page_offline_begin();
	__folio_set_offline(page_folio(newpage));
	page_offline_end();
	vb13_chunk_set(newpage, 0, false);
	get_page(newpage);
	msg = vb13_send_page(vb, newpage, false);
	if (!msg) {
		put_page(newpage);
		__folio_clear_offline(page_folio(newpage));
		goto again;
	}
	vb13_account_in(vb, newpage, blocks, true);
	if (!vb13_wait_msg(vb, msg)) {
		/*
		 * An ordinary block in flight now, and @page stays: the
		 * balloon is a block over until the worker gives one back,
		 * once the device has returned this message (its return
		 * wakes the worker).  Not before: that would only add a
		 * WITHDRAW to the queue of a device already slow.
		 */
		vb13_inc(vb, blocks_inflated, blocks);
		vb13_msg_disown(vb, msg);
		mutex_unlock(&vb->lock);
		return -EBUSY;
	}
	/* Back: this message was ours alone. */
	spin_lock_irqsave(&vb->out_lock, flags);
	list_del(&msg->list);
	spin_unlock_irqrestore(&vb->out_lock, flags);
	list_del(&newpage->lru);
	vb->in_flight_blocks -= msg->nr;
	vb13_msg_init(msg);
	list_add(&msg->list, &vb->free_msgs);
	/* The balloon list counts it from now on, in @page's place. */
	mod_node_page_state(page_pgdat(newpage), NR_BALLOON_PAGES,
			    -(long)vb13_blocks_to_pages(&vb->geom, blocks));

	/* 2. The old page leaves. */
	err = vb13_unballoon_old(vb, page, true);
	if (err && !VB13_MIGRATE_KEEPS_NEWPAGE) {
		/*
		 * No WITHDRAW could be sent: the device broke (outputq has
		 * room for every message), and the migration core can't
		 * leave @newpage with us.  @page is safe to free anyway, its
		 * PAGES buffer came back long ago; only the count of a
		 * device that no longer works stays one over.
		 */
		vb13_account_out(vb, page, blocks, true, true);
	} else if (err) {
		/* Both stay: @newpage as an acknowledged block. */
		vb13_inc(vb, blocks_inflated, blocks);
		mod_node_page_state(page_pgdat(newpage), NR_BALLOON_PAGES,
				    vb13_blocks_to_pages(&vb->geom, blocks));
		list_add(&newpage->lru, &vb->acked[0]);
		mutex_unlock(&vb->lock);
		vb13_queue_resize(vb, 0, true);
		return -EBUSY;
	}
	vb13_inc(vb, blocks_migrated, blocks);
	/*
	 * Our messages' returns left the worker alone; it has work only
	 * when the balloon is off its target (or waits for a buffer).
	 */
	off = vb->nr_blocks != READ_ONCE(vb->target_blocks);
	mutex_unlock(&vb->lock);
	if (off)
		vb13_queue_resize(vb, 0, true);
	vb13_balloon_migrated(bdev, newpage, page);
	put_page(newpage);
	return 0;

again:
	mutex_unlock(&vb->lock);
	return -EAGAIN;
}
#else
static inline void vb13_list_all_acked(struct virtio_balloon13 *vb, bool all)
{
}
#endif

/* --- memory pressure ------------------------------------------------------ */

static bool vb13_nothing_on_device(struct virtio_balloon13 *vb)
{
	unsigned long flags;
	bool none;

	spin_lock_irqsave(&vb->out_lock, flags);
	none = !vb->on_device;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	return none;
}

static bool vb13_no_withdraw_on_device(struct virtio_balloon13 *vb)
{
	unsigned long flags;
	bool none;

	spin_lock_irqsave(&vb->out_lock, flags);
	none = !vb->withdraw_on_device;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	return none;
}

/*
 * May the balloon give memory back on its own?  Only when the device
 * offered VIRTIO_BALLOON13_F_PRESSURE_RELEASE and pressure_release is not
 * 0 (.validate keeps the bit from being negotiated when it was 0 at probe;
 * a later 0 stops releases at once).
 */
static bool vb13_may_release(struct virtio_balloon13 *vb)
{
	return READ_ONCE(vb13_pressure_release) &&
	       virtio_has_feature(vb->vdev, VIRTIO_BALLOON13_F_PRESSURE_RELEASE);
}

/*
 * Pause inflation for oom_hold_ms from now, and with @episode start or
 * extend the pressure episode as long.  Only OOM notifications make an
 * episode: were reclaim's releases to extend it, the shrinker (in its
 * episode mode) would keep itself going and drain the balloon for good.
 * Called with vb->lock held.
 */
static unsigned long vb13_pressure_hold(struct virtio_balloon13 *vb,
					bool episode)
{
	unsigned long hold = msecs_to_jiffies(READ_ONCE(vb13_oom_hold_ms));
	unsigned long until = (jiffies + hold) ?: 1;

	lockdep_assert_held(&vb->lock);
	WRITE_ONCE(vb->hold_until, until);
	if (episode)
		WRITE_ONCE(vb->episode_until, until);
	return hold;
}

/* Is it before the deadline @until (jiffies, 0 = none)?  @left: to go. */
static bool vb13_before(unsigned long until, unsigned long *left)
{
	unsigned long now = jiffies;

	if (!until || time_after_eq(now, until))
		return false;
	*left = until - now;
	return true;
}

/* Is inflation paused by pressure?  @left: jiffies to go. */
static bool vb13_held_off(struct virtio_balloon13 *vb, unsigned long *left)
{
	return vb13_before(READ_ONCE(vb->hold_until), left);
}

/* Is a pressure episode (OOM notifications) going on? */
static bool vb13_in_episode(struct virtio_balloon13 *vb)
{
	unsigned long left;

	return vb13_before(READ_ONCE(vb->episode_until), &left);
}

/*
 * Give back at least @want blocks (whole chunks) under pressure, in
 * batches, and pause inflation (@oom: an OOM notification, which also
 * starts or extends the episode).  Called with vb->lock held; drops it
 * between batches unless @may_sleep is false (then one batch at most).
 * Return: blocks freed.
 */
static unsigned long vb13_release_under_pressure(struct virtio_balloon13 *vb,
						 unsigned long want,
						 bool may_sleep, bool oom)
{
	unsigned long freed = 0, n, hold, before, left = 0;
	unsigned long until = jiffies + msecs_to_jiffies(VB13_WITHDRAW_WAIT_MS);

	lockdep_assert_held(&vb->lock);
	/* No refill while we give back. */
	hold = vb13_pressure_hold(vb, oom);
	vb13_reap(vb);
	before = vb->nr_blocks;
	while (freed < want) {
		n = vb13_release(vb, want - freed, false);
		if (!n && may_sleep && vb->withdrawing &&
		    vb13_before(until, &left)) {
			/*
			 * Every message is on the device, naming blocks we
			 * withdraw: the rest of the batch goes as they come
			 * back, not after another OOM notification each.
			 */
			mutex_unlock(&vb->lock);
			wait_event_timeout(vb->out_wq,
					   vb13_no_withdraw_on_device(vb), left);
			mutex_lock(&vb->lock);
			vb13_reap(vb);
			n = vb13_release(vb, want - freed, false);
		}
		if (!n)
			break;
		freed += n;
		if (!may_sleep)
			break;
		if (freed < want) {
			mutex_unlock(&vb->lock);
			cond_resched();
			mutex_lock(&vb->lock);
		}
	}
	/*
	 * Blocks named in WITHDRAW messages are free once the device has
	 * them back: wait for that, a while.  Those whose message doesn't
	 * come back in time stay in the balloon until it does (or a reset).
	 */
	if (vb->withdrawing && may_sleep && vb13_before(until, &left)) {
		mutex_unlock(&vb->lock);
		wait_event_timeout(vb->out_wq, vb13_no_withdraw_on_device(vb),
				   left);
		mutex_lock(&vb->lock);
		vb13_reap(vb);
	}
	freed = before > vb->nr_blocks ? before - vb->nr_blocks : 0;
	/* Below the floor's limit now, until the worker refills it. */
	if (freed) {
		WRITE_ONCE(vb->held_by_floor, false);
		WRITE_ONCE(vb->held_by_watermark, false);
		/*
		 * The hold-off runs from the release, not from its start:
		 * waiting for WITHDRAW messages may have taken a second of it.
		 */
		hold = vb13_pressure_hold(vb, oom);
	}
	/* Back toward the target once the hold is over. */
	vb13_queue_resize(vb, hold, false);
	if (freed) {
		vb13_inc(vb, pressure_releases, 1);
		vb13_inc(vb, pressure_blocks, freed);
	}
	return freed;
}

/*
 * The last line before an OOM kill: give back a batch.  While notifications
 * keep coming within the hold-off, each gives back twice the one before, so
 * the balloon catches up with a workload in a few rounds of failed reclaim
 * rather than one per oom_release_mib.  Blocks in flight must wait.
 */
static int vb13_oom_notify(struct notifier_block *nb, unsigned long dummy,
			   void *parm)
{
	struct virtio_balloon13 *vb = container_of(nb, struct virtio_balloon13,
						   oom_nb);
	unsigned long *freed = parm, base, batch, blocks;

	if (!vb13_may_release(vb))
		return NOTIFY_OK;

	base = vb13_pages_to_blocks(&vb->geom,
				    ((u64)READ_ONCE(vb13_oom_release_mib) *
				     SZ_1M) >> PAGE_SHIFT);
	base = max(base, 1UL << vb->geom.sub_shift);

	mutex_lock(&vb->lock);
	batch = base;
	if (vb->pressure_batch && vb13_in_episode(vb))
		batch = max(base, min(vb->pressure_batch, ULONG_MAX / 4) * 2);
	WRITE_ONCE(vb->pressure_batch, batch);
	blocks = vb13_release_under_pressure(vb, batch, true, true);
	mutex_unlock(&vb->lock);

	*freed += vb13_blocks_to_pages(&vb->geom, blocks);
	return NOTIFY_OK;
}

static bool vb13_shrinker_active(struct virtio_balloon13 *vb)
{
	if (!vb13_may_release(vb))
		return false;
	switch (READ_ONCE(vb13_shrinker_mode)) {
	case VB13_SHRINK_ALWAYS:
		return true;
	case VB13_SHRINK_PRESSURE:
		return vb13_in_episode(vb);
	default:
		return false;
	}
}

static unsigned long vb13_shrink_count(struct virtio_balloon13 *vb)
{
	struct vb13_msg *fill;
	unsigned long blocks;

	if (!vb13_shrinker_active(vb))
		return 0;
	/*
	 * Everything but what the device holds: acknowledged blocks and
	 * those not sent yet (the first to go).  Racy by design: reclaim
	 * only needs an estimate, and vb->fill always points into vb->msgs.
	 */
	blocks = READ_ONCE(vb->nr_blocks) - READ_ONCE(vb->in_flight_blocks);
	fill = READ_ONCE(vb->fill);
	if (fill)
		blocks += READ_ONCE(fill->nr);
	if ((long)blocks <= 0)
		return 0;
	return vb13_blocks_to_pages(&vb->geom, blocks);
}

static unsigned long vb13_shrink_scan(struct virtio_balloon13 *vb,
				      unsigned long nr_to_scan)
{
	unsigned long want, blocks, pages;

	/* Our own allocation's reclaim must not eat the balloon. */
	if (!vb13_shrinker_active(vb) || READ_ONCE(vb->alloc_task) == current)
		return SHRINK_STOP;
	/*
	 * During an episode at least its current OOM batch (oom_release_mib,
	 * doubled by each notification): reclaim asks in small steps, and a
	 * workload that outruns them pays a reclaim pass per step.  What is
	 * given back counts as reclaimed, so reclaim stops early.  Outside
	 * one, what reclaim asks for: the batch of an episode long over
	 * would empty the balloon in a few calls.
	 */
	want = max(vb13_pages_to_blocks(&vb->geom, nr_to_scan),
		   1UL << vb->geom.sub_shift);
	if (vb13_in_episode(vb))
		want = max(want, READ_ONCE(vb->pressure_batch));
	/* Where reclaim holds shrinker_rwsem around us, never sleep on it. */
	if (VB13_SHRINKER_MAY_SLEEP)
		mutex_lock(&vb->lock);
	else if (!mutex_trylock(&vb->lock))
		return SHRINK_STOP;
	blocks = vb13_release_under_pressure(vb, want, VB13_SHRINKER_MAY_SLEEP,
					     false);
	mutex_unlock(&vb->lock);
	pages = vb13_blocks_to_pages(&vb->geom, blocks);
	mm_account_reclaimed_pages(pages);
	return pages ?: SHRINK_STOP;
}

static struct virtio_balloon13 *vb13_shrinker_vb(struct shrinker *s)
{
	return vb13_shrinker_private(s);
}

static unsigned long vb13_shrinker_count(struct shrinker *s,
					 struct shrink_control *sc)
{
	return vb13_shrink_count(vb13_shrinker_vb(s)) ?: SHRINK_EMPTY;
}

static unsigned long vb13_shrinker_scan(struct shrinker *s,
					struct shrink_control *sc)
{
	unsigned long freed = vb13_shrink_scan(vb13_shrinker_vb(s),
					       sc->nr_to_scan);

	/*
	 * Tell reclaim how much it got: it keeps calling in batches of
	 * nr_to_scan until its own target is scanned, and a batch of ours is
	 * usually larger.
	 */
	if (freed != SHRINK_STOP)
		sc->nr_scanned = max(sc->nr_to_scan, freed);
	return freed;
}

static int vb13_shrinker_init(struct virtio_balloon13 *vb)
{
	char name[64];
	struct shrinker *s;
	int err;

	snprintf(name, sizeof(name), "virtio_balloon13-%s",
		 dev_name(&vb->vdev->dev));
	s = vb13_shrinker_alloc(name);
	if (!s)
		return -ENOMEM;
	vb13_shrinker_set_private(s, vb);
	s->count_objects = vb13_shrinker_count;
	s->scan_objects = vb13_shrinker_scan;
	s->seeks = DEFAULT_SEEKS;
	err = vb13_shrinker_register(s, name);
	if (err)
		return err;
	vb->shrinker = s;
	return 0;
}

static void vb13_shrinker_exit(struct virtio_balloon13 *vb)
{
	if (!vb->shrinker)
		return;
	vb13_shrinker_free(vb->shrinker);
	vb->shrinker = NULL;
}

/* --- inflate and deflate --------------------------------------------------- */

/*
 * Make sure vb->fill has room for a chunk of @order.
 * Return: 0, or -EAGAIN when every message is on the device or the ring is
 * full (a returning buffer requeues us).
 */
static int vb13_make_room(struct virtio_balloon13 *vb, unsigned int order)
{
	int err;

	lockdep_assert_held(&vb->lock);
	if (vb->fill && vb13_fill_room(vb, order))
		return 0;
	err = vb13_submit(vb);
	if (err)
		return err == -ENOSPC ? -EAGAIN : err;
	if (list_empty(&vb->free_msgs))
		return -EAGAIN;
	vb->fill = list_first_entry(&vb->free_msgs, struct vb13_msg, list);
	list_del(&vb->fill->list);
	return 0;
}

/*
 * Has a zone the balloon may allocate from (up to gfp_zone(@gfp)) a chunk
 * of @order free above its high watermark, the boost included, and what it
 * keeps for allocations aimed at higher zones?  The allocator itself hands
 * out pages down to the min watermark.  A balloon that stops there leaves
 * every other allocation to reclaim, and when nothing is reclaimable the
 * next one is an OOM, which takes a batch back, which the balloon takes
 * again once its hold-off ends.  (Watermark boosts stay while kswapd has
 * given up, so that min can be far above the usual one.)  @high: the
 * zones' high watermarks added up.  Racy by design.
 */
static bool vb13_zone_headroom(unsigned int order, gfp_t gfp,
			       unsigned long *high)
{
	enum zone_type top = gfp_zone(gfp);
	bool room = false;
	int nid, z;

	*high = 0;
	for_each_online_node(nid) {
		for (z = 0; z <= top; z++) {
			struct zone *zone = &NODE_DATA(nid)->node_zones[z];
			unsigned long mark;

			if (!populated_zone(zone))
				continue;
			mark = high_wmark_pages(zone) +
			       max(zone->lowmem_reserve[top], 0L);
			*high += high_wmark_pages(zone);
			if (zone_page_state(zone, NR_FREE_PAGES) >=
			    mark + (1UL << order))
				room = true;
		}
	}
	return room;
}

/*
 * Could reclaim find memory other than the balloon's: more page cache (and
 * anonymous memory, with swap) than the high watermarks it must refill?
 */
static bool vb13_reclaimable(unsigned long high)
{
	unsigned long pages = global_node_page_state(NR_ACTIVE_FILE) +
			      global_node_page_state(NR_INACTIVE_FILE);

	if (get_nr_swap_pages() > 0)
		pages += global_node_page_state(NR_ACTIVE_ANON) +
			 global_node_page_state(NR_INACTIVE_ANON);
	return pages > high;
}

/*
 * vb13_alloc_chunk_gfp(), but free memory only above the watermarks, and
 * reclaim only when there is something to reclaim besides the balloon;
 * held_by_watermark says when that stops the balloon.
 */
static struct page *vb13_alloc_wmark(struct virtio_balloon13 *vb,
				     unsigned int order, gfp_t base)
{
	const struct vb13_geom *g = &vb->geom;
	unsigned long high;
	bool room = vb13_zone_headroom(order, base, &high);
	bool reclaim = order == g->block_order && vb13_reclaimable(high);

	WRITE_ONCE(vb->held_by_watermark, !room && !reclaim);
	if (!room && !reclaim)
		return NULL;
	return vb13_alloc_chunk_gfp(g, order, base, room, reclaim);
}

/*
 * ZONE_MOVABLE first: memory the kernel can't use anyway.  A movable
 * allocation that lands in another zone (ZONE_MOVABLE has no chunk of that
 * order free) is given back: there the balloon allocates unmovable, so it
 * doesn't scatter unmovable pages through movable pageblocks, and only as
 * far as the kernel's zones keep the floor.
 */
static struct page *vb13_alloc_zoned(struct virtio_balloon13 *vb,
				     unsigned int order)
{
	const struct vb13_geom *g = &vb->geom;
	struct page *page;

	if (!vb->movable_exhausted && vb13_movable_managed()) {
		page = vb13_alloc_wmark(vb, order, GFP_HIGHUSER_MOVABLE);
		if (page && page_zonenum(page) == ZONE_MOVABLE)
			return page;
		if (page)
			vb13_free_chunk(page);
		if (order > g->block_order)
			return NULL;	/* a smaller one may still be there */
		vb->movable_exhausted = true;
	}
	if (READ_ONCE(vb->held_pages) - READ_ONCE(vb->movable_pages) +
	    (1UL << order) > vb13_kernel_budget(vb)) {
		WRITE_ONCE(vb->held_by_zones, true);
		return NULL;
	}
	WRITE_ONCE(vb->held_by_zones, false);
	/*
	 * Pages balloon migration can move are movable like any user page
	 * (compaction can then make room for huge pages around them), unless
	 * they fill holes among unmovable pages (vb13_hole_order()).
	 */
	return vb13_alloc_wmark(vb, order, vb->migratable ?
				vb->alloc_gfp : GFP_HIGHUSER);
}

static struct page *vb13_alloc(struct virtio_balloon13 *vb, unsigned int order)
{
	struct page *page;

#if IS_ENABLED(CONFIG_VIRTIO_BALLOON13_KUNIT_TEST)
	struct page *(*stub)(struct virtio_balloon13 *vb, unsigned int order);

	stub = READ_ONCE(vb->alloc_stub);
	if (stub)
		return stub(vb, order);
#endif
	WRITE_ONCE(vb->alloc_task, current);
	page = vb13_alloc_zoned(vb, order);
	WRITE_ONCE(vb->alloc_task, NULL);
	return page;
}

/*
 * More free pieces of @order than this, of every type together, before
 * the balloon takes those of migratetype @mt.  The free lists don't count
 * their pieces by type; a few unmovable pieces of a per-cpu order among
 * many movable ones would be gone within one refill, which then steals.
 * Long-lived unmovable pages with one-page holes between them leave
 * thousands.
 */
static unsigned long vb13_hole_min(int mt, unsigned int order)
{
	return mt != MIGRATE_MOVABLE && order <= PAGE_ALLOC_COSTLY_ORDER ?
	       VB13_SMALL_HOLES : 1;
}

/*
 * Free memory in pieces smaller than a pageblock, which no huge page can
 * use: the largest order below pageblock_order (and at least a block)
 * with more than one free block in a zone the balloon allocates from, or
 * -1 when there is none.  One block per order doesn't count: that is what
 * splitting a pageblock for a smaller chunk leaves behind, and chasing it
 * would take pageblocks apart piece by piece.  Pieces in pageblocks of
 * unmovable (or reclaimable) allocations come first, whatever their
 * order above PAGE_ALLOC_COSTLY_ORDER: compaction never makes a huge page
 * there, while around movable pages it can.  Up to that order a request
 * is served from the per-cpu lists, which refill a batch at a time and,
 * once the pieces of that type run out, steal a whole movable pageblock:
 * the opposite of what we want.  So those orders only while @small, which
 * the caller clears for the run once a pageblock's worth of chunks in a
 * row turned out to be no holes (vb13_in_hole()), and only where there
 * are many (vb13_hole_min()): at most one batch goes past the holes per
 * run.  @gfp: flags of that migratetype, which the buddy allocator serves
 * those pieces to (a request of another one takes a piece of its own
 * type, or steals a whole pageblock, first).  Racy by design.
 */
static int vb13_hole_order(const struct vb13_geom *g, gfp_t *gfp, bool small)
{
	static const struct {
		int mt;
		gfp_t gfp;
	} kinds[] = {
		{ MIGRATE_UNMOVABLE, GFP_HIGHUSER },
		{ MIGRATE_RECLAIMABLE, GFP_HIGHUSER | __GFP_RECLAIMABLE },
		{ MIGRATE_MOVABLE, GFP_HIGHUSER_MOVABLE },
	};
	int nid, z, o, k, best, low;

	if (g->block_order >= pageblock_order)
		return -1;
	for (k = 0; k < ARRAY_SIZE(kinds); k++) {
		best = -1;
		low = g->block_order;
		if (kinds[k].mt != MIGRATE_MOVABLE && !small)
			low = max(low, PAGE_ALLOC_COSTLY_ORDER + 1);
		for_each_online_node(nid) {
			pg_data_t *pgdat = NODE_DATA(nid);

			for (z = 0; z < MAX_NR_ZONES; z++) {
				struct zone *zone = &pgdat->node_zones[z];

				/* ZONE_DMA's 16 MiB: not where the balloon goes. */
				if (!populated_zone(zone) ||
				    zone_managed_pages(zone) < SZ_64M >> PAGE_SHIFT)
					continue;
				for (o = pageblock_order - 1; o > best &&
				     o >= low; o--) {
					struct free_area *area = &zone->free_area[o];
					struct list_head *list =
						&area->free_list[kinds[k].mt];
					unsigned long nr_free;
					bool none;

					/* Estimates: no zone lock on this path. */
					nr_free = data_race(area->nr_free);
					/* As above. */
					none = data_race(list_empty(list));
					if (nr_free > vb13_hole_min(kinds[k].mt, o) &&
					    !none) {
						best = o;
						break;
					}
				}
			}
		}
		if (best >= 0) {
			*gfp = kinds[k].gfp;
			return best;
		}
	}
	return -1;
}

/*
 * Was @page (of @order) a hole, a piece whose buddy someone else holds?
 * Pieces cut from a larger free block (what a per-cpu refill steals once
 * the holes are gone) have their buddies free (no reference: in the buddy
 * or per-cpu lists) or taken by the balloon just before.  Racy by design:
 * a wrong answer costs at most one batch.
 */
VISIBLE_IF_KUNIT bool vb13_in_hole(struct page *page, unsigned int order)
{
	struct page *buddy = pfn_to_online_page(page_to_pfn(page) ^
						 (1UL << order));
	bool held, ours;

	if (!buddy)
		return false;
	/* Someone else's page, unlocked: it may be freed meanwhile. */
	held = data_race(page_ref_count(buddy)) > 0;
	/* As above. */
	ours = data_race(PageOffline(buddy));
	return held && !ours;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_in_hole);

/*
 * Allocate one chunk toward @target and add it to the message being
 * filled.  The allocation runs without vb->lock: it may reclaim, and the
 * OOM notifier and the shrinker take that lock.  The message goes out when
 * it is full, or at once when the device has nothing else to work on.
 * Return: 0 on progress, -EAGAIN to wait for the device, -ENOMEM, or
 * another virtqueue error.
 */
static int vb13_inflate_one(struct virtio_balloon13 *vb, unsigned long target)
{
	const struct vb13_geom *g = &vb->geom;
	/*
	 * Only this worker adds blocks; the OOM notifier only takes some,
	 * and blocks being withdrawn are on their way out.
	 */
	unsigned long need = target - (READ_ONCE(vb->nr_blocks) -
				       READ_ONCE(vb->withdrawing));
	unsigned int order = vb->alloc_order;
	struct page *page;
	int err, hole;

	/* Never overshoot the target, nor a message's current limit. */
	while (order > g->block_order && (vb13_chunk_blocks(g, order) > need ||
					  (1UL << order) > vb->msg_limit))
		order--;
	/*
	 * Huge pages: take the free pieces no huge page can use first, and
	 * whole free pageblocks only when those are gone.  (The buddy
	 * allocator serves an order from the smallest free block that fits.)
	 */
	vb->alloc_gfp = GFP_HIGHUSER_MOVABLE;
	hole = READ_ONCE(vb13_fill_holes) ?
	       vb13_hole_order(g, &vb->alloc_gfp,
			       vb->small_misses < VB13_SMALL_MISSES) : -1;
	if (hole >= 0 && hole < (int)order)
		order = hole;

	mutex_lock(&vb->lock);
	/*
	 * Nor the room left in the message being filled: the chunk orders
	 * of a run vary (the holes taken first come in every order below a
	 * pageblock), and a chunk larger than what is left would send the
	 * message short of its limit.  The tail is filled with smaller ones.
	 */
	while (order > g->block_order && vb->fill && vb->fill->nr &&
	       !vb13_fill_room(vb, order))
		order--;
	err = vb13_make_room(vb, order);
	mutex_unlock(&vb->lock);
	if (err)
		return err;

	for (;;) {
		page = vb13_alloc(vb, order);
		if (page || order == g->block_order)
			break;
		/* High orders are gone for now; don't retry them this run. */
		vb->alloc_order = --order;
	}
	/*
	 * The per-cpu lists went past the holes (a pageblock's worth of
	 * pieces in a row that were none; shorter runs among holes are what
	 * the lists held before): no more small pieces this run.
	 */
	if (page && hole >= 0 && order <= PAGE_ALLOC_COSTLY_ORDER &&
	    vb->alloc_gfp != GFP_HIGHUSER_MOVABLE &&
	    page_zonenum(page) != ZONE_MOVABLE &&
	    vb->small_misses < VB13_SMALL_MISSES)
		vb->small_misses = vb13_in_hole(page, order) ? 0 :
				   vb->small_misses + (1U << order);
	if (!page) {
		/* Held by the watermarks is a choice, not a failure. */
		if (!READ_ONCE(vb->held_by_watermark))
			vb13_inc(vb, alloc_failures, 1);
		return -ENOMEM;
	}

	mutex_lock(&vb->lock);
	/* Only we set vb->fill; others only take chunks out of it. */
	vb->in_flight_blocks += vb13_msg_add(g, vb->fill, page);
	vb13_account_in(vb, page, vb13_chunk_blocks(g, order), false);
	/* Full: not even a block more fits. */
	if (!vb13_fill_room(vb, g->block_order))
		vb13_submit(vb);	/* on failure, sent once room appears */
	mutex_unlock(&vb->lock);
	return 0;
}

/* After an allocation failure: pause inflation, twice as long as last. */
static void vb13_backoff(struct virtio_balloon13 *vb)
{
	unsigned int ms = clamp(vb->backoff_ms * 2, VB13_BACKOFF_MIN_MS,
				VB13_BACKOFF_MAX_MS);
	unsigned long delay = msecs_to_jiffies(ms);

	/* Only this worker writes them; debugfs reads them locklessly. */
	WRITE_ONCE(vb->backoff_ms, ms);
	WRITE_ONCE(vb->backoff_until, (jiffies + delay) ?: 1);
	vb13_queue_resize(vb, delay, false);
}

static void vb13_backoff_reset(struct virtio_balloon13 *vb)
{
	WRITE_ONCE(vb->backoff_ms, 0);
	WRITE_ONCE(vb->backoff_until, 0);
}

/*
 * Must inflation wait (pressure hold-off, or allocation backoff)?  The
 * worker may run early (a buffer came back, a request arrived); it keeps
 * these deadlines itself.  @left: jiffies to go.
 */
static bool vb13_paused(struct virtio_balloon13 *vb, unsigned long *left)
{
	unsigned long hold = 0, backoff = 0;
	bool h = vb13_held_off(vb, &hold);
	bool b = vb13_before(READ_ONCE(vb->backoff_until), &backoff);

	*left = max(hold, backoff);
	return h || b;
}

/* The target the floor allows; updates held_by_floor.  Under vb->lock. */
static unsigned long vb13_effective_target(struct virtio_balloon13 *vb)
{
	/*
	 * A crash kernel needs all it has: the dump tools run in it.  A
	 * balloon whose outputq broke can only give memory back.
	 */
	unsigned long want = vb->in_kdump || READ_ONCE(vb->broken) ? 0 :
			     READ_ONCE(vb->target_blocks);
	unsigned long max = vb13_max_blocks(vb);

	WRITE_ONCE(vb->held_by_floor, want > max && vb->nr_blocks >= max);
	return min(want, max);
}

static void vb13_resize_fn(struct work_struct *work)
{
	struct virtio_balloon13 *vb = container_of(to_delayed_work(work),
						   struct virtio_balloon13,
						   resize_work);
	const struct vb13_geom *g = &vb->geom;
	unsigned long target, left, held;
	int err;

	vb->alloc_order = g->max_order;
	vb->movable_exhausted = false;
	vb->small_misses = 0;
	for (;;) {
		if (READ_ONCE(vb->stop))
			return;

		mutex_lock(&vb->lock);
		vb13_reap(vb);
		target = vb13_effective_target(vb);
		/* Blocks being withdrawn are on their way out already. */
		held = vb->nr_blocks - vb->withdrawing;

		if (held >= target)
			WRITE_ONCE(vb->held_by_watermark, false);
		if (held > target) {
			/* Unsent blocks first: the device never sees them. */
			unsigned long freed = vb13_release(vb, held - target,
							   true);

			mutex_unlock(&vb->lock);
			if (!freed)
				return;	/* all in flight: outputq requeues us */
			cond_resched();
			continue;
		}
		if (held == target && vb->withdrawing) {
			/* The last WITHDRAW's return requeues us. */
			mutex_unlock(&vb->lock);
			return;
		}
		if (vb->nr_blocks == target) {
			/*
			 * Reached: let the device see the last partial
			 * message.  If outputq is full, its callback
			 * requeues us.
			 */
			vb13_submit(vb);
			vb13_slow_start(vb);
			mutex_unlock(&vb->lock);
			vb13_backoff_reset(vb);
			/* Migratable from now on. */
			vb13_list_all_acked(vb, true);
			return;
		}
		if (vb13_paused(vb, &left)) {
			/* No partial message waits out a pause. */
			vb13_submit(vb);
			vb13_slow_start(vb);
			mutex_unlock(&vb->lock);
			vb13_queue_resize(vb, left, false);
			vb13_list_all_acked(vb, true);
			return;
		}
		mutex_unlock(&vb->lock);

		err = vb13_inflate_one(vb, target);
		if (err == -EAGAIN) {
			/* While the device works: the outputq callback requeues us. */
			vb13_list_all_acked(vb, false);
			return;
		}
		if (err == -ENOMEM) {
			/* Let the device have what we have; try again later. */
			mutex_lock(&vb->lock);
			vb13_submit(vb);
			vb13_slow_start(vb);
			mutex_unlock(&vb->lock);
			vb13_backoff(vb);
			vb13_list_all_acked(vb, true);
			return;
		}
		if (err)
			continue;	/* outputq broke: now the target is 0 */
		vb13_backoff_reset(vb);
		cond_resched();
	}
}

/* --- inputq --------------------------------------------------------------- */

static int vb13_post_req(struct virtio_balloon13 *vb,
			 struct virtio_balloon13_req *req)
{
	struct scatterlist sg;

	memset(req, 0, sizeof(*req));
	sg_init_one(&sg, req, sizeof(*req));
	return virtqueue_add_inbuf(vb->vqs[VB13_VQ_INPUT], &sg, 1, req,
				   GFP_KERNEL);
}

static void vb13_in_done(struct virtqueue *vq)
{
	struct virtio_balloon13 *vb = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&vb->out_lock, flags);
	if (!vb->stop)
		queue_work(system_freezable_wq, &vb->req_work);
	spin_unlock_irqrestore(&vb->out_lock, flags);
}

/* Answer a STATS request, or remember it if the last answer is still out. */
static void vb13_send_stats(struct virtio_balloon13 *vb)
{
	unsigned long flags;
	unsigned int n;
	bool busy;

	spin_lock_irqsave(&vb->out_lock, flags);
	busy = vb->stats_busy;
	if (busy) {
		if (vb->stats_pending)
			vb13_inc(vb, stats_coalesced, 1);
		vb->stats_pending = true;
	} else {
		vb->stats_busy = true;	/* the buffer is ours to fill */
		vb->stats_pending = false;
	}
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (busy)
		return;

	n = vb13_fill_stats(vb->stats_buf,
			    virtio_has_feature(vb->vdev,
					       VIRTIO_BALLOON13_F_FULL_STATS));
	if (vb13_out_add(vb, vb->stats_buf, vb13_stats_len(n), vb->stats_buf)) {
		spin_lock_irqsave(&vb->out_lock, flags);
		vb->stats_busy = false;
		vb->stats_pending = true;	/* retried when outputq drains */
		spin_unlock_irqrestore(&vb->out_lock, flags);
		return;
	}
	vb13_inc(vb, messages_stats, 1);
}

/*
 * The STATS push timer (VIRTIO_BALLOON13_F_FULL_STATS): an answer is due,
 * sent by the request worker like one the device asked for.
 */
static void vb13_stats_push_fn(struct work_struct *work)
{
	struct virtio_balloon13 *vb = container_of(to_delayed_work(work),
						   struct virtio_balloon13,
						   stats_work);
	unsigned long flags;
	unsigned int ms;

	spin_lock_irqsave(&vb->out_lock, flags);
	ms = vb->stats_interval_ms;
	if (ms && !vb->stop) {
		if (vb->stats_pending)
			vb13_inc(vb, stats_coalesced, 1);
		vb->stats_pending = true;
		vb13_inc(vb, stats_pushed, 1);
		queue_work(system_freezable_wq, &vb->req_work);
		queue_delayed_work(system_freezable_wq, &vb->stats_work,
				   msecs_to_jiffies(ms));
	}
	spin_unlock_irqrestore(&vb->out_lock, flags);
}

/*
 * REQ_STATS_INTERVAL: push STATS every @ms milliseconds (raised to
 * VB13_STATS_MIN_MS), or no more for 0.  The first push comes one interval
 * after the request (a device that wants statistics at once asks with
 * STATS, as QEMU's does); the same interval again changes nothing.
 */
static void vb13_set_stats_interval(struct virtio_balloon13 *vb, u64 ms)
{
	unsigned int want = ms ? clamp_t(u64, ms, VB13_STATS_MIN_MS, UINT_MAX) : 0;
	unsigned long flags;

	spin_lock_irqsave(&vb->out_lock, flags);
	if (want != vb->stats_interval_ms) {
		WRITE_ONCE(vb->stats_interval_ms, want);
		if (!want)
			cancel_delayed_work(&vb->stats_work);
		else if (!vb->stop)
			mod_delayed_work(system_freezable_wq, &vb->stats_work,
					 msecs_to_jiffies(want));
	}
	spin_unlock_irqrestore(&vb->out_lock, flags);
}

/* After a restore: pushes go on at the interval the device last set. */
static void vb13_stats_push_resume(struct virtio_balloon13 *vb)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->out_lock, flags);
	if (vb->stats_interval_ms && !vb->stop)
		mod_delayed_work(system_freezable_wq, &vb->stats_work,
				 msecs_to_jiffies(vb->stats_interval_ms));
	spin_unlock_irqrestore(&vb->out_lock, flags);
}

static void vb13_handle_req(struct virtio_balloon13 *vb,
			    struct virtio_balloon13_req *req, unsigned int len)
{
	struct device *dev = &vb->vdev->dev;
	unsigned long target, old;
	u32 type;
	u64 value;
	bool clamped;

	if (len != sizeof(*req)) {
		vb13_inc(vb, requests_malformed, 1);
		dev_warn_ratelimited(dev, "request of %u bytes ignored (want %zu)\n",
				     len, sizeof(*req));
		return;
	}
	type = le32_to_cpu(req->type);
	value = le64_to_cpu(req->value);
	switch (type) {
	case VIRTIO_BALLOON13_REQ_RESIZE:
		vb13_inc(vb, requests_resize, 1);
		WRITE_ONCE(vb->target_bytes, value);
		/*
		 * Keep the target as asked (in whole blocks); the resize
		 * worker applies the floor.
		 */
		target = vb13_target_blocks(&vb->geom, value, ULONG_MAX,
					    &clamped);
		old = READ_ONCE(vb->target_blocks);
		WRITE_ONCE(vb->target_blocks, target);
		clamped = target > vb13_max_blocks(vb);
		if (clamped) {
			vb13_inc(vb, targets_clamped, 1);
			dev_info_ratelimited(dev, "target %llu bytes is more than the guest can give; clamped\n",
					     value);
		}
		/*
		 * A new target redirects at once.  It cuts an allocation
		 * backoff short only when it needs no allocation (the balloon
		 * holds that much already): a device alternating between
		 * targets, or repeating one, can't drive a reclaim storm.
		 */
		if (target != old) {
			if (target <= READ_ONCE(vb->nr_blocks))
				WRITE_ONCE(vb->backoff_until, 0);
			vb13_queue_resize(vb, 0, true);
		}
		break;
	case VIRTIO_BALLOON13_REQ_STATS:
		vb13_inc(vb, requests_stats, 1);
		vb13_send_stats(vb);
		break;
	case VIRTIO_BALLOON13_REQ_STATS_INTERVAL:
		if (virtio_has_feature(vb->vdev, VIRTIO_BALLOON13_F_FULL_STATS)) {
			vb13_inc(vb, requests_stats_interval, 1);
			vb13_set_stats_interval(vb, value);
			break;
		}
		fallthrough;	/* not negotiated: an unknown request */
	default:
		vb13_inc(vb, requests_unknown, 1);
		dev_warn_ratelimited(dev, "unknown request type %u ignored\n",
				     type);
	}
}

static void vb13_req_fn(struct work_struct *work)
{
	struct virtio_balloon13 *vb = container_of(work, struct virtio_balloon13,
						   req_work);
	struct virtqueue *vq = vb->vqs[VB13_VQ_INPUT];
	unsigned int budget = max(READ_ONCE(vb13_req_budget), 1U);
	struct virtio_balloon13_req *req;
	unsigned int len, n = 0;
	unsigned long flags;
	bool pending, kick;

	/*
	 * A bounded number per run: a device that returns buffers as fast
	 * as we post them must not keep this worker going for ever.
	 */
	while (n < budget && (req = virtqueue_get_buf(vq, &len))) {
		n++;
		vb13_handle_req(vb, req, len);
		if (vb13_post_req(vb, req))
			dev_warn_ratelimited(&vb->vdev->dev,
					     "could not re-post a request buffer\n");
	}
	spin_lock_irqsave(&vb->out_lock, flags);
	kick = vb->in_kick;
	vb->in_kick = false;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (n || kick)
		virtqueue_kick(vq);

	spin_lock_irqsave(&vb->out_lock, flags);
	pending = vb->stats_pending && !vb->stats_busy;
	if (n == budget && !vb->stop) {
		vb13_inc(vb, request_budget_hits, 1);
		queue_work(system_freezable_wq, &vb->req_work);
	}
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (pending) {
		vb13_send_stats(vb);
		n++;
	}
	if (!n && !kick)
		vb13_inc(vb, spurious_callbacks, 1);
}

/* --- free page reporting --------------------------------------------------- */

/**
 * DOC: Free page reporting
 *
 * With VIRTIO_BALLOON13_F_REPORTING the driver registers with the kernel's
 * page reporting core, asking for free pages of at least
 * max(pageblock_order, block order).  The core takes free buddy pages off
 * the free lists in batches and calls vb13_report(), which names them in
 * one REPORT message (a range per page) and sleeps until the device has
 * returned it: the device may discard them only until then, so the core
 * puts them back on the free lists, reusable at once, only after that.
 * Reported memory never enters the balloon and is never accounted.
 *
 * Pages smaller than a block (the core's order is one global, which an
 * admin or an earlier device may have set lower than our block) are left
 * out of the message.  Reporting is not offered when the guest depends on
 * what free pages hold: page poisoning checks a non-zero pattern, which a
 * discarded page does not read back.  (init_on_free is fine: its free
 * pages hold zeroes, and a discarded page reads back zeroes or its old
 * data.)  Only one device in the system can report; a second one runs
 * without.  Reporting stops with the device (freeze, remove): the reset
 * wakes a report still waiting, then the driver unregisters; it registers
 * again on restore.
 */

/* Send the @n ranges in report_buf, naming @bytes, and wait for them. */
static int vb13_report_send(struct virtio_balloon13 *vb, unsigned int n,
			    u64 bytes)
{
	struct virtio_balloon13_report *msg = vb->report_buf;
	int err;

	msg->hdr.type = cpu_to_le32(VIRTIO_BALLOON13_RESP_REPORT);
	msg->hdr.reserved = 0;
	err = vb13_out_send_wait(vb, &vb->sync[VB13_SYNC_REPORT], msg,
				 struct_size(msg, range, n),
				 MAX_SCHEDULE_TIMEOUT);
	if (err) {
		/* The pages go back unreported; the device is stopping. */
		vb13_inc(vb, report_aborted, 1);
		return err;
	}
	vb13_inc(vb, messages_report, 1);
	vb13_inc(vb, report_bytes, bytes);
	return 0;
}

/*
 * The page reporting core's callback: the free pages in @sgl go to the
 * device in one REPORT message (more if there are more than it holds).
 * Context: the core's worker; sleeps until the device returned them.
 */
static int vb13_report(struct page_reporting_dev_info *pr,
		       struct scatterlist *sgl, unsigned int nents)
{
	struct virtio_balloon13 *vb = container_of(pr, struct virtio_balloon13,
						   pr_dev_info);
	struct virtio_balloon13_range *r = vb->report_buf->range;
	u64 block = 1ULL << vb->geom.page_bits, bytes = 0, addr, len;
	struct scatterlist *sg;
	unsigned int i, n = 0;
	int err;

	for_each_sg(sgl, sg, nents, i) {
		addr = PFN_PHYS(page_to_pfn(sg_page(sg))) + sg->offset;
		len = sg->length;
		if (len < block || !IS_ALIGNED(addr | len, block)) {
			vb13_inc(vb, report_skipped, 1);
			continue;
		}
		r[n].addr = cpu_to_le64(addr);
		r[n].len = cpu_to_le64(len);
		bytes += len;
		if (++n == VB13_REPORT_RANGES) {
			err = vb13_report_send(vb, n, bytes);
			if (err)
				return err;
			n = 0;
			bytes = 0;
		}
	}
	return n ? vb13_report_send(vb, n, bytes) : 0;
}

/* After a successful start: report free pages if negotiated. */
static void vb13_reporting_start(struct virtio_balloon13 *vb)
{
	struct device *dev = &vb->vdev->dev;
	int err;

	if (!IS_ENABLED(CONFIG_PAGE_REPORTING) ||
	    !virtio_has_feature(vb->vdev, VIRTIO_BALLOON13_F_REPORTING))
		return;
	if (!vb->report_buf) {
		vb->report_buf = kmalloc(struct_size(vb->report_buf, range,
						     VB13_REPORT_RANGES),
					 GFP_KERNEL);
		if (!vb->report_buf) {
			dev_warn(dev, "no memory for free page reporting\n");
			return;
		}
	}
	vb->pr_dev_info.report = vb13_report;
	vb->pr_dev_info.order = max_t(unsigned int, pageblock_order,
				      vb->geom.block_order);
	err = page_reporting_register(&vb->pr_dev_info);
	if (err) {
		dev_info(dev, "free page reporting not started (%d%s)\n", err,
			 err == -EBUSY ? ": another device reports" : "");
		return;
	}
	vb->reporting = true;
}

/*
 * After the device was stopped: the core calls us no more once this
 * returns.  A report still waiting was woken by the reset.
 */
static void vb13_reporting_stop(struct virtio_balloon13 *vb)
{
	if (!vb->reporting)
		return;
	page_reporting_unregister(&vb->pr_dev_info);
	vb->reporting = false;
}

/* --- limits that change: memory hotplug, floor_mib ------------------------- */

/* Every bound balloon, for what changes all their limits at once. */
static LIST_HEAD(vb13_instances);
static DEFINE_MUTEX(vb13_instances_lock);

/* floor_mib written: every balloon moves to what the new floor allows. */
VISIBLE_IF_KUNIT
int vb13_floor_mib_set(const char *val, const struct kernel_param *kp)
{
	struct virtio_balloon13 *vb;
	int err;

	err = param_set_uint(val, kp);
	if (err)
		return err;
	mutex_lock(&vb13_instances_lock);
	list_for_each_entry(vb, &vb13_instances, instance)
		vb13_queue_resize(vb, 0, true);
	mutex_unlock(&vb13_instances_lock);
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_floor_mib_set);

/*
 * How long offlining waits for the device to return messages, in ms: an
 * admin operation, which a slow (loaded, emulated) host should not fail.
 */
#define VB13_OFFLINE_WAIT_MS	5000

static bool vb13_in_range(struct page *page, unsigned long start,
			  unsigned long end)
{
	unsigned long pfn = page_to_pfn(page);

	return pfn >= start && pfn < end;
}

/* Does a page list the device holds name memory in [start, end)? */
static bool vb13_range_on_device(struct virtio_balloon13 *vb,
				 unsigned long start, unsigned long end)
{
	struct page *page;
	unsigned int i;

	lockdep_assert_held(&vb->lock);
	for (i = 0; i < vb->nr_msgs; i++) {
		if (&vb->msgs[i] == vb->fill)
			continue;
		list_for_each_entry(page, &vb->msgs[i].chunks, lru)
			if (vb13_in_range(page, start, end))
				return true;
	}
	return false;
}

/*
 * Memory in [start, end) is going offline: give back every block of it
 * the balloon holds, so that offlining finds free pages rather than
 * PageOffline pages with references.  Unsent blocks go at once; blocks on
 * the device wait for it (a while); acknowledged ones are freed (withdrawn
 * by access) or, with VIRTIO_BALLOON13_F_WITHDRAW, named in WITHDRAW
 * messages first.  The range is isolated: nothing allocates from it now.
 * Return: 0, or -EBUSY if some of it is still in the balloon.
 */
static int vb13_offline_range(struct virtio_balloon13 *vb, unsigned long start,
			      unsigned long end)
{
	bool withdraw = virtio_has_feature(vb->vdev,
					   VIRTIO_BALLOON13_F_WITHDRAW);
	unsigned long deadline = jiffies + msecs_to_jiffies(VB13_OFFLINE_WAIT_MS);
	unsigned long freed = 0, before;
	struct page *page, *next;
	int order, err = 0;

	mutex_lock(&vb->lock);
	/* Listed pages here leave when the offlining migrates them. */
	vb->offline_start = start;
	vb->offline_end = end;
	vb13_reap(vb);
	before = vb->nr_blocks;
	/* Unsent: the device never saw them (the worker sends the rest). */
	if (vb->fill && vb->fill->nr)
		vb13_free_unsent(vb, ULONG_MAX, false);
	while (vb13_range_on_device(vb, start, end) ||
	       (withdraw && vb->withdrawing)) {
		long left = deadline - jiffies;

		mutex_unlock(&vb->lock);
		if (left > 0)
			wait_event_timeout(vb->out_wq,
					   vb13_nothing_on_device(vb), left);
		mutex_lock(&vb->lock);
		vb13_reap(vb);
		if (time_after_eq(jiffies, deadline))
			break;
	}
	do {
		if (withdraw) {
			/* As many messages as there are free buffers. */
			while (vb13_withdraw_acked(vb, ULONG_MAX, false, start,
						   end))
				;
		} else {
			for (order = 0; order <= MAX_PAGE_ORDER; order++)
				list_for_each_entry_safe(page, next,
							 &vb->acked[order], lru)
					if (vb13_in_range(page, start, end)) {
						list_del(&page->lru);
						vb13_release_chunk(vb, page);
					}
		}
		if (!withdraw || !vb->withdrawing)
			break;
		mutex_unlock(&vb->lock);
		wait_event_timeout(vb->out_wq, vb13_no_withdraw_on_device(vb),
				   max_t(long, deadline - jiffies, 1));
		mutex_lock(&vb->lock);
		vb13_reap(vb);
	} while (time_before(jiffies, deadline));
	if (vb13_range_on_device(vb, start, end))
		err = -EBUSY;
	for (order = 0; !err && order <= MAX_PAGE_ORDER; order++)
		list_for_each_entry(page, &vb->acked[order], lru)
			if (vb13_in_range(page, start, end))
				err = -EBUSY;
	if (before > vb->nr_blocks)
		freed = before - vb->nr_blocks;
	vb13_inc(vb, hotplug_blocks, freed);
	mutex_unlock(&vb->lock);
	if (err)
		dev_info(&vb->vdev->dev,
			 "memory going offline is still in flight to the device\n");
	return err;
}

/*
 * Memory hotplug: blocks in memory going offline leave the balloon first;
 * after memory comes or goes (or an offline is cancelled) the floor and
 * the limits it sets are evaluated afresh by the resize worker.
 */
static int vb13_memory_notify(struct notifier_block *nb, unsigned long action,
			      void *arg)
{
	struct virtio_balloon13 *vb = container_of(nb, struct virtio_balloon13,
						   mem_nb);
	struct memory_notify *mn = arg;

	switch (action) {
	case MEM_GOING_OFFLINE:
		if (vb13_offline_range(vb, mn->start_pfn,
				       mn->start_pfn + mn->nr_pages))
			return NOTIFY_BAD;
		break;
	case MEM_OFFLINE:
	case MEM_CANCEL_OFFLINE:
		mutex_lock(&vb->lock);
		vb->offline_start = 0;
		vb->offline_end = 0;
		mutex_unlock(&vb->lock);
		fallthrough;
	case MEM_ONLINE:
	case MEM_CANCEL_ONLINE:
		vb13_queue_resize(vb, 0, true);
		break;
	}
	return NOTIFY_OK;
}

/* --- sysfs ---------------------------------------------------------------- */

static struct virtio_balloon13 *dev_to_vb(struct device *dev)
{
	return dev_to_virtio(dev)->priv;
}

static ssize_t size_bytes_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	struct virtio_balloon13 *vb = dev_to_vb(dev);

	return sysfs_emit(buf, "%llu\n",
			  (u64)READ_ONCE(vb->nr_blocks) << vb->geom.page_bits);
}
static DEVICE_ATTR_RO(size_bytes);

static ssize_t target_bytes_show(struct device *dev,
				 struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", READ_ONCE(dev_to_vb(dev)->target_bytes));
}
static DEVICE_ATTR_RO(target_bytes);

static ssize_t page_bits_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", dev_to_vb(dev)->geom.page_bits);
}
static DEVICE_ATTR_RO(page_bits);

static ssize_t num_blocks_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", READ_ONCE(dev_to_vb(dev)->nr_blocks));
}
static DEVICE_ATTR_RO(num_blocks);

static ssize_t floor_bytes_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", (u64)vb13_floor_pages() << PAGE_SHIFT);
}
static DEVICE_ATTR_RO(floor_bytes);

static struct attribute *vb13_attrs[] = {
	&dev_attr_size_bytes.attr,
	&dev_attr_target_bytes.attr,
	&dev_attr_page_bits.attr,
	&dev_attr_num_blocks.attr,
	&dev_attr_floor_bytes.attr,
	NULL,
};
ATTRIBUTE_GROUPS(vb13);

/* --- debugfs -------------------------------------------------------------- */

/**
 * vb13_counters_show() - the debugfs "counters" file
 * @f: the seq_file; its private data is the balloon
 * @offset: unused
 *
 * One "name value" line per counter, then the state values.
 *
 * Return: 0.
 */
VISIBLE_IF_KUNIT __maybe_unused
int vb13_counters_show(struct seq_file *f, void *offset)
{
	struct virtio_balloon13 *vb = f->private;
	const struct vb13_counters *c = &vb->cnt;
	unsigned long until = READ_ONCE(vb->hold_until), now = jiffies;

#define VB13_SHOW(name, val) seq_printf(f, "%-20s %llu\n", name, (u64)(val))
	VB13_SHOW("requests_resize", READ_ONCE(c->requests_resize));
	VB13_SHOW("requests_stats", READ_ONCE(c->requests_stats));
	VB13_SHOW("requests_unknown", READ_ONCE(c->requests_unknown));
	VB13_SHOW("requests_malformed", READ_ONCE(c->requests_malformed));
	VB13_SHOW("request_budget_hits", READ_ONCE(c->request_budget_hits));
	VB13_SHOW("spurious_callbacks", READ_ONCE(c->spurious_callbacks));
	VB13_SHOW("targets_clamped", READ_ONCE(c->targets_clamped));
	VB13_SHOW("blocks_inflated", READ_ONCE(c->blocks_inflated));
	VB13_SHOW("blocks_withdrawn", READ_ONCE(c->blocks_withdrawn));
	VB13_SHOW("blocks_unsent_freed", READ_ONCE(c->blocks_unsent_freed));
	VB13_SHOW("messages_pages", READ_ONCE(c->messages_pages));
	VB13_SHOW("messages_withdraw", READ_ONCE(c->messages_withdraw));
	VB13_SHOW("messages_stats", READ_ONCE(c->messages_stats));
	VB13_SHOW("stats_coalesced", READ_ONCE(c->stats_coalesced));
	VB13_SHOW("alloc_failures", READ_ONCE(c->alloc_failures));
	VB13_SHOW("pressure_releases", READ_ONCE(c->pressure_releases));
	VB13_SHOW("pressure_blocks", READ_ONCE(c->pressure_blocks));
	VB13_SHOW("hotplug_blocks", READ_ONCE(c->hotplug_blocks));
	VB13_SHOW("blocks_migrated", READ_ONCE(c->blocks_migrated));
	VB13_SHOW("backoff_ms", READ_ONCE(vb->backoff_ms));
	VB13_SHOW("hold_ms", until && time_before(now, until) ?
		  jiffies_to_msecs(until - now) : 0);
	VB13_SHOW("held_by_floor", READ_ONCE(vb->held_by_floor));
	VB13_SHOW("held_by_zones", READ_ONCE(vb->held_by_zones));
	VB13_SHOW("held_by_watermark", READ_ONCE(vb->held_by_watermark));
	VB13_SHOW("movable_blocks",
		  vb13_pages_to_blocks(&vb->geom, READ_ONCE(vb->movable_pages)));
	VB13_SHOW("broken", READ_ONCE(vb->broken));
	VB13_SHOW("in_flight_blocks", READ_ONCE(vb->in_flight_blocks));
	VB13_SHOW("withdrawing_blocks", READ_ONCE(vb->withdrawing));
	VB13_SHOW("num_blocks", READ_ONCE(vb->nr_blocks));
	VB13_SHOW("target_blocks", READ_ONCE(vb->target_blocks));
	VB13_SHOW("msg_max_blocks",
		  vb13_pages_to_blocks(&vb->geom, vb->geom.msg_pages));
	/* VIRTIO_BALLOON13_F_FULL_STATS */
	VB13_SHOW("requests_interval", READ_ONCE(c->requests_stats_interval));
	VB13_SHOW("stats_pushed", READ_ONCE(c->stats_pushed));
	VB13_SHOW("stats_interval_ms", READ_ONCE(vb->stats_interval_ms));
	/* VIRTIO_BALLOON13_F_REPORTING */
	VB13_SHOW("messages_report", READ_ONCE(c->messages_report));
	VB13_SHOW("report_bytes", READ_ONCE(c->report_bytes));
	VB13_SHOW("report_skipped", READ_ONCE(c->report_skipped));
	VB13_SHOW("report_aborted", READ_ONCE(c->report_aborted));
	VB13_SHOW("reporting_active", READ_ONCE(vb->reporting));
	VB13_SHOW("reporting_order", vb->pr_dev_info.order);
#undef VB13_SHOW
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_counters_show);

#ifdef CONFIG_DEBUG_FS
DEFINE_SHOW_ATTRIBUTE(vb13_counters);

static void vb13_debugfs_init(struct virtio_balloon13 *vb)
{
	vb->debugfs = debugfs_create_dir(dev_name(&vb->vdev->dev),
					 vb13_debugfs_root);
	debugfs_create_file("counters", 0444, vb->debugfs, vb,
			    &vb13_counters_fops);
}

static void vb13_debugfs_exit(struct virtio_balloon13 *vb)
{
	debugfs_remove_recursive(vb->debugfs);
}
#else
static inline void vb13_debugfs_init(struct virtio_balloon13 *vb) { }
static inline void vb13_debugfs_exit(struct virtio_balloon13 *vb) { }
#endif

/* --- probe and teardown --------------------------------------------------- */

/*
 * The request buffers the device writes: each in whole cache lines of its
 * own, so that on non-coherent DMA neither a CPU store nor the cache
 * maintenance of another buffer touches a line the device is writing (the
 * DMA API's debugging refuses overlapping device-writable mappings).
 * kmalloc() aligns a power-of-two size to itself.
 */
static size_t vb13_req_stride(void)
{
	return roundup_pow_of_two(max3(sizeof(struct virtio_balloon13_req),
				       (size_t)L1_CACHE_BYTES,
				       (size_t)dma_get_cache_alignment()));
}

VISIBLE_IF_KUNIT size_t vb13_reqs_size(void)
{
	return VB13_NR_REQS * vb13_req_stride();
}
EXPORT_SYMBOL_IF_KUNIT(vb13_reqs_size);

/* Request buffer @i. */
static struct virtio_balloon13_req *vb13_req(struct virtio_balloon13 *vb,
					     unsigned int i)
{
	return (void *)vb->reqs + i * vb13_req_stride();
}

static int vb13_find_vqs(struct virtio_balloon13 *vb)
{
	struct virtqueue_info info[VB13_NR_VQS] = {
		[VB13_VQ_INPUT] = { "inputq", vb13_in_done },
		[VB13_VQ_OUTPUT] = { "outputq", vb13_out_done },
	};

	return virtio_find_vqs(vb->vdev, VB13_NR_VQS, vb->vqs, info, NULL);
}

/*
 * Queues up, request buffers posted, then DRIVER_OK: the device can't use
 * a buffer before probe has posted them all.  Undone by vb13_stop_device().
 * On failure nothing is left: no queues, the device reset, the driver
 * stopped.
 */
static int vb13_start_device(struct virtio_balloon13 *vb)
{
	unsigned int in_size, out_size, i;
	unsigned long flags;
	int err;

	err = vb13_find_vqs(vb);
	if (err) {
		memset(vb->vqs, 0, sizeof(vb->vqs));
		return err;
	}

	/* Use the rings at the size the device gave them. */
	in_size = virtqueue_get_vring_size(vb->vqs[VB13_VQ_INPUT]);
	out_size = virtqueue_get_vring_size(vb->vqs[VB13_VQ_OUTPUT]);
	vb->nr_reqs = min_t(unsigned int, VB13_NR_REQS, in_size);
	/* One entry stays for STATS; on a ring of one they take turns. */
	vb->nr_msgs = clamp_t(unsigned int, out_size - 1, 1, VB13_NR_MSGS);

	/*
	 * The workers are stopped, but the OOM notifier and the shrinker may
	 * run: the state they read is set under the locks that guard it.
	 */
	mutex_lock(&vb->lock);
	INIT_LIST_HEAD(&vb->free_msgs);
	for (i = 0; i < vb->nr_msgs; i++) {
		vb13_msg_init(&vb->msgs[i]);
		list_add_tail(&vb->msgs[i].list, &vb->free_msgs);
	}
	vb->fill = NULL;
	vb13_slow_start(vb);
	vb->in_flight_blocks = 0;
	vb->withdrawing = 0;
	/* New queues: outputq works again. */
	WRITE_ONCE(vb->broken, false);
	mutex_unlock(&vb->lock);
	spin_lock_irqsave(&vb->out_lock, flags);
	INIT_LIST_HEAD(&vb->done_msgs);
	vb->on_device = 0;
	vb->withdraw_on_device = 0;
	vb->stats_busy = false;
	vb->stats_pending = false;
	spin_unlock_irqrestore(&vb->out_lock, flags);

	for (i = 0; i < vb->nr_reqs; i++) {
		err = vb13_post_req(vb, vb13_req(vb, i));
		if (err)
			goto out_del;
	}

	vb->live = true;
	virtio_device_ready(vb->vdev);
	/*
	 * Only the request worker touches inputq from now on: it makes the
	 * first notification, so that a request the device returns at once
	 * can't run the worker beside a kick from here.
	 */
	spin_lock_irqsave(&vb->out_lock, flags);
	vb->stop = false;
	vb->in_kick = true;
	queue_work(system_freezable_wq, &vb->req_work);
	spin_unlock_irqrestore(&vb->out_lock, flags);
	return 0;

out_del:
	virtio_reset_device(vb->vdev);
	while (virtqueue_detach_unused_buf(vb->vqs[VB13_VQ_INPUT]))
		;
	vb->vdev->config->del_vqs(vb->vdev);
	memset(vb->vqs, 0, sizeof(vb->vqs));
	return err;
}

/*
 * Free every acknowledged block, a batch per hold of the lock.  Pages that
 * compaction took off the kernel's balloon list come back to it, or are
 * replaced there (vb13_migratepage() refuses once the device stops): until
 * then the balloon holds more than its messages name.
 */
static void vb13_free_all_acked(struct virtio_balloon13 *vb)
{
	unsigned long n;
	bool isolated;

	do {
		mutex_lock(&vb->lock);
		vb13_reap(vb);
		n = vb13_free_acked(vb, vb13_free_batch(vb), false);
		isolated = vb->migratable &&
			   vb->nr_blocks > vb->in_flight_blocks;
		mutex_unlock(&vb->lock);
		if (!n && isolated)
			msleep(20);
		cond_resched();
	} while (n || isolated);
}

/*
 * Stop the workers, reset the device, return every page, delete the queues.
 * Idempotent: on a device already stopped (or never started, or whose
 * restore failed) it only makes sure the device is reset.
 *
 * The order keeps withdraw-by-access safe: the device gets a bounded time
 * to return the page lists it holds, and nothing it may still discard is
 * freed before the reset, after which it can no longer discard anything.
 * Chunks in the message being filled were never sent and go at once.
 */
static void vb13_stop_device(struct virtio_balloon13 *vb)
{
	struct virtqueue *outq = vb->vqs[VB13_VQ_OUTPUT];
	struct vb13_msg *msg;
	unsigned long flags;
	void *buf;

	spin_lock_irqsave(&vb->out_lock, flags);
	vb->stop = true;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	cancel_work_sync(&vb->req_work);
	cancel_delayed_work_sync(&vb->resize_work);
	cancel_delayed_work_sync(&vb->stats_work);
	if (!vb->live) {
		virtio_reset_device(vb->vdev);
		return;
	}

	mutex_lock(&vb->lock);
	if (vb->fill) {
		/* Never sent: the device doesn't know these blocks. */
		vb13_drop_msg(vb, vb->fill);
		list_add(&vb->fill->list, &vb->free_msgs);
		vb->fill = NULL;
	}
	mutex_unlock(&vb->lock);

	wait_event_timeout(vb->out_wq, vb13_nothing_on_device(vb),
			   msecs_to_jiffies(VB13_DRAIN_MS));
	virtio_reset_device(vb->vdev);
	vb13_sync_reset(vb);

	/* Returned before the reset, including any the callback took last. */
	vb13_free_all_acked(vb);
	/* Still on the device: it can no longer discard them. */
	while ((buf = virtqueue_detach_unused_buf(outq))) {
		if (buf == vb->stats_buf || vb13_sync_of(vb, buf))
			continue;
		msg = buf;
		mutex_lock(&vb->lock);
		vb13_drop_msg(vb, msg);
		list_add(&msg->list, &vb->free_msgs);
		mutex_unlock(&vb->lock);
		cond_resched();
	}
	vb->on_device = 0;
	vb->withdraw_on_device = 0;
	vb->stats_busy = false;
	while (virtqueue_detach_unused_buf(vb->vqs[VB13_VQ_INPUT]))
		;
	vb->vdev->config->del_vqs(vb->vdev);
	memset(vb->vqs, 0, sizeof(vb->vqs));
	vb->live = false;
}

static void vb13_free_bufs(struct virtio_balloon13 *vb)
{
	int i;

	for (i = 0; i < VB13_NR_MSGS; i++)
		kfree(vb->msgs[i].buf);
	kfree(vb->stats_buf);
	kfree(vb->reqs);
	kfree(vb->report_buf);
}

/*
 * Message buffers for @addrs addresses each, once, at probe; smaller ones
 * if that can't be had, down to @min_addrs.
 * Return: the addresses each buffer holds, or 0.
 */
static unsigned int vb13_alloc_bufs(struct virtio_balloon13 *vb,
				    unsigned int addrs, unsigned int min_addrs)
{
	struct virtio_balloon13_pages *p;
	int i;

	vb->reqs = kzalloc(vb13_reqs_size(), GFP_KERNEL);
	vb->stats_buf = kzalloc(struct_size(vb->stats_buf, s, VB13_NR_STATS),
				GFP_KERNEL);
	if (!vb->reqs || !vb->stats_buf)
		return 0;
	for (i = 0; i < VB13_NR_MSGS; i++) {
		for (;;) {
			vb->msgs[i].buf = kmalloc(struct_size(p, page, addrs),
						  GFP_KERNEL | __GFP_NOWARN);
			if (vb->msgs[i].buf)
				break;
			if (addrs <= min_addrs)
				return 0;
			addrs = max(addrs / 2, min_addrs);
		}
	}
	/* Every message uses the smallest size that succeeded. */
	return addrs;
}

/* Read page_bits and size the geometry and the message buffers to it. */
static int vb13_setup_geom(struct virtio_balloon13 *vb)
{
	struct virtio_device *vdev = vb->vdev;
	unsigned long cap_pages;
	unsigned int addrs, min_addrs;
	u32 page_bits;
	u64 cap;

	virtio_cread_le(vdev, struct virtio_balloon13_config, page_bits,
			&page_bits);
	cap = (u64)max(READ_ONCE(vb13_page_list_kib), 1U) * SZ_1K;
	cap_pages = max_t(u64, cap >> PAGE_SHIFT, 1);
	if (vb13_geom_init(&vb->geom, page_bits, VB13_MSG_ADDRS_MAX,
			   cap_pages)) {
		dev_err(&vdev->dev,
			"unsupported page_bits %u: this guest serves %u to %u\n",
			page_bits, VB13_MIN_PAGE_BITS,
			PAGE_SHIFT + MAX_PAGE_ORDER);
		return -EINVAL;
	}
	/* Addresses the cap names, and at least one page's blocks. */
	min_addrs = 1U << vb->geom.sub_shift;
	addrs = clamp_t(u64, cap >> page_bits, min_addrs, VB13_MSG_ADDRS_MAX);
	addrs = vb13_alloc_bufs(vb, addrs, min_addrs);
	if (!addrs)
		return -ENOMEM;
	return vb13_geom_init(&vb->geom, page_bits, addrs, cap_pages);
}

/*
 * Before the features are final: the device must be modern, its config
 * readable, and with pressure_release=0 the driver does not take
 * VIRTIO_BALLOON13_F_PRESSURE_RELEASE, so the device knows the guest will
 * not give memory back on its own.
 */
static int vb13_validate(struct virtio_device *vdev)
{
	if (!virtio_has_feature(vdev, VIRTIO_F_VERSION_1)) {
		dev_err(&vdev->dev, "device is not VIRTIO 1.0 compliant\n");
		return -ENODEV;
	}
	if (!vdev->config->get) {
		dev_err(&vdev->dev, "config space access is disabled\n");
		return -EINVAL;
	}
	if (!READ_ONCE(vb13_pressure_release))
		__virtio_clear_bit(vdev, VIRTIO_BALLOON13_F_PRESSURE_RELEASE);
	/* Discarded free pages would fail the poison check. */
	if (!IS_ENABLED(CONFIG_PAGE_REPORTING) || page_poisoning_enabled_static())
		__virtio_clear_bit(vdev, VIRTIO_BALLOON13_F_REPORTING);
	return 0;
}

static int vb13_probe(struct virtio_device *vdev)
{
	struct virtio_balloon13 *vb;
	int i, err;

	BUILD_BUG_ON(sizeof(struct virtio_balloon13_config) != 4);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_req) != 16);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_resp_hdr) != 8);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_pages) != 8);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_stat) != 16);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_stats) != 8);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_range) != 16);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_report) != 8);
	BUILD_BUG_ON(VB13_MSG_ADDRS_MAX != 8191);

	vb = kzalloc_obj(*vb);
	if (!vb)
		return -ENOMEM;
	vb->vdev = vdev;
	vdev->priv = vb;
	vb->stop = true;
	mutex_init(&vb->lock);
	spin_lock_init(&vb->out_lock);
	init_waitqueue_head(&vb->out_wq);
	INIT_WORK(&vb->req_work, vb13_req_fn);
	INIT_DELAYED_WORK(&vb->resize_work, vb13_resize_fn);
	INIT_DELAYED_WORK(&vb->stats_work, vb13_stats_push_fn);
	for (i = 0; i <= MAX_PAGE_ORDER; i++)
		INIT_LIST_HEAD(&vb->acked[i]);
	balloon_devinfo_init(&vb->bdev);

	err = vb13_setup_geom(vb);
	if (err)
		goto out_free;
#ifdef CONFIG_BALLOON_MIGRATION
	/* Balloon migration moves single pages: blocks of at most a page. */
	vb->migratable = !vb->geom.block_order;
	vb->bdev.migratepage = vb13_migratepage;
#endif
	vb->in_kdump = is_kdump_kernel();
	if (vb->in_kdump)
		dev_info(&vdev->dev, "kdump kernel: the balloon stays empty\n");

	err = vb13_start_device(vb);
	if (err)
		goto out_free;

	vb->oom_nb.notifier_call = vb13_oom_notify;
	vb->oom_nb.priority = 0;
	err = register_oom_notifier(&vb->oom_nb);
	if (err)
		goto out_stop;
	err = vb13_shrinker_init(vb);
	if (err)
		goto out_oom;
	vb->mem_nb.notifier_call = vb13_memory_notify;
	err = register_memory_notifier(&vb->mem_nb);
	if (err)
		goto out_shrinker;
	mutex_lock(&vb13_instances_lock);
	list_add(&vb->instance, &vb13_instances);
	mutex_unlock(&vb13_instances_lock);

	vb13_reporting_start(vb);
	vb13_debugfs_init(vb);
	dev_info(&vdev->dev, "balloon ready: %u-byte blocks, messages of %lu KiB (%u addresses), %u in flight, %u requests posted, floor %lu MiB\n",
		 1U << vb->geom.page_bits, vb->geom.msg_pages << (PAGE_SHIFT - 10),
		 vb->geom.msg_addrs, vb->nr_msgs, vb->nr_reqs,
		 vb13_floor_pages() >> (20 - PAGE_SHIFT));
	return 0;

out_shrinker:
	vb13_shrinker_exit(vb);
out_oom:
	unregister_oom_notifier(&vb->oom_nb);
out_stop:
	vb13_stop_device(vb);
out_free:
	vb13_free_bufs(vb);
	kfree(vb);
	vdev->priv = NULL;
	return err;
}

static void vb13_remove(struct virtio_device *vdev)
{
	struct virtio_balloon13 *vb = vdev->priv;

	vb13_debugfs_exit(vb);
	mutex_lock(&vb13_instances_lock);
	list_del(&vb->instance);
	mutex_unlock(&vb13_instances_lock);
	unregister_memory_notifier(&vb->mem_nb);
	vb13_shrinker_exit(vb);
	unregister_oom_notifier(&vb->oom_nb);
	vb13_stop_device(vb);
	vb13_reporting_stop(vb);
	vb13_free_bufs(vb);
	kfree(vb);
}

#ifdef CONFIG_PM_SLEEP
static int vb13_freeze(struct virtio_device *vdev)
{
	/* Every page goes back; restore moves toward the last target again. */
	vb13_stop_device(vdev->priv);
	vb13_reporting_stop(vdev->priv);
	return 0;
}

static int vb13_restore(struct virtio_device *vdev)
{
	struct virtio_balloon13 *vb = vdev->priv;
	u32 page_bits;
	int err;

	/*
	 * The block size must not change under the balloon: the geometry,
	 * the message buffers and the balloon's own accounting follow it.
	 * On failure the driver stays stopped, and remove still works.
	 */
	virtio_cread_le(vdev, struct virtio_balloon13_config, page_bits,
			&page_bits);
	if (page_bits != vb->geom.page_bits) {
		dev_err(&vdev->dev,
			"page_bits changed from %u to %u over suspend; balloon stopped\n",
			vb->geom.page_bits, page_bits);
		return -EINVAL;
	}
	err = vb13_start_device(vb);
	if (err) {
		dev_err(&vdev->dev, "restore failed (%d); balloon stopped\n",
			err);
		return err;
	}
	vb13_queue_resize(vb, 0, false);
	vb13_stats_push_resume(vb);
	vb13_reporting_start(vb);
	return 0;
}
#endif

static const struct virtio_device_id vb13_id_table[] = {
	{ VIRTIO_ID_MEMORY_BALLOON, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, vb13_id_table);

static unsigned int vb13_features[] = {
	VIRTIO_BALLOON13_F_WITHDRAW,
	VIRTIO_BALLOON13_F_REPORTING,
	VIRTIO_BALLOON13_F_FULL_STATS,
	VIRTIO_BALLOON13_F_PRESSURE_RELEASE,
};

static struct virtio_driver vb13_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.dev_groups = vb13_groups,
	.id_table = vb13_id_table,
	.feature_table = vb13_features,
	.feature_table_size = ARRAY_SIZE(vb13_features),
	.validate = vb13_validate,
	.probe = vb13_probe,
	.remove = vb13_remove,
#ifdef CONFIG_PM_SLEEP
	.freeze = vb13_freeze,
	.restore = vb13_restore,
#endif
};

static int __init vb13_init(void)
{
	int err;

	vb13_debugfs_root = debugfs_create_dir(KBUILD_MODNAME, NULL);
	err = register_virtio_driver(&vb13_driver);
	if (err)
		debugfs_remove_recursive(vb13_debugfs_root);
	return err;
}
module_init(vb13_init);

static void __exit vb13_exit(void)
{
	unregister_virtio_driver(&vb13_driver);
	debugfs_remove_recursive(vb13_debugfs_root);
}
module_exit(vb13_exit);

MODULE_DESCRIPTION("Virtio memory balloon driver (device ID 13)");
MODULE_LICENSE("GPL");
