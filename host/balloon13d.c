// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13d - reference device for the virtio memory balloon, device ID 13.
 *
 * A vhost-user backend (libvhost-user + glib main loop) that a VMM attaches
 * as a generic vhost-user device with virtio-id 13, 2 queues and a 4-byte
 * config space:
 *
 *   config   __le32 page_bits
 *   inputq   the device writes 16-byte requests (RESIZE target, STATS) into
 *            buffers the guest posts
 *   outputq  the guest sends page lists (addresses of blocks it gave up) and
 *            stats
 *
 * What the host wants comes in over a control socket (JSON lines; see
 * Documentation/control-protocol.rst and control.c): RESIZE and STATS are
 * queued in order and written into the guest's inputq buffers as they
 * appear.  Page lists are validated (b13_logic.c), their blocks punched out
 * of the shared guest RAM *before* the buffer goes back used (the ordering
 * that keeps a withdrawn page's new contents safe), and remembered in a
 * per-region bitmap.  The guest withdraws a block by touching it; the device
 * sees that as residency (mincore) when asked for its status.
 *
 * Everything runs on one thread in the glib main loop.  One vhost-user
 * connection at a time; on disconnect the per-VM state is dropped and the
 * daemon listens again.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "libvhost-user-glib.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_ring.h"

#include "b13.h"
#include "control.h"
#include "wire.h"

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define DEFAULT_CONTROL		"/run/balloon13d.ctl"
#define DEFAULT_PAGE_BITS	12
#define DEFAULT_STALL_MS	5000
/* Longest a page-list buffer may be held back (--hold-ms): 10 minutes. */
#define MAX_HOLD_MS		600000
/* Most hostile requests one inject command may queue. */
#define MAX_INJECT		1024
/* Default and longest wait of a "stats" command for the guest's answer. */
#define DEFAULT_STATS_TIMEOUT_MS	5000
#define MAX_STATS_TIMEOUT_MS		600000
/* Rejected messages logged per reason before the log goes quiet. */
#define REJECT_LOG_LIMIT	10

/* What can wait in the request queue for an inputq buffer. */
enum req_kind {
	REQ_RESIZE,
	REQ_STATS,
	REQ_INJ_SHORT,		/* 8 bytes written, used len 8 */
	REQ_INJ_LONG,		/* 16 written, used len 4096: a lie */
	REQ_INJ_UNKNOWN,	/* type 7 */
	REQ_INJ_HUGE,		/* RESIZE 2^64 - 1 */
	REQ_INJ_OVERRAM,	/* RESIZE 16 x guest RAM */
	REQ_NR
};
#define REQ_INJ_FIRST	REQ_INJ_SHORT
#define NUM_INJ		(REQ_NR - REQ_INJ_FIRST)

static const char *const inj_names[NUM_INJ] = {
	"short", "long", "unknown", "huge", "overram",
};

struct pending_req {
	enum req_kind kind;
	uint64_t value;		/* RESIZE: target bytes */
};

/* A page-list buffer whose blocks are discarded, waiting out --hold-ms. */
struct held {
	struct b13d *d;
	VuVirtqElement *elem;
	guint src;
};

/* A "stats" control command waiting for the guest's stats message. */
struct stats_waiter {
	struct b13d *d;
	struct ctl_conn *conn;
	uint64_t after_seq;	/* answer with stats numbered above this */
	guint timer;
};

/* Per-connection counters; zeroed when QEMU disconnects. */
struct counters {
	uint64_t msgs_pages, msgs_stats, msgs_rejected;
	uint64_t rejects[B13_REJ_NR];
	uint64_t blocks_received;	/* valid addresses, repeats included */
	uint64_t repeated_in_message;
	struct b13_apply_stats apply;
	uint64_t reserved_nonzero;	/* guest error, message still used */
	uint64_t input_too_small;	/* inputq buffer < 16 writable bytes */
	uint64_t requests_sent[2];	/* RESIZE, STATS */
	uint64_t injected[NUM_INJ];
	uint64_t config_reads, config_writes;
	uint64_t device_stops;
	uint64_t features;		/* acked by the front end */
};

struct b13d {
	VugDev vug;			/* libvhost-user state; first member */

	/* options */
	const char *socket_path, *control_path;
	unsigned int page_bits;
	unsigned int hold_ms, stall_ms;
	bool chaos, ring_features;

	GMainLoop *loop;
	int listen_fd;
	guint listen_src;		/* armed while nobody is connected */
	struct ctl_server *ctl;
	uint64_t connections;		/* accepted so far */
	char *last_disconnect;

	/* the current connection */
	bool live;			/* vug_init() done, not torn down */
	bool running;			/* both queues started */
	guint teardown_idle, poke_idle;
	bool mem_dirty;			/* memory table changed since sync */
	struct b13_map map;
	GQueue pending;			/* struct pending_req, in order */
	GQueue held;			/* struct held */
	GList *waiters;			/* struct stats_waiter */
	struct counters c;

	/* what the host asked for */
	uint64_t target;
	bool target_set, target_delivered;
	gint64 last_progress;		/* us: new block or new target */

	/* latest guest stats */
	struct b13_stat *stats;		/* CPU order */
	size_t nstats;
	gint64 stats_time;		/* us, monotonic */
	uint64_t stats_seq;		/* stats messages so far */
};

static int verbose;
static gint64 t0;

static void G_GNUC_PRINTF(2, 3) logm(int level, const char *fmt, ...)
{
	gint64 t = g_get_monotonic_time() - t0;
	va_list ap;

	if (level > verbose)
		return;
	fprintf(stderr, "balloon13d[%5" G_GINT64_FORMAT ".%03d]: ",
		t / 1000000, (int)(t / 1000 % 1000));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static struct b13d *dev_to_b13d(VuDev *dev)
{
	return container_of(dev, struct b13d, vug.parent);
}

/* ---- iovec helpers --------------------------------------------------- */

static uint64_t iov_bytes(const struct iovec *iov, unsigned int n)
{
	uint64_t sum = 0;
	unsigned int i;

	for (i = 0; i < n; i++)
		sum += iov[i].iov_len;
	return sum;
}

static void iov_to_buf(const struct iovec *iov, unsigned int n, void *buf,
		       size_t len)
{
	unsigned int i;
	size_t done = 0;

	for (i = 0; i < n && done < len; i++) {
		size_t k = MIN(iov[i].iov_len, len - done);

		memcpy((char *)buf + done, iov[i].iov_base, k);
		done += k;
	}
}

static size_t iov_from_buf(const struct iovec *iov, unsigned int n,
			   const void *buf, size_t len)
{
	unsigned int i;
	size_t done = 0;

	for (i = 0; i < n && done < len; i++) {
		size_t k = MIN(iov[i].iov_len, len - done);

		memcpy(iov[i].iov_base, (const char *)buf + done, k);
		done += k;
	}
	return done;
}

/* ---- memory table ------------------------------------------------------ */

/* Bring our region map in line with libvhost-user's memory table. */
static void sync_regions(struct b13d *d)
{
	VuDev *dev = &d->vug.parent;
	struct b13_region_desc *desc;
	uint32_t i;

	if (!d->mem_dirty || !d->live)
		return;
	d->mem_dirty = false;
	desc = g_new0(struct b13_region_desc, dev->nregions ? dev->nregions : 1);
	for (i = 0; i < dev->nregions; i++) {
		VuDevRegion *r = &dev->regions[i];

		desc[i].gpa = r->gpa;
		desc[i].size = r->size;
		desc[i].host = (uint8_t *)(uintptr_t)(r->mmap_addr +
						      r->mmap_offset);
	}
	if (b13_map_set_regions(&d->map, desc, dev->nregions))
		logm(0, "out of memory for the ballooned-block bitmaps");
	g_free(desc);
	logm(0, "memory table: %zu region(s), %" PRIu64 " MiB of guest RAM",
	     d->map.nr, b13_map_ram_bytes(&d->map) >> 20);
	for (i = 0; i < d->map.nr; i++) {
		const struct b13_region *r = &d->map.r[i];

		logm(0, "  region %u: gpa 0x%09" PRIx64 "-0x%09" PRIx64
		     " (%" PRIu64 " KiB), %" PRIu64 " whole blocks, host %p",
		     i, r->gpa, r->gpa + r->size - 1, r->size >> 10,
		     r->nblocks, (void *)r->host);
	}
}

/* ---- inputq: requests to the guest ------------------------------------- */

static bool vq_ready(struct b13d *d, int q)
{
	VuDev *dev = &d->vug.parent;
	VuVirtq *vq;

	if (!d->live || dev->broken)
		return false;
	vq = vu_get_queue(dev, q);
	return vu_queue_started(dev, vq) && vu_queue_enabled(dev, vq) &&
	       vq->call_fd >= 0;
}

static void queue_req(struct b13d *d, enum req_kind kind, uint64_t value)
{
	struct pending_req *p;
	GList *l, *next;

	/* The latest target replaces one not yet delivered; STATS once. */
	for (l = d->pending.head; l; l = next) {
		p = l->data;
		next = l->next;
		if (kind == REQ_RESIZE && p->kind == REQ_RESIZE) {
			g_free(p);
			g_queue_delete_link(&d->pending, l);
		} else if (kind == REQ_STATS && p->kind == REQ_STATS) {
			return;
		}
	}
	p = g_new(struct pending_req, 1);
	p->kind = kind;
	p->value = value;
	g_queue_push_tail(&d->pending, p);
}

static bool pending_has(struct b13d *d, enum req_kind kind)
{
	GList *l;

	for (l = d->pending.head; l; l = l->next)
		if (((struct pending_req *)l->data)->kind == kind)
			return true;
	return false;
}

/* Write one request into elem; returns the used length to report. */
static unsigned int fill_req(struct b13d *d, const struct pending_req *p,
			     VuVirtqElement *elem)
{
	struct b13_req r = { 0 };
	unsigned int len = sizeof(r), used = sizeof(r);

	switch (p->kind) {
	case REQ_RESIZE:
		r.type = htole32(B13_REQ_RESIZE);
		r.value = htole64(p->value);
		d->target_delivered = true;
		break;
	case REQ_STATS:
		r.type = htole32(B13_REQ_STATS);
		break;
	case REQ_INJ_SHORT:
		r.type = htole32(B13_REQ_RESIZE);
		len = used = 8;
		break;
	case REQ_INJ_LONG:
		r.type = htole32(B13_REQ_RESIZE);
		r.value = htole64(d->target);
		used = 4096;
		break;
	case REQ_INJ_UNKNOWN:
		r.type = htole32(7);
		break;
	case REQ_INJ_HUGE:
		r.type = htole32(B13_REQ_RESIZE);
		r.value = htole64(UINT64_MAX);
		break;
	case REQ_INJ_OVERRAM:
		r.type = htole32(B13_REQ_RESIZE);
		r.value = htole64(b13_map_ram_bytes(&d->map) ?
				  b13_map_ram_bytes(&d->map) * 16 : 1ull << 40);
		break;
	default:
		break;
	}
	iov_from_buf(elem->in_sg, elem->in_num, &r, len);
	if (p->kind < REQ_INJ_FIRST)
		d->c.requests_sent[p->kind]++;
	else
		d->c.injected[p->kind - REQ_INJ_FIRST]++;
	logm(1, "inputq: sent %s%s (value %" PRIu64 ", used len %u)",
	     p->kind < REQ_INJ_FIRST ? "" : "hostile ",
	     p->kind == REQ_RESIZE ? "RESIZE" : p->kind == REQ_STATS ?
	     "STATS" : inj_names[p->kind - REQ_INJ_FIRST],
	     (uint64_t)le64toh(r.value), used);
	return used;
}

/* Move queued requests into the guest's posted inputq buffers. */
static void flush_requests(struct b13d *d)
{
	VuDev *dev = &d->vug.parent;
	VuVirtq *vq;
	bool pushed = false;

	if (!vq_ready(d, B13_VQ_INPUT))
		return;
	vq = vu_get_queue(dev, B13_VQ_INPUT);
	while (!g_queue_is_empty(&d->pending)) {
		VuVirtqElement *elem = vu_queue_pop(dev, vq, sizeof(*elem));
		struct pending_req *p;
		uint64_t room;

		if (!elem)
			break;
		room = iov_bytes(elem->in_sg, elem->in_num);
		if (room < sizeof(struct b13_req)) {
			/* Guest error: give it back empty, keep the request. */
			if (d->c.input_too_small++ < REJECT_LOG_LIMIT)
				logm(0, "inputq: buffer with %" PRIu64
				     " writable bytes (< 16), returned unused",
				     room);
			vu_queue_push(dev, vq, elem, 0);
			free(elem);
			pushed = true;
			continue;
		}
		p = g_queue_pop_head(&d->pending);
		vu_queue_push(dev, vq, elem, fill_req(d, p, elem));
		free(elem);
		g_free(p);
		pushed = true;
	}
	if (pushed)
		vu_queue_notify(dev, vq);
}

static void handle_input(VuDev *dev, int qidx)
{
	(void)qidx;
	flush_requests(dev_to_b13d(dev));
}

/* ---- outputq: page lists and stats from the guest ---------------------- */

static void push_output(struct b13d *d, VuVirtqElement *elem)
{
	VuDev *dev = &d->vug.parent;

	vu_queue_push(dev, vu_get_queue(dev, B13_VQ_OUTPUT), elem, 0);
	free(elem);
}

static gboolean held_expired(gpointer p)
{
	struct held *h = p;
	struct b13d *d = h->d;
	VuDev *dev = &d->vug.parent;

	g_queue_remove(&d->held, h);
	push_output(d, h->elem);
	vu_queue_notify(dev, vu_get_queue(dev, B13_VQ_OUTPUT));
	g_free(h);
	return G_SOURCE_REMOVE;
}

/* Give back (push) or drop every held buffer now. */
static void release_held(struct b13d *d, bool push)
{
	VuDev *dev = &d->vug.parent;
	struct held *h;
	bool pushed = false;

	while ((h = g_queue_pop_head(&d->held))) {
		g_source_remove(h->src);
		if (push) {
			push_output(d, h->elem);
			pushed = true;
		} else {
			free(h->elem);
		}
		g_free(h);
	}
	if (pushed)
		vu_queue_notify(dev, vu_get_queue(dev, B13_VQ_OUTPUT));
}

static void wake_waiters(struct b13d *d);

static void reject(struct b13d *d, enum b13_reject why, uint64_t len,
		   uint64_t addr)
{
	uint64_t n = ++d->c.rejects[why];
	char where[40] = "";

	d->c.msgs_rejected++;
	if (n > REJECT_LOG_LIMIT && !verbose)
		return;
	if (why >= B13_REJ_OVERFLOW)
		g_snprintf(where, sizeof(where), ", address 0x%" PRIx64, addr);
	logm(0, "outputq: rejected message (%s): length %" PRIu64 "%s",
	     b13_reject_names[why], len, where);
	if (n == REJECT_LOG_LIMIT && !verbose)
		logm(0, "outputq: further '%s' rejects are counted, not logged",
		     b13_reject_names[why]);
}

static enum b13_reject handle_pages(struct b13d *d, const uint8_t *buf,
				    uint64_t n, uint64_t *bad)
{
	struct b13_apply_stats before = d->c.apply;
	uint64_t *sorted = g_new(uint64_t, n);
	struct b13_run *runs;
	enum b13_reject why;
	size_t nr;

	why = b13_check_pages(&d->map, (const uint64_t *)(buf + 8), n, sorted,
			      bad);
	if (why != B13_OK) {
		g_free(sorted);
		return why;
	}
	runs = g_new(struct b13_run, n);
	nr = b13_coalesce(&d->map, sorted, n, runs, &d->c.repeated_in_message);
	/* Discard now: the buffer goes back used only after this. */
	b13_apply_runs(&d->map, runs, nr, &d->c.apply);
	d->c.msgs_pages++;
	d->c.blocks_received += n;
	if (d->c.apply.new_blocks != before.new_blocks)
		d->last_progress = g_get_monotonic_time();
	logm(1, "outputq: page list, %" PRIu64 " addresses in %zu run(s): "
	     "%" PRIu64 " new, %" PRIu64 " duplicate, %" PRIu64
	     " re-ballooned, %" PRIu64 " KiB punched",
	     n, nr, d->c.apply.new_blocks - before.new_blocks,
	     d->c.apply.duplicates - before.duplicates,
	     d->c.apply.reballooned - before.reballooned,
	     (d->c.apply.punch_bytes - before.punch_bytes) >> 10);
	if (d->c.apply.punch_errors != before.punch_errors)
		logm(0, "outputq: madvise(MADV_REMOVE) failed: %s "
		     "(guest RAM not a shared memfd?)",
		     g_strerror(d->c.apply.last_errno));
	g_free(runs);
	g_free(sorted);
	return B13_OK;
}

static void handle_stats(struct b13d *d, const uint8_t *buf, uint64_t n)
{
	uint64_t i;

	g_free(d->stats);
	d->stats = g_new(struct b13_stat, n);
	d->nstats = n;
	for (i = 0; i < n; i++) {
		struct b13_stat s;

		memcpy(&s, buf + 8 + i * sizeof(s), sizeof(s));
		d->stats[i].tag = le64toh(s.tag);
		d->stats[i].value = le64toh(s.value);
	}
	d->stats_time = g_get_monotonic_time();
	d->stats_seq++;
	d->c.msgs_stats++;
	logm(1, "outputq: stats, %" PRIu64 " value(s)", n);
	wake_waiters(d);
}

/* Validate and act on one outputq message; false if the buffer is held. */
static bool handle_message(struct b13d *d, VuVirtqElement *elem)
{
	uint64_t len = iov_bytes(elem->out_sg, elem->out_num), n = 0, bad = 0;
	enum b13_reject why;
	uint8_t *buf = NULL;
	uint32_t type = 0;

	if (elem->in_num) {
		why = B13_REJ_WRITABLE;
	} else if (len > B13_MAX_MSG_BYTES) {
		why = B13_REJ_OVERSIZE;
	} else {
		/* Copy first: the guest may change the buffer under us. */
		buf = g_malloc(len ? len : 1);
		iov_to_buf(elem->out_sg, elem->out_num, buf, len);
		why = b13_check_msg(len, (const struct b13_msg_hdr *)buf,
				    &type, &n);
	}
	if (why == B13_OK && ((const struct b13_msg_hdr *)buf)->reserved)
		d->c.reserved_nonzero++;
	if (why == B13_OK && type == B13_RESP_PAGES)
		why = handle_pages(d, buf, n, &bad);
	else if (why == B13_OK)
		handle_stats(d, buf, n);
	g_free(buf);
	if (why != B13_OK) {
		reject(d, why, len, bad);
	} else if (type == B13_RESP_PAGES && d->hold_ms) {
		struct held *h = g_new(struct held, 1);

		h->d = d;
		h->elem = elem;
		h->src = g_timeout_add(d->hold_ms, held_expired, h);
		g_queue_push_tail(&d->held, h);
		return false;
	}
	push_output(d, elem);
	return true;
}

static void handle_output(VuDev *dev, int qidx)
{
	struct b13d *d = dev_to_b13d(dev);
	VuVirtq *vq = vu_get_queue(dev, qidx);
	VuVirtqElement *elem;

	sync_regions(d);
	/*
	 * Signal each buffer as soon as it is back: the guest frees and
	 * refills a page list while the next one is being discarded here,
	 * instead of both sides taking turns once per drained queue.
	 */
	while (vq_ready(d, B13_VQ_OUTPUT) &&
	       (elem = vu_queue_pop(dev, vq, sizeof(*elem))))
		if (handle_message(d, elem))
			vu_queue_notify(dev, vq);
}

/* ---- libvhost-user callbacks ------------------------------------------- */

/* After the current vhost-user message: sync the map, serve both queues. */
static gboolean poke(gpointer p)
{
	struct b13d *d = p;

	d->poke_idle = 0;
	if (!d->live)
		return G_SOURCE_REMOVE;
	sync_regions(d);
	flush_requests(d);
	if (vq_ready(d, B13_VQ_OUTPUT))
		handle_output(&d->vug.parent, B13_VQ_OUTPUT);
	return G_SOURCE_REMOVE;
}

static void schedule_poke(struct b13d *d)
{
	if (!d->poke_idle)
		d->poke_idle = g_idle_add(poke, d);
}

static void teardown(struct b13d *d);

static gboolean teardown_idle(gpointer p)
{
	struct b13d *d = p;

	d->teardown_idle = 0;
	teardown(d);
	return G_SOURCE_REMOVE;
}

static void b13_panic(VuDev *dev, const char *err)
{
	struct b13d *d = dev_to_b13d(dev);

	logm(0, "vhost-user connection ends: %s", err ? err : "?");
	g_free(d->last_disconnect);
	d->last_disconnect = g_strdup(err ? err : "?");
	/* libvhost-user may still be using dev: tear down once it returns. */
	if (!d->teardown_idle)
		d->teardown_idle = g_idle_add_full(G_PRIORITY_HIGH,
						   teardown_idle, d, NULL);
}

static int b13_process_msg(VuDev *dev, VhostUserMsg *msg, int *do_reply)
{
	struct b13d *d = dev_to_b13d(dev);

	logm(2, "vhost-user: %s", vu_request_to_string(msg->request));
	switch (msg->request) {
	case VHOST_USER_GET_FEATURES:
		/* Ours, not the library's list (it adds bits we don't want). */
		msg->payload.u64 = 1ull << VIRTIO_F_VERSION_1 |
				   1ull << VHOST_USER_F_PROTOCOL_FEATURES;
		if (d->ring_features)
			msg->payload.u64 |= 1ull << VIRTIO_RING_F_INDIRECT_DESC |
					    1ull << VIRTIO_RING_F_EVENT_IDX;
		msg->size = sizeof(msg->payload.u64);
		msg->fd_num = 0;
		*do_reply = 1;
		return 1;
	case VHOST_USER_NONE:
		/*
		 * An all-zero message: what the library reads at end of file.
		 * It would exit(0) here; we drop the connection and listen on.
		 */
		b13_panic(dev, "front end closed the connection");
		return 1;
	case VHOST_USER_SET_MEM_TABLE:
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_REM_MEM_REG:
		d->mem_dirty = true;
		schedule_poke(d);
		return 0;
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ENABLE:
		schedule_poke(d);
		return 0;
	default:
		return 0;
	}
}

static void b13_set_features(VuDev *dev, uint64_t features)
{
	struct b13d *d = dev_to_b13d(dev);

	d->c.features = features;
	logm(0, "features acked: 0x%" PRIx64, features);
}

static void b13_queue_set_started(VuDev *dev, int qidx, bool started)
{
	struct b13d *d = dev_to_b13d(dev);
	VuVirtq *vq = vu_get_queue(dev, qidx);
	bool running;

	logm(1, "queue %d %s", qidx, started ? "started" : "stopped");
	if (qidx == B13_VQ_INPUT)
		vu_set_queue_handler(dev, vq, started ? handle_input : NULL);
	else if (qidx == B13_VQ_OUTPUT)
		vu_set_queue_handler(dev, vq, started ? handle_output : NULL);
	if (!started && qidx == B13_VQ_OUTPUT)
		release_held(d, true);	/* blocks are already discarded */
	running = vu_queue_started(dev, vu_get_queue(dev, B13_VQ_INPUT)) &&
		  vu_queue_started(dev, vu_get_queue(dev, B13_VQ_OUTPUT));
	if (running && !d->running) {
		logm(0, "device started (driver ready)");
		/* A restarted driver starts empty: tell it the target again. */
		if (d->target_set && !pending_has(d, REQ_RESIZE))
			queue_req(d, REQ_RESIZE, d->target);
		schedule_poke(d);
	} else if (!running && d->running) {
		logm(0, "device stopped (reset, driver gone or VM paused)");
		d->c.device_stops++;
	}
	d->running = running;
}

static int b13_get_config(VuDev *dev, uint8_t *config, uint32_t len)
{
	struct b13d *d = dev_to_b13d(dev);
	struct b13_config cfg = { .page_bits = htole32(d->page_bits) };

	if (len > VHOST_USER_MAX_CONFIG_SIZE)
		return -1;
	memset(config, 0, len);
	memcpy(config, &cfg, MIN(len, sizeof(cfg)));
	d->c.config_reads++;
	logm(d->c.config_reads <= 4 ? 0 : 1,
	     "config read (%u bytes): page_bits %u", len, d->page_bits);
	return 0;
}

static int b13_set_config(VuDev *dev, const uint8_t *data, uint32_t offset,
			  uint32_t size, uint32_t flags)
{
	struct b13d *d = dev_to_b13d(dev);

	(void)data;
	(void)flags;
	/* Read-only config: ignore (an error return would panic the lib). */
	d->c.config_writes++;
	logm(0, "config write ignored (offset %u, %u bytes): config is "
	     "read-only", offset, size);
	return 0;
}

static const VuDevIface b13_iface = {
	.set_features = b13_set_features,
	.process_msg = b13_process_msg,
	.queue_set_started = b13_queue_set_started,
	.get_config = b13_get_config,
	.set_config = b13_set_config,
};

/* ---- connection lifecycle ---------------------------------------------- */

static gboolean on_accept(gint fd, GIOCondition cond, gpointer p);

static void arm_listen(struct b13d *d)
{
	if (!d->listen_src)
		d->listen_src = g_unix_fd_add(d->listen_fd, G_IO_IN, on_accept,
					      d);
}

static void fail_waiters(struct b13d *d, const char *why)
{
	while (d->waiters) {
		struct stats_waiter *w = d->waiters->data;

		d->waiters = g_list_delete_link(d->waiters, d->waiters);
		g_source_remove(w->timer);
		ctl_reply_error(w->conn, "%s", why);
		g_free(w);
	}
}

/* Forget the VM: QEMU went away (or broke the protocol). */
static void teardown(struct b13d *d)
{
	if (!d->live)
		return;
	release_held(d, false);
	if (d->poke_idle)
		g_source_remove(d->poke_idle);
	d->poke_idle = 0;
	vu_deinit(&d->vug.parent);
	vug_deinit(&d->vug);
	d->live = false;
	d->running = false;
	b13_map_free(&d->map);
	g_queue_clear_full(&d->pending, g_free);
	fail_waiters(d, "guest disconnected");
	g_free(d->stats);
	d->stats = NULL;
	d->nstats = 0;
	d->target = 0;
	d->target_set = d->target_delivered = false;
	memset(&d->c, 0, sizeof(d->c));
	logm(0, "disconnected; listening on %s", d->socket_path);
	arm_listen(d);
}

static gboolean on_accept(gint fd, GIOCondition cond, gpointer p)
{
	struct b13d *d = p;
	int s;

	(void)cond;
	s = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0)
		return G_SOURCE_CONTINUE;
	if (!vug_init(&d->vug, B13_NUM_VQS, s, b13_panic, &b13_iface)) {
		logm(0, "vhost-user: cannot initialise the device");
		close(s);
		return G_SOURCE_CONTINUE;
	}
	d->connections++;
	d->live = true;
	d->mem_dirty = false;	/* no table yet */
	d->last_progress = g_get_monotonic_time();
	logm(0, "front end connected (connection %" PRIu64 ")",
	     d->connections);
	/* One VM at a time: the next one waits in the backlog. */
	d->listen_src = 0;
	return G_SOURCE_REMOVE;
}

/* ---- control commands ------------------------------------------------- */

static void add_u64(JsonBuilder *b, const char *name, uint64_t v)
{
	json_builder_set_member_name(b, name);
	if (v <= INT64_MAX)
		json_builder_add_int_value(b, (gint64)v);
	else	/* JSON-glib has no unsigned 64-bit integers */
		json_builder_add_double_value(b, (double)v);
}

static void add_bool(JsonBuilder *b, const char *name, bool v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_boolean_value(b, v);
}

static void add_str(JsonBuilder *b, const char *name, const char *v)
{
	json_builder_set_member_name(b, name);
	if (v)
		json_builder_add_string_value(b, v);
	else
		json_builder_add_null_value(b);
}

static JsonBuilder *reply_begin(void)
{
	JsonBuilder *b = json_builder_new();

	json_builder_begin_object(b);
	add_bool(b, "ok", true);
	return b;
}

static void reply_end(struct ctl_conn *c, JsonBuilder *b)
{
	json_builder_end_object(b);
	ctl_reply(c, json_builder_get_root(b));
	g_object_unref(b);
}

static void add_stats(JsonBuilder *b, struct b13d *d)
{
	size_t i;

	json_builder_set_member_name(b, "stats");
	if (!d->stats_seq || !d->stats) {
		json_builder_add_null_value(b);
		return;
	}
	json_builder_begin_object(b);
	add_u64(b, "age_ms", (g_get_monotonic_time() - d->stats_time) / 1000);
	add_u64(b, "seq", d->stats_seq);
	json_builder_set_member_name(b, "values");
	json_builder_begin_object(b);
	for (i = 0; i < d->nstats; i++) {
		uint64_t tag = d->stats[i].tag;
		char name[32];

		if (tag < B13_NUM_TAGS)
			g_strlcpy(name, b13_tag_names[tag], sizeof(name));
		else
			g_snprintf(name, sizeof(name), "tag_%" PRIu64, tag);
		add_u64(b, name, d->stats[i].value);
	}
	json_builder_end_object(b);
	json_builder_end_object(b);
}

static gint64 ms_since_progress(const struct b13d *d)
{
	return (g_get_monotonic_time() - d->last_progress) / 1000;
}

/* The members "status" and "progress" share, under the same names. */
static void add_progress(JsonBuilder *b, struct b13d *d, uint64_t set,
			 gint64 idle_ms)
{
	uint64_t bs = d->map.block_size;

	add_bool(b, "connected", d->live);
	add_bool(b, "driver_ready", d->running);
	add_u64(b, "block_size", bs);
	add_u64(b, "target_bytes", d->target);
	add_bool(b, "target_delivered", d->target_delivered);
	add_u64(b, "bytes_received", d->c.blocks_received * bs);
	add_u64(b, "bytes_in_bitmap", set * bs);
	add_u64(b, "ms_since_progress", idle_ms);
}

/*
 * The counters "status" has that cost nothing to read: no mincore() walk
 * over the balloon, so a VMM or a benchmark can poll it while page lists
 * arrive without slowing the daemon that handles them.
 */
static void cmd_progress(struct b13d *d, struct ctl_conn *c)
{
	JsonBuilder *b = reply_begin();

	sync_regions(d);
	add_progress(b, d, b13_map_blocks_set(&d->map), ms_since_progress(d));
	add_u64(b, "page_lists", d->c.msgs_pages);
	add_u64(b, "punched_bytes", d->c.apply.punch_bytes);
	reply_end(c, b);
}

static void cmd_status(struct b13d *d, struct ctl_conn *c)
{
	JsonBuilder *b = reply_begin();
	uint64_t bs = d->map.block_size, withdrawn = 0, in, set;
	gint64 idle_ms;
	bool reached, stalled;
	int i;

	sync_regions(d);
	in = b13_count_in_balloon(&d->map, &withdrawn);
	set = b13_map_blocks_set(&d->map);
	reached = in * bs >= d->target;
	idle_ms = ms_since_progress(d);
	stalled = !reached && idle_ms >= d->stall_ms;

	add_progress(b, d, set, idle_ms);
	add_u64(b, "connections", d->connections);
	add_str(b, "last_disconnect", d->last_disconnect);
	add_u64(b, "features", d->c.features);
	add_u64(b, "page_bits", d->page_bits);
	add_u64(b, "guest_ram_bytes", b13_map_ram_bytes(&d->map));
	json_builder_set_member_name(b, "regions");
	json_builder_begin_array(b);
	for (i = 0; i < (int)d->map.nr; i++) {
		json_builder_begin_object(b);
		add_u64(b, "gpa", d->map.r[i].gpa);
		add_u64(b, "size", d->map.r[i].size);
		add_u64(b, "blocks", d->map.r[i].nblocks);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);

	add_u64(b, "pending_requests", g_queue_get_length(&d->pending));
	add_u64(b, "blocks_received", d->c.blocks_received);
	add_u64(b, "blocks_in_bitmap", set);
	add_u64(b, "blocks_in_balloon", in);
	add_u64(b, "bytes_in_balloon", in * bs);
	add_u64(b, "blocks_withdrawn", withdrawn);
	add_u64(b, "duplicate_blocks", d->c.apply.duplicates);
	add_u64(b, "reballooned_blocks", d->c.apply.reballooned);
	add_u64(b, "repeated_in_message", d->c.repeated_in_message);
	add_bool(b, "reached", reached);
	add_bool(b, "stalled", stalled);
	add_u64(b, "stall_after_ms", d->stall_ms);

	json_builder_set_member_name(b, "messages");
	json_builder_begin_object(b);
	add_u64(b, "pages", d->c.msgs_pages);
	add_u64(b, "stats", d->c.msgs_stats);
	add_u64(b, "rejected", d->c.msgs_rejected);
	json_builder_end_object(b);
	json_builder_set_member_name(b, "rejects");
	json_builder_begin_object(b);
	for (i = 1; i < B13_REJ_NR; i++)
		add_u64(b, b13_reject_names[i], d->c.rejects[i]);
	json_builder_end_object(b);
	json_builder_set_member_name(b, "guest_errors");
	json_builder_begin_object(b);
	add_u64(b, "input_buffer_too_small", d->c.input_too_small);
	add_u64(b, "reserved_nonzero", d->c.reserved_nonzero);
	json_builder_end_object(b);
	json_builder_set_member_name(b, "requests_sent");
	json_builder_begin_object(b);
	add_u64(b, "resize", d->c.requests_sent[REQ_RESIZE]);
	add_u64(b, "stats", d->c.requests_sent[REQ_STATS]);
	json_builder_end_object(b);
	json_builder_set_member_name(b, "punch");
	json_builder_begin_object(b);
	add_u64(b, "calls", d->c.apply.punch_calls);
	add_u64(b, "bytes", d->c.apply.punch_bytes);
	add_u64(b, "errors", d->c.apply.punch_errors);
	json_builder_end_object(b);
	add_u64(b, "hold_ms", d->hold_ms);
	add_u64(b, "held_buffers", g_queue_get_length(&d->held));
	add_bool(b, "chaos", d->chaos);
	json_builder_set_member_name(b, "injected");
	json_builder_begin_object(b);
	for (i = 0; i < NUM_INJ; i++)
		add_u64(b, inj_names[i], d->c.injected[i]);
	json_builder_end_object(b);
	add_u64(b, "config_reads", d->c.config_reads);
	add_u64(b, "config_writes_ignored", d->c.config_writes);
	add_u64(b, "device_stops", d->c.device_stops);
	add_bool(b, "ring_features", d->ring_features);
	add_stats(b, d);
	reply_end(c, b);
}

/* Read a non-negative integer member; -1 with an error reply if bad. */
static int get_uint(struct ctl_conn *c, JsonObject *o, const char *name,
		    uint64_t dflt, uint64_t min, uint64_t max, uint64_t *v)
{
	JsonNode *n = json_object_get_member(o, name);
	gint64 x;

	if (!n) {
		if (dflt == UINT64_MAX) {
			ctl_reply_error(c, "missing \"%s\"", name);
			return -1;
		}
		*v = dflt;
		return 0;
	}
	if (!JSON_NODE_HOLDS_VALUE(n) ||
	    json_node_get_value_type(n) != G_TYPE_INT64) {
		ctl_reply_error(c, "\"%s\" must be an integer", name);
		return -1;
	}
	x = json_node_get_int(n);
	if (x < 0 || (uint64_t)x < min || (uint64_t)x > max) {
		ctl_reply_error(c, "\"%s\" out of range (%" PRIu64 "..%" PRIu64
				")", name, min, max);
		return -1;
	}
	*v = (uint64_t)x;
	return 0;
}

static void cmd_resize(struct b13d *d, struct ctl_conn *c, JsonObject *req)
{
	JsonBuilder *b;
	uint64_t bytes;

	if (get_uint(c, req, "bytes", UINT64_MAX, 0, INT64_MAX, &bytes))
		return;
	d->target = bytes;
	d->target_set = true;
	d->target_delivered = false;
	d->last_progress = g_get_monotonic_time();
	queue_req(d, REQ_RESIZE, bytes);
	flush_requests(d);
	logm(0, "target %" PRIu64 " bytes (%" PRIu64 " blocks)%s", bytes,
	     bytes >> d->page_bits,
	     d->target_delivered ? "" : ", queued until the guest posts a buffer");
	b = reply_begin();
	add_u64(b, "target_bytes", bytes);
	add_bool(b, "delivered", d->target_delivered);
	add_bool(b, "connected", d->live);
	reply_end(c, b);
}

static void answer_waiter(struct stats_waiter *w, bool timeout)
{
	struct b13d *d = w->d;

	if (timeout) {
		ctl_reply_error(w->conn, "timeout: no stats from the guest");
	} else {
		JsonBuilder *b = reply_begin();

		add_stats(b, d);
		reply_end(w->conn, b);
	}
	d->waiters = g_list_remove(d->waiters, w);
	g_free(w);
}

static gboolean waiter_timeout(gpointer p)
{
	struct stats_waiter *w = p;

	w->timer = 0;
	answer_waiter(w, true);
	return G_SOURCE_REMOVE;
}

static void wake_waiters(struct b13d *d)
{
	GList *l, *next;

	for (l = d->waiters; l; l = next) {
		struct stats_waiter *w = l->data;

		next = l->next;
		if (d->stats_seq > w->after_seq) {
			g_source_remove(w->timer);
			answer_waiter(w, false);
		}
	}
}

static void cmd_stats(struct b13d *d, struct ctl_conn *c, JsonObject *req)
{
	struct stats_waiter *w;
	uint64_t ms;

	if (get_uint(c, req, "timeout_ms", DEFAULT_STATS_TIMEOUT_MS, 1,
		     MAX_STATS_TIMEOUT_MS, &ms))
		return;
	if (!d->live) {
		ctl_reply_error(c, "no guest connected");
		return;
	}
	w = g_new0(struct stats_waiter, 1);
	w->d = d;
	w->conn = c;
	w->after_seq = d->stats_seq;
	w->timer = g_timeout_add(ms, waiter_timeout, w);
	d->waiters = g_list_append(d->waiters, w);
	queue_req(d, REQ_STATS, 0);
	flush_requests(d);
}

static void add_range(uint64_t addr, uint64_t nblocks, void *data)
{
	JsonBuilder *b = data;

	json_builder_begin_object(b);
	add_u64(b, "start", addr);
	add_u64(b, "blocks", nblocks);
	json_builder_end_object(b);
}

static void cmd_ranges(struct b13d *d, struct ctl_conn *c)
{
	JsonBuilder *b = reply_begin();

	sync_regions(d);
	add_u64(b, "page_bits", d->page_bits);
	add_u64(b, "block_size", d->map.block_size);
	add_u64(b, "blocks", b13_map_blocks_set(&d->map));
	json_builder_set_member_name(b, "ranges");
	json_builder_begin_array(b);
	b13_for_each_range(&d->map, add_range, b);
	json_builder_end_array(b);
	reply_end(c, b);
}

static void cmd_inject(struct b13d *d, struct ctl_conn *c, JsonObject *req)
{
	const char *kind = json_object_get_string_member_with_default(req,
								      "kind",
								      NULL);
	uint64_t count, before;
	JsonBuilder *b;
	int k;

	if (!d->chaos) {
		ctl_reply_error(c, "inject is disabled: start balloon13d "
				"with --chaos");
		return;
	}
	for (k = 0; k < NUM_INJ; k++)
		if (kind && !strcmp(kind, inj_names[k]))
			break;
	if (k == NUM_INJ) {
		ctl_reply_error(c, "\"kind\" must be one of short, long, "
				"unknown, huge, overram");
		return;
	}
	if (get_uint(c, req, "count", 1, 1, MAX_INJECT, &count))
		return;
	before = d->c.injected[k];
	for (uint64_t i = 0; i < count; i++) {
		struct pending_req *p = g_new(struct pending_req, 1);

		p->kind = REQ_INJ_FIRST + k;
		p->value = 0;
		g_queue_push_tail(&d->pending, p);
	}
	flush_requests(d);
	logm(0, "inject: %" PRIu64 " x %s queued", count, inj_names[k]);
	b = reply_begin();
	add_str(b, "kind", inj_names[k]);
	add_u64(b, "queued", count);
	add_u64(b, "delivered", d->c.injected[k] - before);
	reply_end(c, b);
}

static void on_control(struct ctl_conn *c, JsonObject *req, void *data)
{
	struct b13d *d = data;
	const char *cmd = json_object_get_string_member_with_default(req,
								     "cmd",
								     NULL);

	if (!cmd)
		ctl_reply_error(c, "missing \"cmd\" (a string)");
	else if (!strcmp(cmd, "status"))
		cmd_status(d, c);
	else if (!strcmp(cmd, "progress"))
		cmd_progress(d, c);
	else if (!strcmp(cmd, "resize"))
		cmd_resize(d, c, req);
	else if (!strcmp(cmd, "stats"))
		cmd_stats(d, c, req);
	else if (!strcmp(cmd, "ranges"))
		cmd_ranges(d, c);
	else if (!strcmp(cmd, "inject"))
		cmd_inject(d, c, req);
	else
		ctl_reply_error(c, "unknown command \"%s\"", cmd);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: balloon13d --socket-path PATH [options]\n"
"Reference vhost-user device for the virtio memory balloon (device ID 13).\n"
"\n"
"  --socket-path PATH     vhost-user socket to listen on (required); the VMM\n"
"                         connects as a client, e.g. QEMU -chardev socket,path=PATH\n"
"                         -device vhost-user-device-pci,virtio-id=13,num_vqs=2,config_size=4\n"
"  --control PATH         control socket (JSON lines, see balloon13ctl)\n"
"                         [default: $BALLOON13_CONTROL or " DEFAULT_CONTROL "]\n"
"  --page-bits N          block size 2^N advertised in config, 0..63 [%d];\n"
"                         values a guest must refuse (e.g. 5, 40) are allowed\n"
"  --hold-ms N            keep page-list buffers N ms after discarding their\n"
"                         blocks before returning them used (0..%d) [0]\n"
"  --stall-after-ms N     status says \"stalled\" when the target is not reached\n"
"                         and no new block arrived for N ms (1..%d) [%d]\n"
"  --chaos                allow the control command \"inject\" (hostile requests:\n"
"                         short, long, unknown, huge, overram)\n"
"  --ring-features        also offer VIRTIO_RING_F_INDIRECT_DESC and\n"
"                         VIRTIO_RING_F_EVENT_IDX (default: VIRTIO_F_VERSION_1 only)\n"
"  -v, --verbose          log every message (twice: every vhost-user request)\n"
"  -h, --help             show this help\n"
"\n"
"SIGTERM or SIGINT: exit 0, removing both sockets.  Exit 2: bad command line.\n",
		DEFAULT_PAGE_BITS, MAX_HOLD_MS, 3600000, DEFAULT_STALL_MS);
}

