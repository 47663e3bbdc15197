// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13 host logic: validation, coalescing, bitmap, punching, residency.
 *
 * Everything here works on a struct b13_map, a copy of the vhost-user memory
 * table (guest-physical start, size, our mapping) with one bitmap per region.
 * It never trusts a guest value: every address is range-checked against the
 * regions before it is turned into a pointer, and sizes are checked for
 * wrap-around before they are added.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "b13.h"

/* Pages per mincore() call: a 64 KiB vector covers 256 MiB of 4 KiB pages. */
#define B13_MINCORE_WINDOW	65536

const char *const b13_reject_names[B13_REJ_NR] = {
	[B13_OK] = "ok",
	[B13_REJ_SHORT] = "short",
	[B13_REJ_LENGTH] = "bad_length",
	[B13_REJ_TYPE] = "unknown_type",
	[B13_REJ_OVERSIZE] = "oversize",
	[B13_REJ_WRITABLE] = "writable_descriptor",
	[B13_REJ_OVERFLOW] = "overflow",
	[B13_REJ_UNALIGNED] = "unaligned",
	[B13_REJ_OUT_OF_RAM] = "out_of_ram",
};

const char *const b13_tag_names[B13_NUM_TAGS] = {
	[B13_TAG_SWAP_IN] = "swap_in",
	[B13_TAG_SWAP_OUT] = "swap_out",
	[B13_TAG_MAJFLT] = "majflt",
	[B13_TAG_MINFLT] = "minflt",
	[B13_TAG_MEMFREE] = "memfree",
	[B13_TAG_MEMTOT] = "memtot",
};

/* ---- bit helpers ---------------------------------------------------- */

static bool test_bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static void set_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

/* First index >= from with the bit equal to val, or n. */
static uint64_t find_next(const uint64_t *bm, uint64_t n, uint64_t from,
			  bool val)
{
	while (from < n) {
		uint64_t w = bm[from / 64];

		if (!val)
			w = ~w;
		w &= ~0ull << (from % 64);
		if (w) {
			from = (from & ~63ull) + (uint64_t)__builtin_ctzll(w);
			return from < n ? from : n;
		}
		from = (from & ~63ull) + 64;
	}
	return n;
}

/* ---- the region map ------------------------------------------------- */

void b13_map_init(struct b13_map *m, unsigned int page_bits)
{
	long pg = sysconf(_SC_PAGESIZE);

	memset(m, 0, sizeof(*m));
	m->page_bits = page_bits;
	m->block_size = 1ull << page_bits;
	m->host_page = pg > 0 ? (uint64_t)pg : 4096;
}

static void region_geometry(const struct b13_map *m, struct b13_region *r)
{
	uint64_t end = r->gpa + r->size;
	uint64_t first, last;

	if (end < r->gpa)	/* wraps: clamp, the last block is cut anyway */
		end = UINT64_MAX;
	first = r->gpa >> m->page_bits;
	if (r->gpa & (m->block_size - 1))
		first++;
	last = end >> m->page_bits;
	r->first_block = first;
	r->nblocks = last > first ? last - first : 0;
}

int b13_map_set_regions(struct b13_map *m, const struct b13_region_desc *d,
			size_t n)
{
	struct b13_region *nr = calloc(n ? n : 1, sizeof(*nr));
	size_t i, j;

	if (!nr) {
		b13_map_free(m);
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct b13_region *r = &nr[i];

		r->gpa = d[i].gpa;
		r->size = d[i].size;
		r->host = d[i].host;
		region_geometry(m, r);
		/* Same region as before: keep what we know about it. */
		for (j = 0; j < m->nr; j++) {
			struct b13_region *o = &m->r[j];

			if (o->bitmap && o->gpa == r->gpa &&
			    o->size == r->size) {
				r->bitmap = o->bitmap;
				r->nset = o->nset;
				o->bitmap = NULL;
				break;
			}
		}
		if (!r->bitmap && r->nblocks) {
			r->bitmap = calloc((r->nblocks + 63) / 64,
					   sizeof(uint64_t));
			if (!r->bitmap)
				goto oom;
		}
	}
	/* Keep them sorted by gpa (libvhost-user does, but don't rely on it). */
	for (i = 1; i < n; i++) {
		struct b13_region t = nr[i];

		for (j = i; j > 0 && nr[j - 1].gpa > t.gpa; j--)
			nr[j] = nr[j - 1];
		nr[j] = t;
	}
	b13_map_free(m);
	m->r = nr;
	m->nr = n;
	return 0;
oom:
	for (j = 0; j <= i && j < n; j++)
		free(nr[j].bitmap);
	free(nr);
	b13_map_free(m);
	return -1;
}

