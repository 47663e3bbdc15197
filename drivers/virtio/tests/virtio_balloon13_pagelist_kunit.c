// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests of the balloon's page-list hot path (pagelist.c), request
 * arithmetic and statistics encoding (stats.c).  They use real buddy
 * allocations but no device.
 */
#include <kunit/test.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/pfn.h>
#include <linux/vmstat.h>

#include "../virtio_balloon13_internal.h"

MODULE_IMPORT_NS("EXPORTED_FOR_KUNIT_TESTING");

/* Block sizes the suite runs over: 4 KiB, 64 KiB, 2 MiB, 4 MiB. */
static const u32 good_bits[] = { 12, 16, 21, 22 };

static void bits_desc(const u32 *bits, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "page_bits=%u", *bits);
}

KUNIT_ARRAY_PARAM(good_bits, good_bits, bits_desc);

static const u32 bad_bits[] = { 0, 5, 11, 23, 40, 63 };
KUNIT_ARRAY_PARAM(bad_bits, bad_bits, bits_desc);

/* No cap by bytes: more pages than any test allocates. */
#define NO_CAP	BIT(30)

/*
 * Geometries crossed with message limits: addresses per message, and the
 * memory a message may name in pages (the byte cap).
 */
struct geom_case {
	u32 page_bits;
	unsigned int msg_addrs;
	unsigned long msg_pages;
};

static const struct geom_case geom_cases[] = {
	{ 12, 512, NO_CAP }, { 12, 1024, NO_CAP }, { 12, 8191, NO_CAP },
	{ 12, 8191, 1024 }, { 12, 8191, 256 }, { 12, 8191, 1 },
	{ 16, 512, NO_CAP }, { 16, 8191, NO_CAP }, { 16, 8191, 1 },
	{ 21, 512, NO_CAP }, { 21, 8191, NO_CAP }, { 21, 8191, 2048 },
	{ 21, 8191, 512 },
	{ 22, 512, NO_CAP }, { 22, 8191, NO_CAP }, { 22, 8191, 1024 },
};

/*
 * Limits for filling messages with real memory: three messages' worth must
 * fit the test kernel (at most 96 MiB), so large blocks get small limits.
 * Caps by addresses and by bytes both, and both binding at once.
 */
static const struct geom_case fill_cases[] = {
	{ 12, 512, NO_CAP }, { 12, 1024, NO_CAP }, { 12, 8191, NO_CAP },
	{ 12, 8191, 1024 }, { 12, 8191, 4096 }, { 12, 8191, 96 },
	{ 12, 700, 1000 },
	{ 16, 64, NO_CAP }, { 16, 512, 4096 }, { 16, 8191, 48 },
	{ 21, 8, NO_CAP }, { 21, 16, NO_CAP }, { 21, 8191, 2048 },
	{ 21, 8191, 512 }, { 21, 7, 3000 },
	{ 22, 4, NO_CAP }, { 22, 8191, 2048 }, { 22, 8191, 1024 },
};

static void geom_case_desc(const struct geom_case *c, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE,
		 "page_bits=%u msg_addrs=%u msg_pages=%lu", c->page_bits,
		 c->msg_addrs, c->msg_pages);
}

KUNIT_ARRAY_PARAM(geom_cases, geom_cases, geom_case_desc);
KUNIT_ARRAY_PARAM(fill_cases, fill_cases, geom_case_desc);

static void geom_valid(struct kunit *test)
{
	const u32 *bits = test->param_value;
	struct vb13_geom g;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, *bits, 8191, NO_CAP), 0);
	KUNIT_EXPECT_EQ(test, g.page_bits, *bits);
	KUNIT_EXPECT_EQ(test, g.block_order, *bits - PAGE_SHIFT);
	KUNIT_EXPECT_EQ(test, g.sub_shift, 0U);
	KUNIT_EXPECT_EQ(test, g.max_order, (unsigned int)MAX_PAGE_ORDER);
	KUNIT_EXPECT_EQ(test, vb13_chunk_blocks(&g, g.block_order), 1UL);
	KUNIT_EXPECT_EQ(test, vb13_chunk_blocks(&g, g.max_order),
			1UL << (g.max_order - g.block_order));
	KUNIT_EXPECT_EQ(test, vb13_blocks_to_pages(&g, 3),
			3UL << g.block_order);
	/* Pages that don't make a whole block round down. */
	KUNIT_EXPECT_EQ(test, vb13_pages_to_blocks(&g, (6UL << g.block_order) -
						   1), g.block_order ? 5UL : 6UL - 1);
}

