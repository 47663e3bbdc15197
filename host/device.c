// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13d's device: the virtio memory balloon, device ID 13, over vhost-user.
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
 * Documentation/control-protocol.rst, control.c and commands.c): RESIZE and
 * STATS are queued in order and written into the guest's inputq buffers as
 * they appear.  Page lists are validated (b13_logic.c), their blocks punched
 * out of the shared guest RAM *before* the buffer goes back used (the
 * ordering that keeps a withdrawn page's new contents safe), and remembered
 * in a per-region bitmap.  The guest withdraws a block by touching it; the
 * device sees that as residency (mincore) when asked for its status.
 *
 * Nothing that talks to the daemon is trusted:
 * - the guest: every message is copied, checked and bounded
 *   (b13_job_begin()), and acted on a slice at a time (b13_job_step()):
 *   one dispatch spends at most OUTPUT_SLICE_US of time and OUTPUT_CALLS
 *   syscalls, then the rest, even of one message, waits for an idle
 *   moment, so that vhost-user requests and control clients are served
 *   between slices however the guest fragments its balloon;
 * - the front end: its messages are read here a piece at a time (one that
 *   stops mid-message stalls nothing) and checked by vhost_check.c before
 *   libvhost-user sees them; a violation ends the connection, and the
 *   daemon listens for the next.  Guest RAM shrunk under us (SIGBUS) ends
 *   it too;
 * - local users: both sockets are created 0600 whatever the umask, and
 *   peers are checked with SO_PEERCRED (control.c).
 * Logs that a peer can trigger at will are rate limited, and name no host
 * addresses.
 *
 * Everything runs on one thread in the glib main loop.  One vhost-user
 * connection at a time; on disconnect the per-VM state is dropped and the
 * daemon listens again.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <glib-unix.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_ring.h"

#include "device.h"
#include "vhost_check.h"

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define DEFAULT_PAGE_BITS	12
#define DEFAULT_STALL_MS	5000
/*
 * One outputq slice: at most this long and this many syscalls (madvise,
 * mincore; taking a message counts as one).  A vhost-user message or a
 * control request then waits at most about one slice: 2 ms, well inside
 * the 20 ms goal even with a status walk's slice beside it.
 */
#define OUTPUT_SLICE_US		2000
#define OUTPUT_CALLS		1024
/*
 * inputq buffers one dispatch takes (a pop and a push each, a few
 * microseconds): the rest after other sources.
 */
#define INPUT_BUDGET		256
/*
 * Replies the front end has not read yet, in bytes the kernel accounts
 * for them.  A VMM reads each reply before its next request; past this it
 * is not reading at all, and we would soon block writing to it.
 */
#define VU_MAX_UNREAD		(64 * 1024)
/* vhost-user accepting pauses this long after EMFILE, doubling to 1 s. */
#define ACCEPT_PAUSE_MS		50
#define ACCEPT_PAUSE_MAX_MS	1000

/* A page-list buffer whose blocks are discarded, waiting out --hold-ms. */
struct held {
	struct b13d *d;
	VuVirtqElement *elem;
	guint src;
};

int verbose;
static gint64 t0;

/* Time 0 of the log's time stamps. */
static void log_init(void)
{
	if (!t0)
		t0 = g_get_monotonic_time();
}

void logm(int level, const char *fmt, ...)
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

static bool vlogrl(struct b13d *d, enum log_class cl, const char *fmt,
		   va_list ap)
{
	struct b13_ratelimit *rl = &d->rl[cl];
	uint64_t missed = 0;
	char *msg;

	if (!verbose && !b13_ratelimit(rl, g_get_monotonic_time(), &missed))
		return false;
	if (missed)
		logm(0, "(%" PRIu64 " similar message%s suppressed)", missed,
		     missed == 1 ? "" : "s");
	msg = g_strdup_vprintf(fmt, ap);
	logm(0, "%s", msg);
	g_free(msg);
	if (!verbose && rl->n == B13_RL_BURST)
		logm(0, "(more like this are counted, not logged, for up to "
		     "%lld s)", B13_RL_INTERVAL_US / 1000000);
	return true;
}

bool logrl(struct b13d *d, enum log_class cl, const char *fmt, ...)
{
	va_list ap;
	bool ret;

	va_start(ap, fmt);
	ret = vlogrl(d, cl, fmt, ap);
	va_end(ap);
	return ret;
}

static gint64 thread_cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (gint64)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void b13d_busy_begin(struct busy_mark *m)
{
	m->wall = g_get_monotonic_time();
	m->cpu = thread_cpu_us();
}

void b13d_busy_end(struct b13d *d, const struct busy_mark *m,
		   const char *where)
{
	gint64 wall = g_get_monotonic_time() - m->wall;
	gint64 cpu = thread_cpu_us() - m->cpu;

	if (wall > d->c.busy_wall_us) {
		d->c.busy_wall_us = wall;
		d->c.busy_wall_where = where;
	}
	if (cpu > d->c.busy_cpu_us) {
		d->c.busy_cpu_us = cpu;
		d->c.busy_cpu_where = where;
	}
}

static struct b13d *timed_loop;
static GPollFunc real_poll;

/* The main context's poll(): what lies between two calls is one iteration. */
static gint timed_poll(GPollFD *fds, guint nfds, gint timeout)
{
	static gint64 wall0, cpu0;
	struct loop_stats *l = &timed_loop->loopstat;
	gint ret;

	if (wall0) {
		gint64 wall = g_get_monotonic_time() - wall0;
		gint64 cpu = thread_cpu_us() - cpu0;

		l->iterations++;
		l->max_wall_us = MAX(l->max_wall_us, wall);
		l->max_cpu_us = MAX(l->max_cpu_us, cpu);
	}
	ret = real_poll(fds, nfds, timeout);
	wall0 = g_get_monotonic_time();
	cpu0 = thread_cpu_us();
	return ret;
}

void b13d_time_loop(struct b13d *d)
{
	timed_loop = d;
	real_poll = g_main_context_get_poll_func(NULL);
	g_main_context_set_poll_func(NULL, timed_poll);
}

static struct b13d *dev_to_b13d(VuDev *dev)
{
	return container_of(dev, struct b13d, vug.parent);
}

/* ---- guest memory that disappears under us ------------------------------ */

/*
 * Guest RAM is a file the front end shares.  If it shrinks the file after
 * handing it over, touching the lost part raises SIGBUS.  Work on guest
 * memory runs through guarded(): a fault there ends the connection, not
 * the daemon.
 */
static sigjmp_buf *guest_jmp;

static void on_sigbus(int sig)
{
	if (guest_jmp)
		siglongjmp(*guest_jmp, 1);
	signal(sig, SIG_DFL);	/* not ours: fault again, and die of it */
}

void b13d_catch_sigbus(void)
{
	struct sigaction sa = { .sa_handler = on_sigbus };

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGBUS, &sa, NULL);
}

