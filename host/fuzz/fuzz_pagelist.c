// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer harness: page lists, withdrawals and free page reports against
 * the region map, checked against a model written independently of
 * b13_logic.c.
 *
 * The input picks a block size, whether WITHDRAW is negotiated, a memory
 * table (up to four regions of up to 4 GiB at any guest-physical address,
 * each with a fake host mapping at any byte offset, or none) and then a
 * series of PAGES, WITHDRAW and REPORT messages, each split over up to
 * three descriptors.  Every message goes through b13_handle_msg(), the
 * device's own path (jobs, batches of discards).  WITHDRAW: each valid
 * entry in the model leaves it, the rest are counted, nothing is
 * discarded (and without the feature, the message is an unknown type).
 * REPORT: refused for the first bad range (empty, wrapping, unaligned,
 * not all RAM); else every discard lies inside a reported range, and
 * blocks wholly inside one leave the model without WITHDRAW (withdrawn by
 * access, now free) and stay with it (a guest error, counted).  The model says, address by
 * address, whether the message must be refused and why; and for an
 * accepted one, which blocks are new.  Every discard the logic asks for is
 * recorded and must be:
 *   - host-page aligned and non-empty,
 *   - inside the host mapping of one region,
 *   - made only of blocks the message named,
 * and, with page-aligned mappings and blocks of at least a page, cover
 * every block the message named.  A refused message discards nothing and
 * changes no bit.  At the end the bitmap's ranges, its count and a walk in
 * slices must all agree with the model.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <stdbool.h>
#include <unistd.h>

#include "b13.h"
#include "fuzz.h"

#define MAX_MSGS	16
#define MAX_ADDRS	1024
/* Ranges in one REPORT, and the discards one message may make. */
#define MAX_RANGES	64
#define MAX_DISCARDS	(MAX_RANGES * 4 * 1024)

static const unsigned int page_bits[] = { 12, 12, 12, 13, 21, 16, 10, 5, 0,
					  30, 63 };

struct discard {
	uintptr_t addr;
	size_t len;
};

static struct {
	struct discard d[MAX_DISCARDS];
	size_t n;
} rec;

static int record(void *addr, size_t len, void *arg)
{
	(void)arg;
	FUZZ_CHECK(rec.n < sizeof(rec.d) / sizeof(rec.d[0]));
	rec.d[rec.n].addr = (uintptr_t)addr;
	rec.d[rec.n].len = len;
	rec.n++;
	return 0;
}

/* A set of block numbers, sorted. */
struct set {
	uint64_t *v;
	size_t n, cap;
};

