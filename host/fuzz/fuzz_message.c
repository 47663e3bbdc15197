// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer harness: whole outputq messages, any type, as the device gets
 * them (b13_handle_msg()): raw bytes split over up to eight descriptors,
 * sometimes with device-writable ones, sometimes with a last descriptor
 * that makes the message longer than any the device reads (it must then
 * be refused without a byte read: ASan sees any read past the buffer).
 *
 * Checked against a model: the reason a message is refused follows from
 * its length, its header and the features negotiated (the input picks
 * them) alone; a stats message leaves a table of the known tags (six, or
 * eighteen with FULL_STATS) with the last value of each, and counts
 * unknown and repeated tags; a refused one leaves the table and the
 * bitmap as they were.  Guest RAM is q35-like, with fake host mappings
 * and a discard hook, so accepted page lists, withdrawals and reports run
 * the whole path too.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <stdbool.h>

#include "b13.h"
#include "fuzz.h"

static const unsigned int page_bits[] = { 12, 21, 10, 16 };

static int ignore(void *addr, size_t len, void *arg)
{
	(void)addr;
	(void)len;
	(void)arg;
	return 0;
}

/* Expected outcome from the length and header alone (no page checks). */
static enum b13_reject model_shape(uint64_t len, const uint8_t *msg,
				   uint64_t f, uint32_t *type, uint64_t *n)
{
	uint64_t entry;
	uint32_t t;

	if (len > B13_MAX_MSG_BYTES)
		return B13_REJ_OVERSIZE;
	if (len < 8)
		return B13_REJ_SHORT;
	t = msg[0] | msg[1] << 8 | msg[2] << 16 | (uint32_t)msg[3] << 24;
	*type = t;
	if (t == VIRTIO_BALLOON13_RESP_PAGES ||
	    (t == VIRTIO_BALLOON13_RESP_WITHDRAW && (f & B13_F_WITHDRAW)))
		entry = 8;
	else if (t == VIRTIO_BALLOON13_RESP_STATS ||
		 (t == VIRTIO_BALLOON13_RESP_REPORT && (f & B13_F_REPORTING)))
		entry = 16;
	else
		return B13_REJ_TYPE;
	/* A WITHDRAW's complete entries count whatever its length. */
	if ((len - 8) % entry && t != VIRTIO_BALLOON13_RESP_WITHDRAW)
		return B13_REJ_LENGTH;
	*n = (len - 8) / entry;
	return *n ? B13_OK : B13_REJ_LENGTH;
}

