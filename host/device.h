/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * balloon13d's device: the vhost-user socket and connection, both
 * virtqueues, the requests queued for the guest and the messages it sends
 * (device.c).  The control commands (commands.c) and main
 * (balloon13d.c) use it through this header; the device calls nothing of
 * theirs, only the hooks they give it.  Everything runs on one thread in
 * the glib main loop.
 */
#ifndef BALLOON13_DEVICE_H
#define BALLOON13_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "libvhost-user-glib.h"

#include "b13.h"
#include "control.h"
#include "vhost_check.h"

/* Longest a page-list buffer may be held back (--hold-ms): 10 minutes. */
#define MAX_HOLD_MS		600000
/* Most requests waiting for inputq buffers; "inject" past it fails. */
#define MAX_PENDING		4096

/* What can wait in the request queue for an inputq buffer. */
enum req_kind {
	REQ_RESIZE,
	REQ_STATS,
	REQ_STATS_INTERVAL,	/* FULL_STATS only */
	REQ_INJ_FIRST,		/* + enum ctl_inject */
	REQ_NR = REQ_INJ_FIRST + CTL_NR_INJ
};

struct pending_req {
	enum req_kind kind;
	uint64_t value;		/* RESIZE: target bytes; STATS_INTERVAL: ms */
};

/*
 * Kinds of log line a guest, a front end or a client can cause at will:
 * each has its own rate limit (b13_ratelimit()).
 */
enum log_class {
	LOG_CONFIG_READ,
	LOG_CONFIG_WRITE,
	LOG_DEVICE,		/* driver started / stopped, features */
	LOG_MEMTABLE,
	LOG_PUNCH,		/* madvise failures */
	LOG_INPUT,		/* inputq buffer too small */
	LOG_STATS,		/* unknown or repeated stats tags */
	LOG_WITHDRAW,		/* invalid or absent WITHDRAW entries */
	LOG_REPORT,		/* REPORT naming ballooned blocks */
	LOG_FRONTEND,		/* vhost-user connections and violations */
	LOG_ACCEPT,		/* accept() failures, refused peers */
	LOG_TARGET,		/* resize targets */
	LOG_INJECT,
	LOG_CONTROL,		/* control transport events */
	LOG_REJECT,		/* + enum b13_reject: rejected messages */
	LOG_NR = LOG_REJECT + B13_REJ_NR
};

/* Per-connection counters; zeroed when the front end disconnects. */
struct counters {
	uint64_t msgs_pages, msgs_stats, msgs_rejected;
	uint64_t msgs_withdraw, msgs_report;
	uint64_t rejects[B13_REJ_NR];
	uint64_t blocks_received;	/* valid addresses, repeats included */
	uint64_t repeated_in_message;
	struct b13_apply_stats apply;
	uint64_t reserved_nonzero;	/* guest error, message still used */
	uint64_t withdraw_bad_length;	/* guest error, complete entries used */
	uint64_t stats_unknown_tag;	/* guest error, entry dropped */
	uint64_t stats_repeated_tag;	/* guest error, the last one kept */
	uint64_t input_too_small;	/* inputq buffer < 16 writable bytes */
	uint64_t input_max_batch;	/* most buffers one dispatch took */
	uint64_t input_yields;		/* inputq work left for later */
	uint64_t requests_sent[REQ_INJ_FIRST];	/* RESIZE, STATS, INTERVAL */
	uint64_t injected[CTL_NR_INJ];
	uint64_t config_reads, config_writes;
	uint64_t device_stops;
	uint64_t output_yields;		/* outputq work left for later */
	uint64_t discard_batches;	/* batches of discards made */
	/* the longest one dispatch of ours took, in wall and CPU time */
	gint64 busy_wall_us, busy_cpu_us;
	const char *busy_wall_where, *busy_cpu_where;
	uint64_t features;		/* acked by the front end */
	bool features_acked;		/* SET_FEATURES seen */
	uint64_t resets;		/* restarts seen as driver resets */
	uint64_t starts;		/* device starts */
};

/*
 * The main loop's iterations: the work between one poll() and the next.
 * A request that arrives meanwhile waits at most about two of them.
 */
struct loop_stats {
	uint64_t iterations;
	gint64 max_cpu_us, max_wall_us;
};

/* Daemon-wide counters of the vhost-user listener. */
struct vu_counters {
	uint64_t connections;		/* accepted so far */
	uint64_t denied;		/* peer credentials not allowed */
	uint64_t violations;		/* connections ended by vhost_check */
	uint64_t accept_pauses;		/* accept() out of fds: paused */
};

/*
 * One vhost-user message being read from the front end, a piece at a
 * time, so that a front end that stops mid-message stalls nothing.
 */
struct vu_reader {
	VhostUserMsg msg;
	size_t got;			/* bytes of header + payload so far */
	int fds[VHOST_MEMORY_BASELINE_NREGIONS];
	int nfds;
	bool ready;			/* msg complete, for b13_read_msg() */
};

/* The "status" command's walk over the balloon (commands.c). */
struct status_scan {
	struct b13_scan s;
	bool active;
	guint src;			/* next slice, or the throttle timer */
	gint64 work_us;			/* time the slices of this walk took */
	gint64 not_before;		/* us: the next walk starts then */
	GList *waiting;			/* struct ctl_conn: answered by this walk */
	GList *queued;			/* struct ctl_conn: by the next one */
	uint64_t walks;			/* walks done, for tests */
};