static size_t set_pos(const struct set *s, uint64_t x)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool set_has(const struct set *s, uint64_t x)
{
	size_t i = set_pos(s, x);

	return i < s->n && s->v[i] == x;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* *s = the distinct values of v[0..n). */
static void set_of(struct set *s, uint64_t *v, size_t n)
{
	size_t i;

	qsort(v, n, sizeof(*v), cmp_u64);
	s->v = malloc((n ? n : 1) * sizeof(*s->v));
	FUZZ_CHECK(s->v);
	for (s->n = 0, i = 0; i < n; i++)
		if (!s->n || s->v[s->n - 1] != v[i])
			s->v[s->n++] = v[i];
	s->cap = n;
}

/* s |= add, in one merge; returns how many were new. */
static size_t set_merge(struct set *s, const struct set *add)
{
	uint64_t *v = malloc((s->n + add->n + 1) * sizeof(*v));
	size_t i = 0, j = 0, n = 0, fresh = 0;

	FUZZ_CHECK(v);
	while (i < s->n || j < add->n) {
		if (j == add->n || (i < s->n && s->v[i] < add->v[j])) {
			v[n++] = s->v[i++];
		} else {
			if (i < s->n && s->v[i] == add->v[j])
				i++;
			else
				fresh++;
			v[n++] = add->v[j++];
		}
	}
	free(s->v);
	s->v = v;
	s->n = s->cap = n;
	return fresh;
}

/* The model's view of the memory table (valid, or refused whole). */
struct table {
	unsigned int pb;
	uint64_t bs;
	size_t nr;
	struct b13_region_desc r[FUZZ_SLOTS];
	bool valid;
};

static bool model_region_ok(const struct b13_region_desc *r)
{
	return r->size && r->size - 1 <= UINT64_MAX - r->gpa;
}

static bool model_table_ok(const struct table *t)
{
	size_t i, j;

	for (i = 0; i < t->nr; i++) {
		if (!model_region_ok(&t->r[i]))
			return false;
		for (j = 0; j < i; j++) {
			uint64_t ei = t->r[i].gpa + (t->r[i].size - 1);
			uint64_t ej = t->r[j].gpa + (t->r[j].size - 1);

			if (t->r[i].gpa <= ej && t->r[j].gpa <= ei)
				return false;
		}
	}
	return true;
}

/* Remove x from s (if there); true if it was there. */
static bool set_remove(struct set *s, uint64_t x)
{
	size_t i = set_pos(s, x);

	if (i >= s->n || s->v[i] != x)
		return false;
	memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
	s->n--;
	return true;
}

/* The region (in t) holding byte a, or -1. */
static int model_region_at(const struct table *t, uint64_t a)
{
	size_t i;

	for (i = 0; t->valid && i < t->nr; i++)
		if (a >= t->r[i].gpa && a - t->r[i].gpa < t->r[i].size)
			return (int)i;
	return -1;
}

/* Is all of [a, a + len) in regions of t? */
static bool model_covers(const struct table *t, uint64_t a, uint64_t len)
{
	while (len) {
		int k = model_region_at(t, a);
		uint64_t in;

		if (k < 0)
			return false;
		in = t->r[k].size - (a - t->r[k].gpa);
		if (in >= len)
			return true;
		a += in;
		len -= in;
	}
	return true;
}

/* The region (in t) wholly holding [a, a + bs), or -1. */
static int model_region_of(const struct table *t, uint64_t a)
{
	size_t i;

	if (!t->valid)
		return -1;
	for (i = 0; i < t->nr; i++) {
		const struct b13_region_desc *r = &t->r[i];

		if (r->size >= t->bs && a >= r->gpa &&
		    a - r->gpa <= r->size - t->bs)
			return (int)i;
	}
	return -1;
}

static enum b13_reject model_check(const struct table *t, uint64_t a)
{
	if (a > UINT64_MAX - t->bs)
		return B13_REJ_OVERFLOW;
	if (a & (t->bs - 1))
		return B13_REJ_UNALIGNED;
	if (model_region_of(t, a) < 0)
		return B13_REJ_OUT_OF_RAM;
	return B13_OK;
}

/* Every recorded discard: aligned, in one mapping, named blocks only. */
static void check_discards(const struct table *t, const struct set *named,
			   uint64_t page)
{
	size_t k, i;

	for (k = 0; k < rec.n; k++) {
		uintptr_t s = rec.d[k].addr, e = s + rec.d[k].len;
		const struct b13_region_desc *r = NULL;
		uint64_t gs, ge, b;

		FUZZ_CHECK(rec.d[k].len > 0);
		FUZZ_CHECK(s % page == 0 && rec.d[k].len % page == 0);
		for (i = 0; i < t->nr && !r; i++)
			if (t->r[i].host &&
			    s >= (uintptr_t)t->r[i].host &&
			    e <= (uintptr_t)t->r[i].host + t->r[i].size)
				r = &t->r[i];
		FUZZ_CHECK(r);
		gs = r->gpa + (s - (uintptr_t)r->host);
		ge = gs + (e - s) - 1;
		for (b = gs >> t->pb; b <= ge >> t->pb; b++)
			FUZZ_CHECK(set_has(named, b));
	}
}

/* b13_for_each_range() callback: every listed block is in the model. */
struct listing {
	const struct set *s;
	uint64_t blocks;
	unsigned int pb;
};

static void each(uint64_t a, uint64_t nb, void *p)
{
	struct listing *c = p;
	uint64_t b;

	FUZZ_CHECK(nb > 0);
	for (b = 0; b < nb; b++)
		FUZZ_CHECK(set_has(c->s, (a >> c->pb) + b));
	c->blocks += nb;
}

static uint64_t fuzz_addr(struct in *in, const struct table *t,
			  const uint64_t *prev, size_t nprev)
{
	uint8_t mode = in_u8(in);
	const struct b13_region_desc *r = &t->r[(mode >> 2) % t->nr];
	uint64_t first = (r->gpa >> t->pb) + !!(r->gpa & (t->bs - 1));
	uint64_t nblocks = r->size >> t->pb;

	switch (mode & 3) {
	case 0:
		return in_u64(in);
	case 1:		/* a block near or inside region r */
		return (first + in_u32(in) % (nblocks + 2)) << t->pb;
	case 2:		/* the same, a little off */
		return ((first + in_u32(in) % (nblocks + 2)) << t->pb) +
		       1 + in_u8(in);
	default:	/* an address already in this message */
		return nprev ? prev[in_u16(in) % nprev] : in_u64(in);
	}
}

/* Split msg (len bytes) over three descriptors where the input says. */
static void split3(struct in *in, uint8_t *msg, size_t len,
		   struct iovec iov[3])
{
	size_t cut1 = in_u16(in) % (len + 1);
	size_t cut2 = cut1 + in_u16(in) % (len - cut1 + 1);

	iov[0] = (struct iovec){ msg, cut1 };
	iov[1] = (struct iovec){ msg + cut1, cut2 - cut1 };
	iov[2] = (struct iovec){ msg + cut2, len - cut2 };
}

/* A WITHDRAW of n addresses. */
static void withdraw_msg(struct in *in, const struct table *t,
			 struct b13_map *m, struct set *model, size_t n,
			 bool wmode, uint64_t feats)
{
	static uint64_t addr[MAX_ADDRS];
	static uint8_t buf[8 + 8 * MAX_ADDRS];
	struct virtio_balloon13_resp_hdr h = {
		htole32(VIRTIO_BALLOON13_RESP_WITHDRAW), 0 };
	struct b13_stats st = { { 0 }, 0 };
	uint64_t invalid = 0, absent = 0, gone = 0, before = model->n;
	struct b13_msg_result res;
	struct iovec iov[3];
	size_t i, len = 8 + 8 * n;

	memcpy(buf, &h, sizeof(h));
	for (i = 0; i < n; i++) {
		uint64_t le;

		addr[i] = fuzz_addr(in, t, addr, i);
		le = htole64(addr[i]);
		memcpy(buf + 8 + 8 * i, &le, 8);
	}
	split3(in, buf, len, iov);
	rec.n = 0;
	b13_handle_msg(m, &st, iov, 3, 0, feats, &res);
	FUZZ_CHECK(rec.n == 0);			/* nothing discarded */
	if (!wmode || !n) {
		FUZZ_CHECK(res.why == (!wmode ? B13_REJ_TYPE : B13_REJ_LENGTH));
		FUZZ_CHECK(b13_map_blocks_set(m) == before);
		return;
	}
	FUZZ_CHECK(res.why == B13_OK);
	for (i = 0; i < n; i++) {
		if (model_check(t, addr[i]) != B13_OK)
			invalid++;
		else if (set_remove(model, addr[i] >> t->pb))
			gone++;
		else
			absent++;
	}
	FUZZ_CHECK(res.apply.withdrawn == gone);
	FUZZ_CHECK(res.apply.withdraw_invalid == invalid);
	FUZZ_CHECK(res.apply.withdraw_absent == absent);
	FUZZ_CHECK(b13_map_blocks_set(m) == model->n);
}

/* A REPORT of n ranges. */
static void report_msg(struct in *in, const struct table *t,
		       struct b13_map *m, struct set *model, size_t n,
		       bool wmode, uint64_t feats, uint64_t page)
{
	static uint64_t ra[MAX_RANGES], rl[MAX_RANGES];
	static uint8_t buf[8 + 16 * MAX_RANGES];
	struct virtio_balloon13_resp_hdr h = {
		htole32(VIRTIO_BALLOON13_RESP_REPORT), 0 };
	struct b13_stats st = { { 0 }, 0 };
	enum b13_reject want = n ? B13_OK : B13_REJ_LENGTH;
	uint64_t ballooned = 0, bad = 0, before = model->n;
	struct b13_msg_result res;
	struct iovec iov[3];
	size_t i, k, len = 8 + 16 * n;

	memcpy(buf, &h, sizeof(h));
	for (i = 0; i < n; i++) {
		uint8_t how = in_u8(in);
		uint64_t le;

		ra[i] = fuzz_addr(in, t, ra, i);
		/* mostly a few blocks; sometimes anything */
		rl[i] = how & 1 ? in_u64(in) : (uint64_t)(how >> 1) << t->pb;
		le = htole64(ra[i]);
		memcpy(buf + 8 + 16 * i, &le, 8);
		le = htole64(rl[i]);
		memcpy(buf + 16 + 16 * i, &le, 8);
		if (want != B13_OK)
			continue;
		bad = ra[i];
		if (!rl[i])
			want = B13_REJ_EMPTY;
		else if (rl[i] - 1 > UINT64_MAX - ra[i])
			want = B13_REJ_OVERFLOW;
		else if ((ra[i] | rl[i]) & (t->bs - 1))
			want = B13_REJ_UNALIGNED;
		else if (!model_covers(t, ra[i], rl[i]))
			want = B13_REJ_OUT_OF_RAM;
	}
	split3(in, buf, len, iov);
	rec.n = 0;
	b13_handle_msg(m, &st, iov, 3, 0, feats, &res);
	FUZZ_CHECK(res.why == want);
	if (want != B13_OK) {
		FUZZ_CHECK(rec.n == 0);
		FUZZ_CHECK(b13_map_blocks_set(m) == before);
		if (want >= B13_REJ_OVERFLOW)
			FUZZ_CHECK(res.bad_addr == bad);
		return;
	}
	/*
	 * Blocks wholly inside a reported range.  With WITHDRAW they stay in
	 * the balloon and each naming counts (a block inside two overlapping
	 * ranges is two guest errors); without, the first range to name a
	 * block takes it out, so it counts once.
	 */
	for (i = 0; i < model->n;) {
		uint64_t a = model->v[i] << t->pb, named = 0;

		for (k = 0; k < n && (wmode || !named); k++)
			named += a >= ra[k] && a - ra[k] <= rl[k] - t->bs;
		if (!named) {
			i++;
			continue;
		}
		ballooned += named;
		if (wmode)
			i++;
		else
			set_remove(model, model->v[i]);
	}
	FUZZ_CHECK(res.apply.report_ballooned == ballooned);
	FUZZ_CHECK(res.apply.report_ranges == n);
	FUZZ_CHECK(b13_map_blocks_set(m) == model->n);
	FUZZ_CHECK(res.apply.punch_calls == rec.n);
	/* Every discard: page aligned, in one mapping, in a reported range. */
	for (k = 0; k < rec.n; k++) {
		uintptr_t s = rec.d[k].addr, e = s + rec.d[k].len;
		const struct b13_region_desc *r = NULL;
		bool inside = false;
		uint64_t gs;

		FUZZ_CHECK(rec.d[k].len > 0);
		FUZZ_CHECK(s % page == 0 && rec.d[k].len % page == 0);
		for (i = 0; i < t->nr && !r; i++)
			if (t->r[i].host && s >= (uintptr_t)t->r[i].host &&
			    e <= (uintptr_t)t->r[i].host + t->r[i].size)
				r = &t->r[i];
		FUZZ_CHECK(r);
		gs = r->gpa + (s - (uintptr_t)r->host);
		for (i = 0; i < n && !inside; i++)
			inside = gs >= ra[i] &&
				 gs - ra[i] <= rl[i] - rec.d[k].len;
		FUZZ_CHECK(inside);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	uint8_t *ram = fuzz_fake_ram();
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	struct b13_stats stats = { { 0 }, 0 };
	struct set model = { 0 };
	struct table t = { 0 };
	struct b13_map m;
	uint64_t prev_end = 0, cap, w, feats;
	size_t i, msgs;
	bool wmode;

	{
		uint8_t b = in_u8(&in);

		t.pb = page_bits[b % (sizeof(page_bits) /
				      sizeof(page_bits[0]))];
		wmode = (b / 16) & 1;
	}
	t.bs = 1ull << t.pb;
	t.nr = 1 + in_u8(&in) % FUZZ_SLOTS;
	/* Bitmaps of at most 64 Ki blocks, mappings of at most 4 GiB. */
	cap = t.pb >= 16 ? 4ull << 30 : 65536ull << t.pb;
	for (i = 0; i < t.nr; i++) {
		uint8_t how = in_u8(&in);
		struct b13_region_desc *r = &t.r[i];

		r->gpa = how & 1 ? in_u64(&in) :
			 prev_end + ((uint64_t)in_u16(&in) << (how & 2 ? 0 : 12));
		r->size = in_u64(&in) % (cap + 1);
		r->host = how & 4 ? NULL :
			  ram + i * FUZZ_SLOT + (how & 8 ? in_u16(&in) % page : 0);
		prev_end = r->gpa + r->size;
	}
	t.valid = model_table_ok(&t);
	feats = B13_F_REPORTING | (wmode ? B13_F_WITHDRAW : 0);

	b13_map_init(&m, t.pb);
	m.discard = record;
	FUZZ_CHECK((b13_map_set_regions(&m, t.r, t.nr) == 0) == t.valid);
	FUZZ_CHECK(m.nr == (t.valid ? t.nr : 0));

	for (msgs = 0; msgs < MAX_MSGS && in.left; msgs++) {
		static uint64_t addr[MAX_ADDRS];
		static uint8_t buf[8 + 8 * MAX_ADDRS];
		struct virtio_balloon13_resp_hdr h = { htole32(VIRTIO_BALLOON13_RESP_PAGES), 0 };
		enum b13_reject want = B13_OK;
		struct b13_msg_result res;
		struct set named = { 0 };
		uint64_t before = model.n, fresh = 0, bad = 0;
		uint16_t raw = in_u16(&in);
		size_t n = raw % (MAX_ADDRS + 1), len, cut1, cut2;
		struct iovec iov[3];

		/* Seeds from before WITHDRAW and REPORT have raw < 0x1000. */
		if ((raw >> 12) % 3 == 1) {
			withdraw_msg(&in, &t, &m, &model, n, wmode, feats);
			continue;
		}
		if ((raw >> 12) % 3 == 2) {
			report_msg(&in, &t, &m, &model, n % (MAX_RANGES + 1),
				   wmode, feats, page);
			continue;
		}

		h.reserved = htole32(in_u8(&in) == 0xff);
		memcpy(buf, &h, sizeof(h));
		for (i = 0; i < n; i++) {
			uint64_t le;

			addr[i] = fuzz_addr(&in, &t, addr, i);
			le = htole64(addr[i]);
			memcpy(buf + 8 + 8 * i, &le, 8);
			if (want == B13_OK) {
				want = model_check(&t, addr[i]);
				bad = addr[i];
			}
		}
		if (!n)
			want = B13_REJ_LENGTH;
		len = 8 + 8 * n;
		cut1 = in_u16(&in) % (len + 1);
		cut2 = cut1 + in_u16(&in) % (len - cut1 + 1);
		iov[0] = (struct iovec){ buf, cut1 };
		iov[1] = (struct iovec){ buf + cut1, cut2 - cut1 };
		iov[2] = (struct iovec){ buf + cut2, len - cut2 };

		rec.n = 0;
		b13_handle_msg(&m, &stats, iov, 3, 0, feats, &res);
		FUZZ_CHECK(res.why == want);
		FUZZ_CHECK(res.len == len);
		if (want != B13_OK) {
			FUZZ_CHECK(rec.n == 0);
			FUZZ_CHECK(b13_map_blocks_set(&m) == model.n);
			if (want >= B13_REJ_OVERFLOW)
				FUZZ_CHECK(res.bad_addr == bad);
			continue;
		}
		{
			static uint64_t blocks[MAX_ADDRS];

			for (i = 0; i < n; i++)
				blocks[i] = addr[i] >> t.pb;
			set_of(&named, blocks, n);
			fresh = set_merge(&model, &named);
		}
		FUZZ_CHECK(res.type == VIRTIO_BALLOON13_RESP_PAGES && res.n == n);
		FUZZ_CHECK(res.repeats == n - named.n);
		FUZZ_CHECK(res.apply.new_blocks == fresh);
		FUZZ_CHECK(res.apply.new_blocks == model.n - before);
		/* Fake RAM is never resident: repeats are all duplicates. */
		FUZZ_CHECK(res.apply.duplicates == named.n - fresh);
		FUZZ_CHECK(res.apply.reballooned == 0);
		FUZZ_CHECK(res.apply.punch_calls == rec.n);
		FUZZ_CHECK(res.reserved_nonzero == (h.reserved != 0));
		FUZZ_CHECK(b13_map_blocks_set(&m) == model.n);
		check_discards(&t, &named, page);
		/* Aligned mappings, blocks of whole pages: all of it goes. */
		if (t.bs >= page) {
			bool aligned = true;
			uint64_t want_bytes = 0, got = 0;

			for (i = 0; i < named.n; i++) {
				int k = model_region_of(&t, named.v[i] << t.pb);

				aligned &= (uintptr_t)t.r[k].host % page == 0 &&
					   t.r[k].gpa % page == 0;
				if (t.r[k].host)
					want_bytes += t.bs;
			}
			for (i = 0; i < rec.n; i++)
				got += rec.d[i].len;
			if (aligned)
				FUZZ_CHECK(got == want_bytes);
		}
		free(named.v);
	}

	/* The bitmap, listed, counted and walked, is the model. */
	{
		struct listing chk = { &model, 0, t.pb };
		uint64_t next = 0, from = 0, budget = 1 + in_u8(&in);
		struct b13_scan sc;

		b13_for_each_range(&m, each, &chk);
		FUZZ_CHECK(chk.blocks == model.n);
		FUZZ_CHECK(b13_count_in_balloon(&m, &w) == model.n && w == 0);
		/*
		 * Each slice makes at least one mincore() (a window of 8192
		 * pages) of progress: a bound on the slices.
		 */
		uint64_t windows = model.n * ((t.bs / page) / 8192 + 2) +
				   t.nr + 1;

		b13_scan_begin(&m, &sc);
		for (i = 0;; i++) {
			struct b13_budget b;

			b13_budget_init(&b, budget, 0);
			if (b13_scan_step(&m, &sc, &b))
				break;
			FUZZ_CHECK(i <= windows);
		}
		b13_scan_end(&sc);
		FUZZ_CHECK(sc.in == model.n && sc.withdrawn == 0);
		/* Paged listing, a few runs at a time, adds up the same. */
		chk.blocks = 0;
		for (i = 0; b13_ranges(&m, from, 1 + budget % 8, each, &chk,
				       &next); i++) {
			FUZZ_CHECK(next > from);
			FUZZ_CHECK(i <= model.n);
			from = next;
		}
		FUZZ_CHECK(chk.blocks == model.n);
	}
	b13_map_free(&m);
	free(model.v);
	return 0;
}

