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

/* Negotiated device feature bits, as a mask of the virtio feature word. */
#define B13_F_WITHDRAW		(1ull << VIRTIO_BALLOON13_F_WITHDRAW)
#define B13_F_REPORTING		(1ull << VIRTIO_BALLOON13_F_REPORTING)
#define B13_F_FULL_STATS	(1ull << VIRTIO_BALLOON13_F_FULL_STATS)
#define B13_F_PRESSURE_RELEASE	(1ull << VIRTIO_BALLOON13_F_PRESSURE_RELEASE)
#define B13_F_ALL		(B13_F_WITHDRAW | B13_F_REPORTING | \
				 B13_F_FULL_STATS | B13_F_PRESSURE_RELEASE)
/* Names of the four bits ("withdraw", ...), as --features takes them. */
extern const char *const b13_feature_names[4];
/*
 * Parse --features: "all", "none" or a comma list of names.  Returns 0
 * with *mask set, or -1 with *why.
 */
int b13_parse_features(const char *s, uint64_t *mask, const char **why);

/*
 * The longest message a device reads: the contract's limit (64 KiB), so
 * 8191 addresses, 4095 ranges.  A longer one is rejected unread
 * ("oversize"), which the contract allows; the device's memory for one
 * message is one copy of this size, made once.
 */
#define B13_MAX_MSG_BYTES	VIRTIO_BALLOON13_MSG_MAX_LEN
#define B13_MAX_PAGES		((B13_MAX_MSG_BYTES - 8) / 8)
#define B13_MAX_RANGES		((B13_MAX_MSG_BYTES - 8) / 16)

/* Why an outputq message was rejected.  Parallel to b13_reject_names[]. */
enum b13_reject {
	B13_OK = 0,
	B13_REJ_SHORT,		/* shorter than the 8-byte header */
	B13_REJ_LENGTH,		/* not 8 + 8n / 8 + 16n for its type, n >= 1 */
	B13_REJ_TYPE,		/* unknown type, or one not negotiated */
	B13_REJ_OVERSIZE,	/* > B13_MAX_MSG_BYTES */
	B13_REJ_WRITABLE,	/* has device-writable descriptors */
	B13_REJ_OVERFLOW,	/* address (+ length) wraps past 2^64 */
	B13_REJ_UNALIGNED,	/* address or length not a multiple of the block */
	B13_REJ_OUT_OF_RAM,	/* block or range not wholly inside guest RAM */
	B13_REJ_EMPTY,		/* REPORT range of length 0 */
	B13_REJ_NR
};
extern const char *const b13_reject_names[B13_REJ_NR];

/* Names of the stats tags, as used in JSON ("swap_in", ... "psi_full_us"). */
extern const char *const b13_tag_names[VIRTIO_BALLOON13_TAG_NR];

/*
 * One region of guest RAM from the vhost-user memory table.  The bitmap has
 * one bit per whole block inside the region: set once the guest ballooned
 * the block (received), and cleared when it withdraws it by a WITHDRAW
 * message (or reports it free).  Without WITHDRAW a set bit may have been
 * withdrawn by access since; residency tells.
 */
struct b13_region {
	uint64_t gpa;		/* first guest-physical byte */
	uint64_t size;		/* bytes */
	uint8_t *host;		/* our mapping of gpa; NULL: no punching (tests) */
	uint64_t page;		/* its host page size: discards are whole ones */
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
	uint64_t host_page;	/* system page size, for mincore */
	size_t nr;
	struct b13_region *r;	/* sorted by gpa, not overlapping */
	uint64_t gen;		/* changes whenever r[] or a bitmap is replaced */
	b13_discard_fn discard;	/* NULL: madvise(MADV_REMOVE) */
	void *discard_arg;
	/*
	 * --no-discard: guest RAM is pinned where the device can't see it
	 * (e.g. by an assigned device of the VMM).  Blocks are counted but
	 * never discarded, and the balloon is counted from messages alone:
	 * a kept block is resident, which says nothing of a withdrawal.
	 */
	bool keep;
};

/* What a caller hands b13_map_set_regions(): the memory table. */
struct b13_region_desc {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
	uint64_t page;		/* host page size; 0: the system's */
};

/* A run of contiguous blocks inside one region. */
struct b13_run {
	size_t region;		/* index into map->r */
	uint64_t addr;		/* guest-physical, block aligned */
	uint64_t nblocks;
};