static void geom_rejects(struct kunit *test)
{
	const u32 *bits = test->param_value;
	struct vb13_geom g;

	KUNIT_EXPECT_EQ(test, vb13_geom_init(&g, *bits, 8191, NO_CAP), -EINVAL);
}

/*
 * A small message caps the chunk order so one chunk fits an empty message,
 * by addresses and by bytes; the largest such order is used.  A cap below
 * one block is raised to one block.
 */
static void geom_caps_order(struct kunit *test)
{
	const struct geom_case *c = test->param_value;
	unsigned long cap;
	struct vb13_geom g;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, c->page_bits, c->msg_addrs,
					     c->msg_pages), 0);
	cap = max(c->msg_pages, 1UL << g.block_order);
	KUNIT_EXPECT_EQ(test, g.msg_pages, cap);
	KUNIT_EXPECT_EQ(test, g.msg_addrs, c->msg_addrs);
	KUNIT_EXPECT_LE(test, vb13_chunk_blocks(&g, g.max_order),
			(unsigned long)c->msg_addrs);
	KUNIT_EXPECT_LE(test, 1UL << g.max_order, cap);
	KUNIT_EXPECT_GE(test, g.max_order, g.block_order);
	KUNIT_EXPECT_LE(test, g.max_order, (unsigned int)MAX_PAGE_ORDER);
	if (g.max_order < MAX_PAGE_ORDER)
		KUNIT_EXPECT_TRUE(test,
				  vb13_chunk_blocks(&g, g.max_order + 1) >
				  c->msg_addrs ||
				  (1UL << (g.max_order + 1)) > cap);
}

static void target_arithmetic(struct kunit *test)
{
	struct vb13_geom g;
	bool clamped;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, 12, 8191, NO_CAP), 0);
	/* Rounds down to whole blocks. */
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 0, 100, &clamped), 0UL);
	KUNIT_EXPECT_FALSE(test, clamped);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 4095, 100, &clamped), 0UL);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 4096, 100, &clamped), 1UL);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 10 * 4096 + 4095, 100,
						 &clamped), 10UL);
	KUNIT_EXPECT_FALSE(test, clamped);
	/* Exactly the maximum is not clamped; one block more is. */
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 100 * 4096, 100, &clamped),
			100UL);
	KUNIT_EXPECT_FALSE(test, clamped);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 101 * 4096, 100, &clamped),
			100UL);
	KUNIT_EXPECT_TRUE(test, clamped);
	/* The largest values a device can send don't overflow. */
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, U64_MAX, 100, &clamped),
			100UL);
	KUNIT_EXPECT_TRUE(test, clamped);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 1ULL << 63, ULONG_MAX,
						 &clamped), 1UL << 51);
	KUNIT_EXPECT_FALSE(test, clamped);

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, 21, 8191, NO_CAP), 0);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, (3ULL << 21) - 1, 100,
						 &clamped), 2UL);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, U64_MAX, 0, &clamped), 0UL);
	KUNIT_EXPECT_TRUE(test, clamped);
}

/* --- encoding and messages over real chunks ------------------------------- */

struct held_chunks {
	struct list_head list;
	unsigned long pages;
};

static void free_held(void *data)
{
	struct held_chunks *h = data;
	struct page *page, *next;

	list_for_each_entry_safe(page, next, &h->list, lru) {
		list_del(&page->lru);
		vb13_free_chunk(page);
	}
}

static struct held_chunks *new_held(struct kunit *test)
{
	struct held_chunks *h = kunit_kzalloc(test, sizeof(*h), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, h);
	INIT_LIST_HEAD(&h->list);
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, free_held, h), 0);
	return h;
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/*
 * Every address is aligned to the block size, distinct, and inside one of
 * the chunks in @chunks.
 */