static void b13_panic(VuDev *dev, const char *err);

static bool guarded(struct b13d *d, void (*fn)(struct b13d *d, void *arg),
		    void *arg)
{
	sigjmp_buf jb, *volatile prev = guest_jmp;

	if (sigsetjmp(jb, 1)) {
		guest_jmp = prev;
		d->vug.parent.broken = true;
		b13_panic(&d->vug.parent, "guest memory fault (SIGBUS): the "
			  "front end shrank guest RAM under the device");
		return false;
	}
	guest_jmp = &jb;
	fn(d, arg);
	guest_jmp = prev;
	return true;
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

void sync_regions(struct b13d *d)
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
		/* hugetlbfs: discards are whole huge pages */
		desc[i].page = b13_vu_files_page(&d->files, r->gpa, r->size);
	}
	if (b13_map_set_regions(&d->map, desc, dev->nregions))
		logrl(d, LOG_MEMTABLE, "memory table: %s; no blocks accepted",
		      errno == EINVAL ? "regions overlap" :
		      "out of memory for the ballooned-block bitmaps");
	g_free(desc);
	/* Guest-physical layout only: where we mapped it is nobody's business. */
	if (!logrl(d, LOG_MEMTABLE, "memory table: %zu region(s), %" PRIu64
		   " MiB of guest RAM", d->map.nr,
		   b13_map_ram_bytes(&d->map) >> 20))
		return;
	for (i = 0; i < d->map.nr && i < 8; i++) {
		const struct b13_region *r = &d->map.r[i];

		logm(0, "  region %u: gpa 0x%09" PRIx64 "-0x%09" PRIx64
		     " (%" PRIu64 " KiB), %" PRIu64 " whole blocks", i, r->gpa,
		     r->gpa + r->size - 1, r->size >> 10, r->nblocks);
	}
	if (d->map.nr > 8)
		logm(0, "  ... and %zu more", d->map.nr - 8);
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
	       vq->call_fd >= 0 && b13_vu_rings_fit(dev, q);
}

void queue_req(struct b13d *d, enum req_kind kind, uint64_t value)
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
		} else if (kind == REQ_STATS_INTERVAL &&
			   p->kind == REQ_STATS_INTERVAL) {
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
	struct virtio_balloon13_req r = { 0 };
	unsigned int len = sizeof(r), used = sizeof(r);

	if (p->kind == REQ_RESIZE) {
		r.type = htole32(VIRTIO_BALLOON13_REQ_RESIZE);
		r.value = htole64(p->value);
		d->target_delivered = true;
	} else if (p->kind == REQ_STATS) {
		r.type = htole32(VIRTIO_BALLOON13_REQ_STATS);
	} else if (p->kind == REQ_STATS_INTERVAL) {
		r.type = htole32(VIRTIO_BALLOON13_REQ_STATS_INTERVAL);
		r.value = htole64(p->value);
	} else {
		switch ((enum ctl_inject)(p->kind - REQ_INJ_FIRST)) {
		case CTL_INJ_SHORT:
			r.type = htole32(VIRTIO_BALLOON13_REQ_RESIZE);
			len = used = 8;
			break;
		case CTL_INJ_LONG:
			r.type = htole32(VIRTIO_BALLOON13_REQ_RESIZE);
			r.value = htole64(d->target);
			used = 4096;
			break;
		case CTL_INJ_UNKNOWN:
			r.type = htole32(7);
			break;
		case CTL_INJ_HUGE:
			r.type = htole32(VIRTIO_BALLOON13_REQ_RESIZE);
			r.value = htole64(UINT64_MAX);
			break;
		case CTL_INJ_OVERRAM:
			r.type = htole32(VIRTIO_BALLOON13_REQ_RESIZE);
			r.value = htole64(b13_map_ram_bytes(&d->map) ?
					  b13_map_ram_bytes(&d->map) * 16 :
					  1ull << 40);
			break;
		default:
			break;
		}
	}
	iov_from_buf(elem->in_sg, elem->in_num, &r, len);
	if (p->kind < REQ_INJ_FIRST)
		d->c.requests_sent[p->kind]++;
	else
		d->c.injected[p->kind - REQ_INJ_FIRST]++;
	logm(1, "inputq: sent %s%s (value %" PRIu64 ", used len %u)",
	     p->kind < REQ_INJ_FIRST ? "" : "hostile ",
	     p->kind == REQ_RESIZE ? "RESIZE" : p->kind == REQ_STATS ?
	     "STATS" : p->kind == REQ_STATS_INTERVAL ? "STATS_INTERVAL" :
	     ctl_inject_names[p->kind - REQ_INJ_FIRST],
	     (uint64_t)le64toh(r.value), used);
	return used;
}

static gboolean input_later(gpointer p);