/* What acting on messages did; counters are added to, not reset. */
struct b13_apply_stats {
	uint64_t new_blocks;	/* PAGES: bit was clear */
	uint64_t duplicates;	/* PAGES: bit set, block still not withdrawn */
	uint64_t reballooned;	/* PAGES: bit set but block resident (withdrawn
				   by access meanwhile) */
	uint64_t withdrawn;	/* WITHDRAW: blocks taken out of the balloon */
	uint64_t withdraw_invalid;	/* WITHDRAW entry unaligned, wrapping
					   or outside RAM (guest error) */
	uint64_t withdraw_absent;	/* WITHDRAW entry not in the balloon
					   (guest error) */
	uint64_t report_ranges;	/* REPORT: ranges acted on */
	uint64_t reported_bytes;	/* REPORT: bytes named */
	uint64_t report_ballooned;	/* REPORT: blocks in the balloon named
					   as free (guest error with WITHDRAW,
					   once per range naming the block;
					   without, withdrawn by access: they
					   leave the bitmap, counted once) */
	uint64_t punch_calls;	/* madvise() calls */
	uint64_t punch_bytes;
	uint64_t punch_errors;
	uint64_t punch_max_us;	/* the longest one took (wall time) */
	uint64_t skipped_bytes;	/* discards left out: job finished early */
	uint64_t kept_bytes;	/* discards left out: m->keep */
	uint64_t residency_calls;	/* mincore() calls */
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
/* Is all of [addr, addr + len) guest RAM (in one region or adjacent ones)? */
bool b13_map_covers(const struct b13_map *m, uint64_t addr, uint64_t len);

/*
 * Check a message's length against its type (hdr is the first 8 bytes,
 * valid only if len >= 8) and the negotiated features.  On B13_OK, *type
 * and *n (entries) are set.
 */
enum b13_reject b13_check_msg(uint64_t len,
			      const struct virtio_balloon13_resp_hdr *hdr,
			      uint64_t features, uint32_t *type, uint64_t *n);
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

/* ---- budgets: work per dispatch counted in syscalls and time ------------- */

/* Monotonic clock, microseconds. */
int64_t b13_now_us(void);

/*
 * What one slice of work may spend: syscalls (madvise, mincore) and wall
 * time.  Every syscall is taken from it first; a slice always makes at
 * least one, so work goes on whatever the clock says.
 */
struct b13_budget {
	uint64_t calls;		/* syscalls left */
	int64_t deadline;	/* b13_now_us() value; 0: no limit */
	uint64_t spent;		/* syscalls made in this slice */
};

/* calls syscalls (0: no limit), slice_us of time from now (0: no limit). */
void b13_budget_init(struct b13_budget *b, uint64_t calls, int64_t slice_us);
/* May one more syscall start?  If so it is counted. */
bool b13_budget_take(struct b13_budget *b);
/* Is the budget gone (for work that is not a syscall)? */
bool b13_budget_out(const struct b13_budget *b);

/* ---- whole outputq messages --------------------------------------------- */

/*
 * The latest guest statistics: one slot per tag this device knows, so a
 * guest cannot make the table (or anything built from it) any bigger.
 */
struct b13_stats {
	uint64_t value[VIRTIO_BALLOON13_TAG_NR];
	uint32_t present;	/* bit t: tag t was in the latest message */
};

/* What one outputq message did; the caller counts and logs from it. */
struct b13_msg_result {
	enum b13_reject why;
	uint32_t type;		/* VIRTIO_BALLOON13_RESP_*; valid on B13_OK */
	uint64_t len;		/* bytes in its readable descriptors */
	uint64_t n;		/* entries (addresses, ranges or stats) */
	uint64_t bad_addr;	/* the first bad address (OVERFLOW..EMPTY) */
	bool reserved_nonzero;	/* guest error, message still used */
	bool withdraw_bad_length;	/* WITHDRAW of 8 + 8n + k bytes,
				   0 < k < 8: guest error, its n
				   complete entries still used */
	/* page lists */
	size_t runs;		/* runs of contiguous blocks discarded */
	uint64_t repeats;	/* addresses repeated within the message */
	struct b13_apply_stats apply;	/* this message's part */
	/* stats */
	uint64_t stats_unknown;	/* entries with a tag we don't know */
	uint64_t stats_repeated;	/* a tag seen earlier in the message */
};

struct rescan;

/* Discards a job queues before the caller makes them (on any thread). */
#define B13_BATCH		64

struct b13_discard {
	uintptr_t addr;		/* host address, page aligned */
	size_t len;
};

/* What b13_job_step() wants next. */
enum b13_step {
	B13_STEP_DONE,		/* the job is over: give the buffer back */
	B13_STEP_YIELD,		/* the budget is spent: step again later */
	B13_STEP_DISCARD,	/* make j->batch's discards, then step again */
};

/*
 * One outputq message being acted on, a slice at a time.  The message is
 * copied in (the guest may change it under us) and checked whole by
 * b13_job_begin(); STATS and WITHDRAW are done there (no syscalls).  A
 * PAGES or REPORT message then goes on in b13_job_step(), each slice
 * within its budget: a page list marks and discards one run after the
 * other, a run of many blocks in chunks; a report discards its ranges in
 * chunks.  The device returns the buffer only once the job is over.
 *
 * A job holds no pointer into guest memory, and allocates nothing after
 * b13_job_init(): a connection that ends in the middle of one (SIGBUS)
 * leaves nothing behind.
 */
struct b13_job {
	bool busy;			/* a PAGES or REPORT is under way */
	bool acted;			/* all marked and queued */
	struct b13_msg_result res;	/* of the current (or last) message */
	uint64_t features;
	uint64_t gen;			/* map generation it was checked on */
	const uint64_t *a;		/* PAGES: sorted addresses ... */
	uint64_t n, pos;		/* ... how many, and the next one */
	bool in_run;			/* a run is being marked / discarded */
	struct b13_run run;
	uint64_t k;			/* next block of the run to mark */
	uint64_t kp;			/* next page of that block to look at */
	bool win;			/* rs covers the run */
	uintptr_t next, end;		/* host bytes still to discard */
	uint64_t roff;			/* REPORT: bytes of range pos done */
	uint64_t piece;			/* REPORT: bytes of the piece under way */
	struct rescan *rs;		/* residency window */
	struct b13_discard batch[B13_BATCH];	/* discards to make */
	unsigned int nbatch;
	union {
		uint64_t a[B13_MAX_PAGES];
		struct virtio_balloon13_range r[B13_MAX_RANGES];
		struct virtio_balloon13_stat s[B13_MAX_RANGES];
		unsigned char raw[B13_MAX_MSG_BYTES - 8];
	} e;				/* the entries, copied */
};

/* Allocate the job's residency window: false if out of memory. */
bool b13_job_init(struct b13_job *j);
void b13_job_free(struct b13_job *j);
/*
 * Take one message, given as the readable part of a descriptor chain
 * (iov, niov; nwritable: how many device-writable descriptors came with
 * it): copy and check it (a rejected message changes nothing), store
 * stats in *st (last value of a tag wins; unknown tags, and those of
 * FULL_STATS without it, are dropped and counted), act on a WITHDRAW.
 * Returns res.why; j->busy says whether b13_job_step() has work to do.
 */
enum b13_reject b13_job_begin(struct b13_job *j, struct b13_map *m,
			      struct b13_stats *st, const struct iovec *iov,
			      unsigned int niov, unsigned int nwritable,
			      uint64_t features);
/*
 * Go on within budget b: mark blocks, queue discards.  The job is over
 * (B13_STEP_DONE, j->busy false) only once every discard it queued has
 * been made: those are the caller's, with b13_job_run_batch().
 */
enum b13_step b13_job_step(struct b13_job *j, struct b13_map *m,
			   struct b13_budget *b);
/*
 * Make the queued discards (madvise(MADV_REMOVE), or m->discard) and
 * count them in j->res.apply.  Blocks in the kernel as long as they take,
 * so the device calls it from a worker thread, while neither j nor m
 * change.
 */
void b13_job_run_batch(struct b13_job *j, const struct b13_map *m);
/*
 * End the job now without another syscall (a reset, a new memory table):
 * the rest of a page list is marked but not discarded, the rest of a
 * report neither.  Both are allowed: discarding is optional.
 */
void b13_job_finish(struct b13_job *j, struct b13_map *m);

/*
 * A whole message at once, without limits (tests, fuzzing): begin, then
 * step until done.  *res gets the result.
 */
enum b13_reject b13_handle_msg(struct b13_map *m, struct b13_stats *st,
			       const struct iovec *iov, unsigned int niov,
			       unsigned int nwritable, uint64_t features,
			       struct b13_msg_result *res);
/*
 * Mark sorted, checked addresses and discard them run by run, without
 * limits (what a PAGES job does).  Repeated addresses are counted in
 * *repeats.  Returns the number of runs.
 */
size_t b13_apply_sorted(struct b13_map *m, const uint64_t *sorted, uint64_t n,
			struct b13_apply_stats *st, uint64_t *repeats);
/* The same for runs b13_coalesce() made. */
void b13_apply_runs(struct b13_map *m, const struct b13_run *runs, size_t nr,
		    struct b13_apply_stats *st);

/* ---- counting the balloon ------------------------------------------------ */

/*
 * Count bitmap blocks with no resident page (still in the balloon); blocks
 * with any resident page have been withdrawn by access.  One mincore() per
 * window of up to 64 Ki pages over each run of set bits.  Only without
 * WITHDRAW: with it, the count is the bitmap's.
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

/*
 * b13_count_in_balloon() as a cursor: each b13_scan_step() works within a
 * budget (mincore() calls and time; at least one block) and returns, so
 * a caller can serve other work between slices.  If the map changes
 * under a scan, the scan starts again.
 */
struct b13_scan {
	uint64_t gen;		/* map generation being scanned */
	size_t region;		/* next region */
	uint64_t block;		/* next block index in it */
	uint64_t page;		/* next page of that block to look at */
	size_t win_region;	/* 1 + the region rs covers; 0: none */
	uint64_t in, withdrawn;	/* so far */
	uint64_t restarts;	/* times the map changed under the scan */
	bool done;
	struct rescan *rs;	/* residency window; NULL until needed */
};

void b13_scan_begin(const struct b13_map *m, struct b13_scan *s);
/* Returns true once s->in and s->withdrawn are final. */
bool b13_scan_step(const struct b13_map *m, struct b13_scan *s,
		   struct b13_budget *b);
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
