// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of balloon13d's logic (b13_logic.c): number parsing, message
 * validation, region geometry, coalescing, the bitmap, and real hole
 * punching and residency on a memfd mapping; and of the checks on what the
 * vhost-user front end sends (vhost_check.c).
 *
 * GLib's test framework: "test_logic --tap" prints TAP, one result per
 * case, named /host/logic/CASE (tests/run.sh turns that into the stable
 * id host/logic/CASE); "-p /host/logic/CASE" runs one.  Assertions are
 * non-fatal: a case reports every check that failed, then fails.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "b13.h"
#include "vhost_check.h"

#include <glib.h>

/* A failed check is reported (file, line, expression) and fails the case. */
#define CHECK(cond)		g_assert_true(cond)
#define CHECK_EQ(a, b)		g_assert_cmphex((a), ==, (b))

/* Mark the case failed, saying why (a setup step that did not work). */
#define FAIL_CASE(...)							\
	do {								\
		g_test_message(__VA_ARGS__);				\
		g_test_fail();						\
	} while (0)

/* ---- parsing ------------------------------------------------------------ */

static void test_parse_size(void)
{
	static const struct { const char *s; uint64_t v; } good[] = {
		{ "0", 0 }, { "4096", 4096 }, { "4K", 4096 }, { "4k", 4096 },
		{ "64M", 64ull << 20 }, { "64m", 64ull << 20 },
		{ "1G", 1ull << 30 }, { "2T", 2ull << 40 },
		{ "1KiB", 1024 }, { "3MiB", 3ull << 20 }, { "5GB", 5ull << 30 },
		{ "10B", 10 }, { "007", 7 },
		{ "9223372036854775807", INT64_MAX },
		{ "8388607T", 8388607ull << 40 },
	};
	static const char *const bad[] = {
		"", "-1", "+5", " 5", "5 ", "1.5G", "1,5G", "5X", "5KB2", "G",
		"0x10", "5Ki", "5iB", "9223372036854775808", "8388608T",
		"99999999999999999999999", "16E", "1e9",
	};
	const char *why;
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		why = NULL;
		v = 12345;
		if (b13_parse_size(good[i].s, &v, &why)) {
			FAIL_CASE("'%s' rejected: %s", good[i].s, why);
		}
		CHECK_EQ(v, good[i].v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (!b13_parse_size(bad[i], &v, &why)) {
			FAIL_CASE("'%s' accepted as %" PRIu64, bad[i], v);
		}
		CHECK(why && *why && !strchr(why, '\n'));
	}
	CHECK(b13_parse_size(NULL, &v, &why) == -1);
	b13_parse_size("1.5G", &v, &why);
	CHECK(strstr(why, "fractional") != NULL);
	b13_parse_size("5X", &v, &why);
	CHECK(strstr(why, "suffix") != NULL);
	b13_parse_size("8388608T", &v, &why);
	CHECK(strstr(why, "too large") != NULL);
}

static void test_parse_uint(void)
{
	const char *why;
	uint64_t v;

	CHECK(b13_parse_uint("0", 0, 63, &v, &why) == 0 && v == 0);
	CHECK(b13_parse_uint("63", 0, 63, &v, &why) == 0 && v == 63);
	CHECK(b13_parse_uint("012", 0, 63, &v, &why) == 0 && v == 12);
	CHECK(b13_parse_uint("64", 0, 63, &v, &why) == -1);
	CHECK(strstr(why, "range") != NULL);
	CHECK(b13_parse_uint("0", 1, 10, &v, &why) == -1);
	CHECK(b13_parse_uint("-1", 0, 63, &v, &why) == -1);
	CHECK(b13_parse_uint("abc", 0, 63, &v, &why) == -1);
	CHECK(b13_parse_uint("12a", 0, 63, &v, &why) == -1);
	CHECK(b13_parse_uint("", 0, 63, &v, &why) == -1);
	CHECK(b13_parse_uint(" 1", 0, 63, &v, &why) == -1);
	CHECK(b13_parse_uint("18446744073709551616", 0, UINT64_MAX, &v,
			     &why) == -1);
	CHECK(b13_parse_uint("18446744073709551615", 0, UINT64_MAX, &v,
			     &why) == 0 && v == UINT64_MAX);
}

/* ---- message validation ---------------------------------------------------- */

static enum b13_reject chk(uint32_t type, uint64_t len, uint64_t *n)
{
	struct virtio_balloon13_resp_hdr h = { .type = htole32(type) };
	uint32_t t = 99;

	*n = 0;
	return b13_check_msg(len, &h, 0, &t, n);
}

static void test_check_msg(void)
{
	uint64_t n;

	CHECK_EQ(chk(0, 0, &n), B13_REJ_SHORT);
	CHECK_EQ(chk(0, 7, &n), B13_REJ_SHORT);
	CHECK_EQ(chk(0, 8, &n), B13_REJ_LENGTH);	/* n = 0 */
	CHECK_EQ(chk(0, 12, &n), B13_REJ_LENGTH);
	CHECK_EQ(chk(0, 17, &n), B13_REJ_LENGTH);
	CHECK_EQ(chk(0, 16, &n), B13_OK);
	CHECK_EQ(n, 1);
	CHECK_EQ(chk(0, 8 + 8 * 512, &n), B13_OK);
	CHECK_EQ(n, 512);
	CHECK_EQ(chk(1, 8, &n), B13_REJ_LENGTH);
	CHECK_EQ(chk(1, 16, &n), B13_REJ_LENGTH);	/* 8 + 8: not 8 + 16n */
	CHECK_EQ(chk(1, 24, &n), B13_OK);
	CHECK_EQ(n, 1);
	CHECK_EQ(chk(1, 8 + 16 * 6, &n), B13_OK);
	CHECK_EQ(n, 6);
	CHECK_EQ(chk(2, 16, &n), B13_REJ_TYPE);
	CHECK_EQ(chk(7, 24, &n), B13_REJ_TYPE);
	CHECK_EQ(chk(0x100, 16, &n), B13_REJ_TYPE);	/* byte order matters */
	CHECK_EQ(chk(0, B13_MAX_MSG_BYTES, &n), B13_OK);
	CHECK_EQ(n, B13_MAX_PAGES);
	CHECK_EQ(chk(0, B13_MAX_MSG_BYTES + 8ull, &n), B13_REJ_OVERSIZE);
	CHECK_EQ(chk(0, UINT64_MAX, &n), B13_REJ_OVERSIZE);
	/* Stats: as many as fit in 64 KiB (B13-DEV-MSG-02). */
	CHECK_EQ(chk(1, 8 + 16 * 65, &n), B13_OK);
	CHECK_EQ(n, 65);
	CHECK_EQ(chk(1, 8 + 16 * B13_MAX_RANGES, &n), B13_OK);
	CHECK_EQ(n, 4095);
	CHECK_EQ(chk(1, 8 + 16 * 4096, &n), B13_REJ_OVERSIZE);
	CHECK_EQ(chk(1, 8 + 16 * 65536, &n), B13_REJ_OVERSIZE);
}


/* ---- regions -------------------------------------------------------------- */

/* Guest RAM the way q35 lays it out: hole at 640 KiB-1 MiB, then 4 GiB. */
static const struct b13_region_desc q35[] = {
	{ 0x0, 0xa0000, NULL, 0 },
	{ 0x100000, 0x7f00000, NULL, 0 },		/* up to 128 MiB */
	{ 0x100000000ull, 0x8000000, NULL, 0 },	/* 128 MiB at 4 GiB */
};

static void test_geometry(void)
{
	struct b13_map m;
	struct b13_region_desc top = { 0xffffffffffff0000ull, 0x10000, NULL, 0 };

	b13_map_init(&m, 12);
	CHECK(b13_map_set_regions(&m, q35, 3) == 0);
	CHECK_EQ(m.nr, 3);
	CHECK_EQ(m.block_size, 4096);
	CHECK_EQ(m.r[0].first_block, 0);
	CHECK_EQ(m.r[0].nblocks, 160);
	CHECK_EQ(m.r[1].first_block, 256);
	CHECK_EQ(m.r[1].nblocks, 0x7f00);
	CHECK_EQ(m.r[2].first_block, 0x100000);
	CHECK_EQ(b13_map_ram_bytes(&m), 0xa0000 + 0x7f00000 + 0x8000000ull);
	b13_map_free(&m);

	/* 2 MiB blocks: the 1 MiB start is not block aligned. */
	b13_map_init(&m, 21);
	CHECK(b13_map_set_regions(&m, q35, 3) == 0);
	CHECK_EQ(m.r[0].nblocks, 0);
	CHECK_EQ(m.r[1].first_block, 1);
	CHECK_EQ(m.r[1].nblocks, 63);
	CHECK_EQ(m.r[2].nblocks, 64);
	b13_map_free(&m);

	/* Blocks bigger than RAM (a page_bits the guest must refuse). */
	b13_map_init(&m, 40);
	CHECK(b13_map_set_regions(&m, q35, 3) == 0);
	CHECK_EQ(m.r[1].nblocks + m.r[2].nblocks, 0);
	b13_map_free(&m);

	b13_map_init(&m, 63);
	CHECK_EQ(m.block_size, 1ull << 63);
	CHECK(b13_map_set_regions(&m, q35, 3) == 0);
	CHECK_EQ(m.r[2].nblocks, 0);
	b13_map_free(&m);

	/* A region ending at 2^64 must not wrap. */
	b13_map_init(&m, 12);
	CHECK(b13_map_set_regions(&m, &top, 1) == 0);
	CHECK_EQ(m.r[0].nblocks, 15);	/* the last block is cut by the clamp */
	b13_map_free(&m);

	/* Tiny blocks: 32 bytes (page_bits 5). */
	b13_map_init(&m, 5);
	CHECK(b13_map_set_regions(&m, q35, 1) == 0);
	CHECK_EQ(m.r[0].nblocks, 0xa0000 / 32);
	b13_map_free(&m);
}

static void test_find(void)
{
	struct b13_map m;

	b13_map_init(&m, 12);
	b13_map_set_regions(&m, q35, 3);
	CHECK(b13_map_find(&m, 0, 4096) == 0);
	CHECK(b13_map_find(&m, 0x9f000, 4096) == 0);
	CHECK(b13_map_find(&m, 0x9f000, 8192) == -1);	/* runs into hole */
	CHECK(b13_map_find(&m, 0xa0000, 4096) == -1);	/* the hole */
	CHECK(b13_map_find(&m, 0xff000, 4096) == -1);
	CHECK(b13_map_find(&m, 0x100000, 4096) == 1);
	CHECK(b13_map_find(&m, 0x7fff000, 4096) == 1);
	CHECK(b13_map_find(&m, 0x8000000, 4096) == -1);	/* above 128 MiB */
	CHECK(b13_map_find(&m, 0x100000000ull, 4096) == 2);
	CHECK(b13_map_find(&m, 0x107fff000ull, 4096) == 2);
	CHECK(b13_map_find(&m, 0x108000000ull, 4096) == -1);
	CHECK(b13_map_find(&m, UINT64_MAX - 4095, 4096) == -1);
	CHECK(b13_map_find(&m, 0x100000000ull, UINT64_MAX) == -1);
	b13_map_free(&m);
	b13_map_init(&m, 12);
	CHECK(b13_map_find(&m, 0, 4096) == -1);	/* no regions at all */
	b13_map_free(&m);
}

static enum b13_reject pages(struct b13_map *m, const uint64_t *a, size_t n,
			     uint64_t *sorted, uint64_t *bad)
{
	uint64_t le[64];
	size_t i;

	for (i = 0; i < n; i++)
		le[i] = htole64(a[i]);
	return b13_check_pages(m, le, n, sorted, bad);
}