static uint64_t le64_at(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *ram = fuzz_fake_ram();
	struct b13_region_desc d[3] = {
		{ 0x0, 0xa0000, ram, 0 },
		{ 0x100000, 0x7f00000, ram + FUZZ_SLOT, 0 },
		{ 0x100000000ull, 0x8000000, ram + 2 * FUZZ_SLOT, 0 },
	};
	struct in in = { data, size };
	struct b13_stats st = { { 0 }, 0 }, before;
	struct b13_msg_result res;
	struct iovec iov[9];
	struct b13_map m;
	unsigned int niov, nwr, i;
	uint8_t flags;
	uint64_t len, off, set_before, n = 0;
	uint32_t type = ~0u;
	uint64_t feats;
	enum b13_reject want;
	const uint8_t *msg;
	uint8_t *copy;

	b13_map_init(&m, page_bits[in_u8(&in) % 4]);
	m.discard = ignore;
	FUZZ_CHECK(b13_map_set_regions(&m, d, 3) == 0);
	st.present = in_u8(&in) & 0x3f;	/* what the last message left */
	for (i = 0; i < VIRTIO_BALLOON13_TAG_NR; i++)
		st.value[i] = i * 1000 + 1;
	flags = in_u8(&in);
	/* Bits 3-5: WITHDRAW, REPORTING, FULL_STATS (0 in older seeds). */
	feats = (flags & 0x08 ? B13_F_WITHDRAW : 0) |
		(flags & 0x10 ? B13_F_REPORTING : 0) |
		(flags & 0x20 ? B13_F_FULL_STATS : 0);
	niov = 1 + flags % 8;
	nwr = flags & 0x80 ? 1 : 0;

	/* The rest is the message (a heap copy, so ASan sees its end). */
	copy = malloc(in.left ? in.left : 1);
	memcpy(copy, in.p, in.left);
	msg = copy;
	len = in.left;
	for (i = 0, off = 0; i < niov; i++) {
		uint64_t k = i + 1 == niov ? len - off :
			     (off < len ? msg[off] % (len - off + 1) : 0);

		iov[i] = (struct iovec){ copy + off, k };
		off += k;
	}
	if (flags & 0x40) {	/* a last piece past the limit: never read */
		iov[niov++] = (struct iovec){ copy, B13_MAX_MSG_BYTES + 1 };
		len += B13_MAX_MSG_BYTES + 1;
	}

	before = st;
	set_before = b13_map_blocks_set(&m);
	b13_handle_msg(&m, &st, iov, niov, nwr, feats, &res);
	FUZZ_CHECK(res.len == len);
	want = nwr ? B13_REJ_WRITABLE : model_shape(len, msg, feats, &type,
						      &n);
	if (want == B13_OK && (type == VIRTIO_BALLOON13_RESP_PAGES ||
			       type == VIRTIO_BALLOON13_RESP_REPORT)) {
		/* Page checks are fuzz_pagelist's: only agree on the kind. */
		FUZZ_CHECK(res.why == B13_OK || res.why >= B13_REJ_OVERFLOW);
	} else {
		FUZZ_CHECK(res.why == want);
	}
	if (res.why != B13_OK) {
		FUZZ_CHECK(!memcmp(&st, &before, sizeof(st)));
		FUZZ_CHECK(b13_map_blocks_set(&m) == set_before);
		goto out;
	}
	FUZZ_CHECK(res.type == type && res.n == n);
	FUZZ_CHECK(res.reserved_nonzero ==
		   (msg[4] || msg[5] || msg[6] || msg[7]));
	FUZZ_CHECK(res.withdraw_bad_length ==
		   (type == VIRTIO_BALLOON13_RESP_WITHDRAW && (len - 8) % 8));
	if (type == VIRTIO_BALLOON13_RESP_STATS) {
		struct b13_stats want_st = { { 0 }, 0 };
		uint64_t unknown = 0, repeated = 0;

		uint64_t known = feats & B13_F_FULL_STATS ?
				 VIRTIO_BALLOON13_TAG_NR : B13_BASE_TAGS;

		for (i = 0; i < n; i++) {
			uint64_t tag = le64_at(msg + 8 + 16 * i);

			if (tag >= known) {
				unknown++;
				continue;
			}
			repeated += !!(want_st.present & 1u << tag);
			want_st.present |= 1u << tag;
			want_st.value[tag] = le64_at(msg + 16 + 16 * i);
		}
		FUZZ_CHECK(res.stats_unknown == unknown);
		FUZZ_CHECK(res.stats_repeated == repeated);
		FUZZ_CHECK(st.present == want_st.present);
		for (i = 0; i < VIRTIO_BALLOON13_TAG_NR; i++)
			if (st.present & 1u << i)
				FUZZ_CHECK(st.value[i] == want_st.value[i]);
		FUZZ_CHECK(b13_map_blocks_set(&m) == set_before);
	} else if (type == VIRTIO_BALLOON13_RESP_WITHDRAW) {
		/* Never refused for its entries; each counted once. */
		FUZZ_CHECK(!memcmp(&st, &before, sizeof(st)));
		FUZZ_CHECK(res.apply.withdrawn + res.apply.withdraw_invalid +
			   res.apply.withdraw_absent == n);
		FUZZ_CHECK(b13_map_blocks_set(&m) ==
			   set_before - res.apply.withdrawn);
	} else if (type == VIRTIO_BALLOON13_RESP_REPORT) {
		FUZZ_CHECK(!memcmp(&st, &before, sizeof(st)));
		FUZZ_CHECK(res.apply.report_ranges == n);
	} else {
		FUZZ_CHECK(!memcmp(&st, &before, sizeof(st)));
		FUZZ_CHECK(res.apply.new_blocks + res.apply.duplicates +
			   res.apply.reballooned + res.repeats == n);
		FUZZ_CHECK(b13_map_blocks_set(&m) ==
			   set_before + res.apply.new_blocks);
	}
out:
	b13_map_free(&m);
	free(copy);
	return 0;
}
