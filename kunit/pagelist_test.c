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
#include <linux/ktime.h>
#include <linux/pfn.h>
#include <linux/vmstat.h>

#include "../virtio_balloon13.h"

MODULE_IMPORT_NS(EXPORTED_FOR_KUNIT_TESTING);

/* Block sizes the suite runs over: 4 KiB, 64 KiB, 2 MiB, 4 MiB. */
static const u32 good_bits[] = { 12, 16, 21, 22 };

static void bits_desc(const u32 *bits, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "page_bits=%u", *bits);
}

KUNIT_ARRAY_PARAM(good_bits, good_bits, bits_desc);

static const u32 bad_bits[] = { 0, 5, 11, 23, 40, 63 };
KUNIT_ARRAY_PARAM(bad_bits, bad_bits, bits_desc);

/* Geometries crossed with message capacities (addresses per message). */
struct geom_case {
	u32 page_bits;
	unsigned int msg_max;
};

static const struct geom_case geom_cases[] = {
	{ 12, 512 }, { 12, 1024 }, { 12, 8192 },
	{ 16, 512 }, { 16, 8192 },
	{ 21, 512 }, { 21, 8192 },
	{ 22, 512 }, { 22, 8192 },
};

/*
 * Message capacities for filling messages with real memory: three
 * messages' worth must fit the test kernel (at most 96 MiB), so large
 * blocks get small (synthetic) messages.
 */
static const struct geom_case fill_cases[] = {
	{ 12, 512 }, { 12, 1024 }, { 12, 8192 },
	{ 16, 64 }, { 16, 512 },
	{ 21, 8 }, { 21, 16 },
	{ 22, 4 }, { 22, 8 },
};

static void geom_case_desc(const struct geom_case *c, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "page_bits=%u msg_max=%u",
		 c->page_bits, c->msg_max);
}

KUNIT_ARRAY_PARAM(geom_cases, geom_cases, geom_case_desc);
KUNIT_ARRAY_PARAM(fill_cases, fill_cases, geom_case_desc);

static void geom_valid(struct kunit *test)
{
	const u32 *bits = test->param_value;
	struct vb13_geom g;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, *bits, 8192), 0);
	KUNIT_EXPECT_EQ(test, g.page_bits, *bits);
	KUNIT_EXPECT_EQ(test, g.block_order, *bits - PAGE_SHIFT);
	KUNIT_EXPECT_EQ(test, g.sub_shift, 0U);
	KUNIT_EXPECT_EQ(test, g.max_order, (unsigned int)VB13_MAX_ORDER);
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

	KUNIT_EXPECT_EQ(test, vb13_geom_init(&g, *bits, 8192), -EINVAL);
}

/* A small message caps the chunk order so one chunk fits one message. */
static void geom_caps_order(struct kunit *test)
{
	const struct geom_case *c = test->param_value;
	struct vb13_geom g;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, c->page_bits, c->msg_max), 0);
	KUNIT_EXPECT_LE(test, vb13_chunk_blocks(&g, g.max_order),
			(unsigned long)c->msg_max);
	KUNIT_EXPECT_LE(test, g.max_order, (unsigned int)VB13_MAX_ORDER);
	if (g.max_order < VB13_MAX_ORDER)
		KUNIT_EXPECT_GT(test, vb13_chunk_blocks(&g, g.max_order + 1),
				(unsigned long)c->msg_max);
}

static void target_arithmetic(struct kunit *test)
{
	struct vb13_geom g;
	bool clamped;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, 12, 8192), 0);
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

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, 21, 8192), 0);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, (3ULL << 21) - 1, 100,
						 &clamped), 2UL);
	KUNIT_EXPECT_EQ(test, vb13_target_blocks(&g, U64_MAX, 0, &clamped), 0UL);
	KUNIT_EXPECT_TRUE(test, clamped);
}