static void test_check_pages(void)
{
	static const uint64_t ok[] = { 0x105000, 0x0, 0x100000000ull,
				       0x104000 };
	struct b13_map m;
	uint64_t s[16], bad, a;

	b13_map_init(&m, 12);
	b13_map_set_regions(&m, q35, 3);
	CHECK_EQ(pages(&m, ok, 4, s, &bad), B13_OK);
	CHECK_EQ(s[0], 0x0);
	CHECK_EQ(s[1], 0x104000);
	CHECK_EQ(s[2], 0x105000);
	CHECK_EQ(s[3], 0x100000000ull);

	a = 0x100800;
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_REJ_UNALIGNED);
	CHECK_EQ(bad, 0x100800);
	a = 0xa0000;
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_REJ_OUT_OF_RAM);
	a = 0x8000000;
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_REJ_OUT_OF_RAM);
	a = 0x4000000000ull;
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_REJ_OUT_OF_RAM);
	a = 0xfffffffffffff000ull;	/* + 4096 wraps to 0 */
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_REJ_OVERFLOW);
	a = UINT64_MAX;
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_REJ_OVERFLOW);
	{
		/* One bad address among good ones rejects the message. */
		uint64_t mix[] = { 0x104000, 0x105000, 0xa1000, 0x106000 };

		CHECK_EQ(pages(&m, mix, 4, s, &bad), B13_REJ_OUT_OF_RAM);
		CHECK_EQ(bad, 0xa1000);
	}
	b13_map_free(&m);

	/* 2 MiB blocks: aligned to the block, and wholly inside a region. */
	b13_map_init(&m, 21);
	b13_map_set_regions(&m, q35, 3);
	a = 0x200000;
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_OK);
	a = 0x201000;
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_REJ_UNALIGNED);
	a = 0x0;		/* block [0, 2M) crosses the 640K hole */
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_REJ_OUT_OF_RAM);
	a = 0x7e00000;		/* last whole block below 128 MiB */
	CHECK_EQ(pages(&m, &a, 1, s, &bad), B13_OK);
	b13_map_free(&m);
}

static void test_coalesce(void)
{
	static const struct b13_region_desc adj[] = {
		{ 0x0, 0x10000, NULL, 0 }, { 0x10000, 0x10000, NULL, 0 },
	};
	uint64_t s1[] = { 0x101000, 0x102000, 0x103000, 0x105000, 0x105000,
			  0x106000, 0x100000000ull };
	uint64_t s2[] = { 0xe000, 0xf000, 0x10000, 0x11000 };
	struct b13_run runs[8];
	struct b13_map m;
	uint64_t rep = 0;
	size_t nr;

	b13_map_init(&m, 12);
	b13_map_set_regions(&m, q35, 3);
	nr = b13_coalesce(&m, s1, 7, runs, &rep);
	CHECK_EQ(nr, 3);
	CHECK_EQ(rep, 1);
	CHECK_EQ(runs[0].addr, 0x101000);
	CHECK_EQ(runs[0].nblocks, 3);
	CHECK_EQ(runs[0].region, 1);
	CHECK_EQ(runs[1].addr, 0x105000);
	CHECK_EQ(runs[1].nblocks, 2);
	CHECK_EQ(runs[2].addr, 0x100000000ull);
	CHECK_EQ(runs[2].nblocks, 1);
	CHECK_EQ(runs[2].region, 2);
	b13_map_free(&m);

	/* Contiguous in gpa but two regions: two runs (two mappings). */
	b13_map_init(&m, 12);
	b13_map_set_regions(&m, adj, 2);
	rep = 0;
	nr = b13_coalesce(&m, s2, 4, runs, &rep);
	CHECK_EQ(nr, 2);
	CHECK_EQ(runs[0].nblocks, 2);
	CHECK_EQ(runs[0].region, 0);
	CHECK_EQ(runs[1].addr, 0x10000);
	CHECK_EQ(runs[1].region, 1);
	CHECK_EQ(rep, 0);
	b13_map_free(&m);
}

/* ---- bitmap, punching and residency on real shared memory ------------------- */

struct guest {
	int fd;
	uint8_t *mem;
	size_t size;
};

static int guest_new(struct guest *g, size_t size)
{
	g->fd = memfd_create("b13-test", MFD_CLOEXEC);
	g->size = size;
	if (g->fd < 0 || ftruncate(g->fd, size))
		return -1;
	g->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd,
		      0);
	if (g->mem == MAP_FAILED)
		return -1;
	memset(g->mem, 0xa5, size);	/* every page resident and dirty */
	return 0;
}

static void guest_free(struct guest *g)
{
	munmap(g->mem, g->size);
	close(g->fd);
}

static size_t resident_pages(struct guest *g, size_t off, size_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char vec[4096];
	size_t i, n = len / pg, r = 0;

	if (n > sizeof(vec) || mincore(g->mem + off, len, vec))
		return (size_t)-1;
	for (i = 0; i < n; i++)
		r += vec[i] & 1;
	return r;
}

static size_t apply(struct b13_map *m, const uint64_t *a, size_t n,
		    struct b13_apply_stats *st)
{
	uint64_t s[64], bad, rep = 0;
	struct b13_run runs[64];
	size_t nr;

	if (pages(m, a, n, s, &bad) != B13_OK)
		return (size_t)-1;
	nr = b13_coalesce(m, s, n, runs, &rep);
	b13_apply_runs(m, runs, nr, st);
	return nr;
}

struct ranges { int n; uint64_t addr[8], blocks[8]; };

static void collect(uint64_t addr, uint64_t nblocks, void *data)
{
	struct ranges *r = data;

	if (r->n < 8) {
		r->addr[r->n] = addr;
		r->blocks[r->n] = nblocks;
	}
	r->n++;
}

static void test_punch_and_withdraw(void)
{
	const uint64_t base = 0x100000;	/* gpa of the memfd's first byte */
	struct b13_region_desc d;
	struct b13_apply_stats st = { 0 };
	struct ranges rg = { 0 };
	struct b13_map m;
	struct guest g;
	uint64_t w = 99;
	/* unsorted, with a run of 3 and a lone block */
	uint64_t a[] = { base + 0x2000, base + 0x100000, base, base + 0x1000 };

	if (guest_new(&g, 4 << 20)) {
		FAIL_CASE("memfd: %s", g_strerror(errno));
		return;
	}
	d = (struct b13_region_desc){ base, g.size, g.mem, 0 };
	b13_map_init(&m, 12);
	b13_map_set_regions(&m, &d, 1);
	CHECK_EQ(resident_pages(&g, 0, 0x4000), 4);
	CHECK_EQ(apply(&m, a, 4, &st), 2);
	CHECK_EQ(st.new_blocks, 4);
	CHECK_EQ(st.punch_calls, 2);	/* one per run, not per address */
	CHECK_EQ(st.punch_bytes, 4 * 4096);
	CHECK_EQ(st.punch_errors, 0);
	/* Really gone from the host, neighbours untouched. */
	CHECK_EQ(resident_pages(&g, 0, 0x3000), 0);
	CHECK_EQ(resident_pages(&g, 0x3000, 0x1000), 1);
	CHECK_EQ(resident_pages(&g, 0x100000, 0x1000), 0);
	CHECK_EQ(b13_map_blocks_set(&m), 4);
	CHECK_EQ(b13_count_in_balloon(&m, &w), 4);
	CHECK_EQ(w, 0);
	b13_for_each_range(&m, collect, &rg);
	CHECK_EQ(rg.n, 2);
	CHECK_EQ(rg.addr[0], base);
	CHECK_EQ(rg.blocks[0], 3);
	CHECK_EQ(rg.addr[1], base + 0x100000);
	CHECK_EQ(rg.blocks[1], 1);

	/* The guest touches a block again: its old contents are gone. */
	CHECK_EQ(g.mem[0x1000 + 17], 0);
	CHECK_EQ(b13_count_in_balloon(&m, &w), 3);
	CHECK_EQ(w, 1);
	CHECK_EQ(b13_map_blocks_set(&m), 4);	/* bitmap keeps what it got */

	/* Same block again: touched = re-ballooned, untouched = duplicate. */
	{
		uint64_t again[] = { base + 0x1000 };
		uint64_t dup[] = { base + 0x2000 };

		apply(&m, again, 1, &st);
		CHECK_EQ(st.reballooned, 1);
		CHECK_EQ(st.duplicates, 0);
		apply(&m, dup, 1, &st);
		CHECK_EQ(st.duplicates, 1);
		CHECK_EQ(st.new_blocks, 4);
		CHECK_EQ(b13_count_in_balloon(&m, &w), 4);
	}

	/* Memory table re-sent: same region keeps its bitmap. */
	CHECK(b13_map_set_regions(&m, &d, 1) == 0);
	CHECK_EQ(b13_map_blocks_set(&m), 4);
	d.size -= 0x1000;	/* a different region: starts empty */
	CHECK(b13_map_set_regions(&m, &d, 1) == 0);
	CHECK_EQ(b13_map_blocks_set(&m), 0);
	d.size += 0x1000;
	b13_map_free(&m);
	guest_free(&g);
}

static void test_big_and_small_blocks(void)
{
	struct b13_apply_stats st = { 0 };
	struct b13_region_desc d;
	struct b13_map m;
	struct guest g;
	uint64_t w;

	if (guest_new(&g, 8 << 20)) {
		FAIL_CASE("guest memory: %s", g_strerror(errno));
		return;
	}
	/* 2 MiB blocks: one madvise of 2 MiB. */
	d = (struct b13_region_desc){ 0x40000000, g.size, g.mem, 0 };
	b13_map_init(&m, 21);
	b13_map_set_regions(&m, &d, 1);
	{
		uint64_t a[] = { 0x40200000 };

		CHECK_EQ(apply(&m, a, 1, &st), 1);
		CHECK_EQ(st.punch_calls, 1);
		CHECK_EQ(st.punch_bytes, 2 << 20);
		CHECK_EQ(resident_pages(&g, 0x200000, 0x200000 / 2), 0);
		CHECK_EQ(resident_pages(&g, 0x400000, 0x1000), 1);
		/* One touched page withdraws the whole 2 MiB block. */
		g.mem[0x200000 + 0x1ff000] = 1;
		CHECK_EQ(b13_count_in_balloon(&m, &w), 0);
		CHECK_EQ(w, 1);
	}
	b13_map_free(&m);

	/* 1 KiB blocks: only whole host pages are punched. */
	memset(g.mem, 0xa5, g.size);
	memset(&st, 0, sizeof(st));
	d = (struct b13_region_desc){ 0x0, g.size, g.mem, 0 };
	b13_map_init(&m, 10);
	b13_map_set_regions(&m, &d, 1);
	{
		uint64_t one[] = { 0x5000 };
		uint64_t four[] = { 0x1c00, 0x1000, 0x1800, 0x1400 };

		CHECK_EQ(apply(&m, one, 1, &st), 1);
		CHECK_EQ(st.punch_calls, 0);	/* 1 KiB of a 4 KiB page */
		CHECK_EQ(resident_pages(&g, 0x5000, 0x1000), 1);
		CHECK_EQ(apply(&m, four, 4, &st), 1);
		CHECK_EQ(st.punch_calls, 1);
		CHECK_EQ(st.punch_bytes, 4096);
		CHECK_EQ(resident_pages(&g, 0x1000, 0x1000), 0);
		/* 0x5000's page is resident: that block counts withdrawn. */
		CHECK_EQ(b13_count_in_balloon(&m, &w), 4);
		CHECK_EQ(w, 1);
	}
	b13_map_free(&m);
	guest_free(&g);
}