static void do_flush(struct b13d *d, void *arg)
{
	VuDev *dev = &d->vug.parent;
	VuVirtq *vq = vu_get_queue(dev, B13_VQ_INPUT);
	bool pushed = false;
	uint64_t n = 0;

	(void)arg;
	while (!g_queue_is_empty(&d->pending)) {
		VuVirtqElement *elem;
		struct pending_req *p;
		uint64_t room;

		/*
		 * A guest can hand back each too-small buffer as soon as it
		 * is returned: without a bound this loop is as long as the
		 * guest likes.
		 */
		if (n == INPUT_BUDGET) {
			d->c.input_yields++;
			if (!d->input_idle)
				d->input_idle = g_idle_add(input_later, d);
			break;
		}
		elem = vu_queue_pop(dev, vq, sizeof(*elem));
		if (!elem)
			break;
		if (++n > d->c.input_max_batch)
			d->c.input_max_batch = n;
		room = iov_bytes(elem->in_sg, elem->in_num);
		if (room < sizeof(struct virtio_balloon13_req)) {
			/* Guest error: give it back empty, keep the request. */
			d->c.input_too_small++;
			logrl(d, LOG_INPUT, "inputq: buffer with %" PRIu64
			      " writable bytes (< 16), returned unused", room);
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

/*
 * Move queued requests into the guest's posted inputq buffers, at most
 * INPUT_BUDGET buffers per dispatch.
 */
void flush_requests(struct b13d *d)
{
	struct busy_mark t;

	b13d_busy_begin(&t);
	if (vq_ready(d, B13_VQ_INPUT) && guarded(d, do_flush, NULL))
		b13d_busy_end(d, &t, "inputq");
}

static gboolean input_later(gpointer p)
{
	struct b13d *d = p;

	d->input_idle = 0;
	if (d->live)
		flush_requests(d);
	return G_SOURCE_REMOVE;
}

static void handle_input(VuDev *dev, int qidx)
{
	struct b13d *d = dev_to_b13d(dev);

	(void)qidx;
	if (!d->input_idle)	/* else the kick adds to work under way */
		flush_requests(d);
}

/* ---- outputq: page lists and stats from the guest ---------------------- */

static void do_push(struct b13d *d, void *arg)
{
	VuDev *dev = &d->vug.parent;

	vu_queue_push(dev, vu_get_queue(dev, B13_VQ_OUTPUT), arg, 0);
}

static void do_notify(struct b13d *d, void *arg)
{
	VuDev *dev = &d->vug.parent;

	(void)arg;
	vu_queue_notify(dev, vu_get_queue(dev, B13_VQ_OUTPUT));
}

/* Give elem back used (if the ring is still sound), then free it. */
static void push_output(struct b13d *d, VuVirtqElement *elem)
{
	if (d->live && !d->vug.parent.broken &&
	    b13_vu_rings_fit(&d->vug.parent, B13_VQ_OUTPUT))
		guarded(d, do_push, elem);
	free(elem);
}

static void notify_output(struct b13d *d)
{
	if (vq_ready(d, B13_VQ_OUTPUT))
		guarded(d, do_notify, NULL);
}

static gboolean held_expired(gpointer p)
{
	struct held *h = p;
	struct b13d *d = h->d;

	g_queue_remove(&d->held, h);
	push_output(d, h->elem);
	notify_output(d);
	g_free(h);
	return G_SOURCE_REMOVE;
}

/* Give back (push) or drop every held buffer now. */
static void release_held(struct b13d *d, bool push)
{
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
		notify_output(d);
}

static void count_reject(struct b13d *d, const struct b13_msg_result *res)
{
	char where[40] = "";

	d->c.rejects[res->why]++;
	d->c.msgs_rejected++;
	if (res->why >= B13_REJ_OVERFLOW)
		g_snprintf(where, sizeof(where), ", address 0x%" PRIx64,
			   res->bad_addr);
	logrl(d, LOG_REJECT + res->why, "outputq: rejected message (%s): "
	      "length %" PRIu64 "%s", b13_reject_names[res->why], res->len,
	      where);
}

static void count_pages(struct b13d *d, const struct b13_msg_result *res)
{
	const struct b13_apply_stats *a = &res->apply;
	struct b13_apply_stats *t = &d->c.apply;

	t->new_blocks += a->new_blocks;
	t->duplicates += a->duplicates;
	t->reballooned += a->reballooned;
	t->punch_calls += a->punch_calls;
	t->punch_bytes += a->punch_bytes;
	t->punch_errors += a->punch_errors;
	t->residency_calls += a->residency_calls;
	t->punch_max_us = MAX(t->punch_max_us, a->punch_max_us);
	t->skipped_bytes += a->skipped_bytes;
	t->kept_bytes += a->kept_bytes;
	d->c.msgs_pages++;
	d->c.blocks_received += res->n;
	d->c.repeated_in_message += res->repeats;
	if (a->new_blocks)
		d->last_progress = g_get_monotonic_time();
	logm(1, "outputq: page list, %" PRIu64 " addresses in %zu run(s): "
	     "%" PRIu64 " new, %" PRIu64 " duplicate, %" PRIu64
	     " re-ballooned, %" PRIu64 " KiB punched", res->n, res->runs,
	     a->new_blocks, a->duplicates, a->reballooned,
	     a->punch_bytes >> 10);
	if (a->punch_errors)
		logrl(d, LOG_PUNCH, "outputq: madvise(MADV_REMOVE) failed: %s "
		      "(guest RAM not a shared memfd?)",
		      g_strerror(a->last_errno));
}

static void count_stats(struct b13d *d, const struct b13_msg_result *res)
{
	d->stats_time = g_get_monotonic_time();
	d->stats_seq++;
	d->c.msgs_stats++;
	d->c.stats_unknown_tag += res->stats_unknown;
	d->c.stats_repeated_tag += res->stats_repeated;
	logm(1, "outputq: stats, %" PRIu64 " value(s)", res->n);
	if (res->stats_unknown || res->stats_repeated)
		logrl(d, LOG_STATS, "outputq: stats with %" PRIu64 " unknown "
		      "and %" PRIu64 " repeated tag(s) (guest error; unknown "
		      "ones dropped, the last value of a tag kept)",
		      res->stats_unknown, res->stats_repeated);
	if (d->hooks.stats_arrived)
		d->hooks.stats_arrived(d);
}

/* ---- the discard worker -------------------------------------------------- */

static gpointer worker_main(gpointer p)
{
	struct discard_worker *w = p;

	g_mutex_lock(&w->lock);
	for (;;) {
		while (!w->work && !w->quit)
			g_cond_wait(&w->cond, &w->lock);
		if (w->quit)
			break;
		g_mutex_unlock(&w->lock);
		b13_job_run_batch(w->job, w->map);
		g_mutex_lock(&w->lock);
		w->work = false;
		g_cond_broadcast(&w->cond);
		if (eventfd_write(w->efd, 1))
			g_warning("discard worker: eventfd: %s", g_strerror(errno));
	}
	g_mutex_unlock(&w->lock);
	return NULL;
}

static void output_slice(struct b13d *d);

/* The worker made the batch: the job goes on. */
static gboolean worker_done(gint fd, GIOCondition cond, gpointer p)
{
	struct b13d *d = p;
	eventfd_t v;

	(void)cond;
	if (eventfd_read(fd, &v) || !d->discarding)
		return G_SOURCE_CONTINUE;
	g_mutex_lock(&d->dw.lock);
	if (d->dw.work) {	/* a stale count: not done yet */
		g_mutex_unlock(&d->dw.lock);
		return G_SOURCE_CONTINUE;
	}
	g_mutex_unlock(&d->dw.lock);
	d->discarding = false;
	if (d->live)
		output_slice(d);
	return G_SOURCE_CONTINUE;
}

static bool worker_start(struct b13d *d)
{
	struct discard_worker *w = &d->dw;
	sigset_t all, old;

	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0)
		return false;
	g_mutex_init(&w->lock);
	g_cond_init(&w->cond);
	/* SIGTERM, SIGINT and the like are the main loop's, not the worker's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	w->thread = g_thread_try_new("b13-discard", worker_main, w, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!w->thread) {
		close(w->efd);
		w->efd = -1;
		return false;
	}
	w->src = g_unix_fd_add(w->efd, G_IO_IN, worker_done, d);
	return true;
}

/* Hand the job's batch to the worker. */
static void worker_post(struct b13d *d)
{
	struct discard_worker *w = &d->dw;

	d->discarding = true;
	g_mutex_lock(&w->lock);
	w->job = &d->job;
	w->map = &d->map;
	w->work = true;
	g_cond_signal(&w->cond);
	g_mutex_unlock(&w->lock);
}

/*
 * Wait until the worker has made the batch it has (before the memory it
 * names is unmapped, or the job ended).  Bounded by one batch.
 */
static void worker_wait(struct b13d *d)
{
	struct discard_worker *w = &d->dw;

	if (!d->discarding)
		return;
	g_mutex_lock(&w->lock);
	while (w->work)
		g_cond_wait(&w->cond, &w->lock);
	g_mutex_unlock(&w->lock);
	d->discarding = false;
}

static void worker_stop(struct b13d *d)
{
	struct discard_worker *w = &d->dw;

	if (!w->thread)
		return;
	worker_wait(d);
	g_mutex_lock(&w->lock);
	w->quit = true;
	g_cond_signal(&w->cond);
	g_mutex_unlock(&w->lock);
	g_thread_join(w->thread);
	w->thread = NULL;
	g_source_remove(w->src);
	close(w->efd);
	w->efd = -1;
	g_mutex_clear(&w->lock);
	g_cond_clear(&w->cond);
}

static void count_withdraw(struct b13d *d, const struct b13_msg_result *res)
{
	const struct b13_apply_stats *a = &res->apply;
	struct b13_apply_stats *t = &d->c.apply;

	d->c.msgs_withdraw++;
	if (res->withdraw_bad_length) {
		d->c.withdraw_bad_length++;
		logrl(d, LOG_WITHDRAW, "outputq: withdraw of %" PRIu64
		      " bytes, not 8 + 8n (guest error; its %" PRIu64
		      " complete entries used)", res->len, res->n);
	}
	t->withdrawn += a->withdrawn;
	t->withdraw_invalid += a->withdraw_invalid;
	t->withdraw_absent += a->withdraw_absent;
	logm(1, "outputq: withdraw, %" PRIu64 " addresses: %" PRIu64
	     " withdrawn, %" PRIu64 " invalid, %" PRIu64 " not in the balloon",
	     res->n, a->withdrawn, a->withdraw_invalid, a->withdraw_absent);
	if (a->withdraw_invalid || a->withdraw_absent)
		logrl(d, LOG_WITHDRAW, "outputq: withdraw with %" PRIu64
		      " invalid entries (first 0x%" PRIx64 ") and %" PRIu64
		      " not in the balloon (guest errors; the other %" PRIu64
		      " withdrawn)", a->withdraw_invalid, res->bad_addr,
		      a->withdraw_absent, a->withdrawn);
}

static void count_report(struct b13d *d, const struct b13_msg_result *res)
{
	const struct b13_apply_stats *a = &res->apply;
	struct b13_apply_stats *t = &d->c.apply;

	d->c.msgs_report++;
	t->report_ranges += a->report_ranges;
	t->reported_bytes += a->reported_bytes;
	t->report_ballooned += a->report_ballooned;
	t->punch_calls += a->punch_calls;
	t->punch_bytes += a->punch_bytes;
	t->punch_errors += a->punch_errors;
	t->punch_max_us = MAX(t->punch_max_us, a->punch_max_us);
	t->skipped_bytes += a->skipped_bytes;
	t->kept_bytes += a->kept_bytes;
	logm(1, "outputq: report, %" PRIu64 " range(s), %" PRIu64 " KiB, %"
	     PRIu64 " KiB discarded", res->n, a->reported_bytes >> 10,
	     a->punch_bytes >> 10);
	if (a->punch_errors)
		logrl(d, LOG_PUNCH, "outputq: madvise(MADV_REMOVE) failed: %s",
		      g_strerror(a->last_errno));
	if (a->report_ballooned && (d->c.features & B13_F_WITHDRAW))
		logrl(d, LOG_REPORT, "outputq: report names %" PRIu64
		      " ballooned block(s) as free (guest error)",
		      a->report_ballooned);
}

/* What the finished job did: count it, log it. */
static void count_job(struct b13d *d, const struct b13_msg_result *res)
{
	if (res->reserved_nonzero)
		d->c.reserved_nonzero++;
	if (res->why != B13_OK)
		count_reject(d, res);
	else if (res->type == VIRTIO_BALLOON13_RESP_STATS)
		count_stats(d, res);
	else if (res->type == VIRTIO_BALLOON13_RESP_WITHDRAW)
		count_withdraw(d, res);
	else if (res->type == VIRTIO_BALLOON13_RESP_REPORT)
		count_report(d, res);
	else
		count_pages(d, res);
}

uint64_t b13d_features(const struct b13d *d)
{
	return d->live && d->c.features_acked ? d->c.features & B13_F_ALL : 0;
}

/*
 * The job is over: give its buffer back (or hold a page list for
 * --hold-ms).  Returns true if the buffer went back now.
 */
static bool job_done(struct b13d *d)
{
	VuVirtqElement *elem = d->job_elem;
	const struct b13_msg_result *res = &d->job.res;

	d->job_elem = NULL;
	count_job(d, res);
	if (res->why == B13_OK && res->type == VIRTIO_BALLOON13_RESP_PAGES &&
	    d->hold_ms) {
		struct held *h = g_new(struct held, 1);

		h->d = d;
		h->elem = elem;
		h->src = g_timeout_add(d->hold_ms, held_expired, h);
		g_queue_push_tail(&d->held, h);
		return false;
	}
	do_push(d, elem);
	free(elem);
	return true;
}

/*
 * End the message under way now, without another discard, and give its
 * buffer back: before a new memory table (the buffer and the blocks are
 * the old table's) or a queue stop (a reset discards nothing more).
 */
static void finish_job(struct b13d *d, bool push)
{
	if (!d->job_elem)
		return;
	worker_wait(d);
	b13_job_finish(&d->job, &d->map);
	if (push) {
		VuVirtqElement *elem = d->job_elem;

		d->job_elem = NULL;
		count_job(d, &d->job.res);
		push_output(d, elem);
		notify_output(d);
	} else {
		free(d->job_elem);
		d->job_elem = NULL;
	}
}

static gboolean output_later(gpointer p);

static void do_output(struct b13d *d, void *arg)
{
	VuDev *dev = &d->vug.parent;
	VuVirtq *vq = vu_get_queue(dev, B13_VQ_OUTPUT);
	struct b13_budget b;

	(void)arg;
	if (d->discarding)	/* the worker's turn; it calls us back */
		return;
	b13_budget_init(&b, OUTPUT_CALLS, OUTPUT_SLICE_US);
	sync_regions(d);
	/*
	 * Signal each buffer as soon as it is back: the guest frees and
	 * refills a page list while the next one is being discarded here,
	 * instead of both sides taking turns once per drained queue.
	 */
	while (vq_ready(d, B13_VQ_OUTPUT)) {
		if (!d->job_elem) {
			VuVirtqElement *elem;

			if (!b13_budget_take(&b))
				goto later;
			elem = vu_queue_pop(dev, vq, sizeof(*elem));
			if (!elem)
				break;
			/* Ours from here: a fault below cannot lose it. */
			d->job_elem = elem;
			b13_job_begin(&d->job, &d->map, &d->stats,
				      elem->out_sg, elem->out_num,
				      elem->in_num, b13d_features(d));
		}
		switch (b13_job_step(&d->job, &d->map, &b)) {
		case B13_STEP_YIELD:
			goto later;
		case B13_STEP_DISCARD:
			d->c.discard_batches++;
			if (d->inline_discards) {
				b13_job_run_batch(&d->job, &d->map);
				continue;
			}
			worker_post(d);
			return;
		case B13_STEP_DONE:
			if (job_done(d))
				vu_queue_notify(dev, vq);
			break;
		}
	}
	return;
later:
	/* Enough for now: the rest after other sources. */
	d->c.output_yields++;
	if (!d->output_idle)
		d->output_idle = g_idle_add(output_later, d);
}

/*
 * A kick.  If the last dispatch left work for later, the kick adds to it:
 * the guest's work then goes on only from the idle source, taking turns
 * with a status walk instead of always coming first.
 */
static void output_slice(struct b13d *d)
{
	struct busy_mark t;

	if (d->discarding)
		return;

	b13d_busy_begin(&t);
	if (guarded(d, do_output, NULL))
		b13d_busy_end(d, &t, "outputq");
}

static void handle_output(VuDev *dev, int qidx)
{
	struct b13d *d = dev_to_b13d(dev);

	(void)qidx;
	if (!d->output_idle)
		output_slice(d);
}

static gboolean output_later(gpointer p)
{
	struct b13d *d = p;

	d->output_idle = 0;
	if (d->live)
		output_slice(d);
	return G_SOURCE_REMOVE;
}

/* ---- reading the front end's messages ----------------------------------- */

static void reader_reset(struct vu_reader *rd)
{
	int i;

	for (i = 0; i < rd->nfds; i++)
		close(rd->fds[i]);
	memset(rd, 0, sizeof(*rd));
}

/*
 * Read what the socket has of the current message, without waiting.
 * Returns 1 once it is complete, 0 if more must come, -1 on EOF or error
 * (*why set).  libvhost-user's own reader blocks on a partial message and
 * asserts on a short one; this one keeps its place instead.
 */
static int reader_fill(struct b13d *d, const char **why)
{
	struct vu_reader *rd = &d->rd;
	const size_t hdr = VHOST_USER_HDR_SIZE;
	char control[CMSG_SPACE(sizeof(int) * VHOST_MEMORY_BASELINE_NREGIONS)];
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	struct iovec iov;
	ssize_t n;

	for (;;) {
		size_t total = hdr + (rd->got >= hdr ? rd->msg.size : 0);

		if (rd->got == total && rd->got >= hdr)
			return 1;
		iov.iov_base = (char *)&rd->msg + rd->got;
		iov.iov_len = total - rd->got;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = control;
		mh.msg_controllen = sizeof(control);
		n = recvmsg(d->vug.parent.sock, &mh,
			    MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0) {
			*why = n ? g_strerror(errno) : rd->got ?
			       "front end closed the connection mid-message" :
			       "front end closed the connection";
			return -1;
		}
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			int *fds = (int *)CMSG_DATA(cm);
			size_t i, k;

			if (cm->cmsg_level != SOL_SOCKET ||
			    cm->cmsg_type != SCM_RIGHTS)
				continue;
			k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, &fds[i], sizeof(fd));
				if (rd->nfds < VHOST_MEMORY_BASELINE_NREGIONS)
					rd->fds[rd->nfds++] = fd;
				else
					close(fd);
			}
		}
		if (mh.msg_flags & MSG_CTRUNC) {
			*why = "file descriptors lost (more than 8, or the "
			       "daemon is out of fds)";
			return -1;
		}
		rd->got += n;
		if (rd->got == hdr && rd->msg.size > sizeof(rd->msg.payload)) {
			*why = "message payload longer than any request";
			return -1;
		}
	}
}