static void check_addrs(struct kunit *test, const struct vb13_geom *g,
			const __le64 *addrs, unsigned int n,
			struct list_head *chunks)
{
	u64 *sorted = kunit_kmalloc_array(test, n, sizeof(u64), GFP_KERNEL);
	u64 block = 1ULL << g->page_bits;
	unsigned int i, bad_align = 0, dups = 0, outside = 0;

	KUNIT_ASSERT_NOT_NULL(test, sorted);
	for (i = 0; i < n; i++) {
		struct page *page;
		bool inside = false;
		u64 a = le64_to_cpu(addrs[i]);

		sorted[i] = a;
		if (a & (block - 1))
			bad_align++;
		list_for_each_entry(page, chunks, lru) {
			u64 base = PFN_PHYS(page_to_pfn(page));
			u64 size = PAGE_SIZE << vb13_chunk_order(page);

			if (a >= base && a + block <= base + size) {
				inside = true;
				break;
			}
		}
		if (!inside)
			outside++;
	}
	sort(sorted, n, sizeof(u64), cmp_u64, NULL);
	for (i = 1; i < n; i++)
		if (sorted[i] == sorted[i - 1])
			dups++;
	KUNIT_EXPECT_EQ(test, bad_align, 0U);
	KUNIT_EXPECT_EQ(test, dups, 0U);
	KUNIT_EXPECT_EQ(test, outside, 0U);
	kunit_kfree(test, sorted);
}

/* One chunk of each order encodes into exactly its blocks. */
static void encode_chunk_orders(struct kunit *test)
{
	const u32 *bits = test->param_value;
	struct held_chunks *h = new_held(test);
	struct vb13_geom g;
	unsigned int order;
	__le64 *dst;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, *bits, 8191, NO_CAP), 0);
	dst = kunit_kmalloc_array(test, 8192 + 1, sizeof(*dst), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, dst);

	for (order = g.block_order; order <= g.max_order; order++) {
		struct page *page = vb13_alloc_chunk(&g, order);
		unsigned long blocks = vb13_chunk_blocks(&g, order);
		LIST_HEAD(one);
		unsigned int n;

		/* A KUnit guest just booted has every order free. */
		KUNIT_ASSERT_NOT_NULL_MSG(test, page, "no chunk of order %u",
					  order);
		dst[blocks] = cpu_to_le64(0xdeadbeef);	/* guard */
		n = vb13_encode_chunk(&g, dst, PFN_PHYS(page_to_pfn(page)),
				      order);
		KUNIT_EXPECT_EQ(test, (unsigned long)n, blocks);
		KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[0]),
				(u64)PFN_PHYS(page_to_pfn(page)));
		KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[n - 1]) - le64_to_cpu(dst[0]),
				(u64)(n - 1) << g.page_bits);
		KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[blocks]), 0xdeadbeefULL);
		/* Every page of a balloon chunk is offline while it is held. */
		KUNIT_EXPECT_TRUE(test, PageOffline(page));
		KUNIT_EXPECT_TRUE(test, PageOffline(page + (1UL << order) - 1));
		list_add(&page->lru, &one);
		check_addrs(test, &g, dst, n, &one);
		list_move(&page->lru, &h->list);
	}
}

/*
 * Fill messages from chunks of mixed orders: a chunk is refused exactly
 * when it would take the message past its address or byte limit, every
 * address is aligned, distinct and owned.
 */