/* Scattered blocks (one run each) are still counted in few syscalls. */
static void test_scattered(void)
{
	struct b13_apply_stats st = { 0 };
	struct b13_region_desc d;
	struct b13_map m;
	struct guest g;
	uint64_t a[32], w, i, j, in;
	struct timespec t0, t1;
	double ms;

	if (guest_new(&g, 64 << 20)) {
		FAIL_CASE("guest memory: %s", g_strerror(errno));
		return;
	}
	d = (struct b13_region_desc){ 0x100000000ull, g.size, g.mem, 0 };
	b13_map_init(&m, 12);
	b13_map_set_regions(&m, &d, 1);
	/* every other 4 KiB block: 8192 runs of one block */
	for (i = 0; i < 8192; i += 32) {
		for (j = 0; j < 32; j++)
			a[j] = d.gpa + (i + j) * 0x2000;
		CHECK_EQ(apply(&m, a, 32, &st), 32);
	}
	CHECK_EQ(st.new_blocks, 8192);
	CHECK_EQ(st.punch_calls, 8192);
	for (i = 0; i < 8192; i += 4)	/* the guest takes a quarter back */
		g.mem[i * 0x2000 + 100] = 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	in = b13_count_in_balloon(&m, &w);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	CHECK_EQ(in, 8192 - 2048);
	CHECK_EQ(w, 2048);
	CHECK(ms < 500);
	g_test_message("8192 scattered blocks counted in %.2f ms", ms);
	b13_map_free(&m);
	guest_free(&g);
}

static void test_no_mapping(void)
{
	struct b13_apply_stats st = { 0 };
	struct b13_map m;
	uint64_t a[] = { 0x104000, 0x105000 }, w = 7;

	/* Regions without a host mapping: bookkeeping only, no syscalls. */
	b13_map_init(&m, 12);
	b13_map_set_regions(&m, q35, 3);
	CHECK_EQ(apply(&m, a, 2, &st), 1);
	CHECK_EQ(st.new_blocks, 2);
	CHECK_EQ(st.punch_calls, 0);
	CHECK_EQ(b13_count_in_balloon(&m, &w), 2);
	CHECK_EQ(w, 0);
	b13_map_clear_bitmaps(&m);
	CHECK_EQ(b13_map_blocks_set(&m), 0);
	CHECK_EQ(b13_count_in_balloon(&m, &w), 0);
	b13_map_free(&m);
	b13_map_free(&m);	/* twice is harmless */
}

/* ---- whole messages (b13_handle_msg) ------------------------------------- */

/* Build a message: header + le64 words, in buf. */
static size_t build_msg(uint8_t *buf, uint32_t type, uint32_t reserved,
			const uint64_t *w, size_t nw)
{
	struct virtio_balloon13_resp_hdr h = { htole32(type), htole32(reserved) };
	size_t i;

	memcpy(buf, &h, sizeof(h));
	for (i = 0; i < nw; i++) {
		uint64_t le = htole64(w[i]);

		memcpy(buf + 8 + 8 * i, &le, 8);
	}
	return 8 + 8 * nw;
}

static void test_handle_pages(void)
{
	/* unsorted, a repeat, a run of 3, split mid-address over 3 iovecs */
	static const uint64_t a[] = { 0x105000, 0x100000000ull, 0x103000,
				      0x104000, 0x105000 };
	static const uint64_t bad[] = { 0x104000, 0xa1000 };
	struct b13_stats st = { { 0 }, 0 };
	struct b13_msg_result res;
	struct b13_map m;
	struct iovec iov[3];
	uint8_t buf[256];
	size_t len;

	b13_map_init(&m, 12);
	b13_map_set_regions(&m, q35, 3);
	len = build_msg(buf, 0, 0, a, 5);
	iov[0] = (struct iovec){ buf, 11 };
	iov[1] = (struct iovec){ buf + 11, 5 };
	iov[2] = (struct iovec){ buf + 16, len - 16 };
	CHECK_EQ(b13_handle_msg(&m, &st, iov, 3, 0, 0, &res), B13_OK);
	CHECK_EQ(res.type, VIRTIO_BALLOON13_RESP_PAGES);
	CHECK_EQ(res.len, len);
	CHECK_EQ(res.n, 5);
	CHECK_EQ(res.runs, 2);
	CHECK_EQ(res.repeats, 1);
	CHECK_EQ(res.apply.new_blocks, 4);
	CHECK(!res.reserved_nonzero);
	CHECK_EQ(b13_map_blocks_set(&m), 4);

	/* One bad address: nothing of the message is used. */
	len = build_msg(buf, 0, 7, bad, 2);
	iov[0] = (struct iovec){ buf, len };
	CHECK_EQ(b13_handle_msg(&m, &st, iov, 1, 0, 0, &res), B13_REJ_OUT_OF_RAM);
	CHECK_EQ(res.bad_addr, 0xa1000);
	CHECK_EQ(res.apply.new_blocks, 0);
	CHECK_EQ(b13_map_blocks_set(&m), 4);

	/* Device-writable parts: rejected before anything is read. */
	CHECK_EQ(b13_handle_msg(&m, &st, iov, 1, 1, 0, &res), B13_REJ_WRITABLE);
	/* Too long: rejected unread (the NULL base would fault if read). */
	iov[0] = (struct iovec){ NULL, B13_MAX_MSG_BYTES + 8 };
	CHECK_EQ(b13_handle_msg(&m, &st, iov, 1, 0, 0, &res), B13_REJ_OVERSIZE);
	iov[0] = (struct iovec){ NULL, SIZE_MAX };
	iov[1] = (struct iovec){ NULL, SIZE_MAX };
	CHECK_EQ(b13_handle_msg(&m, &st, iov, 2, 0, 0, &res), B13_REJ_OVERSIZE);
	CHECK_EQ(res.len, UINT64_MAX);
	/* Reserved nonzero: counted, the message still used. */
	len = build_msg(buf, 0, 1, a, 1);
	iov[0] = (struct iovec){ buf, len };
	CHECK_EQ(b13_handle_msg(&m, &st, iov, 1, 0, 0, &res), B13_OK);
	CHECK(res.reserved_nonzero);
	CHECK_EQ(res.apply.duplicates, 1);
	/* Empty chain, and a header alone. */
	CHECK_EQ(b13_handle_msg(&m, &st, iov, 0, 0, 0, &res), B13_REJ_SHORT);
	iov[0].iov_len = 8;
	CHECK_EQ(b13_handle_msg(&m, &st, iov, 1, 0, 0, &res), B13_REJ_LENGTH);
	b13_map_free(&m);
}

static void test_handle_stats(void)
{
	static uint64_t w[2 * (B13_MAX_RANGES + 1)];
	struct b13_stats st = { { 0 }, 0 };
	struct b13_msg_result res;
	struct b13_map m;
	struct iovec iov;
	static uint8_t buf[8 + 16 * (B13_MAX_RANGES + 1)];
	size_t len, i;

	b13_map_init(&m, 12);
	/* memfree twice (the last wins), an unknown tag, memtot */
	w[0] = VIRTIO_BALLOON13_TAG_MEMFREE; w[1] = 100;
	w[2] = 99; w[3] = 1;
	w[4] = VIRTIO_BALLOON13_TAG_MEMFREE; w[5] = 200;
	w[6] = VIRTIO_BALLOON13_TAG_MEMTOT; w[7] = 1000;
	w[8] = UINT64_MAX; w[9] = 2;
	len = build_msg(buf, 1, 0, w, 10);
	iov = (struct iovec){ buf, len };
	CHECK_EQ(b13_handle_msg(&m, &st, &iov, 1, 0, 0, &res), B13_OK);
	CHECK_EQ(res.type, VIRTIO_BALLOON13_RESP_STATS);
	CHECK_EQ(res.n, 5);
	CHECK_EQ(res.stats_unknown, 2);
	CHECK_EQ(res.stats_repeated, 1);
	CHECK_EQ(st.present, 1u << VIRTIO_BALLOON13_TAG_MEMFREE | 1u << VIRTIO_BALLOON13_TAG_MEMTOT);
	CHECK_EQ(st.value[VIRTIO_BALLOON13_TAG_MEMFREE], 200);
	CHECK_EQ(st.value[VIRTIO_BALLOON13_TAG_MEMTOT], 1000);

	/* The next message replaces the table: memtot is gone. */
	w[0] = VIRTIO_BALLOON13_TAG_SWAP_IN; w[1] = 5;
	len = build_msg(buf, 1, 0, w, 2);
	iov = (struct iovec){ buf, len };
	CHECK_EQ(b13_handle_msg(&m, &st, &iov, 1, 0, 0, &res), B13_OK);
	CHECK_EQ(st.present, 1u << VIRTIO_BALLOON13_TAG_SWAP_IN);
	CHECK_EQ(st.value[VIRTIO_BALLOON13_TAG_SWAP_IN], 5);

	/*
	 * 64 KiB of one tag: fine (the last wins); one more entry is past
	 * the message limit: rejected unread, the table kept.
	 */
	for (i = 0; i < B13_MAX_RANGES + 1; i++) {
		w[2 * i] = VIRTIO_BALLOON13_TAG_MAJFLT;
		w[2 * i + 1] = i;
	}
	len = build_msg(buf, 1, 0, w, 2 * B13_MAX_RANGES);
	CHECK_EQ(len, B13_MAX_MSG_BYTES - 8);
	iov = (struct iovec){ buf, len };
	CHECK_EQ(b13_handle_msg(&m, &st, &iov, 1, 0, 0, &res), B13_OK);
	CHECK_EQ(res.n, B13_MAX_RANGES);
	CHECK_EQ(res.stats_repeated, B13_MAX_RANGES - 1);
	CHECK_EQ(st.value[VIRTIO_BALLOON13_TAG_MAJFLT], B13_MAX_RANGES - 1);
	len = build_msg(buf, 1, 0, w, 2 * (B13_MAX_RANGES + 1));
	iov = (struct iovec){ buf, len };
	CHECK_EQ(b13_handle_msg(&m, &st, &iov, 1, 0, 0, &res), B13_REJ_OVERSIZE);
	CHECK_EQ(st.value[VIRTIO_BALLOON13_TAG_MAJFLT], B13_MAX_RANGES - 1);	/* kept */
	b13_map_free(&m);
}

/* Discards recorded by a hook instead of madvise(). */
struct discards {
	int n;
	uintptr_t addr[64];
	size_t len[64];
	int fail;		/* fail every call with this errno */
};

static int record_discard(void *addr, size_t len, void *arg)
{
	struct discards *r = arg;

	if (r->n < 64) {
		r->addr[r->n] = (uintptr_t)addr;
		r->len[r->n] = len;
	}
	r->n++;
	if (r->fail) {
		errno = r->fail;
		return -1;
	}
	return 0;
}