/* libvhost-user's read_msg hook: hand over the message reader_fill() read. */
static bool b13_read_msg(VuDev *dev, int sock, VhostUserMsg *vmsg)
{
	struct b13d *d = dev_to_b13d(dev);
	struct vu_reader *rd = &d->rd;

	(void)sock;
	if (!rd->ready)
		return false;
	*vmsg = rd->msg;
	memcpy(vmsg->fds, rd->fds, sizeof(int) * rd->nfds);
	vmsg->fd_num = rd->nfds;
	vmsg->data = NULL;
	rd->nfds = 0;		/* the message owns them now */
	reader_reset(rd);
	return true;
}

static void do_dispatch(struct b13d *d, void *arg)
{
	VuDev *dev = &d->vug.parent;

	(void)arg;
	if (!vu_dispatch(dev) && !dev->broken)
		dev->panic(dev, "error processing a vhost-user message");
}

/* Unread replies the kernel still holds for the front end, in bytes. */
static int unread_replies(int sock)
{
	int n = 0;

	return ioctl(sock, SIOCOUTQ, &n) ? 0 : n;
}

/* The vhost-user socket is readable: one message at most per call. */
static void vu_readable(VuDev *dev, int condition, void *data)
{
	struct b13d *d = data;
	struct busy_mark t;
	const char *why = NULL;
	int r, req;

	(void)condition;
	if (!d->live || dev->broken)
		return;
	r = reader_fill(d, &why);
	if (r < 0) {
		reader_reset(&d->rd);
		b13_panic(dev, why);
		return;
	}
	if (!r)
		return;
	if (unread_replies(dev->sock) > VU_MAX_UNREAD) {
		d->vu.violations++;
		reader_reset(&d->rd);
		b13_panic(dev, "the front end does not read its replies");
		return;
	}
	d->rd.ready = true;
	req = d->rd.msg.request;
	b13d_busy_begin(&t);
	if (guarded(d, do_dispatch, NULL) && d->live)
		b13d_busy_end(d, &t, b13_vu_request_name(req));
	reader_reset(&d->rd);	/* if the library did not take it */
}