static void msg_fill_boundaries(struct kunit *test)
{
	const struct geom_case *c = test->param_value;
	struct held_chunks *h = new_held(test);
	unsigned int msgs = 0, order, i;
	unsigned long total = 0, want, fullest = 0, orders = 0;
	struct vb13_msg msg;
	struct vb13_geom g;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, c->page_bits, c->msg_addrs,
					     c->msg_pages), 0);
	msg.buf = kunit_kmalloc(test, struct_size(msg.buf, page, c->msg_addrs),
				GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, msg.buf);
	vb13_msg_init(&msg);
	KUNIT_EXPECT_EQ(test, le32_to_cpu(msg.buf->hdr.type),
			(u32)VIRTIO_BALLOON13_RESP_PAGES);
	KUNIT_EXPECT_EQ(test, le32_to_cpu(msg.buf->hdr.reserved), 0U);
	KUNIT_EXPECT_EQ(test, msg.pages, 0UL);

	/* Three messages' worth by whichever limit binds first. */
	want = 3 * min_t(unsigned long, c->msg_addrs,
			 vb13_pages_to_blocks(&g, g.msg_pages));
	/* Cycle through the orders. */
	order = g.max_order;
	for (i = 0; total < want && i < 16384; i++) {
		struct page *page = vb13_alloc_chunk(&g, order);
		unsigned long blocks, pages;

		order = order > g.block_order ? order - 1 : g.max_order;
		if (!page)
			continue;
		orders |= BIT(vb13_chunk_order(page));
		blocks = vb13_chunk_blocks(&g, vb13_chunk_order(page));
		pages = 1UL << vb13_chunk_order(page);
		if (!vb13_msg_room(&g, &msg, vb13_chunk_order(page))) {
			/* Refused: exactly when a limit would be passed. */
			KUNIT_EXPECT_TRUE(test, msg.nr + blocks > c->msg_addrs ||
					  msg.pages + pages > g.msg_pages);
			KUNIT_EXPECT_EQ(test, vb13_msg_len(&msg),
					8U + 8U * msg.nr);
			check_addrs(test, &g, msg.buf->page, msg.nr,
				    &msg.chunks);
			list_splice_init(&msg.chunks, &h->list);
			msgs++;
			vb13_msg_init(&msg);
		}
		KUNIT_EXPECT_EQ(test, vb13_msg_add(&g, &msg, page),
				(unsigned int)blocks);
		total += blocks;
		fullest = max(fullest, msg.pages);
		KUNIT_EXPECT_LE(test, msg.nr, c->msg_addrs);
		KUNIT_EXPECT_LE(test, msg.pages, g.msg_pages);
		KUNIT_EXPECT_EQ(test, msg.pages,
				vb13_blocks_to_pages(&g, msg.nr));
	}
	if (msg.nr) {
		check_addrs(test, &g, msg.buf->page, msg.nr, &msg.chunks);
		msgs++;
	}
	list_splice_init(&msg.chunks, &h->list);
	KUNIT_EXPECT_GE(test, total, want);
	/* Every order took part, unless three messages filled up first. */
	if (i > g.max_order - g.block_order)
		KUNIT_EXPECT_EQ(test, orders,
				GENMASK(g.max_order, g.block_order));
	KUNIT_EXPECT_GE(test, msgs, 3U);
	KUNIT_EXPECT_LE(test, fullest, g.msg_pages);
}

/*
 * A geometry for 4 KiB blocks on a 64 KiB-page guest, built by hand (this
 * guest's pages are 4 KiB): sixteen blocks per page.  Counts, rounding,
 * encoding and message limits are pure arithmetic on the geometry.
 */
static void sub_page_geometry(struct kunit *test)
{
	const struct vb13_geom g = {
		.page_bits = 12, .block_order = 0, .sub_shift = 4,
		.max_order = 3, .msg_addrs = 64, .msg_pages = 4,
	};
	const u64 base = 0x40000000ULL;
	struct vb13_msg msg = {};
	__le64 *dst;
	unsigned int n, i;
	bool clamped;

	KUNIT_EXPECT_EQ(test, vb13_chunk_blocks(&g, 0), 16UL);
	KUNIT_EXPECT_EQ(test, vb13_chunk_blocks(&g, 3), 128UL);
	KUNIT_EXPECT_EQ(test, vb13_blocks_to_pages(&g, 48), 3UL);
	KUNIT_EXPECT_EQ(test, vb13_pages_to_blocks(&g, 3), 48UL);
	/* A target is rounded down to whole pages' worth of blocks. */
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 47ULL << 12, 1000,
						 &clamped), 32UL);
	KUNIT_EXPECT_FALSE(test, clamped);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, 4000ULL << 12, 1000,
						 &clamped), 1000UL);
	KUNIT_EXPECT_TRUE(test, clamped);

	dst = kunit_kcalloc(test, 129, sizeof(*dst), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, dst);
	dst[32] = cpu_to_le64(0xdeadbeef);
	n = vb13_encode_chunk(&g, dst, base, 1);
	KUNIT_ASSERT_EQ(test, n, 32U);
	for (i = 0; i < n; i++)
		KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[i]), base + i * 4096ULL);
	KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[32]), 0xdeadbeefULL);

	/* 64 addresses or 4 pages, whichever comes first: 4 pages here. */
	msg.nr = 48;
	msg.pages = 3;
	KUNIT_EXPECT_TRUE(test, vb13_msg_room(&g, &msg, 0));
	KUNIT_EXPECT_FALSE(test, vb13_msg_room(&g, &msg, 1));
	msg.nr = 60;
	msg.pages = 0;
	KUNIT_EXPECT_FALSE(test, vb13_msg_room(&g, &msg, 0));
}