/* b13_apply_sorted() does what coalescing then applying the runs does. */
static void test_apply_sorted(void)
{
	static const struct b13_region_desc d[] = {
		{ 0x0, 0x10000, (uint8_t *)0x10000000, 0 },
		{ 0x10000, 0x10000, (uint8_t *)0x20000000, 0 },
		{ 0x100000, 0x100000, (uint8_t *)0x30000000, 0 },
	};
	struct b13_apply_stats s1 = { 0 }, s2 = { 0 };
	struct discards r1 = { 0 }, r2 = { 0 };
	uint64_t a[64], rep1 = 0, rep2 = 0, bad;
	struct b13_run runs[64];
	struct b13_map m1, m2;
	unsigned int seed = 1;
	size_t n = 0, nr1, nr2;
	int i, round;

	for (round = 0; round < 20; round++) {
		b13_map_init(&m1, 12);
		b13_map_init(&m2, 12);
		m1.discard = m2.discard = record_discard;
		m1.discard_arg = &r1;
		m2.discard_arg = &r2;
		b13_map_set_regions(&m1, d, 3);
		b13_map_set_regions(&m2, d, 3);
		memset(&r1, 0, sizeof(r1));
		memset(&r2, 0, sizeof(r2));
		for (n = 0; n < 40; n++) {
			uint64_t k = rand_r(&seed) % 24;

			a[n] = htole64(k < 16 ? k * 0x1000 + (k >= 8) * 0x8000 :
				       0x100000 + (k - 16) * 0x1000);
		}
		/* In place: little endian in, sorted CPU order out. */
		CHECK_EQ(b13_check_pages(&m1, a, n, a, &bad), B13_OK);
		nr1 = b13_coalesce(&m1, a, n, runs, &rep1);
		b13_apply_runs(&m1, runs, nr1, &s1);
		nr2 = b13_apply_sorted(&m2, a, n, &s2, &rep2);
		CHECK_EQ(nr1, nr2);
		CHECK_EQ(rep1, rep2);
		CHECK_EQ(r1.n, r2.n);
		CHECK_EQ(r1.n, nr1);	/* one discard per run */
		for (i = 0; i < r1.n && i < 64; i++) {
			CHECK_EQ(r1.addr[i], r2.addr[i]);
			CHECK_EQ(r1.len[i], r2.len[i]);
		}
		CHECK_EQ(b13_map_blocks_set(&m1), b13_map_blocks_set(&m2));
		b13_map_free(&m1);
		b13_map_free(&m2);
	}
	CHECK_EQ(s1.new_blocks, s2.new_blocks);
	CHECK_EQ(s1.punch_bytes, s2.punch_bytes);
	CHECK_EQ(s1.punch_calls, s2.punch_calls);

	/* A failing discard is counted with its errno, and nothing else. */
	b13_map_init(&m1, 12);
	r1 = (struct discards){ .fail = EINVAL };
	m1.discard = record_discard;
	m1.discard_arg = &r1;
	b13_map_set_regions(&m1, d, 3);
	memset(&s1, 0, sizeof(s1));
	a[0] = 0x1000;
	b13_apply_sorted(&m1, a, 1, &s1, &rep1);
	CHECK_EQ(s1.punch_errors, 1);
	CHECK_EQ(s1.last_errno, EINVAL);
	CHECK_EQ(s1.punch_bytes, 0);
	CHECK_EQ(r1.addr[0], 0x10001000);
	CHECK_EQ(r1.len[0], 4096);
	b13_map_free(&m1);
}

static void test_bad_tables(void)
{
	static const struct b13_region_desc overlap[] = {
		{ 0x0, 0x20000, NULL, 0 }, { 0x10000, 0x10000, NULL, 0 },
	};
	static const struct b13_region_desc adjacent[] = {
		{ 0x10000, 0x10000, NULL, 0 }, { 0x0, 0x10000, NULL, 0 },
	};
	struct b13_region_desc empty = { 0x1000, 0, NULL, 0 };
	struct b13_region_desc wrap = { 0xfffffffffffff000ull, 0x2000, NULL, 0 };
	struct b13_map m;
	uint64_t g;

	b13_map_init(&m, 12);
	CHECK(b13_map_set_regions(&m, q35, 3) == 0);
	g = m.gen;
	errno = 0;
	CHECK(b13_map_set_regions(&m, overlap, 2) == -1);
	CHECK_EQ(errno, EINVAL);
	CHECK_EQ(m.nr, 0);		/* left empty */
	CHECK(m.gen != g);
	CHECK(b13_map_set_regions(&m, &empty, 1) == -1);
	CHECK(b13_map_set_regions(&m, &wrap, 1) == -1);
	CHECK(b13_map_set_regions(&m, adjacent, 2) == 0);
	CHECK_EQ(m.nr, 2);
	CHECK_EQ(m.r[0].gpa, 0);	/* sorted */
	b13_map_free(&m);
}

struct range_list { int n; uint64_t addr[32], blocks[32]; };

static void collect_all(uint64_t addr, uint64_t nblocks, void *data)
{
	struct range_list *r = data;

	if (r->n < 32) {
		r->addr[r->n] = addr;
		r->blocks[r->n] = nblocks;
	}
	r->n++;
}

static void test_ranges_paged(void)
{
	/* runs: 0x1000 x3, 0x10000 x1, 0x100000000 x2 */
	static const uint64_t a[] = { 0x101000, 0x102000, 0x103000, 0x110000,
				      0x100000000ull, 0x100001000ull };
	struct b13_apply_stats st = { 0 };
	struct range_list r = { 0 };
	uint64_t s[8], bad, rep = 0, next = 0, from = 0;
	struct b13_map m;
	int calls = 0;

	b13_map_init(&m, 12);
	b13_map_set_regions(&m, q35, 3);
	CHECK_EQ(pages(&m, a, 6, s, &bad), B13_OK);
	b13_apply_sorted(&m, s, 6, &st, &rep);
	/* One run per call, going on from "next". */
	while (b13_ranges(&m, from, 1, collect_all, &r, &next)) {
		CHECK(next > from);
		from = next;
		calls++;
	}
	CHECK_EQ(calls, 2);
	CHECK_EQ(r.n, 3);
	CHECK_EQ(r.addr[0], 0x101000);
	CHECK_EQ(r.blocks[0], 3);
	CHECK_EQ(r.addr[2], 0x100000000ull);
	CHECK_EQ(r.blocks[2], 2);
	/* From inside a run, unaligned: the run is cut at the next block. */
	memset(&r, 0, sizeof(r));
	CHECK(!b13_ranges(&m, 0x101001, 8, collect_all, &r, &next));
	CHECK_EQ(r.n, 3);
	CHECK_EQ(r.addr[0], 0x102000);
	CHECK_EQ(r.blocks[0], 2);
	memset(&r, 0, sizeof(r));
	CHECK(!b13_ranges(&m, UINT64_MAX, 8, collect_all, &r, &next));
	CHECK_EQ(r.n, 0);
	memset(&r, 0, sizeof(r));
	CHECK(b13_ranges(&m, 0, 0, collect_all, &r, &next));
	CHECK_EQ(r.n, 0);
	CHECK_EQ(next, 0x101000);
	b13_map_free(&m);
}

/* A walk in slices counts what a walk in one go counts. */
static void test_scan_slices(void)
{
	struct b13_apply_stats st = { 0 };
	struct b13_region_desc d[2];
	struct b13_scan sc;
	struct b13_map m;
	struct guest g;
	uint64_t a[64], in, w, i, rep = 0, budget;
	int steps;

	if (guest_new(&g, 4 << 20)) {
		FAIL_CASE("guest memory: %s", g_strerror(errno));
		return;
	}
	d[0] = (struct b13_region_desc){ 0x0, 2 << 20, g.mem, 0 };
	d[1] = (struct b13_region_desc){ 0x1000000, 2 << 20,
					 g.mem + (2 << 20), 0 };
	b13_map_init(&m, 12);
	b13_map_set_regions(&m, d, 2);
	for (i = 0; i < 64; i++)	/* scattered over both regions */
		a[i] = (i % 2 ? 0x1000000 : 0) + (i * 7 % 500) * 0x1000;
	CHECK_EQ(pages(&m, a, 16, a, &w), B13_OK);
	b13_apply_sorted(&m, a, 16, &st, &rep);
	for (i = 0; i < 4; i++)		/* withdraw four */
		g.mem[(a[i] >= 0x1000000 ? (2 << 20) + a[i] - 0x1000000 :
		       a[i]) + 5] = 1;
	in = b13_count_in_balloon(&m, &w);
	CHECK_EQ(in + w, 16);
	CHECK_EQ(w, 4);
	/* One mincore() per slice: a window per region, so two slices. */
	for (budget = 1; budget < 4; budget++) {
		struct b13_budget b;

		b13_scan_begin(&m, &sc);
		b13_budget_init(&b, budget, 0);
		for (steps = 1; !b13_scan_step(&m, &sc, &b); steps++)
			b13_budget_init(&b, budget, 0);
		b13_scan_end(&sc);
		CHECK_EQ(sc.in, in);
		CHECK_EQ(sc.withdrawn, w);
		CHECK_EQ(steps, budget == 1 ? 2 : 1);
	}
	/* The table changes in the middle: the walk starts again. */
	{
		struct b13_budget b;

		b13_scan_begin(&m, &sc);
		b13_budget_init(&b, 1, 0);
		CHECK(!b13_scan_step(&m, &sc, &b));
		b13_map_clear_bitmaps(&m);
		b13_budget_init(&b, 0, 0);
		CHECK(b13_scan_step(&m, &sc, &b));
	}
	CHECK_EQ(sc.restarts, 1);
	CHECK_EQ(sc.in + sc.withdrawn, 0);
	b13_scan_end(&sc);
	b13_map_free(&m);
	guest_free(&g);
}

static void test_ratelimit(void)
{
	struct b13_ratelimit rl = { 0 };
	int64_t t = 1000000000;
	uint64_t missed = 7;
	int i, allowed = 0;

	for (i = 0; i < 100; i++)
		allowed += b13_ratelimit(&rl, t + i, &missed);
	CHECK_EQ(allowed, B13_RL_BURST);
	CHECK_EQ(rl.missed, 100 - B13_RL_BURST);
	/* Still inside the interval: nothing. */
	CHECK(!b13_ratelimit(&rl, t + B13_RL_INTERVAL_US - 1, &missed));
	CHECK_EQ(missed, 0);
	/* A new interval: allowed, and told how many were left out. */
	CHECK(b13_ratelimit(&rl, t + B13_RL_INTERVAL_US, &missed));
	CHECK_EQ(missed, 100 - B13_RL_BURST + 1);
	CHECK(b13_ratelimit(&rl, t + B13_RL_INTERVAL_US + 1, &missed));
	CHECK_EQ(missed, 0);
	/* Time going backwards starts afresh rather than going quiet. */
	CHECK(b13_ratelimit(&rl, 5, NULL));
}

/* ---- vhost-user requests from the front end (vhost_check.c) ---------------- */

static VuVirtq vc_vq[B13_NUM_VQS];
static VuDevRegion vc_reg[2];
static VuDev vc_dev;
static struct b13_vu_files vc_files;
static const struct b13_vu_offer vc_offer = {
	.features = 1ull << 32 | 1ull << 30,
	.protocol_features = B13_VU_PROTOCOL_FEATURES,
};

#define QVA 0x7f0000000000ull

/* One region: 1 MiB of guest RAM at gpa 0, at QVA in the front end. */
static void vc_reset(void)
{
	memset(vc_vq, 0, sizeof(vc_vq));
	memset(&vc_dev, 0, sizeof(vc_dev));
	memset(&vc_files, 0, sizeof(vc_files));
	vc_reg[0] = (VuDevRegion){ .gpa = 0, .size = 1 << 20, .qva = QVA };
	vc_dev.max_queues = B13_NUM_VQS;
	vc_dev.vq = vc_vq;
	vc_dev.regions = vc_reg;
	vc_dev.nregions = 1;
}

static VhostUserMsg vc_msg(int req, uint32_t size)
{
	VhostUserMsg m;

	memset(&m, 0, sizeof(m));
	m.request = req;
	m.flags = 1;
	m.size = size;
	return m;
}

static const char *vc_check(const VhostUserMsg *m)
{
	static char buf[200];

	return b13_vu_check_msg(&vc_dev, m, &vc_offer, &vc_files, buf,
				sizeof(buf));
}

/* Refused, with a reason that names what. */
#define REFUSED(m, what)						\
	do {								\
		const char *_w = vc_check(&(m));			\
		if (!_w || !strstr(_w, what))				\
			FAIL_CASE("%s:%d: want \"%s\", got \"%s\"",	\
				  __FILE__, __LINE__, what,		\
				  _w ? _w : "(accepted)");		\
	} while (0)

