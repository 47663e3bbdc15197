// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13 host logic: validation, coalescing, bitmap, punching, residency.
 *
 * Everything here works on a struct b13_map, a copy of the vhost-user memory
 * table (guest-physical start, size, our mapping) with one bitmap per region.
 * It never trusts a guest value: every address is range-checked against the
 * regions before it is turned into a pointer, and sizes are checked for
 * wrap-around before they are added.
 *
 * What a message costs is counted in syscalls and time, not in addresses:
 * one madvise() per run of blocks (and per chunk of a long run), one
 * mincore() per residency window.  A guest naming every other block makes
 * one madvise() per address; a job (b13_job_*) lets the device stop after
 * any of them and go on later, so the work per dispatch stays bounded
 * whatever the guest sends.
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
#include <time.h>
#include <unistd.h>

#include "b13.h"

/*
 * Pages per mincore() call: 32 MiB of 4 KiB pages.  mincore() costs about
 * 24 ms per GiB of shmem here whatever the window, so a call stays under
 * a millisecond and a slice can stop soon after its deadline.
 */
#define B13_MINCORE_WINDOW	8192
/*
 * Most bytes one madvise() discards: a 4 MiB chunk of 4 KiB pages takes
 * about 0.3 ms (75 ms per GiB measured here), so one syscall never holds
 * the device long.  A region with bigger pages discards one at a time.
 */
#define B13_DISCARD_CHUNK	(4ull << 20)
/* Bitmap words one budget unit pays for (REPORT's bit work). */
#define B13_WORDS_PER_CALL	8192

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
	[B13_REJ_EMPTY] = "empty_range",
};

const char *const b13_tag_names[VIRTIO_BALLOON13_TAG_NR] = {
	[VIRTIO_BALLOON13_TAG_SWAP_IN] = "swap_in",
	[VIRTIO_BALLOON13_TAG_SWAP_OUT] = "swap_out",
	[VIRTIO_BALLOON13_TAG_MAJFLT] = "majflt",
	[VIRTIO_BALLOON13_TAG_MINFLT] = "minflt",
	[VIRTIO_BALLOON13_TAG_MEMFREE] = "memfree",
	[VIRTIO_BALLOON13_TAG_MEMTOT] = "memtot",
	[VIRTIO_BALLOON13_TAG_AVAIL] = "avail",
	[VIRTIO_BALLOON13_TAG_CACHES] = "caches",
	[VIRTIO_BALLOON13_TAG_HTLB_PGALLOC] = "htlb_pgalloc",
	[VIRTIO_BALLOON13_TAG_HTLB_PGFAIL] = "htlb_pgfail",
	[VIRTIO_BALLOON13_TAG_OOM_KILL] = "oom_kill",
	[VIRTIO_BALLOON13_TAG_ALLOC_STALL] = "alloc_stall",
	[VIRTIO_BALLOON13_TAG_ASYNC_SCAN] = "async_scan",
	[VIRTIO_BALLOON13_TAG_DIRECT_SCAN] = "direct_scan",
	[VIRTIO_BALLOON13_TAG_ASYNC_RECLAIM] = "async_reclaim",
	[VIRTIO_BALLOON13_TAG_DIRECT_RECLAIM] = "direct_reclaim",
	[VIRTIO_BALLOON13_TAG_PSI_SOME_US] = "psi_some_us",
	[VIRTIO_BALLOON13_TAG_PSI_FULL_US] = "psi_full_us",
};

const char *const b13_feature_names[4] = {
	[VIRTIO_BALLOON13_F_WITHDRAW] = "withdraw",
	[VIRTIO_BALLOON13_F_REPORTING] = "free-page-reporting",
	[VIRTIO_BALLOON13_F_FULL_STATS] = "full-stats",
	[VIRTIO_BALLOON13_F_PRESSURE_RELEASE] = "pressure-release",
};

int b13_parse_features(const char *s, uint64_t *mask, const char **why)
{
	const char *p = s;
	uint64_t v = 0;

	if (!s || !*s) {
		*why = "empty feature list";
		return -1;
	}
	if (!strcmp(s, "all")) {
		*mask = B13_F_ALL;
		return 0;
	}
	if (!strcmp(s, "none")) {
		*mask = 0;
		return 0;
	}
	while (*p) {
		size_t len = strcspn(p, ",");
		unsigned int i;

		for (i = 0; i < 4; i++)
			if (strlen(b13_feature_names[i]) == len &&
			    !strncmp(p, b13_feature_names[i], len))
				break;
		if (i == 4) {
			*why = "unknown feature (all, none, or a comma list "
			       "of withdraw, free-page-reporting, full-stats, "
			       "pressure-release)";
			return -1;
		}
		v |= 1ull << i;
		p += len;
		if (*p == ',' && !*++p) {
			*why = "empty name after a comma";
			return -1;
		}
	}
	*mask = v;
	return 0;
}