/* Splitting keeps naturally aligned runs that cover exactly the tail. */
static void split_chunk_runs(struct kunit *test)
{
	const u32 *bits = test->param_value;
	struct held_chunks *h = new_held(test);
	unsigned long cut, covered, i, cuts[3];
	struct page *page, *run;
	struct vb13_geom g;
	unsigned int order, c;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, *bits, 8191, NO_CAP), 0);
	order = g.max_order;
	while (!(page = vb13_alloc_chunk(&g, order)) && order > g.block_order)
		order--;
	KUNIT_ASSERT_NOT_NULL(test, page);
	vb13_free_chunk(page);
	if (order == g.block_order)
		kunit_skip(test, "no chunk above one block to split");

	/* Cut after one block, in the middle, and before the last block. */
	cuts[0] = 1UL << g.block_order;
	cuts[1] = 1UL << (order - 1);
	cuts[2] = (1UL << order) - (1UL << g.block_order);
	for (c = 0; c < ARRAY_SIZE(cuts); c++) {
		unsigned long offline = 0;
		LIST_HEAD(rest);

		page = vb13_alloc_chunk(&g, order);
		KUNIT_ASSERT_NOT_NULL(test, page);
		cut = cuts[c];
		vb13_split_chunk(page, cut, &rest);
		vb13_free_pages(page, cut);

		covered = cut;
		list_for_each_entry(run, &rest, lru) {
			unsigned long idx = run - page;
			unsigned int ro = vb13_chunk_order(run);

			KUNIT_EXPECT_EQ(test, idx, covered);
			KUNIT_EXPECT_EQ(test, idx & ((1UL << ro) - 1), 0UL);
			KUNIT_EXPECT_GE(test, ro, g.block_order);
			/* What stays in the balloon stays offline. */
			for (i = 0; i < 1UL << ro; i++)
				offline += PageOffline(run + i);
			covered += 1UL << ro;
		}
		KUNIT_EXPECT_EQ(test, offline, (1UL << order) - cut);
		KUNIT_EXPECT_EQ(test, covered, 1UL << order);
		list_splice(&rest, &h->list);
	}
}

/* --- statistics --------------------------------------------------------- */

