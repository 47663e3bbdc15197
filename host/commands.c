// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13d control commands: what "status", "progress", "resize",
 * "stats", "ranges" and "inject" do (Documentation/control-protocol.rst).
 * control.c has already checked every field of the request.
 *
 * No command's cost depends on what a guest or a client chooses:
 * - "status" walks the balloon with mincore() a slice (2 ms) at a time
 *   from an idle source, so vhost-user and other clients are served between the
 *   slices; all the "status" requests that arrive during one walk are
 *   answered by the next, and a walk starts no sooner than three times
 *   its predecessor's work after it ended, so that walking never takes
 *   more than a quarter of the daemon's time however often it is asked;
 * - "stats" answers from a fixed table of eighteen tags;
 * - with WITHDRAW negotiated, "status" counts from the bitmap alone: no
 *   walk, no residency scan;
 * - "ranges" lists at most RANGES_MAX runs per answer ("next" goes on);
 * - "inject" and the request queue stop at MAX_PENDING requests.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <string.h>

#include "commands.h"

/*
 * One slice of a status walk: at most this long and this many mincore()
 * calls (each covers up to 256 MiB of 4 KiB pages).
 */
#define SCAN_SLICE_US		2000
#define SCAN_CALLS		64
/* A walk waits this many times the previous walk's work after it. */
#define SCAN_GAP_FACTOR		3
/* Runs in one "ranges" answer (about 40 bytes of JSON each). */
#define RANGES_MAX		8192

/* A "stats" command waiting for the guest's stats message. */
struct stats_waiter {
	struct b13d *d;
	struct ctl_conn *conn;
	uint64_t after_seq;	/* answer with stats numbered above this */
	guint timer;
};

/* ---- JSON answers -------------------------------------------------------- */

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
	JsonBuilder *b = json_builder_new_immutable();

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