/* ---- libvhost-user callbacks ------------------------------------------- */

/* After the current vhost-user message: sync the map, serve both queues. */
static gboolean poke(gpointer p)
{
	struct b13d *d = p;
	VuDev *dev = &d->vug.parent;
	unsigned int q;

	d->poke_idle = 0;
	if (!d->live || dev->broken)
		return G_SOURCE_REMOVE;
	/* A new memory table may have left a placed ring hanging out of it. */
	for (q = 0; q < B13_NUM_VQS; q++) {
		if (dev->vq[q].vring.desc && !b13_vu_rings_fit(dev, q)) {
			d->vu.violations++;
			dev->broken = true;
			b13_panic(dev, "a ring is no longer inside guest memory");
			return G_SOURCE_REMOVE;
		}
	}
	sync_regions(d);
	flush_requests(d);
	if (vq_ready(d, B13_VQ_OUTPUT))
		handle_output(dev, B13_VQ_OUTPUT);
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

	if (d->teardown_idle)		/* already on the way out */
		return;
	logrl(d, LOG_FRONTEND, "vhost-user connection ends: %s",
	      err ? err : "?");
	g_free(d->last_disconnect);
	d->last_disconnect = g_strdup(err ? err : "?");
	/* libvhost-user may still be using dev: tear down once it returns. */
	d->teardown_idle = g_idle_add_full(G_PRIORITY_HIGH, teardown_idle, d,
					   NULL);
}