static void stats_len(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, vb13_stats_len(0), (size_t)8);
	KUNIT_EXPECT_EQ(test, vb13_stats_len(6), (size_t)(8 + 6 * 16));
	KUNIT_EXPECT_EQ(test, sizeof(struct virtio_balloon13_req), (size_t)16);
	KUNIT_EXPECT_EQ(test, sizeof(struct virtio_balloon13_pages), (size_t)8);
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

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, *bits, 8192), 0);
	dst = kunit_kmalloc_array(test, 8192 + 1, sizeof(*dst), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, dst);

	for (order = g.block_order; order <= g.max_order; order++) {
		struct page *page = vb13_alloc_chunk(&g, order);
		unsigned long blocks = vb13_chunk_blocks(&g, order);
		LIST_HEAD(one);
		unsigned int n;

		if (!page)	/* high orders may be unavailable; fine */
			continue;
		dst[blocks] = cpu_to_le64(0xdeadbeef);	/* guard */
		n = vb13_encode_chunk(&g, dst, PFN_PHYS(page_to_pfn(page)),
				      order);
		KUNIT_EXPECT_EQ(test, (unsigned long)n, blocks);
		KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[0]),
				(u64)PFN_PHYS(page_to_pfn(page)));
		KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[n - 1]) - le64_to_cpu(dst[0]),
				(u64)(n - 1) << g.page_bits);
		KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[blocks]), 0xdeadbeefULL);
		list_add(&page->lru, &one);
		check_addrs(test, &g, dst, n, &one);
		list_move(&page->lru, &h->list);
	}
}

/*
 * Fill messages from chunks of mixed orders: counts and boundaries exact,
 * every address aligned, distinct and owned.
 */
static void msg_fill_boundaries(struct kunit *test)
{
	const struct geom_case *c = test->param_value;
	struct held_chunks *h = new_held(test);
	unsigned int msgs = 0, total = 0, order, i;
	struct vb13_msg msg;
	struct vb13_geom g;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, c->page_bits, c->msg_max), 0);
	msg.addrs = kunit_kmalloc_array(test, c->msg_max, sizeof(__le64),
					GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, msg.addrs);
	vb13_msg_init(&msg);
	KUNIT_EXPECT_EQ(test, le32_to_cpu(msg.hdr.type),
			(u32)VIRTIO_BALLOON13_RESP_PAGES);
	KUNIT_EXPECT_EQ(test, le32_to_cpu(msg.hdr.reserved), 0U);

	/* Cycle through the orders, up to 3 full messages' worth. */
	order = g.max_order;
	for (i = 0; total < 3 * c->msg_max && i < 16384; i++) {
		struct page *page = vb13_alloc_chunk(&g, order);
		unsigned long blocks;

		order = order > g.block_order ? order - 1 : g.max_order;
		if (!page)
			continue;
		blocks = vb13_chunk_blocks(&g, vb13_chunk_order(page));
		if (!vb13_msg_room(&g, &msg, c->msg_max,
				   vb13_chunk_order(page))) {
			/* Doesn't fit: exactly when it would overflow. */
			KUNIT_EXPECT_GT(test, msg.nr + blocks,
					(unsigned long)c->msg_max);
			KUNIT_EXPECT_EQ(test, vb13_msg_len(&msg),
					8U + 8U * msg.nr);
			check_addrs(test, &g, msg.addrs, msg.nr, &msg.chunks);
			list_splice_init(&msg.chunks, &h->list);
			msgs++;
			vb13_msg_init(&msg);
		}
		KUNIT_EXPECT_EQ(test, vb13_msg_add(&g, &msg, page),
				(unsigned int)blocks);
		total += blocks;
		KUNIT_EXPECT_LE(test, msg.nr, c->msg_max);
	}
	if (msg.nr) {
		check_addrs(test, &g, msg.addrs, msg.nr, &msg.chunks);
		msgs++;
	}
	list_splice_init(&msg.chunks, &h->list);
	KUNIT_EXPECT_GE(test, total, 3 * c->msg_max);
	KUNIT_EXPECT_GE(test, msgs, 3U);
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

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, *bits, 8192), 0);
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
		LIST_HEAD(rest);

		page = vb13_alloc_chunk(&g, order);
		if (!page)
			continue;
		cut = cuts[c];
		vb13_split_chunk(page, cut, &rest);
		for (i = 0; i < cut; i++)
			__free_page(page + i);

		covered = cut;
		list_for_each_entry(run, &rest, lru) {
			unsigned long idx = run - page;
			unsigned int ro = vb13_chunk_order(run);

			KUNIT_EXPECT_EQ(test, idx, covered);
			KUNIT_EXPECT_EQ(test, idx & ((1UL << ro) - 1), 0UL);
			KUNIT_EXPECT_GE(test, ro, g.block_order);
			covered += 1UL << ro;
		}
		KUNIT_EXPECT_EQ(test, covered, 1UL << order);
		list_splice(&rest, &h->list);
	}
}

