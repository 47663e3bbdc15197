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

const char *const b13_tag_names[B13_BASE_TAGS] = {
	[VIRTIO_BALLOON13_TAG_SWAP_IN] = "swap_in",
	[VIRTIO_BALLOON13_TAG_SWAP_OUT] = "swap_out",
	[VIRTIO_BALLOON13_TAG_MAJFLT] = "majflt",
	[VIRTIO_BALLOON13_TAG_MINFLT] = "minflt",
	[VIRTIO_BALLOON13_TAG_MEMFREE] = "memfree",
	[VIRTIO_BALLOON13_TAG_MEMTOT] = "memtot",
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

/* Last byte of a region; false if it is empty or runs past 2^64. */
static bool region_last(uint64_t gpa, uint64_t size, uint64_t *last)
{
	if (!size || size - 1 > UINT64_MAX - gpa)
		return false;
	*last = gpa + (size - 1);
	return true;
}

int b13_map_set_regions(struct b13_map *m, const struct b13_region_desc *d,
			size_t n)
{
	struct b13_region *nr;
	uint64_t last;
	size_t i, j;

	for (i = 0; i < n; i++)
		if (!region_last(d[i].gpa, d[i].size, &last))
			goto invalid;
	nr = calloc(n ? n : 1, sizeof(*nr));
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
	for (i = 1; i < n; i++) {
		region_last(nr[i - 1].gpa, nr[i - 1].size, &last);
		if (last >= nr[i].gpa) {	/* overlap */
			for (j = 0; j < n; j++)
				free(nr[j].bitmap);
			free(nr);
			goto invalid;
		}
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
invalid:
	b13_map_free(m);
	errno = EINVAL;
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
	m->gen++;
}

void b13_map_free(struct b13_map *m)
{
	size_t i;

	for (i = 0; i < m->nr; i++)
		free(m->r[i].bitmap);
	free(m->r);
	m->r = NULL;
	m->nr = 0;
	m->gen++;
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

enum b13_reject b13_check_msg(uint64_t len, const struct virtio_balloon13_resp_hdr *hdr,
			      uint32_t *type, uint64_t *n)
{
	uint32_t t;

	if (len > B13_MAX_MSG_BYTES)
		return B13_REJ_OVERSIZE;
	if (len < sizeof(*hdr))
		return B13_REJ_SHORT;
	t = le32toh(hdr->type);
	switch (t) {
	case VIRTIO_BALLOON13_RESP_PAGES:
		if (len == sizeof(*hdr) || (len - sizeof(*hdr)) % 8)
			return B13_REJ_LENGTH;
		*n = (len - sizeof(*hdr)) / 8;
		break;
	case VIRTIO_BALLOON13_RESP_STATS:
		if (len == sizeof(*hdr) ||
		    (len - sizeof(*hdr)) % sizeof(struct virtio_balloon13_stat))
			return B13_REJ_LENGTH;
		*n = (len - sizeof(*hdr)) / sizeof(struct virtio_balloon13_stat);
		if (*n > B13_MAX_STATS)
			return B13_REJ_OVERSIZE;
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

/* Does a, the next distinct sorted address, extend cur (same region)? */
static bool extends_run(const struct b13_map *m, const struct b13_run *cur,
			uint64_t a)
{
	const struct b13_region *r = &m->r[cur->region];

	if (a != cur->addr + cur->nblocks * m->block_size)
		return false;
	/* Still in the same region? (checked: the block fits one) */
	return a - r->gpa <= r->size - m->block_size;
}

size_t b13_coalesce(const struct b13_map *m, const uint64_t *sorted,
		    uint64_t n, struct b13_run *runs, uint64_t *repeats)
{
	size_t nr = 0;
	uint64_t i;

	for (i = 0; i < n; i++) {
		uint64_t a = sorted[i];
		long ri;

		if (i && a == sorted[i - 1]) {
			(*repeats)++;
			continue;
		}
		if (nr && extends_run(m, &runs[nr - 1], a)) {
			runs[nr - 1].nblocks++;
			continue;
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
	uint64_t checked;	/* pages looked at, for b13_scan_step() */
	unsigned char vec[B13_MINCORE_WINDOW];
};

static bool page_resident(struct rescan *rs, uint64_t p)
{
	rs->checked++;
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
	int ret;

	if (!r->host)
		return;
	s = page_up(m, (uintptr_t)r->host + (addr - r->gpa));
	e = page_down(m, (uintptr_t)r->host + (addr - r->gpa) +
			 nblocks * m->block_size);
	if (e <= s)	/* blocks smaller than a host page: nothing whole */
		return;
	st->punch_calls++;
	if (m->discard)
		ret = m->discard((void *)s, e - s, m->discard_arg);
	else
		ret = madvise((void *)s, e - s, MADV_REMOVE);
	if (ret) {
		st->punch_errors++;
		st->last_errno = errno;
	} else {
		st->punch_bytes += e - s;
	}
}

/* Mark one run's blocks, classify those already marked, then punch it. */
static void apply_run(struct b13_map *m, const struct b13_run *run,
		      struct b13_apply_stats *st, struct rescan **rsp)
{
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
		 * Sent again: was it withdrawn (touched) meanwhile?  One
		 * windowed mincore() walk per run, not per block.
		 */
		if (!scanning && r->host &&
		    (*rsp || (*rsp = malloc(sizeof(**rsp))))) {
			rescan_init(*rsp, m, host,
				    host + run->nblocks * m->block_size);
			scanning = true;
		}
		if (scanning && scan_blocks(*rsp, r, run->addr +
					    i * m->block_size, 1))
			st->reballooned++;
		else
			st->duplicates++;
	}
	punch(m, r, run->addr, run->nblocks, st);
}

void b13_apply_runs(struct b13_map *m, const struct b13_run *runs, size_t nr,
		    struct b13_apply_stats *st)
{
	struct rescan *rs = NULL;
	size_t k;

	for (k = 0; k < nr; k++)
		apply_run(m, &runs[k], st, &rs);
	free(rs);
}

size_t b13_apply_sorted(struct b13_map *m, const uint64_t *sorted, uint64_t n,
			struct b13_apply_stats *st, uint64_t *repeats)
{
	struct rescan *rs = NULL;
	struct b13_run cur = { 0 };
	size_t nr = 0;
	uint64_t i;

	for (i = 0; i < n; i++) {
		uint64_t a = sorted[i];
		long ri;

		if (i && a == sorted[i - 1]) {
			(*repeats)++;
			continue;
		}
		if (nr && extends_run(m, &cur, a)) {
			cur.nblocks++;
			continue;
		}
		ri = b13_map_find(m, a, m->block_size);
		if (ri < 0)	/* cannot happen after b13_check_pages() */
			continue;
		if (nr)
			apply_run(m, &cur, st, &rs);
		cur.region = (size_t)ri;
		cur.addr = a;
		cur.nblocks = 1;
		nr++;
	}
	if (nr)
		apply_run(m, &cur, st, &rs);
	free(rs);
	return nr;
}

/* ---- whole messages -------------------------------------------------- */

/* Copy len bytes from offset off of the chain (the caller checked len). */
static void iov_read(const struct iovec *iov, unsigned int niov, uint64_t off,
		     void *buf, size_t len)
{
	unsigned int i;
	size_t done = 0;

	for (i = 0; i < niov && done < len; i++) {
		size_t k;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		k = iov[i].iov_len - off;
		if (k > len - done)
			k = len - done;
		memcpy((char *)buf + done, (const char *)iov[i].iov_base + off,
		       k);
		done += k;
		off = 0;
	}
}

static enum b13_reject handle_pages(struct b13_map *m,
				    const struct iovec *iov,
				    unsigned int niov,
				    struct b13_msg_result *res)
{
	/* n <= B13_MAX_PAGES: at most 1 MiB, sorted in place. */
	uint64_t *a = malloc(res->n * sizeof(*a));
	enum b13_reject why;

	if (!a)		/* no memory to look at it: as if it were too long */
		return B13_REJ_OVERSIZE;
	iov_read(iov, niov, sizeof(struct virtio_balloon13_resp_hdr), a,
		 res->n * sizeof(*a));
	why = b13_check_pages(m, a, res->n, a, &res->bad_addr);
	if (why == B13_OK)
		res->runs = b13_apply_sorted(m, a, res->n, &res->apply,
					     &res->repeats);
	free(a);
	return why;
}

static void handle_stats(struct b13_stats *st, const struct iovec *iov,
			 unsigned int niov, struct b13_msg_result *res)
{
	struct virtio_balloon13_stat e[B13_MAX_STATS];
	struct b13_stats next = { { 0 }, 0 };
	uint64_t i;

	iov_read(iov, niov, sizeof(struct virtio_balloon13_resp_hdr), e,
		 res->n * sizeof(e[0]));
	for (i = 0; i < res->n; i++) {
		uint64_t tag = le64toh(e[i].tag);

		if (tag >= B13_BASE_TAGS) {
			res->stats_unknown++;
			continue;
		}
		if (next.present & 1u << tag)
			res->stats_repeated++;	/* the last value wins */
		next.present |= 1u << tag;
		next.value[tag] = le64toh(e[i].value);
	}
	*st = next;
}

enum b13_reject b13_handle_msg(struct b13_map *m, struct b13_stats *st,
			       const struct iovec *iov, unsigned int niov,
			       unsigned int nwritable,
			       struct b13_msg_result *res)
{
	struct virtio_balloon13_resp_hdr hdr = { 0, 0 };
	unsigned int i;

	memset(res, 0, sizeof(*res));
	for (i = 0; i < niov; i++) {
		if (iov[i].iov_len > UINT64_MAX - res->len) {
			res->len = UINT64_MAX;
			break;
		}
		res->len += iov[i].iov_len;
	}
	if (nwritable)
		return res->why = B13_REJ_WRITABLE;
	if (res->len > B13_MAX_MSG_BYTES)	/* rejected unread */
		return res->why = B13_REJ_OVERSIZE;
	if (res->len >= sizeof(hdr))
		iov_read(iov, niov, 0, &hdr, sizeof(hdr));
	res->why = b13_check_msg(res->len, &hdr, &res->type, &res->n);
	if (res->why != B13_OK)
		return res->why;
	res->reserved_nonzero = hdr.reserved != 0;
	if (res->type == VIRTIO_BALLOON13_RESP_PAGES)
		res->why = handle_pages(m, iov, niov, res);
	else
		handle_stats(st, iov, niov, res);
	return res->why;
}

/* ---- queries ---------------------------------------------------------- */

void b13_scan_begin(const struct b13_map *m, struct b13_scan *s)
{
	memset(s, 0, sizeof(*s));
	s->gen = m->gen;
}

bool b13_scan_step(const struct b13_map *m, struct b13_scan *s,
		   uint64_t budget)
{
	uint64_t spent = 0;

	if (s->done)
		return true;
	if (s->gen != m->gen) {		/* new regions or bitmaps: again */
		s->gen = m->gen;
		s->region = 0;
		s->block = 0;
		s->in = s->withdrawn = 0;
		s->restarts++;
	}
	if (!s->rs)
		s->rs = malloc(sizeof(*s->rs));	/* NULL: all count as in */
	for (; s->region < m->nr; s->region++, s->block = 0) {
		const struct b13_region *r = &m->r[s->region];
		bool res = s->rs && r->host;
		uint64_t i = s->block;

		/* A fresh window each slice: the guest may have touched pages. */
		if (res) {
			rescan_init(s->rs, m, (uintptr_t)r->host,
				    (uintptr_t)r->host + r->size);
			s->rs->checked = 0;
		}
		while ((i = find_next(r->bitmap, r->nblocks, i, true)) <
		       r->nblocks) {
			uint64_t e = find_next(r->bitmap, r->nblocks, i, false);

			for (; i < e; i++) {
				uint64_t w = 0;

				if (spent + (res ? s->rs->checked : 0) >=
				    budget) {
					s->block = i;
					return false;
				}
				if (res)
					w = scan_blocks(s->rs, r,
							(r->first_block + i) <<
							m->page_bits, 1);
				s->withdrawn += w;
				s->in += 1 - w;
				spent++;
			}
		}
		if (res)
			spent += s->rs->checked;
	}
	s->done = true;
	return true;
}

void b13_scan_end(struct b13_scan *s)
{
	free(s->rs);
	s->rs = NULL;
}

uint64_t b13_count_in_balloon(const struct b13_map *m, uint64_t *withdrawn)
{
	struct b13_scan s;

	b13_scan_begin(m, &s);
	b13_scan_step(m, &s, UINT64_MAX);
	b13_scan_end(&s);
	if (withdrawn)
		*withdrawn = s.withdrawn;
	return s.in;
}

bool b13_ranges(const struct b13_map *m, uint64_t from, size_t max,
		void (*fn)(uint64_t addr, uint64_t nblocks, void *data),
		void *data, uint64_t *next)
{
	size_t k, listed = 0;

	for (k = 0; k < m->nr; k++) {
		const struct b13_region *r = &m->r[k];
		uint64_t i = 0, first = from >> m->page_bits;

		/* First block at or after from (from need not be aligned). */
		if (from & (m->block_size - 1))
			first++;
		if (first > r->first_block)
			i = first - r->first_block;
		while ((i = find_next(r->bitmap, r->nblocks, i, true)) <
		       r->nblocks) {
			uint64_t e = find_next(r->bitmap, r->nblocks, i, false);

			if (listed == max) {
				*next = (r->first_block + i) << m->page_bits;
				return true;
			}
			fn((r->first_block + i) << m->page_bits, e - i, data);
			listed++;
			i = e;
		}
	}
	return false;
}

void b13_for_each_range(const struct b13_map *m,
			void (*fn)(uint64_t addr, uint64_t nblocks, void *data),
			void *data)
{
	uint64_t next;

	b13_ranges(m, 0, SIZE_MAX, fn, data, &next);
}

/* ---- log rate limit --------------------------------------------------- */

bool b13_ratelimit(struct b13_ratelimit *rl, int64_t now_us,
		   uint64_t *missed)
{
	if (missed)
		*missed = 0;
	if (now_us - rl->begin >= B13_RL_INTERVAL_US || now_us < rl->begin) {
		rl->begin = now_us;
		rl->n = 0;
	}
	if (rl->n >= B13_RL_BURST) {
		rl->missed++;
		return false;
	}
	rl->n++;
	if (missed)
		*missed = rl->missed;
	rl->missed = 0;
	return true;
}

/* ---- JSON ----------------------------------------------------------- */

unsigned int b13_json_depth(const char *s, size_t len, unsigned int limit)
{
	unsigned int depth = 0, max = 0;
	bool in_str = false;
	size_t i;

	for (i = 0; i < len && max <= limit; i++) {
		char ch = s[i];

		if (in_str) {
			if (ch == '\\')
				i++;		/* skip the escaped character */
			else if (ch == '"')
				in_str = false;
		} else if (ch == '"') {
			in_str = true;
		} else if (ch == '[' || ch == '{') {
			if (++depth > max)
				max = depth;
		} else if ((ch == ']' || ch == '}') && depth) {
			depth--;
		}
	}
	return max;
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
