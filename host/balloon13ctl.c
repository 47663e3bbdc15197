// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13ctl - control client for balloon13d.
 *
 * Sends one JSON request line over balloon13d's control socket and shows
 * the response, for people (default) or programs (--json: the daemon's
 * response object, one line).  "resize --wait" then polls "status" until
 * the device holds the target, or reports a stall or a timeout.
 *
 * Exit status: 0 done, 1 failure (daemon missing, error answer, stall,
 * timeout), 2 bad command line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "b13.h"
#include "version.h"

#define DEFAULT_CONTROL		"/run/balloon13d.ctl"
#define DEFAULT_WAIT_S		120.0
#define DEFAULT_STATS_S		5.0
#define POLL_INTERVAL_MS	100
/*
 * Longest answer line we take from the daemon (a "ranges" page is well
 * under 1 MiB), and the deepest nesting (answers nest 3 levels).
 */
#define MAX_ANSWER		(16 << 20)
#define MAX_ANSWER_DEPTH	16

static const char *ctl_path;
static bool json_out;
static int sock = -1;
static GString *inbuf;

#define usage_error(...) b13_usage_error("balloon13ctl", __VA_ARGS__)

static void G_GNUC_NORETURN G_GNUC_PRINTF(1, 2) die(const char *fmt, ...)
{
	va_list ap;

	fputs("balloon13ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage(void)
{
	printf(
"usage: balloon13ctl [-c PATH] [--json] COMMAND [ARGS]\n"
"Control balloon13d, the virtio memory balloon (device 13) reference device.\n"
"\n"
"commands:\n"
"  resize SIZE [--wait [--timeout S]]\n"
"                  ask the guest for a balloon of SIZE bytes (K, M, G, T\n"
"                  suffixes are powers of 1024).  --wait: return once the\n"
"                  device holds SIZE in ballooned blocks; exit 1 if it\n"
"                  stalls or S seconds pass [%g]\n"
"  stats [--timeout S]\n"
"                  ask the guest for fresh memory statistics [%g s] and show\n"
"                  every tag (\"-\": the guest did not report it)\n"
"  stats-interval MS\n"
"                  ask a driver with full-stats to send statistics every MS\n"
"                  milliseconds unasked (0 stops; the driver may round a\n"
"                  short interval up)\n"
"  status          show the device's state and counters\n"
"  progress        one line: target, received, discarded (cheap to poll;\n"
"                  status walks the whole balloon)\n"
"  ranges          list the ballooned guest-physical ranges\n"
"  inject KIND COUNT\n"
"                  make the device send COUNT hostile requests (needs\n"
"                  balloon13d --chaos): short, long, unknown, huge, overram\n"
"\n"
"options:\n"
"  -c, --control PATH  balloon13d's control socket\n"
"                  [default: $BALLOON13_CONTROL or " DEFAULT_CONTROL "]\n"
"  -j, --json      print the daemon's JSON response (one line)\n"
"  -V, --version   show the version\n"
"  -h, --help      show this help\n"
"\n"
"SIZE is the balloon's size (what the guest gives up), not what it keeps:\n"
"for a 4 GiB guest, \"resize 1G\" leaves it 3 GiB.  QEMU's \"balloon\"\n"
"command, for a native device, takes the memory the guest keeps instead.\n"
"\n"
"Exit status: 0 ok; 1 failed, stalled or timed out; 2 bad command line.\n",
		DEFAULT_WAIT_S, DEFAULT_STATS_S);
}

/* ---- talking to the daemon -------------------------------------------- */

static void connect_daemon(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(ctl_path) >= sizeof(sa.sun_path))
		die("control socket path too long: %s", ctl_path);
	strcpy(sa.sun_path, ctl_path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		die("socket: %s", strerror(errno));
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)))
		die("cannot reach balloon13d at %s: %s (is it running? "
		    "see --control)", ctl_path, strerror(errno));
	inbuf = g_string_new(NULL);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Send one request object, wait up to timeout_s for the response line.
 * Returns the parsed object (caller unrefs the parser via *pp).
 */