/* The encoder's cost per block, over a realistic stream of 4 MiB chunks. */
static void encode_cost(struct kunit *test)
{
	const unsigned int rounds = 2048;
	struct vb13_geom g;
	unsigned int i, n = 0;
	__le64 *dst;
	u64 ns;
	ktime_t t;

	KUNIT_ASSERT_EQ(test, vb13_geom_init(&g, 12, 8192), 0);
	dst = kunit_kmalloc_array(test, 8192, sizeof(*dst), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, dst);

	t = ktime_get();
	for (i = 0; i < rounds; i++)
		n += vb13_encode_chunk(&g, dst + (i % 8) * 1024,
				       (u64)(i + 1) << 22, 10);
	ns = ktime_to_ns(ktime_sub(ktime_get(), t));
	KUNIT_EXPECT_EQ(test, n, rounds * 1024);
	KUNIT_EXPECT_EQ(test, le64_to_cpu(dst[(rounds - 1) % 8 * 1024 + 1023]),
			((u64)rounds << 22) + (1023ULL << 12));
	kunit_info(test, "encoder: %u blocks in %llu ns, %llu ps per block\n",
		   n, ns, div_u64(ns * 1000, n));
}

/* --- statistics --------------------------------------------------------- */

static void stats_encoding(struct kunit *test)
{
	unsigned long *before, *after;
	struct virtio_balloon13_stats *st;
	unsigned int n, i;
	u64 total, free;

	st = kunit_kzalloc(test, sizeof(*st), GFP_KERNEL);
	before = kunit_kcalloc(test, NR_VM_EVENT_ITEMS, sizeof(long), GFP_KERNEL);
	after = kunit_kcalloc(test, NR_VM_EVENT_ITEMS, sizeof(long), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, st);
	KUNIT_ASSERT_NOT_NULL(test, before);
	KUNIT_ASSERT_NOT_NULL(test, after);
#ifdef CONFIG_VM_EVENT_COUNTERS
	all_vm_events(before);
#endif
	n = vb13_fill_stats(st);
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
	KUNIT_EXPECT_LT(test, le64_to_cpu(st->s[n - 1].tag),
			(u64)VIRTIO_BALLOON13_NR_TAGS);
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

static struct kunit_case vb13_pagelist_cases[] = {
	KUNIT_CASE_PARAM(geom_valid, good_bits_gen_params),
	KUNIT_CASE_PARAM(geom_rejects, bad_bits_gen_params),
	KUNIT_CASE_PARAM(geom_caps_order, geom_cases_gen_params),
	KUNIT_CASE(target_arithmetic),
	KUNIT_CASE(stats_len),
	KUNIT_CASE_PARAM(encode_chunk_orders, good_bits_gen_params),
	KUNIT_CASE_PARAM(msg_fill_boundaries, fill_cases_gen_params),
	KUNIT_CASE_PARAM(split_chunk_runs, good_bits_gen_params),
	KUNIT_CASE_SLOW(encode_cost),
	KUNIT_CASE(stats_encoding),
	{}
};

static struct kunit_suite vb13_pagelist_suite = {
	.name = "virtio_balloon13_pagelist",
	.test_cases = vb13_pagelist_cases,
};

kunit_test_suite(vb13_pagelist_suite);