static const struct b13_vu_offer *offer(const struct b13d *d)
{
	static struct b13_vu_offer o;

	o.features = 1ull << VIRTIO_F_VERSION_1 |
		     1ull << VHOST_USER_F_PROTOCOL_FEATURES | d->features;
	if (d->ring_features)
		o.features |= 1ull << VIRTIO_RING_F_INDIRECT_DESC |
			      1ull << VIRTIO_RING_F_EVENT_IDX;
	o.protocol_features = B13_VU_PROTOCOL_FEATURES;
	return &o;
}

static void reply_u64(VhostUserMsg *msg, uint64_t v, int *do_reply)
{
	msg->payload.u64 = v;
	msg->size = sizeof(msg->payload.u64);
	msg->fd_num = 0;
	*do_reply = 1;
}

/* Every message, before libvhost-user: check it, and answer some here. */
static int b13_process_msg(VuDev *dev, VhostUserMsg *msg, int *do_reply)
{
	struct b13d *d = dev_to_b13d(dev);
	const char *why;
	char buf[200];
	int i;

	logm(2, "vhost-user: %s", b13_vu_request_name(msg->request));
	why = b13_vu_check_msg(dev, msg, offer(d), &d->files, buf,
			       sizeof(buf));
	if (why) {
		d->vu.violations++;
		for (i = 0; i < msg->fd_num; i++)
			close(msg->fds[i]);
		msg->fd_num = 0;
		dev->broken = true;
		/* No reply, not even the "ok" a REPLY_ACK would get. */
		shutdown(dev->sock, SHUT_RDWR);
		b13_panic(dev, why);
		return 1;
	}
	switch (msg->request) {
	case VHOST_USER_GET_FEATURES:
		/* Ours, not the library's list (it adds bits we don't want). */
		reply_u64(msg, offer(d)->features, do_reply);
		return 1;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		reply_u64(msg, offer(d)->protocol_features, do_reply);
		return 1;
	case VHOST_USER_SET_MEM_TABLE:
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_REM_MEM_REG:
		/*
		 * The message under way and held buffers belong to the old
		 * table: end and give them back while it is still mapped.
		 */
		finish_job(d, true);
		release_held(d, true);
		b13_vu_files_note(&d->files, msg);
		d->mem_dirty = true;
		schedule_poke(d);
		return 0;
	case VHOST_USER_SET_VRING_BASE:
		d->vq_base[msg->payload.state.index] = msg->payload.state.num;
		return 0;
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ENABLE:
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_ADDR:
		schedule_poke(d);
		return 0;
	default:
		return 0;
	}
}