static void stats_encoding(struct kunit *test)
{
	unsigned long *before, *after;
	struct virtio_balloon13_stats *st;
	unsigned int n, i;
	u64 total, free;

	st = kunit_kzalloc(test, struct_size(st, s, VB13_NR_STATS), GFP_KERNEL);
	before = kunit_kcalloc(test, NR_VM_EVENT_ITEMS, sizeof(long), GFP_KERNEL);
	after = kunit_kcalloc(test, NR_VM_EVENT_ITEMS, sizeof(long), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, st);
	KUNIT_ASSERT_NOT_NULL(test, before);
	KUNIT_ASSERT_NOT_NULL(test, after);
#ifdef CONFIG_VM_EVENT_COUNTERS
	all_vm_events(before);
#endif
	n = vb13_fill_stats(st, false);
#ifdef CONFIG_VM_EVENT_COUNTERS
	all_vm_events(after);
#endif

	KUNIT_EXPECT_EQ(test, le32_to_cpu(st->hdr.type),
			(u32)VIRTIO_BALLOON13_RESP_STATS);
	KUNIT_EXPECT_EQ(test, le32_to_cpu(st->hdr.reserved), 0U);
	KUNIT_ASSERT_EQ(test, n, IS_ENABLED(CONFIG_VM_EVENT_COUNTERS) ? 6U : 2U);
	/* Tags are distinct, known, and in ascending order. */
	for (i = 1; i < n; i++)
		KUNIT_EXPECT_LT(test, le64_to_cpu(st->s[i - 1].tag),
				le64_to_cpu(st->s[i].tag));
	/* Without VIRTIO_BALLOON13_F_FULL_STATS, only the base six. */
	KUNIT_EXPECT_LT(test, le64_to_cpu(st->s[n - 1].tag),
			(u64)VIRTIO_BALLOON13_TAG_AVAIL);
	KUNIT_EXPECT_EQ(test, le64_to_cpu(st->s[n - 1].tag),
			(u64)VIRTIO_BALLOON13_TAG_MEMTOT);
	KUNIT_EXPECT_EQ(test, le64_to_cpu(st->s[n - 2].tag),
			(u64)VIRTIO_BALLOON13_TAG_MEMFREE);

	total = le64_to_cpu(st->s[n - 1].value);
	free = le64_to_cpu(st->s[n - 2].value);
	KUNIT_EXPECT_EQ(test, total, (u64)totalram_pages() << PAGE_SHIFT);
	KUNIT_EXPECT_GT(test, free, 0ULL);
	KUNIT_EXPECT_LE(test, free, total);
	/* Byte units: whole pages. */
	KUNIT_EXPECT_EQ(test, free & (PAGE_SIZE - 1), 0ULL);
#ifdef CONFIG_VM_EVENT_COUNTERS
	/* Each count lies between two snapshots taken around the fill. */
	KUNIT_EXPECT_GE(test, le64_to_cpu(st->s[0].value),
			(u64)before[PSWPIN] << PAGE_SHIFT);
	KUNIT_EXPECT_LE(test, le64_to_cpu(st->s[0].value),
			(u64)after[PSWPIN] << PAGE_SHIFT);
	KUNIT_EXPECT_GE(test, le64_to_cpu(st->s[1].value),
			(u64)before[PSWPOUT] << PAGE_SHIFT);
	KUNIT_EXPECT_LE(test, le64_to_cpu(st->s[1].value),
			(u64)after[PSWPOUT] << PAGE_SHIFT);
	KUNIT_EXPECT_GE(test, le64_to_cpu(st->s[2].value),
			(u64)before[PGMAJFAULT]);
	KUNIT_EXPECT_LE(test, le64_to_cpu(st->s[2].value),
			(u64)after[PGMAJFAULT]);
	/* MINFLT is all faults less the major ones. */
	KUNIT_EXPECT_GE(test, le64_to_cpu(st->s[3].value),
			(u64)(before[PGFAULT] - after[PGMAJFAULT]));
	KUNIT_EXPECT_LE(test, le64_to_cpu(st->s[3].value),
			(u64)(after[PGFAULT] - before[PGMAJFAULT]));
#endif
}

/* With VIRTIO_BALLOON13_F_FULL_STATS: the base six, then tags 6 to 15. */
static void stats_encoding_full(struct kunit *test)
{
	struct virtio_balloon13_stats *st;
	u64 mask = 0, want, tag;
	unsigned int n, i;

	st = kunit_kzalloc(test, struct_size(st, s, VB13_NR_STATS), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, st);
	n = vb13_fill_stats(st, true);
	KUNIT_ASSERT_LE(test, n, (unsigned int)VB13_NR_STATS);
	for (i = 0; i < n; i++) {
		tag = le64_to_cpu(st->s[i].tag);
		KUNIT_ASSERT_LT(test, tag, (u64)VB13_NR_STATS);
		if (i)
			KUNIT_EXPECT_LT(test, le64_to_cpu(st->s[i - 1].tag), tag);
		mask |= BIT_ULL(tag);
	}
	want = GENMASK_ULL(15, 0);
	if (!IS_ENABLED(CONFIG_HUGETLB_PAGE))
		want &= ~GENMASK_ULL(9, 8);
	if (!IS_ENABLED(CONFIG_VM_EVENT_COUNTERS))
		want &= ~(GENMASK_ULL(3, 0) | GENMASK_ULL(15, 8));
	KUNIT_EXPECT_EQ(test, mask & GENMASK_ULL(15, 0), want);
	/* PSI: both totals or neither (no /proc while the suite runs). */
	KUNIT_EXPECT_EQ(test, !!(mask & BIT_ULL(16)), !!(mask & BIT_ULL(17)));
	/* The same fill without the bit stops at MEMTOT. */
	KUNIT_EXPECT_EQ(test, vb13_fill_stats(st, false),
			(unsigned int)hweight64(want & GENMASK_ULL(5, 0)));
}