/* ---- bit helpers ---------------------------------------------------- */

static bool test_bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static void set_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

static void clear_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ull << (i % 64));
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

/* Clear bits [from, to); returns how many were set. */
static uint64_t clear_range(uint64_t *bm, uint64_t from, uint64_t to)
{
	uint64_t cleared = 0;

	while (from < to) {
		uint64_t w = from / 64, lo = from % 64;
		uint64_t hi = to - (from - lo) >= 64 ? 64 : to - (from - lo);
		uint64_t mask = (hi == 64 ? ~0ull : (1ull << hi) - 1) &
				~((1ull << lo) - 1);

		cleared += (uint64_t)__builtin_popcountll(bm[w] & mask);
		bm[w] &= ~mask;
		from = (from - lo) + hi;
	}
	return cleared;
}

/* Count bits set in [from, to). */
static uint64_t count_range(const uint64_t *bm, uint64_t from, uint64_t to)
{
	uint64_t n = 0;

	while (from < to) {
		uint64_t w = from / 64, lo = from % 64;
		uint64_t hi = to - (from - lo) >= 64 ? 64 : to - (from - lo);
		uint64_t mask = (hi == 64 ? ~0ull : (1ull << hi) - 1) &
				~((1ull << lo) - 1);

		n += (uint64_t)__builtin_popcountll(bm[w] & mask);
		from = (from - lo) + hi;
	}
	return n;
}

/* ---- budgets ---------------------------------------------------------- */

int64_t b13_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void b13_budget_init(struct b13_budget *b, uint64_t calls, int64_t slice_us)
{
	b->calls = calls ? calls : UINT64_MAX;
	b->deadline = slice_us ? b13_now_us() + slice_us : 0;
	b->spent = 0;
}

bool b13_budget_out(const struct b13_budget *b)
{
	if (!b->spent)
		return false;	/* every slice makes progress */
	return !b->calls || (b->deadline && b13_now_us() >= b->deadline);
}