#define ACCEPTED(m)							\
	do {								\
		const char *_w = vc_check(&(m));			\
		if (_w)							\
			FAIL_CASE("%s:%d: refused: %s", __FILE__,	\
				  __LINE__, _w);			\
	} while (0)

static VhostUserMsg vc_state(int req, unsigned int idx, unsigned int num)
{
	VhostUserMsg m = vc_msg(req, sizeof(struct vhost_vring_state));
	struct vhost_vring_state s = { idx, num };

	memcpy(&m.payload.state, &s, sizeof(s));
	return m;
}

static VhostUserMsg vc_addr(unsigned int idx, uint64_t desc, uint64_t avail,
			    uint64_t used)
{
	VhostUserMsg m = vc_msg(VHOST_USER_SET_VRING_ADDR,
				sizeof(struct vhost_vring_addr));
	struct vhost_vring_addr a = { .index = idx, .desc_user_addr = desc,
				      .avail_user_addr = avail,
				      .used_user_addr = used };

	memcpy(&m.payload.addr, &a, sizeof(a));
	return m;
}

static void test_vu_queues(void)
{
	VhostUserMsg m;

	vc_reset();
	/* Queue indexes past the device's two: libvhost-user would index
	 * its vq[] array with them. */
	m = vc_state(VHOST_USER_SET_VRING_NUM, 7, 64);
	REFUSED(m, "queue index 7");
	m = vc_state(VHOST_USER_SET_VRING_BASE, 2, 0);
	REFUSED(m, "queue index 2");
	m = vc_state(VHOST_USER_GET_VRING_BASE, 255, 0);
	REFUSED(m, "queue index 255");
	m = vc_state(VHOST_USER_SET_VRING_ENABLE, 9, 1);
	REFUSED(m, "queue index 9");
	m = vc_addr(3, QVA, QVA + 0x1000, QVA + 0x2000);
	REFUSED(m, "queue index 3");
	/* Ring sizes: a power of two, 1..1024. */
	m = vc_state(VHOST_USER_SET_VRING_NUM, 1, 0);
	REFUSED(m, "size 0");
	m = vc_state(VHOST_USER_SET_VRING_NUM, 1, 100);
	REFUSED(m, "size 100");
	m = vc_state(VHOST_USER_SET_VRING_NUM, 1, 2048);
	REFUSED(m, "size 2048");
	m = vc_state(VHOST_USER_SET_VRING_NUM, 1, 1024);
	ACCEPTED(m);
	m = vc_state(VHOST_USER_SET_VRING_NUM, 0, 1);
	ACCEPTED(m);
	m = vc_state(VHOST_USER_SET_VRING_BASE, 1, 0x10000);
	REFUSED(m, "base 65536");
	m = vc_state(VHOST_USER_SET_VRING_ENABLE, 1, 2);
	REFUSED(m, "state 2");
	/* Wrong payload sizes. */
	m = vc_state(VHOST_USER_SET_VRING_NUM, 1, 64);
	m.size = 4;
	REFUSED(m, "4-byte payload");

	/* Rings: need a size first, then must lie inside guest memory. */
	m = vc_addr(1, QVA, QVA + 0x1000, QVA + 0x2000);
	REFUSED(m, "no size yet");
	vc_vq[1].vring.num = 256;
	ACCEPTED(m);
	/* used ring of 256 (2054 bytes) starting 1 KiB before the end */
	m = vc_addr(1, QVA, QVA + 0x1000, QVA + (1 << 20) - 1024);
	REFUSED(m, "not wholly inside");
	m = vc_addr(1, QVA - 16, QVA + 0x1000, QVA + 0x2000);
	REFUSED(m, "not wholly inside");
	m = vc_addr(1, QVA + 8, QVA + 0x1000, QVA + 0x2000);
	REFUSED(m, "misaligned");
	m = vc_addr(1, UINT64_MAX - 15, QVA + 0x1000, QVA + 0x2000);
	REFUSED(m, "not wholly inside");
	/* Aligned for the front end, not where we mapped it. */
	vc_reg[0].qva = QVA + 1;
	m = vc_addr(1, QVA + 16, QVA + 0x1000, QVA + 0x2000);
	REFUSED(m, "misaligned");
	vc_reg[0].mmap_offset = 1;
	ACCEPTED(m);
	vc_reg[0].qva = QVA;
	vc_reg[0].mmap_offset = 0;

	/* Placed rings must still fit a new size. */
	vc_vq[1].vring.desc = (void *)0x1000;	/* "mapped" */
	vc_vq[1].vra = (struct vhost_vring_addr){
		.index = 1, .desc_user_addr = QVA + (1 << 20) - 0x1000,
		.avail_user_addr = QVA, .used_user_addr = QVA + 0x1000 };
	m = vc_state(VHOST_USER_SET_VRING_NUM, 1, 256);
	ACCEPTED(m);
	m = vc_state(VHOST_USER_SET_VRING_NUM, 1, 512);
	REFUSED(m, "do not fit");
	CHECK(!b13_vu_rings_fit(&vc_dev, 1));	/* no avail/used mapped */
	vc_vq[1].vring.avail = (void *)0x2000;
	vc_vq[1].vring.used = (void *)0x3000;
	CHECK(b13_vu_rings_fit(&vc_dev, 1));
	vc_reg[0].size = (1 << 20) - 1;	/* the table shrank under it */
	CHECK(!b13_vu_rings_fit(&vc_dev, 1));
	CHECK(!b13_vu_rings_fit(&vc_dev, 2));
}

static void test_vu_fds(void)
{
	VhostUserMsg m;
	int efd = eventfd(0, EFD_CLOEXEC), p[2];
	uint64_t v = 1;

	vc_reset();
	CHECK(efd >= 0 && pipe(p) == 0);
	m = vc_msg(VHOST_USER_SET_VRING_KICK, 8);
	memcpy(&m.payload.u64, &v, 8);		/* queue 1 */
	m.fds[0] = efd;
	m.fd_num = 1;
	ACCEPTED(m);
	CHECK(fcntl(efd, F_GETFL) & O_NONBLOCK);	/* made non-blocking */
	m.fds[0] = p[1];			/* a pipe could block */
	REFUSED(m, "not an eventfd");
	m.fd_num = 0;
	REFUSED(m, "0 fds");
	v = 1 | VHOST_USER_VRING_NOFD_MASK;
	memcpy(&m.payload.u64, &v, 8);
	ACCEPTED(m);
	m.fd_num = 1;
	REFUSED(m, "no-fd flag");
	v = 5;
	memcpy(&m.payload.u64, &v, 8);
	REFUSED(m, "queue index 5");
	v = 1ull << 40;
	memcpy(&m.payload.u64, &v, 8);
	REFUSED(m, "unknown bits");
	/* fds where none belong (libvhost-user would leak them) */
	m = vc_msg(VHOST_USER_GET_FEATURES, 0);
	m.fds[0] = efd;
	m.fd_num = 1;
	REFUSED(m, "1 fds");
	close(efd);
	close(p[0]);
	close(p[1]);
}

static VhostUserMsg vc_table(int n, const VhostUserMemoryRegion *r,
			     const int *fds)
{
	VhostUserMsg m = vc_msg(VHOST_USER_SET_MEM_TABLE,
				8 + n * sizeof(VhostUserMemoryRegion));
	VhostUserMemory mem = { .nregions = n };
	int i;

	for (i = 0; i < n && i < VHOST_MEMORY_BASELINE_NREGIONS; i++) {
		mem.regions[i] = r[i];
		m.fds[i] = fds[i];
	}
	memcpy(&m.payload.memory, &mem, sizeof(mem));
	m.fd_num = n < VHOST_MEMORY_BASELINE_NREGIONS ? n :
		   VHOST_MEMORY_BASELINE_NREGIONS;
	return m;
}

static void test_vu_memory(void)
{
	int fd = memfd_create("vc", MFD_CLOEXEC), efd = eventfd(0, 0);
	int fds[9] = { fd, fd, fd, fd, fd, fd, fd, fd, fd };
	VhostUserMemoryRegion r[9];
	VhostUserMsg m;
	VhostUserMemRegMsg add = { 0 };
	int i;

	vc_reset();
	CHECK(fd >= 0 && ftruncate(fd, 5 << 20) == 0);
	for (i = 0; i < 9; i++)
		r[i] = (VhostUserMemoryRegion){ .guest_phys_addr = i << 20,
			.memory_size = 1 << 20, .userspace_addr = QVA + (i << 20),
			.mmap_offset = (i % 4) << 20 };
	m = vc_table(4, r, fds);
	ACCEPTED(m);
	m = vc_table(9, r, fds);
	REFUSED(m, "9 regions");
	m = vc_table(4, r, fds);
	m.fd_num = 3;				/* an fd lost on the way */
	REFUSED(m, "with 3 fds");
	r[1].mmap_offset = 5 << 20;		/* past the end of the file */
	m = vc_table(2, r, fds);
	REFUSED(m, "in a file of");
	r[1].mmap_offset = 0;
	r[1].guest_phys_addr = (1 << 20) - 4096;	/* overlaps region 0 */
	m = vc_table(2, r, fds);
	REFUSED(m, "overlap");
	r[1].guest_phys_addr = 1 << 20;
	r[1].memory_size = 0;
	m = vc_table(2, r, fds);
	REFUSED(m, "empty");
	r[1].memory_size = 1 << 20;
	r[1].guest_phys_addr = UINT64_MAX - 4095;
	m = vc_table(2, r, fds);
	REFUSED(m, "wrapping");
	r[1].guest_phys_addr = 1 << 20;
	fds[1] = efd;				/* not a file to map */
	m = vc_table(2, r, fds);
	REFUSED(m, "not a regular file");
	fds[1] = fd;

	/* ADD_MEM_REG: checked the same way, and against the table. */
	m = vc_table(4, r, fds);
	b13_vu_files_note(&vc_files, &m);
	CHECK_EQ(vc_files.n, 4);
	CHECK_EQ(b13_vu_files_page(&vc_files, 3 << 20, 1 << 20), 4096);
	m = vc_msg(VHOST_USER_ADD_MEM_REG, sizeof(add));
	add.region = (VhostUserMemoryRegion){ .guest_phys_addr = 0x80000,
		.memory_size = 1 << 20, .userspace_addr = QVA + (8 << 20),
		.mmap_offset = 4 << 20 };
	memcpy(&m.payload.memreg, &add, sizeof(add));
	m.fds[0] = fd;
	m.fd_num = 1;
	REFUSED(m, "overlaps region 0");
	add.region.guest_phys_addr = 1 << 20;
	memcpy(&m.payload.memreg, &add, sizeof(add));
	ACCEPTED(m);
	m.fd_num = 0;
	REFUSED(m, "0 fds");
	/* The same bytes as a region of the table (2 MiB of the file). */
	add.region.mmap_offset = 2 << 20;
	memcpy(&m.payload.memreg, &add, sizeof(add));
	m.fd_num = 1;
	REFUSED(m, "same file bytes as the region at gpa 0x200000");
	/* Gone from the table: its bytes are free again. */
	{
		VhostUserMsg rem = vc_msg(VHOST_USER_REM_MEM_REG,
					  sizeof(add));
		VhostUserMemRegMsg gone = { .region = r[2] };

		memcpy(&rem.payload.memreg, &gone, sizeof(gone));
		b13_vu_files_note(&vc_files, &rem);
		CHECK_EQ(vc_files.n, 3);
		ACCEPTED(m);
	}
	close(fd);
	close(efd);
}

/*
 * Regions near 2^64 (issue 16): libvhost-user's unchecked sums would map
 * rings through another region or leave descriptors unclipped.  Regions
 * end below 2^63 in both address spaces, or are refused.
 */
