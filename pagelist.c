// SPDX-License-Identifier: GPL-2.0
/*
 * Virtio memory balloon (device 13): the page-list hot path.
 *
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
 * making the host back it again.  page_offline_begin()/end(), which
 * virtio_mem takes around the marking, is left out: it exists for memory
 * that must never be touched once offline, while a reader racing with a
 * balloon at worst makes the host back one block again.
 *
 * Nothing here takes locks or talks to the device; the callers own the
 * serialisation (see struct virtio_balloon13).
 */
#include <linux/mm.h>
#include <linux/gfp.h>
#include <linux/log2.h>
#include <linux/pfn.h>
#include <linux/minmax.h>
#include <linux/export.h>
#include <linux/overflow.h>
#include <linux/page-flags.h>
#include <kunit/visibility.h>

#include "virtio_balloon13.h"

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
int vb13_geom_init(struct vb13_geom *g, u32 page_bits, unsigned int msg_addrs,
		   unsigned long msg_pages)
{
	unsigned int by_addrs, by_pages;

	if (page_bits < VB13_MIN_PAGE_BITS ||
	    page_bits > PAGE_SHIFT + VB13_MAX_ORDER || !msg_addrs || !msg_pages)
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
	g->max_order = min3((unsigned int)VB13_MAX_ORDER, by_addrs, by_pages);
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

/*
 * The kernel's __SetPageOffline() and __ClearPageOffline() (6.1 has no
 * folio variant of them).  Spelt through VB13_UNDERSCORED() because
 * checkpatch --strict, run outside a kernel tree, exempts SetPage<Foo>
 * names from its CamelCase check but not the same names behind "__".
 */
#define VB13_UNDERSCORED(name)		__ ## name
#define vb13_set_offline(page)		VB13_UNDERSCORED(SetPageOffline)(page)
#define vb13_clear_offline(page)	VB13_UNDERSCORED(ClearPageOffline)(page)

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
unsigned int vb13_chunk_order(struct page *page)
{
	return page_private(page) & VB13_CHUNK_ORDER_MASK;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_chunk_order);

/**
 * vb13_alloc_chunk() - allocate one chunk for the balloon
 * @g: geometry
 * @order: buddy order, >= @g->block_order
 *
 * Orders above the block order are opportunistic: they neither reclaim
 * nor wake kswapd, so a fragmented guest falls back to smaller chunks
 * instead of compacting for us.  The block order itself may reclaim once
 * but never retries and never invokes the OOM killer.  Every page of the
 * chunk is marked PageOffline().
 *
 * Context: may sleep; must not be called with the balloon lock held.
 * Return: the head page, or NULL.
 */
struct page *vb13_alloc_chunk(const struct vb13_geom *g, unsigned int order)
{
	gfp_t gfp = GFP_HIGHUSER | __GFP_NOWARN | __GFP_NOMEMALLOC |
		    __GFP_NORETRY;
	struct page *page;
	unsigned long i;

	if (order > g->block_order)
		gfp &= ~__GFP_RECLAIM;
	page = alloc_pages(gfp, order);
	if (!page)
		return NULL;
	for (i = 0; i < 1UL << order; i++)
		vb13_set_offline(page + i);
	vb13_chunk_set(page, order, false);
	return page;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_alloc_chunk);

/**
 * vb13_free_pages() - give independent order-0 pages back
 * @page: the first page
 * @nr: how many consecutive pages, each its own allocation (split)
 *
 * Clears PageOffline() on each before freeing it.
 */
void vb13_free_pages(struct page *page, unsigned long nr)
{
	unsigned long i;

	for (i = 0; i < nr; i++) {
		vb13_clear_offline(page + i);
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
		vb13_clear_offline(page + i);
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

/**
 * vb13_msg_len() - wire length of a page-list message
 * @msg: the message, with at least one address
 *
 * Return: 8 + 8 * addresses, in bytes.
 */
unsigned int vb13_msg_len(const struct vb13_msg *msg)
{
	return struct_size(msg->buf, page, msg->nr);
}
EXPORT_SYMBOL_IF_KUNIT(vb13_msg_len);

/**
 * vb13_msg_init() - prepare an empty message for filling
 * @msg: the message
 */
void vb13_msg_init(struct vb13_msg *msg)
{
	msg->nr = 0;
	msg->pages = 0;
	INIT_LIST_HEAD(&msg->chunks);
	msg->buf->hdr.type = cpu_to_le32(VIRTIO_BALLOON13_RESP_PAGES);
	msg->buf->hdr.reserved = 0;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_msg_init);