bool b13_budget_take(struct b13_budget *b)
{
	if (b13_budget_out(b))
		return false;
	b->calls--;
	b->spent++;
	return true;
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
		if (!region_last(d[i].gpa, d[i].size, &last) ||
		    (d[i].page & (d[i].page - 1)))
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
		r->page = d[i].page > m->host_page ? d[i].page : m->host_page;
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

/* Index of the last region with gpa <= addr, or -1. */
static long region_at_or_before(const struct b13_map *m, uint64_t addr)
{
	size_t lo = 0, hi = m->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->r[mid].gpa <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (long)lo - 1;
}

long b13_map_find(const struct b13_map *m, uint64_t addr, uint64_t len)
{
	long i = region_at_or_before(m, addr);

	if (i < 0 || len > m->r[i].size ||
	    addr - m->r[i].gpa > m->r[i].size - len)
		return -1;
	return i;
}

bool b13_map_covers(const struct b13_map *m, uint64_t addr, uint64_t len)
{
	long i = region_at_or_before(m, addr);

	if (!len || len - 1 > UINT64_MAX - addr)
		return false;
	while (i >= 0 && (size_t)i < m->nr) {
		const struct b13_region *r = &m->r[i];
		uint64_t in;

		if (addr < r->gpa || addr - r->gpa >= r->size)
			return false;
		in = r->size - (addr - r->gpa);	/* bytes of r from addr */
		if (len <= in)
			return true;
		addr += in;
		len -= in;
		i++;	/* the next region must start right there */
	}
	return false;
}

/* ---- validation ----------------------------------------------------- */

enum b13_reject b13_check_msg(uint64_t len,
			      const struct virtio_balloon13_resp_hdr *hdr,
			      uint64_t features, uint32_t *type, uint64_t *n)
{
	uint64_t entry, body;
	uint32_t t;

	if (len > B13_MAX_MSG_BYTES)
		return B13_REJ_OVERSIZE;
	if (len < sizeof(*hdr))
		return B13_REJ_SHORT;
	t = le32toh(hdr->type);
	switch (t) {
	case VIRTIO_BALLOON13_RESP_PAGES:
		entry = 8;
		break;
	case VIRTIO_BALLOON13_RESP_WITHDRAW:
		if (!(features & B13_F_WITHDRAW))
			return B13_REJ_TYPE;
		entry = 8;
		break;
	case VIRTIO_BALLOON13_RESP_STATS:
		entry = sizeof(struct virtio_balloon13_stat);
		break;
	case VIRTIO_BALLOON13_RESP_REPORT:
		if (!(features & B13_F_REPORTING))
			return B13_REJ_TYPE;
		entry = sizeof(struct virtio_balloon13_range);
		break;
	default:
		return B13_REJ_TYPE;
	}
	body = len - sizeof(*hdr);
	/*
	 * A WITHDRAW of a wrong length still has its complete entries acted
	 * on (the guest uses those blocks once the buffer is back); the
	 * caller counts the length as a guest error.
	 */
	if (body % entry && t != VIRTIO_BALLOON13_RESP_WITHDRAW)
		return B13_REJ_LENGTH;
	*n = body / entry;
	if (!*n)
		return B13_REJ_LENGTH;
	*type = t;
	return B13_OK;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* One address of a PAGES or WITHDRAW message. */
static enum b13_reject check_addr(const struct b13_map *m, uint64_t a)
{
	if (a > UINT64_MAX - m->block_size)	/* a + size wraps */
		return B13_REJ_OVERFLOW;
	if (a & (m->block_size - 1))
		return B13_REJ_UNALIGNED;
	if (b13_map_find(m, a, m->block_size) < 0)
		return B13_REJ_OUT_OF_RAM;
	return B13_OK;
}

enum b13_reject b13_check_pages(const struct b13_map *m, const uint64_t *le,
				uint64_t n, uint64_t *sorted,
				uint64_t *bad_addr)
{
	enum b13_reject why;
	uint64_t i;

	for (i = 0; i < n; i++) {
		uint64_t a;

		memcpy(&a, &le[i], sizeof(a));	/* le may be unaligned */
		a = le64toh(a);
		*bad_addr = a;
		why = check_addr(m, a);
		if (why != B13_OK)
			return why;
		sorted[i] = a;
	}
	qsort(sorted, n, sizeof(*sorted), cmp_u64);
	return B13_OK;
}

/* One range of a REPORT message (CPU order). */
static enum b13_reject check_range(const struct b13_map *m, uint64_t addr,
				   uint64_t len)
{
	if (!len)
		return B13_REJ_EMPTY;
	if (len - 1 > UINT64_MAX - addr)
		return B13_REJ_OVERFLOW;
	if ((addr | len) & (m->block_size - 1))
		return B13_REJ_UNALIGNED;
	if (!b13_map_covers(m, addr, len))
		return B13_REJ_OUT_OF_RAM;
	return B13_OK;
}

/* ---- coalescing ------------------------------------------------------- */

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

/* ---- residency and discards ------------------------------------------ */

static uintptr_t page_down(uint64_t page, uintptr_t p)
{
	return p & ~(uintptr_t)(page - 1);
}

static uintptr_t page_up(uint64_t page, uintptr_t p)
{
	return page_down(page, p + page - 1);
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
	uint64_t loads;		/* mincore() calls */
	unsigned char vec[B13_MINCORE_WINDOW];
};

static bool window_has(const struct rescan *rs, uint64_t p)
{
	return p >= rs->wfirst && p < rs->wfirst + rs->wn;
}

/* Load the window starting at page p (one mincore()). */
static void window_load(struct rescan *rs, uint64_t p)
{
	uint64_t left = rs->npages - p;

	rs->wfirst = p;
	rs->wn = left < B13_MINCORE_WINDOW ? left : B13_MINCORE_WINDOW;
	rs->loads++;
	if (mincore((void *)(rs->base + p * rs->m->host_page),
		    rs->wn * rs->m->host_page, rs->vec))
		memset(rs->vec, 0, rs->wn);	/* unmapped: not resident */
}

/* Cover the host range [start, end), rounded out to whole pages. */
static void rescan_init(struct rescan *rs, const struct b13_map *m,
			uintptr_t start, uintptr_t end)
{
	rs->m = m;
	rs->base = page_down(m->host_page, start);
	rs->npages = (page_up(m->host_page, end) - rs->base) / m->host_page;
	rs->wfirst = rs->wn = 0;
}

/*
 * Is any page of the block at host address b resident?  *p is where the
 * look got to (a page index in the window's range; B13_NO_PAGE: the
 * block's first page).  If the window lacks page *p, *known is false:
 * load a window at *p and ask again, and the look goes on from there.
 */
#define B13_NO_PAGE	UINT64_MAX

static bool block_resident(struct rescan *rs, uintptr_t b, uint64_t bs,
			   uint64_t *p, bool *known)
{
	const struct b13_map *m = rs->m;
	uint64_t pe = (page_up(m->host_page, b + bs) - rs->base) /
		      m->host_page;

	if (*p == B13_NO_PAGE)
		*p = (page_down(m->host_page, b) - rs->base) / m->host_page;
	for (; *p < pe; (*p)++) {
		if (!window_has(rs, *p)) {
			*known = false;
			return false;
		}
		if (rs->vec[*p - rs->wfirst] & 1) {
			*known = true;
			*p = B13_NO_PAGE;
			return true;
		}
	}
	*known = true;
	*p = B13_NO_PAGE;
	return false;
}

/* One discard of the host range [s, e) (whole pages of the region). */
static void discard(const struct b13_map *m, uintptr_t s, uintptr_t e,
		    struct b13_apply_stats *st)
{
	int64_t t = b13_now_us();
	int ret;

	st->punch_calls++;
	if (m->discard)
		ret = m->discard((void *)s, e - s, m->discard_arg);
	else
		ret = madvise((void *)s, e - s, MADV_REMOVE);
	t = b13_now_us() - t;
	if ((uint64_t)t > st->punch_max_us)
		st->punch_max_us = (uint64_t)t;
	if (ret) {
		st->punch_errors++;
		st->last_errno = errno;
	} else {
		st->punch_bytes += e - s;
	}
}

void b13_job_run_batch(struct b13_job *j, const struct b13_map *m)
{
	unsigned int i;

	for (i = 0; i < j->nbatch; i++)
		discard(m, j->batch[i].addr, j->batch[i].addr + j->batch[i].len,
			&j->res.apply);
	j->nbatch = 0;
}

/*
 * The chunk of [next, end) to discard next: at most a chunk (or one page
 * of a region with bigger pages).  next and end are page aligned.
 */
static uintptr_t chunk_end(const struct b13_region *r, uintptr_t next,
			   uintptr_t end)
{
	uint64_t c = r->page > B13_DISCARD_CHUNK ? r->page : B13_DISCARD_CHUNK;

	return end - next > c ? next + c : end;
}

/* Host pages wholly inside guest range [gpa, gpa + len) of region r. */
static void host_span(const struct b13_region *r, uint64_t gpa, uint64_t len,
		      uintptr_t *s, uintptr_t *e)
{
	uintptr_t h = (uintptr_t)r->host + (gpa - r->gpa);

	*s = page_up(r->page, h);
	*e = page_down(r->page, h + len);
	if (!r->host || *e <= *s)	/* nothing whole to discard */
		*s = *e = 0;
}

/* ---- jobs: one message, a slice at a time ------------------------------ */

bool b13_job_init(struct b13_job *j)
{
	memset(j, 0, sizeof(*j));
	j->rs = malloc(sizeof(*j->rs));
	return j->rs != NULL;
}

void b13_job_free(struct b13_job *j)
{
	free(j->rs);
	j->rs = NULL;
	j->busy = false;
}

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

static void do_stats(struct b13_job *j, struct b13_stats *st)
{
	unsigned int known = j->features & B13_F_FULL_STATS ?
			     VIRTIO_BALLOON13_TAG_NR : B13_BASE_TAGS;
	struct b13_stats next = { { 0 }, 0 };
	uint64_t i;

	for (i = 0; i < j->res.n; i++) {
		uint64_t tag = le64toh(j->e.s[i].tag);

		if (tag >= known) {
			j->res.stats_unknown++;
			continue;
		}
		if (next.present & 1u << tag)
			j->res.stats_repeated++;	/* the last value wins */
		next.present |= 1u << tag;
		next.value[tag] = le64toh(j->e.s[i].value);
	}
	*st = next;
}

/*
 * WITHDRAW: every valid entry in the balloon leaves it; the others are
 * guest errors that never stop the rest (contract).  No syscall: the
 * device counts from messages alone.
 */
static void do_withdraw(struct b13_job *j, struct b13_map *m)
{
	struct b13_apply_stats *st = &j->res.apply;
	uint64_t i;

	for (i = 0; i < j->res.n; i++) {
		uint64_t a = le64toh(j->e.a[i]);
		struct b13_region *r;
		uint64_t bit;
		long ri;

		if (check_addr(m, a) != B13_OK) {
			if (!st->withdraw_invalid)
				j->res.bad_addr = a;
			st->withdraw_invalid++;
			continue;
		}
		ri = b13_map_find(m, a, m->block_size);
		r = &m->r[ri];
		bit = (a >> m->page_bits) - r->first_block;
		if (!r->bitmap || !test_bit(r->bitmap, bit)) {
			st->withdraw_absent++;
			continue;
		}
		clear_bit(r->bitmap, bit);
		r->nset--;
		st->withdrawn++;
	}
}

enum b13_reject b13_job_begin(struct b13_job *j, struct b13_map *m,
			      struct b13_stats *st, const struct iovec *iov,
			      unsigned int niov, unsigned int nwritable,
			      uint64_t features)
{
	struct virtio_balloon13_resp_hdr hdr = { 0, 0 };
	struct b13_msg_result *res = &j->res;
	enum b13_reject why = B13_OK;
	unsigned int i;
	uint64_t k;

	memset(res, 0, sizeof(*res));
	j->busy = false;
	j->acted = false;
	j->nbatch = 0;
	j->in_run = false;
	j->features = features;
	j->gen = m->gen;
	j->pos = j->roff = 0;
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
	res->why = b13_check_msg(res->len, &hdr, features, &res->type,
				 &res->n);
	if (res->why != B13_OK)
		return res->why;
	res->reserved_nonzero = hdr.reserved != 0;
	res->withdraw_bad_length = res->type == VIRTIO_BALLOON13_RESP_WITHDRAW &&
				   (res->len - sizeof(hdr)) % 8;
	/* One copy, at most 64 KiB: the guest may change it under us. */
	iov_read(iov, niov, sizeof(hdr), j->e.raw, res->len - sizeof(hdr));

	switch (res->type) {
	case VIRTIO_BALLOON13_RESP_STATS:
		do_stats(j, st);
		return B13_OK;
	case VIRTIO_BALLOON13_RESP_WITHDRAW:
		do_withdraw(j, m);
		return B13_OK;
	case VIRTIO_BALLOON13_RESP_PAGES:
		why = b13_check_pages(m, j->e.a, res->n, j->e.a,
				      &res->bad_addr);
		j->a = j->e.a;
		j->n = res->n;
		break;
	case VIRTIO_BALLOON13_RESP_REPORT:
		for (k = 0; k < res->n && why == B13_OK; k++) {
			uint64_t a = le64toh(j->e.r[k].addr);
			uint64_t len = le64toh(j->e.r[k].len);

			why = check_range(m, a, len);
			res->bad_addr = a;
			/* CPU order from now on. */
			j->e.r[k].addr = a;
			j->e.r[k].len = len;
		}
		if (why == B13_OK)
			res->bad_addr = 0;
		j->n = res->n;
		break;
	}
	if (why != B13_OK)
		return res->why = why;
	j->busy = true;
	return B13_OK;
}

/* Start the run of distinct sorted addresses at j->pos. */
static void run_next(struct b13_job *j, struct b13_map *m)
{
	struct b13_run *run = &j->run;
	long ri;

	while (j->pos < j->n) {		/* skip repeats */
		uint64_t a = j->a[j->pos];

		if (j->pos && a == j->a[j->pos - 1]) {
			j->res.repeats++;
			j->pos++;
			continue;
		}
		ri = b13_map_find(m, a, m->block_size);
		if (ri < 0) {		/* cannot happen after the checks */
			j->pos++;
			continue;
		}
		run->region = (size_t)ri;
		run->addr = a;
		run->nblocks = 1;
		j->pos++;
		while (j->pos < j->n) {
			a = j->a[j->pos];
			if (a == j->a[j->pos - 1])
				j->res.repeats++;
			else if (extends_run(m, run, a))
				run->nblocks++;
			else
				break;
			j->pos++;
		}
		j->in_run = true;
		j->k = 0;
		j->kp = B13_NO_PAGE;
		j->win = false;
		j->next = j->end = 0;
		j->res.runs++;
		return;
	}
}

/*
 * Mark the run's blocks from j->k on.  A block already marked is a
 * duplicate, or, without WITHDRAW, re-ballooned if it became resident
 * since (withdrawn by access): that takes a residency window, one
 * mincore() from budget b (b NULL: none, the rest count as duplicates).
 * Returns false if the budget ran out first.
 */
static bool run_mark(struct b13_job *j, struct b13_map *m,
		     struct b13_budget *b)
{
	struct b13_region *r = &m->r[j->run.region];
	struct b13_apply_stats *st = &j->res.apply;
	uint64_t first = (j->run.addr >> m->page_bits) - r->first_block;
	uintptr_t host = (uintptr_t)r->host + (j->run.addr - r->gpa);
	bool residency = r->host && b && !m->keep &&
			 !(j->features & B13_F_WITHDRAW);

	if (residency && !j->win) {	/* one window per run */
		rescan_init(j->rs, m, host, host + j->run.nblocks *
			    m->block_size);
		j->win = true;
	}
	for (; j->k < j->run.nblocks; j->k++, j->kp = B13_NO_PAGE) {
		bool known, res;

		if (!test_bit(r->bitmap, first + j->k)) {
			set_bit(r->bitmap, first + j->k);
			r->nset++;
			st->new_blocks++;
			continue;
		}
		if (m->keep && !(j->features & B13_F_WITHDRAW)) {
			/* Never discarded: it may have been withdrawn. */
			st->reballooned++;
			continue;
		}
		if (!residency) {
			st->duplicates++;
			continue;
		}
		for (;;) {
			res = block_resident(j->rs, host + j->k *
					     m->block_size, m->block_size,
					     &j->kp, &known);
			if (known)
				break;
			if (!b13_budget_take(b))
				return false;
			window_load(j->rs, j->kp);
			st->residency_calls++;
		}
		if (res)
			st->reballooned++;
		else
			st->duplicates++;
	}
	return true;
}

/*
 * Queue discards of [j->next, j->end) of region r, in chunks, into the
 * batch; false if the batch is full or the budget spent first.
 */
static bool run_discard(struct b13_job *j, struct b13_map *m,
			const struct b13_region *r, struct b13_budget *b)
{
	if (m->keep) {
		j->res.apply.kept_bytes += j->end - j->next;
		j->next = j->end;
		return true;
	}
	while (j->next < j->end) {
		uintptr_t e = chunk_end(r, j->next, j->end);

		if (j->nbatch == B13_BATCH || !b13_budget_take(b))
			return false;
		j->batch[j->nbatch].addr = j->next;
		j->batch[j->nbatch].len = e - j->next;
		j->nbatch++;
		j->next = e;
	}
	return true;
}

static bool pages_step(struct b13_job *j, struct b13_map *m,
		       struct b13_budget *b)
{
	for (;;) {
		struct b13_region *r;

		if (!j->in_run) {
			run_next(j, m);
			if (!j->in_run)
				return true;
		}
		r = &m->r[j->run.region];
		if (j->k < j->run.nblocks) {
			if (!run_mark(j, m, b))
				return false;
			host_span(r, j->run.addr, j->run.nblocks *
				  m->block_size, &j->next, &j->end);
		}
		if (!run_discard(j, m, r, b))
			return false;
		j->in_run = false;
	}
}

/*
 * Bits of the blocks wholly inside [gpa, gpa + len) of region r: cleared
 * without WITHDRAW (a block the guest reports free was withdrawn by
 * access), counted as a guest error with it.
 */
static void report_bits(struct b13_job *j, struct b13_map *m,
			struct b13_region *r, uint64_t gpa, uint64_t len)
{
	uint64_t first = (gpa >> m->page_bits) +
			 !!(gpa & (m->block_size - 1));
	uint64_t last = (gpa + len) >> m->page_bits;
	uint64_t n;

	if (first < r->first_block)
		first = r->first_block;
	if (last > r->first_block + r->nblocks)
		last = r->first_block + r->nblocks;
	if (!r->bitmap || last <= first || !r->nset)
		return;
	first -= r->first_block;
	last -= r->first_block;
	if (j->features & B13_F_WITHDRAW) {
		j->res.apply.report_ballooned += count_range(r->bitmap, first,
							     last);
		return;
	}
	n = clear_range(r->bitmap, first, last);
	r->nset -= n;
	j->res.apply.report_ballooned += n;
}

/*
 * A REPORT: each range, each piece of it in one region: its bits, then
 * its discard in chunks.  One budget unit per piece, per chunk and per
 * B13_WORDS_PER_CALL bitmap words.
 */
static bool report_step(struct b13_job *j, struct b13_map *m,
			struct b13_budget *b)
{
	while (j->pos < j->n) {
		const struct virtio_balloon13_range *rg = &j->e.r[j->pos];
		uint64_t gpa = rg->addr + j->roff, left = rg->len - j->roff;
		struct b13_region *r;
		uint64_t piece, units;
		long ri;

		if (j->in_run) {	/* a piece's discard under way */
			if (!run_discard(j, m, &m->r[j->run.region], b))
				return false;
			j->in_run = false;
			j->roff += j->piece;
			if (j->roff == rg->len) {
				j->res.apply.report_ranges++;
				j->res.apply.reported_bytes += rg->len;
				j->pos++;
				j->roff = 0;
			}
			continue;
		}
		ri = b13_map_find(m, gpa, 1);
		if (ri < 0) {		/* cannot happen after the checks */
			j->pos++;
			j->roff = 0;
			continue;
		}
		r = &m->r[ri];
		piece = r->size - (gpa - r->gpa);
		if (piece > left)
			piece = left;
		if (!b13_budget_take(b))
			return false;
		units = ((piece >> m->page_bits) / 64) / B13_WORDS_PER_CALL;
		b->calls -= b->calls < units ? b->calls : units;
		report_bits(j, m, r, gpa, piece);
		host_span(r, gpa, piece, &j->next, &j->end);
		j->run.region = (size_t)ri;
		j->piece = piece;
		j->in_run = true;
	}
	return true;
}

enum b13_step b13_job_step(struct b13_job *j, struct b13_map *m,
			   struct b13_budget *b)
{
	bool done;

	if (!j->busy)
		return B13_STEP_DONE;
	if (j->gen != m->gen) {
		/*
		 * The table changed under the job (the device finishes jobs
		 * before it lets one change, so this is a safety net): drop
		 * the rest, discarding nothing more.
		 */
		j->nbatch = 0;
		j->busy = false;
		return B13_STEP_DONE;
	}
	if (j->nbatch == B13_BATCH)
		return B13_STEP_DISCARD;
	if (!j->acted) {
		done = j->res.type == VIRTIO_BALLOON13_RESP_REPORT ?
		       report_step(j, m, b) : pages_step(j, m, b);
		if (!done)
			return j->nbatch == B13_BATCH ? B13_STEP_DISCARD :
							B13_STEP_YIELD;
		j->acted = true;
	}
	if (j->nbatch)		/* the last discards, before the buffer goes */
		return B13_STEP_DISCARD;
	j->busy = false;
	return B13_STEP_DONE;
}

/* Step without limits, making the discards here. */
static void job_run(struct b13_job *j, struct b13_map *m)
{
	struct b13_budget b;
	enum b13_step r;

	b13_budget_init(&b, 0, 0);
	while ((r = b13_job_step(j, m, &b)) != B13_STEP_DONE) {
		if (r == B13_STEP_DISCARD)
			b13_job_run_batch(j, m);
		b13_budget_init(&b, 0, 0);
	}
}

void b13_job_finish(struct b13_job *j, struct b13_map *m)
{
	struct b13_apply_stats *st = &j->res.apply;
	uint64_t k;

	if (!j->busy)
		return;
	for (k = 0; k < j->nbatch; k++)	/* queued, never made */
		st->skipped_bytes += j->batch[k].len;
	j->nbatch = 0;
	if (j->gen != m->gen || j->acted) {
		j->busy = false;
		return;
	}
	if (j->res.type == VIRTIO_BALLOON13_RESP_REPORT) {
		if (j->in_run)
			st->skipped_bytes += j->end - j->next;
		for (k = j->pos + !!j->in_run; k < j->n; k++)
			st->skipped_bytes += j->e.r[k].len;
		j->in_run = false;
		j->busy = false;
		return;
	}
	for (;;) {
		if (!j->in_run) {
			run_next(j, m);
			if (!j->in_run)
				break;
		}
		if (j->k < j->run.nblocks) {
			run_mark(j, m, NULL);
			host_span(&m->r[j->run.region], j->run.addr,
				  j->run.nblocks * m->block_size, &j->next,
				  &j->end);
		}
		st->skipped_bytes += j->end - j->next;
		j->in_run = false;
	}
	j->busy = false;
}

enum b13_reject b13_handle_msg(struct b13_map *m, struct b13_stats *st,
			       const struct iovec *iov, unsigned int niov,
			       unsigned int nwritable, uint64_t features,
			       struct b13_msg_result *res)
{
	static struct b13_job j;

	if (!j.rs && !b13_job_init(&j)) {
		memset(res, 0, sizeof(*res));
		return res->why = B13_REJ_OVERSIZE;
	}
	b13_job_begin(&j, m, st, iov, niov, nwritable, features);
	job_run(&j, m);
	*res = j.res;
	return res->why;
}

size_t b13_apply_sorted(struct b13_map *m, const uint64_t *sorted, uint64_t n,
			struct b13_apply_stats *st, uint64_t *repeats)
{
	struct b13_job *j = calloc(1, sizeof(*j));
	size_t runs;

	if (!j || !b13_job_init(j)) {
		free(j);
		return 0;
	}
	j->gen = m->gen;
	j->a = sorted;
	j->n = n;
	j->res.type = VIRTIO_BALLOON13_RESP_PAGES;
	j->busy = true;
	job_run(j, m);
	runs = j->res.runs;
	*repeats += j->res.repeats;
	st->new_blocks += j->res.apply.new_blocks;
	st->duplicates += j->res.apply.duplicates;
	st->reballooned += j->res.apply.reballooned;
	st->punch_calls += j->res.apply.punch_calls;
	st->punch_bytes += j->res.apply.punch_bytes;
	st->punch_errors += j->res.apply.punch_errors;
	st->residency_calls += j->res.apply.residency_calls;
	st->kept_bytes += j->res.apply.kept_bytes;
	if (j->res.apply.punch_errors)
		st->last_errno = j->res.apply.last_errno;
	b13_job_free(j);
	free(j);
	return runs;
}

void b13_apply_runs(struct b13_map *m, const struct b13_run *runs, size_t nr,
		    struct b13_apply_stats *st)
{
	size_t k;

	for (k = 0; k < nr; k++) {
		uint64_t *a = malloc(runs[k].nblocks * sizeof(*a)), i, rep = 0;

		if (!a)
			return;
		for (i = 0; i < runs[k].nblocks; i++)
			a[i] = runs[k].addr + i * m->block_size;
		b13_apply_sorted(m, a, runs[k].nblocks, st, &rep);
		free(a);
	}
}

/* ---- queries ---------------------------------------------------------- */

void b13_scan_begin(const struct b13_map *m, struct b13_scan *s)
{
	memset(s, 0, sizeof(*s));
	s->gen = m->gen;
	s->page = B13_NO_PAGE;
}

bool b13_scan_step(const struct b13_map *m, struct b13_scan *s,
		   struct b13_budget *b)
{
	uint64_t cpu = 0;

	if (s->done)
		return true;
	if (s->gen != m->gen) {		/* new regions or bitmaps: again */
		s->gen = m->gen;
		s->region = 0;
		s->block = 0;
		s->page = B13_NO_PAGE;
		s->win_region = 0;
		s->in = s->withdrawn = 0;
		s->restarts++;
	}
	if (!s->rs)
		s->rs = malloc(sizeof(*s->rs));	/* NULL: all count as in */
	for (; s->region < m->nr; s->region++, s->block = 0) {
		const struct b13_region *r = &m->r[s->region];
		bool res = s->rs && r->host && !m->keep;
		uint64_t i = s->block;

		/*
		 * One window per region and walk: loading it again each
		 * slice would cost a mincore() per slice.  (Pages touched
		 * after their window was loaded count at the next walk.)
		 */
		if (res && s->win_region != s->region + 1) {
			rescan_init(s->rs, m, (uintptr_t)r->host,
				    (uintptr_t)r->host + r->size);
			s->win_region = s->region + 1;
		}
		while ((i = find_next(r->bitmap, r->nblocks, i, true)) <
		       r->nblocks) {
			uint64_t e = find_next(r->bitmap, r->nblocks, i, false);

			for (; i < e; i++, s->page = B13_NO_PAGE) {
				uintptr_t h = (uintptr_t)r->host +
					      (((r->first_block + i) <<
						m->page_bits) - r->gpa);
				bool known = true, w = false;

				/* The clock is read every 4096 blocks. */
				if (!(++cpu & 4095) && b13_budget_out(b)) {
					s->block = i;
					return false;
				}
				while (res) {
					w = block_resident(s->rs, h,
							   m->block_size,
							   &s->page, &known);
					if (known)
						break;
					if (!b13_budget_take(b)) {
						s->block = i;
						return false;
					}
					window_load(s->rs, s->page);
				}
				s->withdrawn += w;
				s->in += !w;
				if (!b->spent)	/* progress made: time counts */
					b->spent = 1;
			}
		}
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
	struct b13_budget b;

	b13_scan_begin(m, &s);
	b13_budget_init(&b, 0, 0);
	while (!b13_scan_step(m, &s, &b))
		b13_budget_init(&b, 0, 0);
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