static void test_vu_high_regions(void)
{
	int fd = memfd_create("vc", MFD_CLOEXEC);
	int fds[2] = { fd, fd };
	VhostUserMemoryRegion r[2];
	VhostUserMsg m;

	vc_reset();
	CHECK(fd >= 0 && ftruncate(fd, 4 << 20) == 0);
	r[0] = (VhostUserMemoryRegion){ .guest_phys_addr = 0,
		.memory_size = 1 << 20, .userspace_addr = QVA };
	r[1] = (VhostUserMemoryRegion){ .memory_size = 1 << 20,
		.mmap_offset = 1 << 20 };
	/* gpa + size is 2^64 - 4 KiB: a descriptor there is not clipped */
	r[1].guest_phys_addr = -(uint64_t)0x101000;
	r[1].userspace_addr = QVA + (1 << 20);
	m = vc_table(2, r, fds);
	REFUSED(m, "reaches past 2^63");
	/* qva + size is 2^64: libvhost-user skips it, finds another */
	r[1].guest_phys_addr = 1 << 20;
	r[1].userspace_addr = -(uint64_t)(1 << 20);
	m = vc_table(2, r, fds);
	REFUSED(m, "reaches past 2^63");
	r[1].userspace_addr = (1ull << 63) - (1 << 20);	/* ends at 2^63 */
	m = vc_table(2, r, fds);
	ACCEPTED(m);
	r[1].userspace_addr += 4096;
	m = vc_table(2, r, fds);
	REFUSED(m, "reaches past 2^63");
	r[1].userspace_addr = QVA + (1 << 20);
	r[1].guest_phys_addr = (1ull << 63) - (1 << 20);
	m = vc_table(2, r, fds);
	ACCEPTED(m);
	r[1].memory_size = (1ull << 63) + 4096;
	m = vc_table(2, r, fds);
	REFUSED(m, "2^6");
	close(fd);
}

/* Regions of one table mapping the same file bytes are refused. */
static void test_vu_aliased(void)
{
	int fd = memfd_create("vc", MFD_CLOEXEC);
	int fd2 = -1, fds[2];
	VhostUserMemoryRegion r[2];
	VhostUserMsg m;
	char path[64];

	vc_reset();
	CHECK(fd >= 0 && ftruncate(fd, 4 << 20) == 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fd2 = open(path, O_RDWR);	/* the same file, another fd */
	CHECK(fd2 >= 0);
	fds[0] = fd;
	fds[1] = fd2;
	r[0] = (VhostUserMemoryRegion){ .guest_phys_addr = 0,
		.memory_size = 2 << 20, .userspace_addr = QVA };
	r[1] = (VhostUserMemoryRegion){ .guest_phys_addr = 1ull << 32,
		.memory_size = 2 << 20, .userspace_addr = QVA + (4 << 20),
		.mmap_offset = (2 << 20) - 4096 };
	m = vc_table(2, r, fds);
	REFUSED(m, "regions 0 and 1 map the same file bytes");
	r[1].mmap_offset = 2 << 20;
	m = vc_table(2, r, fds);
	ACCEPTED(m);
	close(fd);
	close(fd2);
}

/* Which file systems may hold guest RAM. */
static void test_vu_file_systems(void)
{
	CHECK(b13_vu_fs_trusted(0x01021994));		/* tmpfs, memfd */
	CHECK(b13_vu_fs_trusted(0x958458f6));		/* hugetlbfs */
	CHECK(b13_vu_fs_trusted(0xef53));		/* ext4 */
	CHECK(b13_vu_fs_trusted(0x58465342));		/* xfs */
	CHECK(b13_vu_fs_trusted(0x9123683e));		/* btrfs */
	CHECK(!b13_vu_fs_trusted(0x65735546));		/* fuse */
	CHECK(!b13_vu_fs_trusted(0x6969));		/* nfs */
	CHECK(!b13_vu_fs_trusted(0x858458f6));		/* ramfs */
	CHECK(!b13_vu_fs_trusted(0x01021997));		/* 9p */
	CHECK(!b13_vu_fs_trusted(0x12345678));		/* unknown */
	CHECK(!strcmp(b13_vu_fs_name(0x65735546), "fuse"));
	CHECK(b13_vu_fs_name(0x12345678) == NULL);
}

static void test_vu_requests(void)
{
	static const int refused[] = {
		VHOST_USER_NONE, VHOST_USER_SET_LOG_BASE, VHOST_USER_SET_LOG_FD,
		VHOST_USER_SEND_RARP, VHOST_USER_SET_BACKEND_REQ_FD,
		VHOST_USER_IOTLB_MSG, VHOST_USER_POSTCOPY_ADVISE,
		VHOST_USER_POSTCOPY_LISTEN, VHOST_USER_GET_INFLIGHT_FD,
		VHOST_USER_SET_INFLIGHT_FD, VHOST_USER_VRING_KICK,
		VHOST_USER_GET_SHARED_OBJECT, 34, 39, 40, 99, -1,
	};
	VhostUserMsg m;
	uint64_t v;
	size_t i;

	vc_reset();
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		m = vc_msg(refused[i], 0);
		REFUSED(m, "not supported");
	}
	CHECK(!strcmp(b13_vu_request_name(34), "unknown"));
	CHECK(!strcmp(b13_vu_request_name(-5), "unknown"));
	m = vc_msg(VHOST_USER_SET_OWNER, 0);
	ACCEPTED(m);
	m.flags = 2;				/* protocol version 2 */
	REFUSED(m, "bad flags");
	m.flags = 1 | VHOST_USER_REPLY_MASK;
	REFUSED(m, "bad flags");
	m.flags = 1 | VHOST_USER_NEED_REPLY_MASK;
	ACCEPTED(m);
	m = vc_msg(VHOST_USER_SET_FEATURES, 8);
	v = vc_offer.features;
	memcpy(&m.payload.u64, &v, 8);
	ACCEPTED(m);
	v |= 1ull << 26;			/* VHOST_F_LOG_ALL: not offered */
	memcpy(&m.payload.u64, &v, 8);
	REFUSED(m, "not offered");
	m = vc_msg(VHOST_USER_SET_PROTOCOL_FEATURES, 8);
	v = 1ull << VHOST_USER_PROTOCOL_F_BACKEND_REQ;
	memcpy(&m.payload.u64, &v, 8);
	REFUSED(m, "not offered");
	/* Config: at most 256 bytes, the payload as long as it says. */
	m = vc_msg(VHOST_USER_GET_CONFIG, 12 + 4);
	m.payload.config.size = 4;
	ACCEPTED(m);
	m.payload.config.size = 300;
	REFUSED(m, "300 bytes");
	m.payload.config.size = 8;
	REFUSED(m, "16-byte payload");
	m.payload.config.size = 4;
	m.payload.config.offset = 254;
	REFUSED(m, "offset 254");
}

/* ---- the feature bits' messages ------------------------------------------ */

static void test_parse_features(void)
{
	const char *why;
	uint64_t f = 99;

	CHECK_EQ(b13_parse_features("all", &f, &why), 0);
	CHECK_EQ(f, B13_F_ALL);
	CHECK_EQ(b13_parse_features("none", &f, &why), 0);
	CHECK_EQ(f, 0);
	CHECK_EQ(b13_parse_features("withdraw", &f, &why), 0);
	CHECK_EQ(f, B13_F_WITHDRAW);
	CHECK_EQ(b13_parse_features("full-stats,free-page-reporting", &f,
				    &why), 0);
	CHECK_EQ(f, B13_F_FULL_STATS | B13_F_REPORTING);
	CHECK_EQ(b13_parse_features("pressure-release,withdraw,withdraw", &f,
				    &why), 0);
	CHECK_EQ(f, B13_F_PRESSURE_RELEASE | B13_F_WITHDRAW);
	CHECK_EQ(b13_parse_features("", &f, &why), -1);
	CHECK_EQ(b13_parse_features("withdraw,", &f, &why), -1);
	CHECK_EQ(b13_parse_features(",withdraw", &f, &why), -1);
	CHECK_EQ(b13_parse_features("withdraw,,full-stats", &f, &why), -1);
	CHECK_EQ(b13_parse_features("reporting", &f, &why), -1);
	CHECK_EQ(b13_parse_features("ALL", &f, &why), -1);
	CHECK_EQ(b13_parse_features("all,withdraw", &f, &why), -1);
	CHECK(strstr(why, "withdraw, free-page-reporting") != NULL);
}

static enum b13_reject chkf(uint32_t type, uint64_t len, uint64_t f,
			    uint64_t *n)
{
	struct virtio_balloon13_resp_hdr h = { .type = htole32(type) };
	uint32_t t = 99;

	*n = 0;
	return b13_check_msg(len, &h, f, &t, n);
}

/*
 * WITHDRAW of a wrong length: its complete entries count; with none, the
 * message is rejected (B13-DEV-WITHDRAW-04).  Other types: rejected.
 */
static void test_check_msg_withdraw_length(void)
{
	uint64_t n;

	CHECK_EQ(chkf(VIRTIO_BALLOON13_RESP_WITHDRAW, 8 + 4, B13_F_WITHDRAW, &n), B13_REJ_LENGTH);
	CHECK_EQ(chkf(VIRTIO_BALLOON13_RESP_WITHDRAW, 8 + 8 + 4, B13_F_WITHDRAW, &n), B13_OK);
	CHECK_EQ(n, 1);
	CHECK_EQ(chkf(VIRTIO_BALLOON13_RESP_WITHDRAW, 8 + 8 * 3 + 7, B13_F_WITHDRAW, &n), B13_OK);
	CHECK_EQ(n, 3);
	CHECK_EQ(chkf(VIRTIO_BALLOON13_RESP_WITHDRAW, 8 + 8 + 4, 0, &n), B13_REJ_TYPE);
	CHECK_EQ(chkf(VIRTIO_BALLOON13_RESP_PAGES, 8 + 8 + 4, B13_F_WITHDRAW, &n), B13_REJ_LENGTH);
	CHECK_EQ(chkf(VIRTIO_BALLOON13_RESP_REPORT, 8 + 16 + 8, B13_F_REPORTING, &n), B13_REJ_LENGTH);
}

static void test_check_msg_features(void)
{
	uint64_t n;

	/* WITHDRAW: like PAGES, only when negotiated. */
	CHECK_EQ(chkf(2, 16, 0, &n), B13_REJ_TYPE);
	CHECK_EQ(chkf(2, 16, B13_F_ALL & ~B13_F_WITHDRAW, &n), B13_REJ_TYPE);
	CHECK_EQ(chkf(2, 16, B13_F_WITHDRAW, &n), B13_OK);
	CHECK_EQ(n, 1);
	CHECK_EQ(chkf(2, 8, B13_F_WITHDRAW, &n), B13_REJ_LENGTH);
	CHECK_EQ(chkf(2, 20, B13_F_WITHDRAW, &n), B13_OK);	/* 1 entry + 4 */
	CHECK_EQ(n, 1);
	CHECK_EQ(chkf(2, 65536, B13_F_WITHDRAW, &n), B13_OK);
	CHECK_EQ(n, 8191);
	CHECK_EQ(chkf(2, 65544, B13_F_WITHDRAW, &n), B13_REJ_OVERSIZE);
	/* REPORT: header + 16n, only when negotiated. */
	CHECK_EQ(chkf(3, 24, B13_F_ALL & ~B13_F_REPORTING, &n), B13_REJ_TYPE);
	CHECK_EQ(chkf(3, 24, B13_F_REPORTING, &n), B13_OK);
	CHECK_EQ(n, 1);
	CHECK_EQ(chkf(3, 16, B13_F_REPORTING, &n), B13_REJ_LENGTH);
	CHECK_EQ(chkf(3, 8, B13_F_REPORTING, &n), B13_REJ_LENGTH);
	CHECK_EQ(chkf(3, 8 + 16 * 4095, B13_F_REPORTING, &n), B13_OK);
	CHECK_EQ(n, 4095);
	CHECK_EQ(chkf(3, 8 + 16 * 4096, B13_F_REPORTING, &n),
		 B13_REJ_OVERSIZE);
	/* A feature never turns on another type. */
	CHECK_EQ(chkf(4, 24, B13_F_ALL, &n), B13_REJ_TYPE);
}