static JsonObject *request(JsonNode *req, double timeout_s, JsonParser **pp,
			   char **line_out)
{
	char *line = json_to_string(req, FALSE);
	double deadline = now_s() + timeout_s;
	GError *err = NULL;
	JsonParser *p;
	JsonNode *root;
	size_t off = 0, len;
	char *nl;

	json_node_unref(req);
	len = strlen(line);
	line = g_realloc(line, len + 2);
	line[len++] = '\n';
	line[len] = 0;
	while (off < len) {
		ssize_t n = send(sock, line + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("sending to balloon13d: %s", strerror(errno));
		off += n;
	}
	g_free(line);
	while (!(nl = memchr(inbuf->str, '\n', inbuf->len))) {
		struct pollfd pfd = { .fd = sock, .events = POLLIN };
		double left = deadline - now_s();
		char buf[65536];
		ssize_t n;

		if (left <= 0)
			die("no answer from balloon13d within %.1f s",
			    timeout_s);
		if (poll(&pfd, 1, (int)ceil(left * 1000)) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (!pfd.revents)
			continue;
		n = recv(sock, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("reading from balloon13d: %s", strerror(errno));
		if (n == 0)
			die("balloon13d closed the connection");
		g_string_append_len(inbuf, buf, n);
		if (inbuf->len > MAX_ANSWER)
			die("bad answer from balloon13d: longer than %d MiB",
			    MAX_ANSWER >> 20);
	}
	line = g_strndup(inbuf->str, nl - inbuf->str);
	g_string_erase(inbuf, 0, nl - inbuf->str + 1);
	if (b13_json_depth(line, strlen(line), MAX_ANSWER_DEPTH) >
	    MAX_ANSWER_DEPTH)
		die("bad answer from balloon13d: nested too deep");
	p = json_parser_new_immutable();
	if (!json_parser_load_from_data(p, line, -1, &err))
		die("bad answer from balloon13d: %s", err->message);
	root = json_parser_get_root(p);
	if (!root || !JSON_NODE_HOLDS_OBJECT(root))
		die("bad answer from balloon13d: not an object");
	*pp = p;
	if (line_out)
		*line_out = line;
	else
		g_free(line);
	return json_node_get_object(root);
}

static JsonNode *make_req(const char *cmd)
{
	JsonNode *n = json_node_new(JSON_NODE_OBJECT);
	JsonObject *o = json_object_new();

	json_object_set_string_member(o, "cmd", cmd);
	json_node_take_object(n, o);
	return n;
}

static JsonObject *req_obj(JsonNode *n)
{
	return json_node_get_object(n);
}

/*
 * Members of an answer, read only if they have the type we expect: a
 * daemon (or whatever listens on the path) cannot make us misread one.
 */
static JsonNode *member(JsonObject *o, const char *name, GType type)
{
	JsonNode *n = o ? json_object_get_member(o, name) : NULL;

	if (!n || !JSON_NODE_HOLDS_VALUE(n))
		return NULL;
	return json_node_get_value_type(n) == type ? n : NULL;
}

static uint64_t u64(JsonObject *o, const char *name)
{
	JsonNode *n = member(o, name, G_TYPE_INT64);
	double v;

	if (n)
		return json_node_get_int(n) < 0 ? 0 :
		       (uint64_t)json_node_get_int(n);
	n = member(o, name, G_TYPE_DOUBLE);	/* above 2^63 - 1 */
	v = n ? json_node_get_double(n) : 0;
	return v > 0 && v < 18446744073709551615.0 ? (uint64_t)v :
	       v > 0 ? UINT64_MAX : 0;
}

static bool flag(JsonObject *o, const char *name)
{
	JsonNode *n = member(o, name, G_TYPE_BOOLEAN);

	return n && json_node_get_boolean(n);
}

static const char *str(JsonObject *o, const char *name, const char *dflt)
{
	JsonNode *n = member(o, name, G_TYPE_STRING);

	return n ? json_node_get_string(n) : dflt;
}

static JsonObject *obj(JsonObject *o, const char *name)
{
	JsonNode *n = o ? json_object_get_member(o, name) : NULL;

	return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static JsonArray *arr(JsonObject *o, const char *name)
{
	JsonNode *n = o ? json_object_get_member(o, name) : NULL;

	return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

/* Print the answer raw (--json); exit 1 on {"ok": false}. */
static void check_answer(JsonObject *o, const char *line)
{
	if (json_out)
		puts(line);
	if (!flag(o, "ok"))
		die("%s", str(o, "error", "request failed"));
}

/* ---- formatting ---------------------------------------------------------- */

/* "64 MiB", "1.50 GiB", "512 B" */
static const char *fmt_bytes(uint64_t v, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					     "PiB", "EiB" };
	double x = (double)v;
	int u = 0;

	while (x >= 1024 && u < 6) {
		x /= 1024;
		u++;
	}
	if (u == 0 || x == floor(x))
		g_snprintf(buf, len, "%.0f %s", x, unit[u]);
	else
		g_snprintf(buf, len, "%.2f %s", x, unit[u]);
	return buf;
}

/* Print "name value" pairs of an object of counters, nonzero ones only. */
static void print_nonzero(const char *title, JsonObject *o)
{
	GList *names, *l;
	bool any = false;

	if (!o)
		return;
	names = json_object_get_members(o);
	for (l = names; l; l = l->next) {
		uint64_t v = u64(o, l->data);

		if (!v)
			continue;
		printf("%s%s %" PRIu64, any ? ", " : title, (char *)l->data, v);
		any = true;
	}
	g_list_free(names);
	if (!any)
		printf("%snone", title);
	putchar('\n');
}

/* How each tag's value reads: bytes, a count, or microseconds. */
enum unit { U_BYTES, U_COUNT, U_USEC };

static const struct {
	const char *name;
	enum unit unit;
} tags[] = {
	{ "swap_in", U_BYTES }, { "swap_out", U_BYTES },
	{ "majflt", U_COUNT }, { "minflt", U_COUNT },
	{ "memfree", U_BYTES }, { "memtot", U_BYTES },
	{ "avail", U_BYTES }, { "caches", U_BYTES },
	{ "htlb_pgalloc", U_COUNT }, { "htlb_pgfail", U_COUNT },
	{ "oom_kill", U_COUNT }, { "alloc_stall", U_COUNT },
	{ "async_scan", U_BYTES }, { "direct_scan", U_BYTES },
	{ "async_reclaim", U_BYTES }, { "direct_reclaim", U_BYTES },
	{ "psi_some_us", U_USEC }, { "psi_full_us", U_USEC },
};

/* Every tag, in tag order; the ones the guest left out as "-". */
static void print_stats(JsonObject *st)
{
	JsonObject *vals = obj(st, "values");
	size_t i;
	char b[32];

	printf("guest stats (age %.1f s):\n", u64(st, "age_ms") / 1000.0);
	for (i = 0; i < G_N_ELEMENTS(tags); i++) {
		const char *n = tags[i].name;
		uint64_t v = u64(vals, n);

		if (!vals || !json_object_has_member(vals, n))
			printf("  %-15s -\n", n);
		else if (tags[i].unit == U_BYTES)
			printf("  %-15s %s\n", n, fmt_bytes(v, b, sizeof(b)));
		else if (tags[i].unit == U_USEC)
			printf("  %-15s %.3f s\n", n, v / 1e6);
		else
			printf("  %-15s %" PRIu64 "\n", n, v);
	}
}

/* "a, b, c" from an array of strings; "none" if empty. */
static void print_names(JsonArray *a)
{
	guint i, n = a ? json_array_get_length(a) : 0;

	for (i = 0; i < n; i++) {
		JsonNode *e = json_array_get_element(a, i);

		printf("%s%s", i ? ", " : "",
		       JSON_NODE_HOLDS_VALUE(e) &&
		       json_node_get_value_type(e) == G_TYPE_STRING ?
		       json_node_get_string(e) : "?");
	}
	if (!n)
		printf("none");
}

static void print_status(JsonObject *s)
{
	uint64_t bs = u64(s, "block_size");
	JsonObject *msgs = obj(s, "messages"), *punch = obj(s, "punch");
	JsonArray *regions = arr(s, "regions");
	char b1[32], b2[32], b3[32];

	printf("connection:   %s%s (connections so far: %" PRIu64 ")\n",
	       flag(s, "connected") ? "connected" : "not connected",
	       flag(s, "driver_ready") ? ", driver ready" : "",
	       u64(s, "connections"));
	printf("device:       page_bits %" PRIu64 " (block %s), guest RAM %s"
	       " in %u region(s)\n", u64(s, "page_bits"),
	       fmt_bytes(bs, b1, sizeof(b1)),
	       fmt_bytes(u64(s, "guest_ram_bytes"), b2, sizeof(b2)),
	       regions ? json_array_get_length(regions) : 0);
	if (obj(s, "device_features")) {
		JsonObject *f = obj(s, "device_features");

		printf("features:     offered ");
		print_names(arr(f, "offered"));
		printf("; negotiated ");
		if (flag(f, "driver_acked"))
			print_names(arr(f, "negotiated"));
		else
			printf("(no driver yet)");
		printf("; balloon counted from %s\n",
		       str(f, "accounting", "?"));
	}
	printf("target:       %s (%s%s)\n",
	       fmt_bytes(u64(s, "target_bytes"), b1, sizeof(b1)),
	       flag(s, "target_delivered") ? "delivered" : "not delivered yet",
	       u64(s, "pending_requests") ?
	       ", requests pending" : "");
	printf("in balloon:   %s (%" PRIu64 " blocks); received %s, "
	       "withdrawn %" PRIu64 " blocks\n",
	       fmt_bytes(u64(s, "bytes_in_balloon"), b1, sizeof(b1)),
	       u64(s, "blocks_in_balloon"),
	       fmt_bytes(u64(s, "bytes_in_bitmap"), b2, sizeof(b2)),
	       u64(s, "blocks_withdrawn"));
	printf("state:        %s\n",
	       flag(s, "reached") ? "target reached" :
	       flag(s, "stalled") ? "STALLED (no new blocks)" : "in progress");
	printf("messages:     %" PRIu64 " page lists, %" PRIu64 " stats, %"
	       PRIu64 " rejected; %" PRIu64 " addresses, %" PRIu64
	       " duplicate, %" PRIu64 " re-ballooned\n",
	       u64(msgs, "pages"), u64(msgs, "stats"), u64(msgs, "rejected"),
	       u64(s, "blocks_received"), u64(s, "duplicate_blocks"),
	       u64(s, "reballooned_blocks"));
	if (u64(msgs, "withdraw") || u64(msgs, "report"))
		printf("withdraw:     %" PRIu64 " message(s), %" PRIu64
		       " blocks; report: %" PRIu64 " message(s), %s\n",
		       u64(msgs, "withdraw"), u64(obj(s, "withdraw"), "blocks"),
		       u64(msgs, "report"),
		       fmt_bytes(u64(obj(s, "report"), "bytes"), b3,
				 sizeof(b3)));
	print_nonzero("rejects:      ", obj(s, "rejects"));
	print_nonzero("guest errors: ", obj(s, "guest_errors"));
	printf("punched:      %s in %" PRIu64 " call(s), %" PRIu64 " error(s)\n",
	       fmt_bytes(u64(punch, "bytes"), b3, sizeof(b3)),
	       u64(punch, "calls"), u64(punch, "errors"));
	if (flag(s, "no_discard"))
		printf("discards:     off (--no-discard: guest RAM pinned); "
		       "%s kept\n",
		       fmt_bytes(u64(s, "kept_bytes"), b3, sizeof(b3)));
	if (flag(s, "chaos"))
		print_nonzero("injected:     ", obj(s, "injected"));
	print_nonzero("front end:    ", obj(s, "frontend"));
	print_nonzero("control:      ", obj(s, "control"));
	if (obj(s, "stats"))
		print_stats(obj(s, "stats"));
}

/* ---- commands -------------------------------------------------------------- */

static int do_status(void)
{
	JsonParser *p;
	char *line;
	JsonObject *o = request(make_req("status"), 10, &p, &line);

	check_answer(o, line);
	if (!json_out)
		print_status(o);
	g_free(line);
	g_object_unref(p);
	return 0;
}

static int do_progress(void)
{
	JsonParser *p;
	char *line, b1[32], b2[32], b3[32];
	JsonObject *o = request(make_req("progress"), 10, &p, &line);

	check_answer(o, line);
	if (!json_out)
		printf("target %s%s, received %s in %" PRIu64 " page list%s, "
		       "discarded %s, last progress %.1f s ago\n",
		       fmt_bytes(u64(o, "target_bytes"), b1, sizeof(b1)),
		       flag(o, "target_delivered") ? "" : " (not delivered)",
		       fmt_bytes(u64(o, "bytes_received"), b2, sizeof(b2)),
		       u64(o, "page_lists"),
		       u64(o, "page_lists") == 1 ? "" : "s",
		       fmt_bytes(u64(o, "punched_bytes"), b3, sizeof(b3)),
		       u64(o, "ms_since_progress") / 1000.0);
	g_free(line);
	g_object_unref(p);
	return 0;
}

static int do_resize(const char *arg, bool wait, double timeout)
{
	JsonNode *req = make_req("resize");
	double deadline = now_s() + timeout;
	const char *why;
	JsonParser *p;
	JsonObject *o;
	uint64_t size;
	char *line, b1[32], b2[32];

	if (b13_parse_size(arg, &size, &why))
		usage_error("bad SIZE '%s': %s", arg, why);
	json_object_set_int_member(req_obj(req), "bytes", (gint64)size);
	o = request(req, 10, &p, &line);
	if (!wait || !flag(o, "ok")) {
		check_answer(o, line);
		if (!json_out)
			printf("target %s%s\n", fmt_bytes(size, b1, sizeof(b1)),
			       flag(o, "delivered") ? "" :
			       " (queued until the guest posts a buffer)");
		g_free(line);
		g_object_unref(p);
		return 0;
	}
	g_free(line);
	g_object_unref(p);
	for (;;) {
		o = request(make_req("status"), 10, &p, &line);
		if (!flag(o, "ok"))
			check_answer(o, line);
		if (flag(o, "reached") || flag(o, "stalled") ||
		    now_s() >= deadline) {
			bool reached = flag(o, "reached");
			uint64_t in = u64(o, "bytes_in_balloon");

			if (json_out)
				puts(line);
			else if (reached)
				printf("balloon holds %s (target %s)\n",
				       fmt_bytes(in, b1, sizeof(b1)),
				       fmt_bytes(size, b2, sizeof(b2)));
			if (!reached) {
				fprintf(stderr, "balloon13ctl: %s: balloon "
					"holds %s of %s target, no new blocks "
					"for %.1f s\n",
					flag(o, "stalled") ? "stalled" :
					"timeout",
					fmt_bytes(in, b1, sizeof(b1)),
					fmt_bytes(size, b2, sizeof(b2)),
					u64(o, "ms_since_progress") / 1000.0);
			}
			g_free(line);
			g_object_unref(p);
			return reached ? 0 : 1;
		}
		g_free(line);
		g_object_unref(p);
		g_usleep(POLL_INTERVAL_MS * 1000);
	}
}

static int do_stats(double timeout)
{
	JsonNode *req = make_req("stats");
	JsonParser *p;
	char *line;
	JsonObject *o;

	json_object_set_int_member(req_obj(req), "timeout_ms",
				   (gint64)(timeout * 1000));
	o = request(req, timeout + 5, &p, &line);
	check_answer(o, line);
	if (!json_out && obj(o, "stats"))
		print_stats(obj(o, "stats"));
	g_free(line);
	g_object_unref(p);
	return 0;
}

/*
 * The daemon lists at most 8192 runs per answer; ask on from "next" until
 * the list is complete, and show (or print, with --json) all of it.
 */
static int do_ranges(void)
{
	JsonArray *all = json_array_new();
	uint64_t from = 0, bs = 0, blocks = 0, page_bits = 0;
	JsonParser *p;
	char *line, b[32];
	guint i;

	for (;;) {
		JsonNode *req = make_req("ranges");
		JsonObject *o;
		JsonArray *a;
		bool more;
		uint64_t next;

		if (from)
			json_object_set_int_member(req_obj(req), "from",
						   (gint64)from);
		o = request(req, 30, &p, &line);
		if (!flag(o, "ok")) {
			json_out = false;	/* no half listing */
			check_answer(o, line);
		}
		page_bits = u64(o, "page_bits");
		bs = u64(o, "block_size");
		blocks = u64(o, "blocks");
		a = arr(o, "ranges");
		for (i = 0; a && i < json_array_get_length(a); i++) {
			JsonNode *e = json_array_get_element(a, i);
			JsonObject *r = JSON_NODE_HOLDS_OBJECT(e) ?
					json_node_get_object(e) : NULL;
			JsonObject *c = json_object_new();

			json_object_set_int_member(c, "start",
						   (gint64)u64(r, "start"));
			json_object_set_int_member(c, "blocks",
						   (gint64)u64(r, "blocks"));
			json_array_add_object_element(all, c);
		}
		more = flag(o, "truncated");
		next = u64(o, "next");
		g_free(line);
		g_object_unref(p);
		if (!more)
			break;
		if (next <= from)
			die("bad answer from balloon13d: ranges do not go on");
		from = next;
	}
	if (json_out) {
		JsonObject *o = json_object_new();
		JsonNode *n = json_node_new(JSON_NODE_OBJECT);
		char *s;

		json_object_set_boolean_member(o, "ok", TRUE);
		json_object_set_int_member(o, "page_bits", (gint64)page_bits);
		json_object_set_int_member(o, "block_size", (gint64)bs);
		json_object_set_int_member(o, "blocks", (gint64)blocks);
		json_object_set_array_member(o, "ranges", all);
		json_object_set_boolean_member(o, "truncated", FALSE);
		json_object_set_null_member(o, "next");
		json_node_take_object(n, o);
		s = json_to_string(n, FALSE);
		puts(s);
		g_free(s);
		json_node_unref(n);
		return 0;
	}
	for (i = 0; i < json_array_get_length(all); i++) {
		JsonObject *r = json_array_get_object_element(all, i);
		uint64_t st = u64(r, "start"), n = u64(r, "blocks");

		printf("0x%012" PRIx64 "-0x%012" PRIx64 " %8" PRIu64
		       " block(s) %s\n", st, st + n * bs - 1, n,
		       fmt_bytes(n * bs, b, sizeof(b)));
	}
	printf("%u range(s), %" PRIu64 " block(s), %s\n",
	       json_array_get_length(all), blocks,
	       fmt_bytes(blocks * bs, b, sizeof(b)));
	json_array_unref(all);
	return 0;
}

static int do_inject(const char *kind, const char *count_s)
{
	JsonNode *req = make_req("inject");
	const char *why;
	uint64_t count;
	JsonParser *p;
	JsonObject *o;
	char *line;

	if (b13_parse_uint(count_s, 1, 1024, &count, &why))
		usage_error("bad COUNT '%s': %s (expected 1..1024)", count_s,
			    why);
	json_object_set_string_member(req_obj(req), "kind", kind);
	json_object_set_int_member(req_obj(req), "count", (gint64)count);
	o = request(req, 10, &p, &line);
	check_answer(o, line);
	if (!json_out)
		printf("queued %" PRIu64 " x %s (%" PRIu64 " sent now)\n",
		       count, kind, u64(o, "delivered"));
	g_free(line);
	g_object_unref(p);
	return 0;
}

static int do_stats_interval(const char *ms_s)
{
	JsonNode *req = make_req("stats-interval");
	const char *why;
	uint64_t ms;
	JsonParser *p;
	JsonObject *o;
	char *line;

	if (b13_parse_uint(ms_s, 0, 86400000, &ms, &why))
		usage_error("bad MS '%s': %s (expected 0..86400000)", ms_s,
			    why);
	json_object_set_int_member(req_obj(req), "ms", (gint64)ms);
	o = request(req, 10, &p, &line);
	check_answer(o, line);
	if (!json_out) {
		if (!ms)
			printf("stats pushed: off\n");
		else
			printf("stats pushed every %" PRIu64 " ms%s\n", ms,
			       flag(o, "queued") ? "" :
			       " (sent once a full-stats driver starts)");
	}
	g_free(line);
	g_object_unref(p);
	return 0;
}

static double parse_seconds(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (!*s || *end || errno || !(v > 0) || v > 86400)
		usage_error("bad --timeout '%s': expected seconds, > 0 and "
			    "<= 86400", s);
	return v;
}

enum { OPT_WAIT = 256, OPT_TIMEOUT };

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "version", no_argument, NULL, 'V' },
		{ "wait", no_argument, NULL, OPT_WAIT },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool wait = false;
	double timeout = 0;
	const char *cmd;
	int o, nargs;

	ctl_path = getenv("BALLOON13_CONTROL");
	if (!ctl_path || !*ctl_path)
		ctl_path = DEFAULT_CONTROL;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":c:jVh", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			if (!*optarg)
				usage_error("--control needs a non-empty path");
			ctl_path = optarg;
			break;
		case 'j':
			json_out = true;
			break;
		case OPT_WAIT:
			wait = true;
			break;
		case OPT_TIMEOUT:
			timeout = parse_seconds(optarg);
			break;
		case 'h':
			usage();
			return 0;
		case 'V':
			printf("balloon13ctl %s\n", B13_VERSION);
			return 0;
		case ':':
			usage_error("option '%s' needs a value",
				    argv[optind - 1]);
		default:
			/* "-5" as a SIZE lands here too. */
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		usage_error("missing command (resize, stats, stats-interval, "
			    "status, progress, ranges, inject)");
	cmd = argv[optind++];
	nargs = argc - optind;
	if (wait && strcmp(cmd, "resize"))
		usage_error("--wait only goes with resize");
	if (timeout && !wait && strcmp(cmd, "stats"))
		usage_error("--timeout only goes with resize --wait or stats");

#define NARGS(n, what)							\
	do {								\
		if (nargs != (n))					\
			usage_error("%s: expected %s", cmd, what);	\
	} while (0)

	if (!strcmp(cmd, "resize")) {
		NARGS(1, "one SIZE");
		/* Check SIZE before connecting: usage errors come first. */
		{
			const char *why;
			uint64_t v;

			if (b13_parse_size(argv[optind], &v, &why))
				usage_error("bad SIZE '%s': %s", argv[optind],
					    why);
		}
		connect_daemon();
		return do_resize(argv[optind], wait,
				 timeout ? timeout : DEFAULT_WAIT_S);
	}
	if (!strcmp(cmd, "stats")) {
		NARGS(0, "no arguments");
		connect_daemon();
		return do_stats(timeout ? timeout : DEFAULT_STATS_S);
	}
	if (!strcmp(cmd, "stats-interval")) {
		const char *why;
		uint64_t v;

		NARGS(1, "one MS");
		if (b13_parse_uint(argv[optind], 0, 86400000, &v, &why))
			usage_error("bad MS '%s': %s (expected 0..86400000)",
				    argv[optind], why);
		connect_daemon();
		return do_stats_interval(argv[optind]);
	}
	if (!strcmp(cmd, "status")) {
		NARGS(0, "no arguments");
		connect_daemon();
		return do_status();
	}
	if (!strcmp(cmd, "progress")) {
		NARGS(0, "no arguments");
		connect_daemon();
		return do_progress();
	}
	if (!strcmp(cmd, "ranges")) {
		NARGS(0, "no arguments");
		connect_daemon();
		return do_ranges();
	}
	if (!strcmp(cmd, "inject")) {
		const char *why;
		uint64_t v;

		NARGS(2, "KIND COUNT");
		if (!g_strv_contains((const char *const[]){ "short", "long",
				"unknown", "huge", "overram", NULL },
				argv[optind]))
			usage_error("bad KIND '%s': one of short, long, "
				    "unknown, huge, overram", argv[optind]);
		if (b13_parse_uint(argv[optind + 1], 1, 1024, &v, &why))
			usage_error("bad COUNT '%s': %s (expected 1..1024)",
				    argv[optind + 1], why);
		connect_daemon();
		return do_inject(argv[optind], argv[optind + 1]);
	}
	usage_error("unknown command '%s'", cmd);
}
