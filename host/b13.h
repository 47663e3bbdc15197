/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * balloon13 host logic that does not depend on vhost-user: message
 * validation, coalescing of block addresses into runs, the per-region bitmap
 * of ballooned blocks, hole punching, residency checks (withdraw-by-access)
 * and command-line number parsing.  balloon13d links it; host/tests
 * exercises it directly.
 */
#ifndef BALLOON13_B13_H
#define BALLOON13_B13_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* "PROG: message (see --help)" on stderr, then exit 2: a bad command line. */
void b13_usage_error(const char *prog, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 2, 3)));

/*
 * Longest outputq message we copy out and look at.  16 MiB holds 2 Mi
 * addresses (8 GiB of 4 KiB blocks) in one message, far above what a
 * driver sends at once; anything longer is rejected unread, so a hostile
 * guest cannot make us allocate its whole descriptor table's worth.
 */
#define B13_MAX_MSG_BYTES	(16u << 20)

/* Why an outputq message was rejected.  Parallel to b13_reject_names[]. */
enum b13_reject {
	B13_OK = 0,
	B13_REJ_SHORT,		/* shorter than the 8-byte header */
	B13_REJ_LENGTH,		/* not 8 + 8n (pages) / 8 + 16n (stats), n >= 1 */
	B13_REJ_TYPE,		/* type is neither PAGES nor STATS */
	B13_REJ_OVERSIZE,	/* longer than B13_MAX_MSG_BYTES */
	B13_REJ_WRITABLE,	/* has device-writable descriptors */
	B13_REJ_OVERFLOW,	/* address + block size wraps past 2^64 */
	B13_REJ_UNALIGNED,	/* address not a multiple of the block size */
	B13_REJ_OUT_OF_RAM,	/* block not wholly inside one RAM region */
	B13_REJ_NR
};
extern const char *const b13_reject_names[B13_REJ_NR];

/* Names of the stats tags B13_TAG_*, as used in JSON ("swap_in", ...). */
extern const char *const b13_tag_names[B13_NUM_TAGS];

/*
 * One region of guest RAM from the vhost-user memory table.  The bitmap has
 * one bit per whole block inside the region: set once the guest ballooned
 * the block (received), whether or not it has been touched again since.
 */
struct b13_region {
	uint64_t gpa;		/* first guest-physical byte */
	uint64_t size;		/* bytes */
	uint8_t *host;		/* our mapping of gpa; NULL: no punching (tests) */
	uint64_t first_block;	/* gpa rounded up to a block, in blocks */
	uint64_t nblocks;	/* whole blocks inside [gpa, gpa + size) */
	uint64_t *bitmap;	/* nblocks bits */
	uint64_t nset;		/* bits set in bitmap */
};

struct b13_map {
	unsigned int page_bits;
	uint64_t block_size;	/* 2^page_bits */
	uint64_t host_page;	/* host page size, for madvise/mincore */
	size_t nr;
	struct b13_region *r;	/* sorted by gpa, not overlapping */
};

/* What a caller hands b13_map_set_regions(): the memory table. */
struct b13_region_desc {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
};

/* A run of contiguous blocks inside one region. */
struct b13_run {
	size_t region;		/* index into map->r */
	uint64_t addr;		/* guest-physical, block aligned */
	uint64_t nblocks;
};

/* Result of b13_apply_runs(); counters are added to, not reset. */
struct b13_apply_stats {
	uint64_t new_blocks;	/* bit was clear */
	uint64_t duplicates;	/* bit set and block still not resident */
	uint64_t reballooned;	/* bit set but block resident (withdrawn) */
	uint64_t punch_calls;	/* madvise() calls */
	uint64_t punch_bytes;
	uint64_t punch_errors;
	int last_errno;		/* of the last failed madvise() */
};

void b13_map_init(struct b13_map *m, unsigned int page_bits);
/*
 * Replace the region list.  A region identical in gpa and size to an old
 * one keeps its bitmap (only its host pointer is updated); others start
 * empty.  Returns 0, or -1 if out of memory (map left empty).
 */
int b13_map_set_regions(struct b13_map *m, const struct b13_region_desc *d,
			size_t n);
void b13_map_clear_bitmaps(struct b13_map *m);
void b13_map_free(struct b13_map *m);
uint64_t b13_map_ram_bytes(const struct b13_map *m);
uint64_t b13_map_blocks_set(const struct b13_map *m);
/* Index of the region holding all of [addr, addr + len), or -1. */
long b13_map_find(const struct b13_map *m, uint64_t addr, uint64_t len);

/*
 * Check a message's length against its type (hdr is the first 8 bytes,
 * valid only if len >= 8).  On B13_OK, *type and *n (entries) are set.
 */
enum b13_reject b13_check_msg(uint64_t len, const struct b13_msg_hdr *hdr,
			      uint32_t *type, uint64_t *n);
/*
 * Check n little-endian addresses of a page list against the map: no
 * overflow, aligned, each block inside one region.  On B13_OK, sorted[]
 * holds them in CPU order, ascending.  *bad_addr names the first bad one.
 */
enum b13_reject b13_check_pages(const struct b13_map *m, const uint64_t *le,
				uint64_t n, uint64_t *sorted,
				uint64_t *bad_addr);
/*
 * Coalesce sorted, checked addresses into runs of contiguous blocks, split
 * at region boundaries; repeated addresses are skipped and counted in
 * *repeats.  runs[] must hold n entries.  Returns the number of runs.
 */
size_t b13_coalesce(const struct b13_map *m, const uint64_t *sorted,
		    uint64_t n, struct b13_run *runs, uint64_t *repeats);
/*
 * Mark the runs' blocks in the bitmap (classifying blocks already there as
 * duplicates or re-ballooned by their residency), then punch each run out of
 * guest RAM with one madvise(MADV_REMOVE): host pages wholly inside the run.
 */
void b13_apply_runs(struct b13_map *m, const struct b13_run *runs, size_t nr,
		    struct b13_apply_stats *st);
/*
 * Count bitmap blocks with no resident page (still in the balloon); blocks
 * with any resident page have been withdrawn by access.  One mincore() per
 * window of up to 64 Ki pages over each run of set bits.
 */
uint64_t b13_count_in_balloon(const struct b13_map *m, uint64_t *withdrawn);
/* Call fn for each run of set bits (guest-physical start, blocks). */
void b13_for_each_range(const struct b13_map *m,
			void (*fn)(uint64_t addr, uint64_t nblocks, void *data),
			void *data);

/*
 * Parse a size: decimal digits with an optional K/M/G/T suffix (powers of
 * 1024; also accepted as k/m/g/t, KiB, MiB, GiB, TiB, with a final B), at
 * most INT64_MAX.  Returns 0, or -1 with *why set to a one-line reason.
 */
int b13_parse_size(const char *s, uint64_t *out, const char **why);
/* Parse a decimal integer in [min, max].  Returns 0, or -1 with *why. */
int b13_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		   const char **why);

#endif /* BALLOON13_B13_H */