static void test_map_covers(void)
{
	static const struct b13_region_desc adj[] = {
		{ 0x0, 0x10000, NULL, 0 }, { 0x10000, 0x10000, NULL, 0 },
		{ 0x30000, 0x10000, NULL, 0 },
	};
	struct b13_map m;

	b13_map_init(&m, 12);
	CHECK(b13_map_set_regions(&m, adj, 3) == 0);
	CHECK(b13_map_covers(&m, 0, 0x10000));
	CHECK(b13_map_covers(&m, 0x8000, 0x10000));	/* two regions */
	CHECK(b13_map_covers(&m, 0, 0x20000));
	CHECK(!b13_map_covers(&m, 0, 0x20001));		/* into the hole */
	CHECK(!b13_map_covers(&m, 0x1f000, 0x2000));
	CHECK(!b13_map_covers(&m, 0x20000, 0x1000));	/* the hole */
	CHECK(b13_map_covers(&m, 0x30000, 0x10000));
	CHECK(!b13_map_covers(&m, 0x3f000, 0x2000));
	CHECK(!b13_map_covers(&m, 0x1000, 0));
	CHECK(!b13_map_covers(&m, UINT64_MAX - 0xfff, 0x2000));
	b13_map_free(&m);
}

/* A message of raw bytes through b13_handle_msg() with features f. */
static enum b13_reject msg(struct b13_map *m, struct b13_stats *st,
			   const void *buf, size_t len, uint64_t f,
			   struct b13_msg_result *res)
{
	struct iovec iov = { (void *)buf, len };

	return b13_handle_msg(m, st, &iov, 1, 0, f, res);
}

static size_t build_ranges(uint8_t *buf, const uint64_t *r, size_t nr)
{
	return build_msg(buf, VIRTIO_BALLOON13_RESP_REPORT, 0, r, 2 * nr);
}

static void test_withdraw_msg(void)
{
	static const uint64_t in[] = { 0x103000, 0x104000, 0x105000,
				       0x100000000ull };
	/* two valid, one repeated, unaligned, the hole, wrapping, absent */
	static const uint64_t out[] = { 0x104000, 0x100000000ull, 0x104000,
					0x103800, 0xa0000, UINT64_MAX,
					0x106000 };
	struct b13_stats st = { { 0 }, 0 };
	struct b13_msg_result res;
	struct discards r = { 0 };
	struct b13_map m;
	uint8_t buf[128];
	size_t len;

	b13_map_init(&m, 12);
	m.discard = record_discard;
	m.discard_arg = &r;
	b13_map_set_regions(&m, q35, 3);
	len = build_msg(buf, 0, 0, in, 4);
	CHECK_EQ(msg(&m, &st, buf, len, B13_F_WITHDRAW, &res), B13_OK);
	CHECK_EQ(b13_map_blocks_set(&m), 4);
	r.n = 0;
	len = build_msg(buf, VIRTIO_BALLOON13_RESP_WITHDRAW, 0, out, 7);
	CHECK_EQ(msg(&m, &st, buf, len, B13_F_WITHDRAW, &res), B13_OK);
	CHECK_EQ(res.type, VIRTIO_BALLOON13_RESP_WITHDRAW);
	CHECK_EQ(res.n, 7);
	CHECK_EQ(res.apply.withdrawn, 2);
	CHECK_EQ(res.apply.withdraw_invalid, 3);
	CHECK_EQ(res.apply.withdraw_absent, 2);	/* the repeat, 0x106000 */
	CHECK_EQ(res.bad_addr, 0x103800);	/* the first invalid one */
	CHECK_EQ(b13_map_blocks_set(&m), 2);
	CHECK_EQ(r.n, 0);			/* nothing discarded */
	CHECK(!res.withdraw_bad_length);
	/* Not negotiated: an unknown type, nothing changes. */
	CHECK_EQ(msg(&m, &st, buf, len, 0, &res), B13_REJ_TYPE);
	CHECK_EQ(b13_map_blocks_set(&m), 2);
	/*
	 * A wrong length: the complete entry (0x105000) is withdrawn, the
	 * 4 bytes of the next (0x100000000) are not read as one.
	 */
	len = build_msg(buf, VIRTIO_BALLOON13_RESP_WITHDRAW, 0, &in[2], 2);
	CHECK_EQ(msg(&m, &st, buf, len - 4, B13_F_WITHDRAW, &res), B13_OK);
	CHECK_EQ(res.n, 1);
	CHECK(res.withdraw_bad_length);
	CHECK_EQ(res.apply.withdrawn, 1);
	CHECK_EQ(b13_map_blocks_set(&m), 1);
	/* Without a complete entry: rejected, nothing changes. */
	CHECK_EQ(msg(&m, &st, buf, 8 + 4, B13_F_WITHDRAW, &res),
		 B13_REJ_LENGTH);
	CHECK_EQ(b13_map_blocks_set(&m), 1);
	len = build_msg(buf, 0, 0, &in[2], 1);	/* 0x105000 back in */
	CHECK_EQ(msg(&m, &st, buf, len, B13_F_WITHDRAW, &res), B13_OK);
	CHECK_EQ(b13_map_blocks_set(&m), 2);
	/* With WITHDRAW, a block sent again is a duplicate: no mincore. */
	len = build_msg(buf, 0, 0, in, 1);
	CHECK_EQ(msg(&m, &st, buf, len, B13_F_WITHDRAW, &res), B13_OK);
	CHECK_EQ(res.apply.duplicates, 1);
	CHECK_EQ(res.apply.residency_calls, 0);
	b13_map_free(&m);
}

static void test_report_msg(void)
{
	/* Host mappings adjacent too, so a range may span both regions. */
	static const struct b13_region_desc d[] = {
		{ 0x0, 0x800000, (uint8_t *)0x40000000, 0 },
		{ 0x800000, 0x800000, (uint8_t *)0x50000000, 0 },
		{ 0x2000000, 0x1000, (uint8_t *)0x60000000, 0 },
	};
	struct b13_stats st = { { 0 }, 0 };
	struct b13_msg_result res;
	struct discards r = { 0 };
	struct b13_map m;
	uint8_t buf[256];
	uint64_t rg[8], sum = 0;
	size_t len;
	int i;

	b13_map_init(&m, 12);
	m.discard = record_discard;
	m.discard_arg = &r;
	CHECK(b13_map_set_regions(&m, d, 3) == 0);
	/* 10 MiB from 2 MiB: 6 MiB of region 0 (4 + 2), 4 MiB of region 1 */
	rg[0] = 0x200000; rg[1] = 0xa00000;
	rg[2] = 0x2000000; rg[3] = 0x1000;
	len = build_ranges(buf, rg, 2);
	CHECK_EQ(msg(&m, &st, buf, len, B13_F_REPORTING, &res), B13_OK);
	CHECK_EQ(res.apply.report_ranges, 2);
	CHECK_EQ(res.apply.reported_bytes, 0xa01000);
	CHECK_EQ(res.apply.punch_bytes, 0xa01000);
	CHECK_EQ(r.n, 4);
	CHECK_EQ(r.addr[0], 0x40200000);
	CHECK_EQ(r.len[0], 4 << 20);		/* chunks of at most 4 MiB */
	CHECK_EQ(r.addr[1], 0x40600000);
	CHECK_EQ(r.len[1], 2 << 20);		/* the rest of region 0 */
	CHECK_EQ(r.addr[2], 0x50000000);
	CHECK_EQ(r.len[2], 4 << 20);
	CHECK_EQ(r.addr[3], 0x60000000);
	CHECK_EQ(r.len[3], 0x1000);
	for (i = 0; i < r.n && i < 64; i++)
		sum += r.len[i];
	CHECK_EQ(sum, 0xa01000);
	CHECK_EQ(b13_map_blocks_set(&m), 0);	/* never ballooned */

	/* Each bad range rejects the whole message; nothing discarded. */
	{
		static const uint64_t bad[][2] = {
			{ 0x1000, 0 },			/* empty */
			{ 0x1800, 0x1000 },		/* unaligned address */
			{ 0x1000, 0x1800 },		/* unaligned length */
			{ 0xfffffffffffff000ull, 0x2000 },	/* wraps */
			{ 0xfff000, 0x2000 },		/* into the hole */
			{ 0x1000000, 0x1000 },		/* the hole */
		};
		static const enum b13_reject why[] = {
			B13_REJ_EMPTY, B13_REJ_UNALIGNED, B13_REJ_UNALIGNED,
			B13_REJ_OVERFLOW, B13_REJ_OUT_OF_RAM,
			B13_REJ_OUT_OF_RAM,
		};

		for (i = 0; i < 6; i++) {
			rg[0] = 0x10000; rg[1] = 0x1000;	/* a good one */
			rg[2] = bad[i][0]; rg[3] = bad[i][1];
			r.n = 0;
			len = build_ranges(buf, rg, 2);
			CHECK_EQ(msg(&m, &st, buf, len, B13_F_REPORTING, &res),
				 why[i]);
			CHECK_EQ(res.bad_addr, bad[i][0]);
			CHECK_EQ(r.n, 0);
		}
		CHECK_EQ(msg(&m, &st, buf, len, 0, &res), B13_REJ_TYPE);
	}

	/*
	 * Ballooned blocks reported free: without WITHDRAW they were
	 * withdrawn by access and leave the bitmap; with it, they stay
	 * and count as a guest error.
	 */
	{
		static const uint64_t a[] = { 0x10000, 0x11000, 0x30000 };

		len = build_msg(buf, 0, 0, a, 3);
		CHECK_EQ(msg(&m, &st, buf, len, 0, &res), B13_OK);
		rg[0] = 0x10000; rg[1] = 0x10000;
		len = build_ranges(buf, rg, 1);
		CHECK_EQ(msg(&m, &st, buf, len, B13_F_REPORTING |
			     B13_F_WITHDRAW, &res), B13_OK);
		CHECK_EQ(res.apply.report_ballooned, 2);
		CHECK_EQ(b13_map_blocks_set(&m), 3);
		CHECK_EQ(msg(&m, &st, buf, len, B13_F_REPORTING, &res), B13_OK);
		CHECK_EQ(res.apply.report_ballooned, 2);
		CHECK_EQ(b13_map_blocks_set(&m), 1);
	}
	b13_map_free(&m);
}

/* A region with 2 MiB host pages discards whole huge pages only. */
static void test_region_pages(void)
{
	const struct b13_region_desc d = { 0x0, 0x1000000,
					   (uint8_t *)0x40000000, 2 << 20 };
	struct b13_apply_stats st = { 0 };
	struct discards r = { 0 };
	struct b13_map m;
	uint64_t a[800], rep = 0;
	int i;

	b13_map_init(&m, 12);
	m.discard = record_discard;
	m.discard_arg = &r;
	CHECK(b13_map_set_regions(&m, &d, 1) == 0);
	CHECK_EQ(m.r[0].page, 2 << 20);
	/* 4 KiB blocks from 1 MiB to 4.125 MiB: only [2, 4) MiB is whole */
	for (i = 0; i < 800; i++)
		a[i] = 0x100000 + i * 0x1000;
	b13_apply_sorted(&m, a, 800, &st, &rep);
	CHECK_EQ(st.new_blocks, 800);
	CHECK_EQ(r.n, 1);
	CHECK_EQ(r.addr[0], 0x40200000);
	CHECK_EQ(r.len[0], 2 << 20);
	/* A page size that is not a power of two: the table is refused. */
	{
		struct b13_region_desc bad = d;

		bad.page = 3 << 20;
		CHECK_EQ(b13_map_set_regions(&m, &bad, 1), -1);
	}
	b13_map_free(&m);
}

