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
#include <sys/uio.h>

/*
 * The wire format: include/uapi/linux/virtio_balloon13.h, shared with the
 * driver and the native QEMU device.  Outside sparse, its __le types are
 * plain integers: every access goes through le*toh()/htole*().
 */
#include <linux/virtio_balloon13.h>

_Static_assert(sizeof(struct virtio_balloon13_config) == 4, "config");
_Static_assert(sizeof(struct virtio_balloon13_req) == 16, "request");
_Static_assert(sizeof(struct virtio_balloon13_resp_hdr) == 8, "header");
_Static_assert(sizeof(struct virtio_balloon13_stat) == 16, "statistic");
_Static_assert(sizeof(struct virtio_balloon13_range) == 16, "range");
_Static_assert(sizeof(struct virtio_balloon13_pages) == 8, "pages");

/* The virtqueues, by index. */
enum b13_vq {
	B13_VQ_INPUT = 0,	/* device -> driver: requests, guest buffers */
	B13_VQ_OUTPUT = 1,	/* driver -> device: messages */
	B13_NUM_VQS = 2,
};

/* Statistics tags every driver may send (0-5); more need FULL_STATS. */
#define B13_BASE_TAGS		6


/* "PROG: message (see --help)" on stderr, then exit 2: a bad command line. */
void b13_usage_error(const char *prog, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 2, 3)));

/*
 * Most addresses in one page list: 1 MiB of them (512 MiB of 4 KiB blocks).
 * The driver sends at most 8192 (64 KiB) per message, so this leaves it
 * sixteen times the room, while the device's temporary memory for one page
 * list stays at one 1 MiB copy, sorted in place, plus a 64 KiB residency
 * window: nothing else is allocated per address.  Longer messages are
 * rejected unread ("oversize").
 */
#define B13_MAX_PAGES		(128u * 1024)
#define B13_MAX_MSG_BYTES	(8u + 8u * B13_MAX_PAGES)
/*
 * Most entries in one stats message.  A driver sends one per tag it knows
 * (six today); 64 leaves room for tags to come.  More is "oversize".
 */
#define B13_MAX_STATS		64u

/* Why an outputq message was rejected.  Parallel to b13_reject_names[]. */
enum b13_reject {
	B13_OK = 0,
	B13_REJ_SHORT,		/* shorter than the 8-byte header */
	B13_REJ_LENGTH,		/* not 8 + 8n (pages) / 8 + 16n (stats), n >= 1 */
	B13_REJ_TYPE,		/* type is neither PAGES nor STATS */
	B13_REJ_OVERSIZE,	/* > B13_MAX_MSG_BYTES, or > B13_MAX_STATS stats */
	B13_REJ_WRITABLE,	/* has device-writable descriptors */
	B13_REJ_OVERFLOW,	/* address + block size wraps past 2^64 */
	B13_REJ_UNALIGNED,	/* address not a multiple of the block size */
	B13_REJ_OUT_OF_RAM,	/* block not wholly inside one RAM region */
	B13_REJ_NR
};
extern const char *const b13_reject_names[B13_REJ_NR];

/* Names of the stats tags VIRTIO_BALLOON13_TAG_*, as used in JSON ("swap_in", ...). */
extern const char *const b13_tag_names[B13_BASE_TAGS];

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

/*
 * How a run is given back to the host: madvise(MADV_REMOVE) unless a test
 * or fuzz harness puts its own function here.  0 or -1 with errno set.
 */
typedef int (*b13_discard_fn)(void *addr, size_t len, void *arg);