void b13_map_clear_bitmaps(struct b13_map *m)
{
	size_t i;

	for (i = 0; i < m->nr; i++) {
		struct b13_region *r = &m->r[i];

		if (r->bitmap)
			memset(r->bitmap, 0, (r->nblocks + 63) / 64 * 8);
		r->nset = 0;
	}
}

void b13_map_free(struct b13_map *m)
{
	size_t i;

	for (i = 0; i < m->nr; i++)
		free(m->r[i].bitmap);
	free(m->r);
	m->r = NULL;
	m->nr = 0;
}

uint64_t b13_map_ram_bytes(const struct b13_map *m)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < m->nr; i++)
		sum += m->r[i].size;
	return sum;
}

uint64_t b13_map_blocks_set(const struct b13_map *m)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < m->nr; i++)
		sum += m->r[i].nset;
	return sum;
}

long b13_map_find(const struct b13_map *m, uint64_t addr, uint64_t len)
{
	size_t lo = 0, hi = m->nr;

	/* Last region with gpa <= addr. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->r[mid].gpa <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -1;
	lo--;
	if (len > m->r[lo].size || addr - m->r[lo].gpa > m->r[lo].size - len)
		return -1;
	return (long)lo;
}

/* ---- validation ----------------------------------------------------- */

enum b13_reject b13_check_msg(uint64_t len, const struct b13_msg_hdr *hdr,
			      uint32_t *type, uint64_t *n)
{
	uint32_t t;

	if (len > B13_MAX_MSG_BYTES)
		return B13_REJ_OVERSIZE;
	if (len < sizeof(*hdr))
		return B13_REJ_SHORT;
	t = le32toh(hdr->type);
	switch (t) {
	case B13_RESP_PAGES:
		if (len == sizeof(*hdr) || (len - sizeof(*hdr)) % 8)
			return B13_REJ_LENGTH;
		*n = (len - sizeof(*hdr)) / 8;
		break;
	case B13_RESP_STATS:
		if (len == sizeof(*hdr) ||
		    (len - sizeof(*hdr)) % sizeof(struct b13_stat))
			return B13_REJ_LENGTH;
		*n = (len - sizeof(*hdr)) / sizeof(struct b13_stat);
		break;
	default:
		return B13_REJ_TYPE;
	}
	*type = t;
	return B13_OK;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

enum b13_reject b13_check_pages(const struct b13_map *m, const uint64_t *le,
				uint64_t n, uint64_t *sorted,
				uint64_t *bad_addr)
{
	uint64_t mask = m->block_size - 1;
	uint64_t i;

	for (i = 0; i < n; i++) {
		uint64_t a;

		memcpy(&a, &le[i], sizeof(a));	/* le may be unaligned */
		a = le64toh(a);
		*bad_addr = a;
		if (a > UINT64_MAX - m->block_size)	/* a + size wraps */
			return B13_REJ_OVERFLOW;
		if (a & mask)
			return B13_REJ_UNALIGNED;
		if (b13_map_find(m, a, m->block_size) < 0)
			return B13_REJ_OUT_OF_RAM;
		sorted[i] = a;
	}
	qsort(sorted, n, sizeof(*sorted), cmp_u64);
	return B13_OK;
}

/* ---- coalescing and applying ----------------------------------------- */

size_t b13_coalesce(const struct b13_map *m, const uint64_t *sorted,
		    uint64_t n, struct b13_run *runs, uint64_t *repeats)
{
	size_t nr = 0;
	uint64_t i;

	for (i = 0; i < n; i++) {
		uint64_t a = sorted[i];
		struct b13_run *cur = nr ? &runs[nr - 1] : NULL;
		long ri;

		if (i && a == sorted[i - 1]) {
			(*repeats)++;
			continue;
		}
		if (cur && a == cur->addr + cur->nblocks * m->block_size) {
			const struct b13_region *r = &m->r[cur->region];

			/* Still in the same region? (checked: a fits one) */
			if (a - r->gpa <= r->size - m->block_size) {
				cur->nblocks++;
				continue;
			}
		}
		ri = b13_map_find(m, a, m->block_size);
		if (ri < 0)	/* cannot happen after b13_check_pages() */
			continue;
		runs[nr].region = (size_t)ri;
		runs[nr].addr = a;
		runs[nr].nblocks = 1;
		nr++;
	}
	return nr;
}

static uintptr_t page_down(const struct b13_map *m, uintptr_t p)
{
	return p & ~(uintptr_t)(m->host_page - 1);
}

static uintptr_t page_up(const struct b13_map *m, uintptr_t p)
{
	return page_down(m, p + m->host_page - 1);
}

/*
 * Residency of the pages of [base, base + npages * page), a window of
 * B13_MINCORE_WINDOW pages at a time.
 */
struct rescan {
	const struct b13_map *m;
	uintptr_t base;
	uint64_t npages;
	uint64_t wfirst, wn;
	unsigned char vec[B13_MINCORE_WINDOW];
};

static bool page_resident(struct rescan *rs, uint64_t p)
{
	if (p < rs->wfirst || p >= rs->wfirst + rs->wn) {
		uint64_t left = rs->npages - p;

		rs->wfirst = p;
		rs->wn = left < B13_MINCORE_WINDOW ? left : B13_MINCORE_WINDOW;
		if (mincore((void *)(rs->base + p * rs->m->host_page),
			    rs->wn * rs->m->host_page, rs->vec))
			memset(rs->vec, 0, rs->wn);	/* unmapped: not resident */
	}
	return rs->vec[p - rs->wfirst] & 1;
}

/* Cover the host range [start, end), rounded out to whole pages. */
static void rescan_init(struct rescan *rs, const struct b13_map *m,
			uintptr_t start, uintptr_t end)
{
	rs->m = m;
	rs->base = page_down(m, start);
	rs->npages = (page_up(m, end) - rs->base) / m->host_page;
	rs->wfirst = rs->wn = 0;
}

/*
 * Withdrawn blocks among [addr, addr + nblocks * bs) of r, which rs covers:
 * those with any resident page.
 */
static uint64_t scan_blocks(struct rescan *rs, const struct b13_region *r,
			    uint64_t addr, uint64_t nblocks)
{
	const struct b13_map *m = rs->m;
	uintptr_t start = (uintptr_t)r->host + (addr - r->gpa);
	uint64_t i, withdrawn = 0;

	for (i = 0; i < nblocks; i++) {
		uintptr_t b = start + i * m->block_size;
		uint64_t p = (page_down(m, b) - rs->base) / m->host_page;
		uint64_t pe = (page_up(m, b + m->block_size) - rs->base) /
			      m->host_page;
		bool res = false;

		for (; p < pe && !res; p++)
			res = page_resident(rs, p);
		withdrawn += res;
	}
	return withdrawn;
}


static void punch(const struct b13_map *m, const struct b13_region *r,
		  uint64_t addr, uint64_t nblocks, struct b13_apply_stats *st)
{
	uintptr_t s, e;

	if (!r->host)
		return;
	s = page_up(m, (uintptr_t)r->host + (addr - r->gpa));
	e = page_down(m, (uintptr_t)r->host + (addr - r->gpa) +
			 nblocks * m->block_size);
	if (e <= s)	/* blocks smaller than a host page: nothing whole */
		return;
	st->punch_calls++;
	if (madvise((void *)s, e - s, MADV_REMOVE)) {
		st->punch_errors++;
		st->last_errno = errno;
	} else {
		st->punch_bytes += e - s;
	}
}

void b13_apply_runs(struct b13_map *m, const struct b13_run *runs, size_t nr,
		    struct b13_apply_stats *st)
{
	struct rescan *rs = NULL;
	size_t k;

	for (k = 0; k < nr; k++) {
		const struct b13_run *run = &runs[k];
		struct b13_region *r = &m->r[run->region];
		uint64_t first = (run->addr >> m->page_bits) - r->first_block;
		uintptr_t host = (uintptr_t)r->host + (run->addr - r->gpa);
		bool scanning = false;
		uint64_t i;

		for (i = 0; i < run->nblocks; i++) {
			if (!test_bit(r->bitmap, first + i)) {
				set_bit(r->bitmap, first + i);
				r->nset++;
				st->new_blocks++;
				continue;
			}
			/*
			 * Sent again: was it withdrawn (touched) meanwhile?
			 * One windowed mincore() walk per run, not per block.
			 */
			if (!scanning && r->host &&
			    (rs || (rs = malloc(sizeof(*rs))))) {
				rescan_init(rs, m, host, host +
					    run->nblocks * m->block_size);
				scanning = true;
			}
			if (scanning && scan_blocks(rs, r, run->addr +
						    i * m->block_size, 1))
				st->reballooned++;
			else
				st->duplicates++;
		}
		punch(m, r, run->addr, run->nblocks, st);
	}
	free(rs);
}

/* ---- queries ---------------------------------------------------------- */

uint64_t b13_count_in_balloon(const struct b13_map *m, uint64_t *withdrawn)
{
	struct rescan *rs = malloc(sizeof(*rs));
	uint64_t in = 0, out = 0;
	size_t k;

	for (k = 0; k < m->nr; k++) {
		const struct b13_region *r = &m->r[k];
		uint64_t i = 0;

		/* One window walk per region: runs share mincore() calls. */
		if (rs && r->host)
			rescan_init(rs, m, (uintptr_t)r->host,
				    (uintptr_t)r->host + r->size);
		while ((i = find_next(r->bitmap, r->nblocks, i, true)) <
		       r->nblocks) {
			uint64_t e = find_next(r->bitmap, r->nblocks, i, false);
			uint64_t w = 0;

			if (rs && r->host)
				w = scan_blocks(rs, r, (r->first_block + i) <<
						m->page_bits, e - i);
			out += w;
			in += e - i - w;
			i = e;
		}
	}
	free(rs);
	if (withdrawn)
		*withdrawn = out;
	return in;
}

void b13_for_each_range(const struct b13_map *m,
			void (*fn)(uint64_t addr, uint64_t nblocks, void *data),
			void *data)
{
	size_t k;

	for (k = 0; k < m->nr; k++) {
		const struct b13_region *r = &m->r[k];
		uint64_t i = 0;

		while ((i = find_next(r->bitmap, r->nblocks, i, true)) <
		       r->nblocks) {
			uint64_t e = find_next(r->bitmap, r->nblocks, i, false);

			fn((r->first_block + i) << m->page_bits, e - i, data);
			i = e;
		}
	}
}

/* ---- number parsing -------------------------------------------------- */

int b13_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		   const char **why)
{
	unsigned long long v;
	char *end;

	if (!s || !*s) {
		*why = "empty number";
		return -1;
	}
	if (!isdigit((unsigned char)s[0])) {
		*why = "not a non-negative decimal number";
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end) {
		*why = "not a non-negative decimal number";
		return -1;
	}
	if (errno == ERANGE || v < min || v > max) {
		*why = "out of range";
		return -1;
	}
	*out = v;
	return 0;
}

int b13_parse_size(const char *s, uint64_t *out, const char **why)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;
	const char *p;

	if (!s || !*s) {
		*why = "empty size";
		return -1;
	}
	if (!isdigit((unsigned char)s[0])) {
		*why = "size must start with a decimal digit";
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE) {
		*why = "size too large";
		return -1;
	}
	p = end;
	if (*p == '.' || *p == ',') {
		*why = "fractional sizes are not supported";
		return -1;
	}
	switch (*p) {
	case 'k': case 'K': shift = 10; p++; break;
	case 'm': case 'M': shift = 20; p++; break;
	case 'g': case 'G': shift = 30; p++; break;
	case 't': case 'T': shift = 40; p++; break;
	}
	if (shift && *p == 'i' && p[1] == 'B')
		p += 2;
	else if (*p == 'B')
		p++;
	if (*p) {
		*why = "unknown size suffix (use K, M, G or T: powers of 1024)";
		return -1;
	}
	if (v > (unsigned long long)INT64_MAX >> shift) {
		*why = "size too large (at most 2^63 - 1 bytes)";
		return -1;
	}
	*out = (uint64_t)v << shift;
	return 0;
}

/* ---- command lines --------------------------------------------------- */

void b13_usage_error(const char *prog, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see --help)\n", stderr);
	exit(2);
}