/*
 * keep (balloon13d --no-discard): blocks are marked and counted, nothing
 * is discarded, and a block sent again without WITHDRAW is re-ballooned
 * (it may have been withdrawn: residency can't tell), never a duplicate,
 * with no mincore().  The same blocks without keep are discarded.
 */
static void test_keep(void)
{
	const struct b13_region_desc d = { 0x0, 0x1000000,
					   (uint8_t *)0x40000000, 4096 };
	struct b13_apply_stats st = { 0 };
	struct discards r = { 0 };
	struct b13_map m;
	uint64_t a[8], rep = 0;
	int i;

	b13_map_init(&m, 12);
	m.discard = record_discard;
	m.discard_arg = &r;
	m.keep = true;
	CHECK(b13_map_set_regions(&m, &d, 1) == 0);
	for (i = 0; i < 8; i++)
		a[i] = 0x100000 + i * 0x2000;
	b13_apply_sorted(&m, a, 8, &st, &rep);
	CHECK_EQ(st.new_blocks, 8);
	CHECK_EQ(st.kept_bytes, 8 * 4096);
	CHECK_EQ(st.punch_calls, 0);
	CHECK_EQ(r.n, 0);
	CHECK_EQ(b13_map_blocks_set(&m), 8);
	b13_apply_sorted(&m, a, 1, &st, &rep);
	CHECK_EQ(st.reballooned, 1);
	CHECK_EQ(st.duplicates, 0);
	CHECK_EQ(st.residency_calls, 0);
	CHECK_EQ(b13_map_blocks_set(&m), 8);
	CHECK_EQ(r.n, 0);
	b13_map_clear_bitmaps(&m);
	m.keep = false;
	memset(&st, 0, sizeof(st));
	b13_apply_sorted(&m, a, 8, &st, &rep);
	CHECK_EQ(st.kept_bytes, 0);
	CHECK_EQ(r.n, 8);
	CHECK_EQ(st.punch_bytes, 8 * 4096);
	b13_map_free(&m);
}

/*
 * A job in slices: every other block of 4 MiB (512 runs), one syscall
 * per slice.  It yields after each, hands over full batches of
 * B13_BATCH discards, and is over only once every batch was made;
 * finishing it early marks the rest without discarding it.
 */
static void test_job_slices(void)
{
	const struct b13_region_desc d = { 0x0, 0x800000,
					   (uint8_t *)0x40000000, 0 };
	struct b13_stats st = { { 0 }, 0 };
	struct discards r = { 0 };
	struct b13_budget b;
	struct b13_job *j = g_new0(struct b13_job, 1);
	struct b13_map m;
	struct iovec iov;
	uint64_t a[512];
	uint8_t *buf = g_malloc(8 + 8 * 512);
	int i, yields = 0, batches = 0, steps = 0;
	enum b13_step s;

	CHECK(b13_job_init(j));
	b13_map_init(&m, 12);
	m.discard = record_discard;
	m.discard_arg = &r;
	b13_map_set_regions(&m, &d, 1);
	for (i = 0; i < 512; i++)
		a[i] = (511 - i) * 0x2000;	/* unsorted */
	iov = (struct iovec){ buf, build_msg(buf, 0, 0, a, 512) };
	CHECK_EQ(b13_job_begin(j, &m, &st, &iov, 1, 0, 0), B13_OK);
	CHECK(j->busy);
	for (;;) {
		b13_budget_init(&b, 1, 0);
		s = b13_job_step(j, &m, &b);
		steps++;
		if (s == B13_STEP_DONE)
			break;
		if (s == B13_STEP_YIELD)
			yields++;
		if (s == B13_STEP_DISCARD) {
			CHECK(j->nbatch > 0 && j->nbatch <= B13_BATCH);
			b13_job_run_batch(j, &m);
			batches++;
		}
		if (steps > 4000)
			break;
	}
	CHECK_EQ(s, B13_STEP_DONE);
	CHECK(!j->busy);
	CHECK_EQ(r.n, 512);
	CHECK_EQ(j->res.apply.punch_calls, 512);
	CHECK_EQ(j->res.apply.new_blocks, 512);
	CHECK_EQ(j->res.runs, 512);
	CHECK_EQ(batches, 512 / B13_BATCH);
	CHECK_EQ(yields, 512 - 512 / B13_BATCH);	/* one per slice */
	CHECK_EQ(b13_map_blocks_set(&m), 512);

	/* The same with a big budget: full batches, then the last. */
	b13_map_clear_bitmaps(&m);
	r.n = 0;
	batches = 0;
	iov = (struct iovec){ buf, build_msg(buf, 0, 0, a, 512) };
	b13_job_begin(j, &m, &st, &iov, 1, 0, 0);
	b13_budget_init(&b, 0, 0);
	while ((s = b13_job_step(j, &m, &b)) != B13_STEP_DONE) {
		CHECK_EQ(s, B13_STEP_DISCARD);
		CHECK_EQ(j->nbatch, B13_BATCH);
		b13_job_run_batch(j, &m);
		batches++;
	}
	CHECK_EQ(batches, 512 / B13_BATCH);
	CHECK_EQ(r.n, 512);

	/* Finished early: the rest marked, queued discards never made. */
	b13_map_clear_bitmaps(&m);
	r.n = 0;
	iov = (struct iovec){ buf, build_msg(buf, 0, 0, a, 512) };
	b13_job_begin(j, &m, &st, &iov, 1, 0, 0);
	b13_budget_init(&b, 0, 0);
	CHECK_EQ(b13_job_step(j, &m, &b), B13_STEP_DISCARD);
	b13_job_run_batch(j, &m);
	CHECK_EQ(b13_job_step(j, &m, &b), B13_STEP_DISCARD);	/* queued */
	b13_job_finish(j, &m);
	CHECK(!j->busy);
	CHECK_EQ(r.n, B13_BATCH);
	CHECK_EQ(b13_map_blocks_set(&m), 512);
	CHECK_EQ(j->res.apply.skipped_bytes, (512 - B13_BATCH) * 0x1000ull);
	CHECK_EQ(b13_job_step(j, &m, &b), B13_STEP_DONE);
	b13_map_free(&m);
	b13_job_free(j);
	g_free(j);
	g_free(buf);
}

static void test_full_stats_tags(void)
{
	uint64_t w[2 * VIRTIO_BALLOON13_TAG_NR + 2];
	struct b13_stats st = { { 0 }, 0 };
	struct b13_msg_result res;
	struct b13_map m;
	uint8_t buf[8 + 16 * (VIRTIO_BALLOON13_TAG_NR + 1)];
	size_t len;
	int t;

	b13_map_init(&m, 12);
	for (t = 0; t <= VIRTIO_BALLOON13_TAG_NR; t++) {
		w[2 * t] = t;		/* the last one, 18, is unknown */
		w[2 * t + 1] = 1000 + t;
	}
	len = build_msg(buf, 1, 0, w, 2 * (VIRTIO_BALLOON13_TAG_NR + 1));
	CHECK_EQ(msg(&m, &st, buf, len, B13_F_FULL_STATS, &res), B13_OK);
	CHECK_EQ(res.stats_unknown, 1);
	CHECK_EQ(st.present, (1u << VIRTIO_BALLOON13_TAG_NR) - 1);
	CHECK_EQ(st.value[VIRTIO_BALLOON13_TAG_PSI_FULL_US], 1017);
	CHECK_EQ(st.value[VIRTIO_BALLOON13_TAG_AVAIL], 1006);
	CHECK_EQ(msg(&m, &st, buf, len, B13_F_ALL & ~B13_F_FULL_STATS, &res),
		 B13_OK);
	CHECK_EQ(res.stats_unknown, VIRTIO_BALLOON13_TAG_NR + 1 - 6);
	CHECK_EQ(st.present, (1u << 6) - 1);
	b13_map_free(&m);
}

static void test_names(void)
{
	int i;

	for (i = 0; i < B13_REJ_NR; i++)
		CHECK(b13_reject_names[i] && !strchr(b13_reject_names[i], ' '));
	for (i = 0; i < VIRTIO_BALLOON13_TAG_NR; i++)
		CHECK(b13_tag_names[i] && !strchr(b13_tag_names[i], ' '));
	for (i = 0; i < 4; i++)
		CHECK(b13_feature_names[i] != NULL);
	CHECK(!strcmp(b13_tag_names[VIRTIO_BALLOON13_TAG_PSI_FULL_US],
		      "psi_full_us"));
	CHECK(!strcmp(b13_tag_names[VIRTIO_BALLOON13_TAG_MEMFREE], "memfree"));
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();
	g_test_add_func("/host/logic/parse_size", test_parse_size);
	g_test_add_func("/host/logic/parse_uint", test_parse_uint);
	g_test_add_func("/host/logic/check_msg", test_check_msg);
	g_test_add_func("/host/logic/check_msg_withdraw_length",
			test_check_msg_withdraw_length);
	g_test_add_func("/host/logic/region_geometry", test_geometry);
	g_test_add_func("/host/logic/region_find", test_find);
	g_test_add_func("/host/logic/check_pages", test_check_pages);
	g_test_add_func("/host/logic/coalesce", test_coalesce);
	g_test_add_func("/host/logic/punch_and_withdraw", test_punch_and_withdraw);
	g_test_add_func("/host/logic/big_and_small_blocks", test_big_and_small_blocks);
	g_test_add_func("/host/logic/scattered_blocks", test_scattered);
	g_test_add_func("/host/logic/no_mapping", test_no_mapping);
	g_test_add_func("/host/logic/handle_pages", test_handle_pages);
	g_test_add_func("/host/logic/handle_stats", test_handle_stats);
	g_test_add_func("/host/logic/apply_sorted", test_apply_sorted);
	g_test_add_func("/host/logic/bad_tables", test_bad_tables);
	g_test_add_func("/host/logic/ranges_paged", test_ranges_paged);
	g_test_add_func("/host/logic/scan_slices", test_scan_slices);
	g_test_add_func("/host/logic/ratelimit", test_ratelimit);
	g_test_add_func("/host/logic/vhost_user_queues", test_vu_queues);
	g_test_add_func("/host/logic/vhost_user_fds", test_vu_fds);
	g_test_add_func("/host/logic/vhost_user_memory", test_vu_memory);
	g_test_add_func("/host/logic/vhost_user_requests", test_vu_requests);
	g_test_add_func("/host/logic/names", test_names);
	g_test_add_func("/host/logic/parse_features", test_parse_features);
	g_test_add_func("/host/logic/check_msg_features",
			test_check_msg_features);
	g_test_add_func("/host/logic/map_covers", test_map_covers);
	g_test_add_func("/host/logic/withdraw", test_withdraw_msg);
	g_test_add_func("/host/logic/keep", test_keep);
	g_test_add_func("/host/logic/report", test_report_msg);
	g_test_add_func("/host/logic/region_pages", test_region_pages);
	g_test_add_func("/host/logic/job_slices", test_job_slices);
	g_test_add_func("/host/logic/full_stats_tags", test_full_stats_tags);
	g_test_add_func("/host/logic/vhost_user_high_regions",
			test_vu_high_regions);
	g_test_add_func("/host/logic/vhost_user_aliased_regions",
			test_vu_aliased);
	g_test_add_func("/host/logic/vhost_user_file_systems",
			test_vu_file_systems);
	return g_test_run();
}