/* The latest guest stats: at most B13_BASE_TAGS members, whatever it sent. */
static void add_stats(JsonBuilder *b, struct b13d *d)
{
	int t;

	json_builder_set_member_name(b, "stats");
	if (!d->stats_seq) {
		json_builder_add_null_value(b);
		return;
	}
	json_builder_begin_object(b);
	add_u64(b, "age_ms", (g_get_monotonic_time() - d->stats_time) / 1000);
	add_u64(b, "seq", d->stats_seq);
	json_builder_set_member_name(b, "values");
	json_builder_begin_object(b);
	for (t = 0; t < VIRTIO_BALLOON13_TAG_NR; t++)
		if (d->stats.present & 1u << t)
			add_u64(b, b13_tag_names[t], d->stats.value[t]);
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

static void begin_obj(JsonBuilder *b, const char *name)
{
	json_builder_set_member_name(b, name);
	json_builder_begin_object(b);
}

/* Feature bits as an array of names. */
static void add_feature_names(JsonBuilder *b, const char *name, uint64_t f)
{
	unsigned int i;

	json_builder_set_member_name(b, name);
	json_builder_begin_array(b);
	for (i = 0; i < 4; i++)
		if (f & 1ull << i)
			json_builder_add_string_value(b, b13_feature_names[i]);
	json_builder_end_array(b);
}

static void add_features(JsonBuilder *b, struct b13d *d)
{
	begin_obj(b, "device_features");
	add_feature_names(b, "offered", d->features);
	add_feature_names(b, "negotiated", b13d_features(d));
	add_bool(b, "driver_acked", d->live && d->c.features_acked);
	add_str(b, "accounting", b13d_features(d) & B13_F_WITHDRAW ||
		d->no_discard ? "messages" : "residency");
	add_u64(b, "stats_interval_ms", d->stats_interval_ms);
	json_builder_end_object(b);
}

static void add_control(JsonBuilder *b, struct b13d *d)
{
	const struct ctl_counters *k = ctl_server_counters(d->ctl);

	begin_obj(b, "control");
	add_u64(b, "open", k->open);
	add_u64(b, "accepted", k->accepted);
	add_u64(b, "denied", k->denied);
	add_u64(b, "refused", k->refused);
	add_u64(b, "evicted", k->evicted);
	add_u64(b, "evicted_busy", k->evicted_busy);
	add_u64(b, "dropped_idle", k->dropped_idle);
	add_u64(b, "dropped_output", k->dropped_output);
	add_u64(b, "dropped_line", k->dropped_line);
	add_u64(b, "accept_pauses", k->accept_pauses);
	add_u64(b, "status_walks", d->scan.walks);
	json_builder_end_object(b);
	begin_obj(b, "loop");
	add_u64(b, "iterations", d->loopstat.iterations);
	add_u64(b, "max_cpu_us", d->loopstat.max_cpu_us);
	add_u64(b, "max_wall_us", d->loopstat.max_wall_us);
	json_builder_end_object(b);
	begin_obj(b, "frontend");
	add_u64(b, "denied", d->vu.denied);
	add_u64(b, "violations", d->vu.violations);
	add_u64(b, "accept_pauses", d->vu.accept_pauses);
	json_builder_end_object(b);
}

/* One "status" answer, with the counts of a finished walk. */
static void answer_status(struct b13d *d, struct ctl_conn *c, uint64_t in,
			  uint64_t withdrawn)
{
	JsonBuilder *b = reply_begin();
	uint64_t bs = d->map.block_size, set;
	gint64 idle_ms;
	bool reached, stalled;
	int i;

	set = b13_map_blocks_set(&d->map);
	reached = in * bs >= d->target;
	idle_ms = ms_since_progress(d);
	stalled = !reached && idle_ms >= d->stall_ms;

	add_progress(b, d, set, idle_ms);
	add_u64(b, "connections", d->vu.connections);
	add_str(b, "last_disconnect", d->last_disconnect);
	add_u64(b, "features", d->c.features);
	add_features(b, d);
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

	begin_obj(b, "messages");
	add_u64(b, "pages", d->c.msgs_pages);
	add_u64(b, "stats", d->c.msgs_stats);
	add_u64(b, "input_max_batch", d->c.input_max_batch);
	add_u64(b, "withdraw", d->c.msgs_withdraw);
	add_u64(b, "report", d->c.msgs_report);
	add_u64(b, "rejected", d->c.msgs_rejected);
	add_u64(b, "yields", d->c.output_yields);
	add_u64(b, "discard_batches", d->c.discard_batches);
	json_builder_end_object(b);
	begin_obj(b, "rejects");
	for (i = 1; i < B13_REJ_NR; i++)
		add_u64(b, b13_reject_names[i], d->c.rejects[i]);
	json_builder_end_object(b);
	begin_obj(b, "guest_errors");
	add_u64(b, "input_buffer_too_small", d->c.input_too_small);
	add_u64(b, "reserved_nonzero", d->c.reserved_nonzero);
	add_u64(b, "stats_unknown_tag", d->c.stats_unknown_tag);
	add_u64(b, "stats_repeated_tag", d->c.stats_repeated_tag);
	add_u64(b, "withdraw_invalid", d->c.apply.withdraw_invalid);
	add_u64(b, "withdraw_not_in_balloon", d->c.apply.withdraw_absent);
	add_u64(b, "withdraw_bad_length", d->c.withdraw_bad_length);
	add_u64(b, "report_ballooned",
		b13d_features(d) & B13_F_WITHDRAW ?
		d->c.apply.report_ballooned : 0);
	json_builder_end_object(b);
	begin_obj(b, "withdraw");
	add_u64(b, "blocks", d->c.apply.withdrawn);
	json_builder_end_object(b);
	begin_obj(b, "report");
	add_u64(b, "ranges", d->c.apply.report_ranges);
	add_u64(b, "bytes", d->c.apply.reported_bytes);
	add_u64(b, "ballooned_blocks_freed",
		b13d_features(d) & B13_F_WITHDRAW ?
		0 : d->c.apply.report_ballooned);
	json_builder_end_object(b);
	begin_obj(b, "requests_sent");
	add_u64(b, "resize", d->c.requests_sent[REQ_RESIZE]);
	add_u64(b, "stats", d->c.requests_sent[REQ_STATS]);
	add_u64(b, "stats_interval", d->c.requests_sent[REQ_STATS_INTERVAL]);
	json_builder_end_object(b);
	begin_obj(b, "punch");
	add_u64(b, "calls", d->c.apply.punch_calls);
	add_u64(b, "bytes", d->c.apply.punch_bytes);
	add_u64(b, "errors", d->c.apply.punch_errors);
	add_u64(b, "max_us", d->c.apply.punch_max_us);
	json_builder_end_object(b);
	add_bool(b, "no_discard", d->no_discard);
	add_u64(b, "kept_bytes", d->c.apply.kept_bytes);
	add_u64(b, "hold_ms", d->hold_ms);
	add_u64(b, "held_buffers", g_queue_get_length(&d->held));
	add_bool(b, "chaos", d->chaos);
	begin_obj(b, "injected");
	for (i = 0; i < CTL_NR_INJ; i++)
		add_u64(b, ctl_inject_names[i], d->c.injected[i]);
	json_builder_end_object(b);
	add_u64(b, "config_reads", d->c.config_reads);
	add_u64(b, "config_writes_ignored", d->c.config_writes);
	add_u64(b, "device_stops", d->c.device_stops);
	add_u64(b, "driver_resets", d->c.resets);
	begin_obj(b, "busy");
	add_u64(b, "max_wall_us", d->c.busy_wall_us);
	add_str(b, "max_wall_in", d->c.busy_wall_where);
	add_u64(b, "max_cpu_us", d->c.busy_cpu_us);
	add_str(b, "max_cpu_in", d->c.busy_cpu_where);
	json_builder_end_object(b);
	add_bool(b, "ring_features", d->ring_features);
	add_control(b, d);
	add_stats(b, d);
	reply_end(c, b);
}

/* ---- status: the balloon walked a slice at a time ------------------------- */

static gboolean scan_slice(gpointer p);
static void scan_kick(struct b13d *d);

static void scan_finish(struct b13d *d)
{
	struct status_scan *sc = &d->scan;
	GList *w = sc->waiting;

	sc->waiting = NULL;
	sc->active = false;
	sc->walks++;
	sc->not_before = g_get_monotonic_time() +
			 SCAN_GAP_FACTOR * sc->work_us;
	b13_scan_end(&sc->s);
	for (GList *l = w; l; l = l->next)
		answer_status(d, l->data, sc->s.in, sc->s.withdrawn);
	g_list_free(w);
	scan_kick(d);
}

/* One slice; true when the walk is over (and answered). */
static bool scan_run(struct b13d *d)
{
	struct status_scan *sc = &d->scan;
	gint64 t = g_get_monotonic_time();
	struct b13_budget b;
	bool done;

	sync_regions(d);	/* a new table restarts the walk */
	b13_budget_init(&b, SCAN_CALLS, SCAN_SLICE_US);
	done = b13_scan_step(&d->map, &sc->s, &b);
	sc->work_us += g_get_monotonic_time() - t;
	if (done)
		scan_finish(d);
	return done;
}

static gboolean scan_slice(gpointer p)
{
	struct b13d *d = p;
	guint me = d->scan.src;
	struct busy_mark t;
	bool done;

	d->scan.src = 0;
	b13d_busy_begin(&t);
	done = scan_run(d);
	b13d_busy_end(d, &t, "status walk");
	if (done)	/* scan_finish() may have armed the next walk */
		return G_SOURCE_REMOVE;
	d->scan.src = me;
	return G_SOURCE_CONTINUE;
}

static void scan_start(struct b13d *d)
{
	struct status_scan *sc = &d->scan;

	sc->waiting = sc->queued;
	sc->queued = NULL;
	sc->active = true;
	sc->work_us = 0;
	sync_regions(d);
	b13_scan_begin(&d->map, &sc->s);
	/* Small balloons finish in the first slice, right away. */
	if (!scan_run(d))
		sc->src = g_idle_add(scan_slice, d);
}

static gboolean scan_timer(gpointer p)
{
	struct b13d *d = p;

	d->scan.src = 0;
	scan_start(d);
	return G_SOURCE_REMOVE;
}

/* Start the next walk if someone waits for it and its time has come. */
static void scan_kick(struct b13d *d)
{
	struct status_scan *sc = &d->scan;
	gint64 now = g_get_monotonic_time();

	if (sc->active || !sc->queued || sc->src)	/* src: the timer */
		return;
	if (now >= sc->not_before)
		scan_start(d);
	else
		sc->src = g_timeout_add((sc->not_before - now + 999) / 1000,
					scan_timer, d);
}

static void cmd_status(struct b13d *d, struct ctl_conn *c)
{
	/* With WITHDRAW the messages say it all: nothing to walk. */
	if (b13d_features(d) & B13_F_WITHDRAW) {
		sync_regions(d);
		answer_status(d, c, b13_map_blocks_set(&d->map), 0);
		return;
	}
	d->scan.queued = g_list_append(d->scan.queued, c);
	scan_kick(d);
}

/* ---- resize, stats, ranges, inject ----------------------------------------- */

static void cmd_resize(struct b13d *d, struct ctl_conn *c,
		       const struct ctl_req *req)
{
	JsonBuilder *b;

	d->target = req->bytes;
	d->target_set = true;
	d->target_delivered = false;
	d->last_progress = g_get_monotonic_time();
	queue_req(d, REQ_RESIZE, req->bytes);
	flush_requests(d);
	logrl(d, LOG_TARGET, "target %" PRIu64 " bytes (%" PRIu64
	      " blocks)%s", req->bytes, req->bytes >> d->page_bits,
	      d->target_delivered ? "" :
	      ", queued until the guest posts a buffer");
	b = reply_begin();
	add_u64(b, "target_bytes", req->bytes);
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

void commands_stop(struct b13d *d, const char *why)
{
	struct status_scan *sc = &d->scan;
	GList *l;

	fail_waiters(d, why);
	if (sc->src)
		g_source_remove(sc->src);
	sc->src = 0;
	b13_scan_end(&sc->s);
	sc->active = false;
	for (l = sc->waiting; l; l = l->next)
		ctl_reply_error(l->data, "%s", why);
	for (l = sc->queued; l; l = l->next)
		ctl_reply_error(l->data, "%s", why);
	g_list_free(sc->waiting);
	g_list_free(sc->queued);
	sc->waiting = sc->queued = NULL;
}

static void cmd_stats(struct b13d *d, struct ctl_conn *c,
		      const struct ctl_req *req)
{
	struct stats_waiter *w;

	if (!d->live) {
		ctl_reply_error(c, "no guest connected");
		return;
	}
	w = g_new0(struct stats_waiter, 1);
	w->d = d;
	w->conn = c;
	w->after_seq = d->stats_seq;
	w->timer = g_timeout_add(req->timeout_ms, waiter_timeout, w);
	d->waiters = g_list_append(d->waiters, w);
	queue_req(d, REQ_STATS, 0);
	flush_requests(d);
}

static void cmd_stats_interval(struct b13d *d, struct ctl_conn *c,
			       const struct ctl_req *req)
{
	uint64_t f = b13d_features(d);
	bool acked = d->live && d->c.features_acked;
	JsonBuilder *b;

	if (acked && !(f & B13_F_FULL_STATS)) {
		ctl_reply_error(c, "the driver did not negotiate full-stats: "
				"it sends stats only when asked");
		return;
	}
	d->stats_interval_ms = req->ms;
	if (acked && d->running) {
		queue_req(d, REQ_STATS_INTERVAL, req->ms);
		flush_requests(d);
	}
	logrl(d, LOG_TARGET, "stats interval %" PRIu64 " ms%s", req->ms,
	      acked && d->running ? "" : ", sent once a full-stats driver "
	      "starts");
	b = reply_begin();
	add_u64(b, "interval_ms", req->ms);
	add_bool(b, "connected", d->live);
	add_bool(b, "queued", acked && d->running);
	reply_end(c, b);
}

static void add_range(uint64_t addr, uint64_t nblocks, void *data)
{
	JsonBuilder *b = data;

	json_builder_begin_object(b);
	add_u64(b, "start", addr);
	add_u64(b, "blocks", nblocks);
	json_builder_end_object(b);
}

static void cmd_ranges(struct b13d *d, struct ctl_conn *c,
		       const struct ctl_req *req)
{
	JsonBuilder *b = reply_begin();
	uint64_t next = 0;
	bool more;

	sync_regions(d);
	add_u64(b, "page_bits", d->page_bits);
	add_u64(b, "block_size", d->map.block_size);
	add_u64(b, "blocks", b13_map_blocks_set(&d->map));
	json_builder_set_member_name(b, "ranges");
	json_builder_begin_array(b);
	more = b13_ranges(&d->map, req->from, RANGES_MAX, add_range, b, &next);
	json_builder_end_array(b);
	add_bool(b, "truncated", more);
	json_builder_set_member_name(b, "next");
	if (more)
		json_builder_add_int_value(b, (gint64)next);
	else
		json_builder_add_null_value(b);
	reply_end(c, b);
}

static void cmd_inject(struct b13d *d, struct ctl_conn *c,
		       const struct ctl_req *req)
{
	unsigned int k = req->kind;
	uint64_t before;
	JsonBuilder *b;

	if (!d->chaos) {
		ctl_reply_error(c, "inject is disabled: start balloon13d "
				"with --chaos");
		return;
	}
	if (g_queue_get_length(&d->pending) + req->count > MAX_PENDING) {
		ctl_reply_error(c, "request queue full (%u waiting for guest "
				"buffers, at most %d)",
				g_queue_get_length(&d->pending), MAX_PENDING);
		return;
	}
	before = d->c.injected[k];
	for (uint64_t i = 0; i < req->count; i++) {
		struct pending_req *p = g_new(struct pending_req, 1);

		p->kind = REQ_INJ_FIRST + k;
		p->value = 0;
		g_queue_push_tail(&d->pending, p);
	}
	flush_requests(d);
	logrl(d, LOG_INJECT, "inject: %" PRIu64 " x %s queued", req->count,
	      ctl_inject_names[k]);
	b = reply_begin();
	add_str(b, "kind", ctl_inject_names[k]);
	add_u64(b, "queued", req->count);
	add_u64(b, "delivered", d->c.injected[k] - before);
	reply_end(c, b);
}

/* The control server closed c while its request was with us. */
static void cancel_request(struct ctl_conn *c, void *data)
{
	struct b13d *d = data;
	struct status_scan *sc = &d->scan;
	GList *l;

	for (l = d->waiters; l; l = l->next) {
		struct stats_waiter *w = l->data;

		if (w->conn != c)
			continue;
		d->waiters = g_list_delete_link(d->waiters, l);
		g_source_remove(w->timer);
		g_free(w);
		ctl_reply_error(c, "connection closed");
		return;
	}
	if (g_list_find(sc->waiting, c)) {
		sc->waiting = g_list_remove(sc->waiting, c);
		ctl_reply_error(c, "connection closed");
	} else if (g_list_find(sc->queued, c)) {
		sc->queued = g_list_remove(sc->queued, c);
		ctl_reply_error(c, "connection closed");
	}
}

void commands_init(struct b13d *d)
{
	d->hooks.stats_arrived = wake_waiters;
	d->hooks.disconnected = fail_waiters;
	d->ctl_opts.cancel = cancel_request;
}

void on_control(struct ctl_conn *c, const struct ctl_req *req, void *data)
{
	struct b13d *d = data;

	switch (req->cmd) {
	case CTL_STATUS:
		cmd_status(d, c);
		break;
	case CTL_PROGRESS:
		cmd_progress(d, c);
		break;
	case CTL_RESIZE:
		cmd_resize(d, c, req);
		break;
	case CTL_STATS:
		cmd_stats(d, c, req);
		break;
	case CTL_RANGES:
		cmd_ranges(d, c, req);
		break;
	case CTL_INJECT:
		cmd_inject(d, c, req);
		break;
	case CTL_STATS_INTERVAL:
		cmd_stats_interval(d, c, req);
		break;
	default:
		ctl_reply_error(c, "unknown command");
		break;
	}
}