#define usage_error(...) b13_usage_error("balloon13d", __VA_ARGS__)

static uint64_t opt_uint(const char *opt, const char *arg, uint64_t min,
			 uint64_t max)
{
	const char *why;
	uint64_t v;

	if (b13_parse_uint(arg, min, max, &v, &why))
		usage_error("%s '%s': %s (expected %" PRIu64 "..%" PRIu64 ")",
			    opt, arg, why, min, max);
	return v;
}

static gboolean on_signal(gpointer p)
{
	struct b13d *d = p;

	logm(0, "signal received, exiting");
	g_main_loop_quit(d->loop);
	return G_SOURCE_CONTINUE;
}

enum { OPT_SOCKET = 256, OPT_CONTROL, OPT_PAGE_BITS, OPT_HOLD, OPT_STALL,
       OPT_CHAOS, OPT_RING };

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket-path", required_argument, NULL, OPT_SOCKET },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "page-bits", required_argument, NULL, OPT_PAGE_BITS },
		{ "hold-ms", required_argument, NULL, OPT_HOLD },
		{ "stall-after-ms", required_argument, NULL, OPT_STALL },
		{ "chaos", no_argument, NULL, OPT_CHAOS },
		{ "ring-features", no_argument, NULL, OPT_RING },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static struct b13d d;
	GError *err = NULL;
	int o;

	t0 = g_get_monotonic_time();
	d.last_progress = t0;
	d.page_bits = DEFAULT_PAGE_BITS;
	d.stall_ms = DEFAULT_STALL_MS;
	d.control_path = getenv("BALLOON13_CONTROL");
	if (!d.control_path || !*d.control_path)
		d.control_path = DEFAULT_CONTROL;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		switch (o) {
		case OPT_SOCKET:
			d.socket_path = optarg;
			break;
		case OPT_CONTROL:
			d.control_path = optarg;
			break;
		case OPT_PAGE_BITS:
			d.page_bits = opt_uint("--page-bits", optarg, 0, 63);
			break;
		case OPT_HOLD:
			d.hold_ms = opt_uint("--hold-ms", optarg, 0,
					     MAX_HOLD_MS);
			break;
		case OPT_STALL:
			d.stall_ms = opt_uint("--stall-after-ms", optarg, 1,
					      3600000);
			break;
		case OPT_CHAOS:
			d.chaos = true;
			break;
		case OPT_RING:
			d.ring_features = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			usage_error("option '%s' needs a value",
				    argv[optind - 1]);
		default:
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!d.socket_path || !*d.socket_path)
		usage_error("--socket-path PATH is required");
	if (!*d.control_path)
		usage_error("--control needs a non-empty path");
	if (!strcmp(d.socket_path, d.control_path))
		usage_error("--socket-path and --control must differ");

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);
	b13_map_init(&d.map, d.page_bits);
	g_queue_init(&d.pending);
	g_queue_init(&d.held);

	d.listen_fd = unix_listen_path(d.socket_path, &err);
	if (d.listen_fd < 0) {
		fprintf(stderr, "balloon13d: %s\n", err->message);
		return 1;
	}
	d.ctl = ctl_server_new(d.control_path, on_control, &d, &err);
	if (!d.ctl) {
		fprintf(stderr, "balloon13d: control socket: %s\n",
			err->message);
		close(d.listen_fd);
		unlink(d.socket_path);
		return 1;
	}
	d.loop = g_main_loop_new(NULL, FALSE);
	g_unix_signal_add(SIGTERM, on_signal, &d);
	g_unix_signal_add(SIGINT, on_signal, &d);
	arm_listen(&d);
	logm(0, "listening on %s (control %s), page_bits %u%s%s",
	     d.socket_path, d.control_path, d.page_bits,
	     d.chaos ? ", chaos" : "", d.ring_features ? ", ring features" : "");
	if (d.hold_ms)
		logm(0, "page-list buffers held %u ms after discard", d.hold_ms);

	g_main_loop_run(d.loop);

	if (d.teardown_idle)
		g_source_remove(d.teardown_idle);
	teardown(&d);
	fail_waiters(&d, "balloon13d is exiting");
	ctl_server_free(d.ctl);
	if (d.listen_src)
		g_source_remove(d.listen_src);
	close(d.listen_fd);
	unlink(d.socket_path);
	g_main_loop_unref(d.loop);
	g_queue_clear_full(&d.pending, g_free);
	b13_map_free(&d.map);
	g_free(d.last_disconnect);
	return 0;
}