static void b13_set_features(VuDev *dev, uint64_t features)
{
	struct b13d *d = dev_to_b13d(dev);
	char names[128] = "";
	unsigned int i;

	d->c.features = features;
	d->c.features_acked = true;
	for (i = 0; i < 4; i++) {
		if (!(features & 1ull << i))
			continue;
		g_strlcat(names, names[0] ? ", " : " (", sizeof(names));
		g_strlcat(names, b13_feature_names[i], sizeof(names));
	}
	if (names[0])
		g_strlcat(names, ")", sizeof(names));
	logrl(d, LOG_DEVICE, "features acked: 0x%" PRIx64 "%s", features,
	      names);
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
	if (!started && qidx == B13_VQ_OUTPUT) {
		/* A reset discards nothing more: end the job first. */
		finish_job(d, true);
		release_held(d, true);	/* blocks are already discarded */
	}
	running = vu_queue_started(dev, vu_get_queue(dev, B13_VQ_INPUT)) &&
		  vu_queue_started(dev, vu_get_queue(dev, B13_VQ_OUTPUT));
	if (running && !d->running) {
		/*
		 * Both rings from index 0 again after a stop: a driver that
		 * was reset (or a new one), not a VM that was paused (its
		 * rings go on from where they stopped).  After a reset the
		 * balloon is empty (contract); forget its blocks.  A paused
		 * VM's rings are both at 0 only if neither ever moved, or
		 * both wrapped at exactly 65536: then the balloon is empty,
		 * or so nearly always.
		 */
		if (d->c.starts && !d->vq_base[B13_VQ_INPUT] &&
		    !d->vq_base[B13_VQ_OUTPUT] && b13_map_blocks_set(&d->map)) {
			logrl(d, LOG_DEVICE, "driver reset: the balloon is "
			      "empty (%" PRIu64 " blocks forgotten)",
			      b13_map_blocks_set(&d->map));
			b13_map_clear_bitmaps(&d->map);
			d->c.resets++;
		}
		d->c.starts++;
		logrl(d, LOG_DEVICE, "device started (driver ready)");
		/*
		 * A restarted driver starts empty: tell it the target again,
		 * unless it already has it (a driver that posts its buffers
		 * before DRIVER_OK gets a queued RESIZE as soon as inputq
		 * starts, before outputq does).
		 */
		if (d->target_set && !d->target_delivered &&
		    !pending_has(d, REQ_RESIZE))
			queue_req(d, REQ_RESIZE, d->target);
		/* A started driver pushes no stats until asked again. */
		if (d->stats_interval_ms &&
		    (b13d_features(d) & B13_F_FULL_STATS))
			queue_req(d, REQ_STATS_INTERVAL, d->stats_interval_ms);
		schedule_poke(d);
	} else if (!running && d->running) {
		logrl(d, LOG_DEVICE, "device stopped (reset, driver gone or "
		      "VM paused)");
		d->c.device_stops++;
		/* The next driver has not seen the target. */
		d->target_delivered = false;
	}
	d->running = running;
}

static int b13_get_config(VuDev *dev, uint8_t *config, uint32_t len)
{
	struct b13d *d = dev_to_b13d(dev);
	struct virtio_balloon13_config cfg = { .page_bits = htole32(d->page_bits) };

	if (len > VHOST_USER_MAX_CONFIG_SIZE)
		return -1;
	memset(config, 0, len);
	memcpy(config, &cfg, MIN(len, sizeof(cfg)));
	d->c.config_reads++;
	logrl(d, LOG_CONFIG_READ, "config read (%u bytes): page_bits %u", len,
	      d->page_bits);
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
	logrl(d, LOG_CONFIG_WRITE, "config write ignored (offset %u, %u "
	      "bytes): config is read-only", offset, size);
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
	if (d->listen_fd >= 0 && !d->listen_src && !d->listen_pause_src)
		d->listen_src = g_unix_fd_add(d->listen_fd, G_IO_IN, on_accept,
					      d);
}

static gboolean resume_listen(gpointer p)
{
	struct b13d *d = p;

	d->listen_pause_src = 0;
	if (!d->live)
		arm_listen(d);
	return G_SOURCE_REMOVE;
}