struct b13_map {
	unsigned int page_bits;
	uint64_t block_size;	/* 2^page_bits */
	uint64_t host_page;	/* host page size, for madvise/mincore */
	size_t nr;
	struct b13_region *r;	/* sorted by gpa, not overlapping */
	uint64_t gen;		/* changes whenever r[] or a bitmap is replaced */
	b13_discard_fn discard;	/* NULL: madvise(MADV_REMOVE) */
	void *discard_arg;
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
 * empty.  Returns 0; -1 if out of memory, or if regions are empty, wrap
 * past 2^64 or overlap (EINVAL): the map is then left empty.
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
enum b13_reject b13_check_msg(uint64_t len, const struct virtio_balloon13_resp_hdr *hdr,
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
 * The same for at most max runs, from the first block at or after from (a
 * run holding from is cut there).  Returns true if runs were left out,
 * with *next the start of the first: pass it as from to go on.
 */
bool b13_ranges(const struct b13_map *m, uint64_t from, size_t max,
		void (*fn)(uint64_t addr, uint64_t nblocks, void *data),
		void *data, uint64_t *next);

/* ---- whole outputq messages --------------------------------------------- */

/*
 * The latest guest statistics: one slot per tag this device knows, so a
 * guest cannot make the table (or anything built from it) any bigger.
 */
struct b13_stats {
	uint64_t value[B13_BASE_TAGS];
	uint32_t present;	/* bit t: tag t was in the latest message */
};

/* What one outputq message did; the caller counts and logs from it. */
struct b13_msg_result {
	enum b13_reject why;
	uint32_t type;		/* B13_RESP_*; valid when why is B13_OK */
	uint64_t len;		/* bytes in its readable descriptors */
	uint64_t n;		/* entries (addresses or stats) */
	uint64_t bad_addr;	/* the first bad address (OVERFLOW..OUT_OF_RAM) */
	bool reserved_nonzero;	/* guest error, message still used */
	/* page lists */
	size_t runs;		/* runs of contiguous blocks discarded */
	uint64_t repeats;	/* addresses repeated within the message */
	struct b13_apply_stats apply;	/* this message's part */
	/* stats */
	uint64_t stats_unknown;	/* entries with a tag we don't know */
	uint64_t stats_repeated;	/* a tag seen earlier in the message */
};

/*
 * Validate one outputq message given as the readable part of a descriptor
 * chain (iov, niov; nwritable: how many device-writable descriptors came
 * with it) and act on it: a page list's blocks are marked in m and
 * discarded; stats replace *st (last value of a tag wins, unknown tags are
 * dropped; both counted in *res).  A rejected message changes nothing.
 *
 * The message is copied before it is checked (the guest may change it
 * under us); at most B13_MAX_MSG_BYTES are read and nothing else scales
 * with its size.  Returns res->why.
 */
enum b13_reject b13_handle_msg(struct b13_map *m, struct b13_stats *st,
			       const struct iovec *iov, unsigned int niov,
			       unsigned int nwritable,
			       struct b13_msg_result *res);
/*
 * Mark sorted, checked addresses and discard them run by run (what
 * b13_coalesce() + b13_apply_runs() do, without an array of runs).
 * Repeated addresses are counted in *repeats.  Returns the number of runs.
 */
size_t b13_apply_sorted(struct b13_map *m, const uint64_t *sorted, uint64_t n,
			struct b13_apply_stats *st, uint64_t *repeats);

/* ---- counting the balloon a slice at a time ------------------------------ */

/*
 * b13_count_in_balloon() as a cursor: each b13_scan_step() looks at about
 * budget host pages (at least one block) and returns, so a caller can
 * serve other work between slices.  If the map changes under a scan, the
 * scan starts again.
 */
struct b13_scan {
	uint64_t gen;		/* map generation being scanned */
	size_t region;		/* next region */
	uint64_t block;		/* next block index in it */
	uint64_t in, withdrawn;	/* so far */
	uint64_t restarts;	/* times the map changed under the scan */
	bool done;
	struct rescan *rs;	/* residency window; NULL until needed */
};

void b13_scan_begin(const struct b13_map *m, struct b13_scan *s);
/* Returns true once s->in and s->withdrawn are final. */
bool b13_scan_step(const struct b13_map *m, struct b13_scan *s,
		   uint64_t budget);
void b13_scan_end(struct b13_scan *s);

/* ---- log rate limit ---------------------------------------------------------- */

/*
 * At most B13_RL_BURST messages of one kind per B13_RL_INTERVAL_US; the
 * rest are counted.  Something a guest or a client can trigger at will is
 * logged through one of these.
 */
#define B13_RL_BURST		10
#define B13_RL_INTERVAL_US	(10 * 1000000ll)

struct b13_ratelimit {
	int64_t begin;		/* us, start of the current interval */
	unsigned int n;		/* messages allowed in it */
	uint64_t missed;	/* suppressed since the last allowed one */
};

/*
 * True if a message may be logged at now_us.  *missed (if not NULL) is
 * set to how many were suppressed before this one (to say so in the log),
 * else 0.
 */
bool b13_ratelimit(struct b13_ratelimit *rl, int64_t now_us,
		   uint64_t *missed);

/*
 * Deepest nesting of JSON arrays and objects in s (len bytes), outside
 * strings; counting stops once it passes limit.  json-glib's parser
 * recurses once per level: this runs first, so that it never goes deep.
 */
unsigned int b13_json_depth(const char *s, size_t len, unsigned int limit);

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