struct b13d;

/*
 * The discard worker.  madvise(MADV_REMOVE) can block in the kernel far
 * longer than its work (up to 1.4 s for one 4 KiB page was seen on a
 * loaded host), so the main loop never calls it: it queues a batch in
 * the job and this thread makes it, while vhost-user and control
 * requests go on being served.
 */
struct discard_worker {
	GThread *thread;
	GMutex lock;
	GCond cond;
	bool work;		/* a batch to make (under lock) */
	bool quit;		/* under lock */
	struct b13_job *job;
	const struct b13_map *map;
	int efd;		/* eventfd: written when a batch is made */
	guint src;		/* watches efd */
};

/* What the device tells the rest of the daemon (each may be NULL). */
struct b13d_hooks {
	/* A stats message from the guest was stored. */
	void (*stats_arrived)(struct b13d *d);
	/* The front end went away: per-VM state is gone. */
	void (*disconnected)(struct b13d *d, const char *why);
};

struct b13d {
	VugDev vug;			/* libvhost-user state; first member */
	struct b13d_hooks hooks;

	/* options */
	const char *socket_path, *control_path;
	unsigned int page_bits;
	uint64_t features;		/* device bits offered (B13_F_*) */
	unsigned int hold_ms, stall_ms;
	bool chaos, ring_features;
	bool no_discard;		/* --no-discard: count, never discard */
	mode_t socket_mode;
	gid_t socket_gid;
	struct ctl_opts ctl_opts;

	GMainLoop *loop;
	int listen_fd;
	guint listen_src;		/* armed while nobody is connected */
	guint listen_pause_src;		/* re-arms it after EMFILE */
	unsigned int listen_pause_ms;
	struct ctl_server *ctl;
	struct vu_counters vu;
	struct loop_stats loopstat;
	char *last_disconnect;
	struct b13_ratelimit rl[LOG_NR];

	/* the current connection */
	bool live;			/* vug_init() done, not torn down */
	bool running;			/* both queues started */
	guint teardown_idle, poke_idle, output_idle, input_idle;
	bool mem_dirty;			/* memory table changed since sync */
	struct vu_reader rd;
	struct b13_map map;
	struct b13_vu_files files;	/* what the regions map */
	struct b13_job job;		/* the outputq message under way */
	VuVirtqElement *job_elem;	/* its buffer; NULL: none */
	bool discarding;		/* its batch is with the worker */
	bool inline_discards;		/* no worker: make them here (fuzzing) */
	struct discard_worker dw;
	GQueue pending;			/* struct pending_req, in order */
	GQueue held;			/* struct held */
	GList *waiters;			/* struct stats_waiter */
	struct counters c;

	/* what the host asked for */
	uint64_t target;
	bool target_set, target_delivered;
	uint64_t stats_interval_ms;	/* FULL_STATS push interval; 0: none */
	unsigned int vq_base[B13_NUM_VQS];	/* last SET_VRING_BASE */
	gint64 last_progress;		/* us: new block or new target */

	/* latest guest stats */
	struct b13_stats stats;
	gint64 stats_time;		/* us, monotonic */
	uint64_t stats_seq;		/* stats messages so far */

	struct status_scan scan;
};

extern int verbose;

/* "balloon13d[  12.345]: ..." on stderr, if level <= verbose. */
void logm(int level, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/*
 * A level-0 line of class cl, through that class's rate limit: at most
 * B13_RL_BURST lines per 10 s, then a count of what was left out.  With
 * -v there is no limit (the operator asked for every line).  Returns
 * whether it was logged.
 */
bool logrl(struct b13d *d, enum log_class cl, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);

/* ---- the device (device.c) ---- */

/* Set the defaults of the options and the empty state; before any other. */
void b13d_init(struct b13d *d);
/* Listen on d->socket_path and serve one front end at a time. */
int b13d_listen(struct b13d *d, GError **err);
/* Serve a front end already connected on fd (taken over; closed on end). */
bool b13d_attach(struct b13d *d, int fd);
/* Forget the front end, if any, now (not from within its callbacks). */
void b13d_detach(struct b13d *d);
/* Detach, stop listening and remove the socket. */
void b13d_shutdown(struct b13d *d);
/* SIGBUS from guest memory ends the connection, not the daemon. */
void b13d_catch_sigbus(void);
/* Time the default main context's iterations into d->loop. */
void b13d_time_loop(struct b13d *d);

/*
 * Time one dispatch (a slice of outputq work, a status walk slice, a
 * vhost-user message): b13d_busy_end() keeps the longest in d->c.
 */
struct busy_mark {
	gint64 wall, cpu;
};
void b13d_busy_begin(struct busy_mark *m);
void b13d_busy_end(struct b13d *d, const struct busy_mark *m,
		   const char *where);

/* Bring the region map in line with libvhost-user's memory table. */
void sync_regions(struct b13d *d);
/* Queue a request for the guest (the latest RESIZE replaces an older one). */
void queue_req(struct b13d *d, enum req_kind kind, uint64_t value);
/* Write queued requests into the inputq buffers the guest has posted. */
void flush_requests(struct b13d *d);
/* Device feature bits the driver acked (B13_F_*); 0 before it did. */
uint64_t b13d_features(const struct b13d *d);


#endif /* BALLOON13_DEVICE_H */