/* The totals of /proc/pressure/memory's two lines; nothing else will do. */
static void psi_parse(struct kunit *test)
{
	char good[] = "some avg10=0.31 avg60=0.07 avg300=0.01 total=123456\n"
		      "full avg10=0.00 avg60=0.00 avg300=0.00 total=18446744073709551615\n";
	char no_full[] = "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n";
	char bad_num[] = "some avg10=0.00 avg60=0.00 avg300=0.00 total=5x\n"
			 "full avg10=0.00 avg60=0.00 avg300=0.00 total=1\n";
	char no_total[] = "some avg10=0.00\nfull avg10=0.00\n";
	char empty[] = "";
	u64 some = 0, full = 0;

	KUNIT_EXPECT_EQ(test, vb13_parse_psi(good, &some, &full), 0);
	KUNIT_EXPECT_EQ(test, some, 123456ULL);
	KUNIT_EXPECT_EQ(test, full, U64_MAX);
	KUNIT_EXPECT_EQ(test, vb13_parse_psi(no_full, &some, &full), -EINVAL);
	KUNIT_EXPECT_EQ(test, vb13_parse_psi(bad_num, &some, &full), -EINVAL);
	KUNIT_EXPECT_EQ(test, vb13_parse_psi(no_total, &some, &full), -EINVAL);
	KUNIT_EXPECT_EQ(test, vb13_parse_psi(empty, &some, &full), -EINVAL);
}

/*
 * A free piece is a hole when someone else holds its buddy: not when the
 * buddy is free (what a per-cpu refill past the holes hands out), nor
 * when the balloon took it.
 */
static void in_hole_buddies(struct kunit *test)
{
	struct page *pair = alloc_pages(GFP_KERNEL, 1);

	KUNIT_ASSERT_NOT_NULL(test, pair);
	split_page(pair, 1);		/* two pages, one reference each */
	KUNIT_EXPECT_TRUE(test, vb13_in_hole(pair, 0));
	KUNIT_EXPECT_TRUE(test, vb13_in_hole(pair + 1, 0));

	__folio_set_offline(page_folio(pair + 1));
	KUNIT_EXPECT_FALSE(test, vb13_in_hole(pair, 0));
	__folio_clear_offline(page_folio(pair + 1));
	KUNIT_EXPECT_TRUE(test, vb13_in_hole(pair, 0));

	__free_page(pair + 1);
	KUNIT_EXPECT_FALSE(test, vb13_in_hole(pair, 0));
	__free_page(pair);
}

static struct kunit_case vb13_pagelist_cases[] = {
	KUNIT_CASE_PARAM(geom_valid, good_bits_gen_params),
	KUNIT_CASE_PARAM(geom_rejects, bad_bits_gen_params),
	KUNIT_CASE_PARAM(geom_caps_order, geom_cases_gen_params),
	KUNIT_CASE(target_arithmetic),
	KUNIT_CASE_PARAM(encode_chunk_orders, good_bits_gen_params),
	KUNIT_CASE_PARAM(msg_fill_boundaries, fill_cases_gen_params),
	KUNIT_CASE(sub_page_geometry),
	KUNIT_CASE_PARAM(split_chunk_runs, good_bits_gen_params),
	KUNIT_CASE(stats_encoding),
	KUNIT_CASE(stats_encoding_full),
	KUNIT_CASE(psi_parse),
	KUNIT_CASE(in_hole_buddies),
	{}
};

static struct kunit_suite vb13_pagelist_suite = {
	.name = "virtio_balloon13_pagelist",
	.test_cases = vb13_pagelist_cases,
};

kunit_test_suite(vb13_pagelist_suite);