/* Forget the VM: QEMU went away (or broke the protocol). */
static void teardown(struct b13d *d)
{
	if (!d->live)
		return;
	finish_job(d, false);
	release_held(d, false);
	if (d->poke_idle)
		g_source_remove(d->poke_idle);
	if (d->output_idle)
		g_source_remove(d->output_idle);
	if (d->input_idle)
		g_source_remove(d->input_idle);
	d->poke_idle = d->output_idle = d->input_idle = 0;
	reader_reset(&d->rd);
	vu_deinit(&d->vug.parent);
	vug_deinit(&d->vug);
	d->live = false;
	d->running = false;
	b13_map_free(&d->map);
	g_queue_clear_full(&d->pending, g_free);
	if (d->hooks.disconnected)
		d->hooks.disconnected(d, "guest disconnected");
	memset(&d->stats, 0, sizeof(d->stats));
	d->stats_seq = 0;
	d->target = 0;
	d->target_set = d->target_delivered = false;
	d->stats_interval_ms = 0;
	memset(d->vq_base, 0, sizeof(d->vq_base));
	d->files.n = 0;
	memset(&d->c, 0, sizeof(d->c));
	if (d->listen_fd >= 0) {
		logrl(d, LOG_FRONTEND, "disconnected; listening on %s",
		      d->socket_path);
		arm_listen(d);
	}
}

static gboolean on_accept(gint fd, GIOCondition cond, gpointer p)
{
	struct b13d *d = p;
	uid_t uid;
	int s;

	(void)cond;
	s = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0) {
		if (!accept_error_is_resource(errno))
			return G_SOURCE_CONTINUE;
		/* Out of fds: spinning on the pending connection helps nobody. */
		d->listen_pause_ms = d->listen_pause_ms ?
				     MIN(d->listen_pause_ms * 2,
					 ACCEPT_PAUSE_MAX_MS) : ACCEPT_PAUSE_MS;
		d->vu.accept_pauses++;
		logrl(d, LOG_ACCEPT, "vhost-user socket: accept: %s; pausing "
		      "%u ms", g_strerror(errno), d->listen_pause_ms);
		d->listen_src = 0;
		d->listen_pause_src = g_timeout_add(d->listen_pause_ms,
						    resume_listen, d);
		return G_SOURCE_REMOVE;
	}
	d->listen_pause_ms = 0;
	if (!unix_peer_allowed(s, d->socket_gid, &uid)) {
		d->vu.denied++;
		logrl(d, LOG_ACCEPT, "vhost-user: front end uid %d refused "
		      "(not root, the daemon's uid or its group)", (int)uid);
		close(s);
		return G_SOURCE_CONTINUE;
	}
	if (!b13d_attach(d, s))
		return G_SOURCE_CONTINUE;
	/* One VM at a time: the next one waits in the backlog. */
	d->listen_src = 0;
	return G_SOURCE_REMOVE;
}

bool b13d_attach(struct b13d *d, int s)
{
	if (d->live)
		b13d_detach(d);
	if (!vug_init(&d->vug, B13_NUM_VQS, s, b13_panic, &b13_iface)) {
		logrl(d, LOG_FRONTEND, "vhost-user: cannot initialise the "
		      "device");
		close(s);
		return false;
	}
	/* Our reader, not the library's blocking one (see reader_fill()). */
	vug_source_destroy(d->vug.src);
	d->vug.src = vug_source_new(&d->vug, s, G_IO_IN, vu_readable, d);
	d->vug.parent.read_msg = b13_read_msg;
	memset(&d->rd, 0, sizeof(d->rd));
	d->vu.connections++;
	d->live = true;
	d->mem_dirty = false;	/* no table yet */
	d->last_progress = g_get_monotonic_time();
	logrl(d, LOG_FRONTEND, "front end connected (connection %" PRIu64 ")",
	      d->vu.connections);
	return true;
}

void b13d_detach(struct b13d *d)
{
	if (d->teardown_idle)
		g_source_remove(d->teardown_idle);
	d->teardown_idle = 0;
	teardown(d);
}

void b13d_init(struct b13d *d)
{
	log_init();
	d->last_progress = g_get_monotonic_time();
	d->page_bits = DEFAULT_PAGE_BITS;
	d->features = B13_F_ALL;
	d->stall_ms = DEFAULT_STALL_MS;
	d->socket_mode = 0600;
	d->socket_gid = (gid_t)-1;
	d->listen_fd = -1;
	b13_map_init(&d->map, d->page_bits);
	g_queue_init(&d->pending);
	g_queue_init(&d->held);
	if (!b13_job_init(&d->job))
		g_error("out of memory");
	d->dw.efd = -1;
}

int b13d_listen(struct b13d *d, GError **err)
{
	b13_map_init(&d->map, d->page_bits);	/* options are final now */
	d->map.keep = d->no_discard;
	if (!d->inline_discards && !d->dw.thread && !worker_start(d)) {
		g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
			    "cannot start the discard thread");
		return -1;
	}
	d->listen_fd = unix_listen_path(d->socket_path, d->socket_mode,
					d->socket_gid, err);
	if (d->listen_fd < 0)
		return -1;
	arm_listen(d);
	return 0;
}

void b13d_shutdown(struct b13d *d)
{
	b13d_detach(d);
	worker_stop(d);
	if (d->listen_src)
		g_source_remove(d->listen_src);
	if (d->listen_pause_src)
		g_source_remove(d->listen_pause_src);
	d->listen_src = d->listen_pause_src = 0;
	if (d->listen_fd >= 0) {
		close(d->listen_fd);
		unlink(d->socket_path);
	}
	d->listen_fd = -1;
	g_queue_clear_full(&d->pending, g_free);
	b13_map_free(&d->map);
	g_free(d->last_disconnect);
	d->last_disconnect = NULL;
	b13_job_free(&d->job);
}
