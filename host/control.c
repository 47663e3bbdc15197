// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13d control socket transport: JSON lines over a unix socket, and
 * the parser that turns a line into a struct ctl_req.
 *
 * Each connection has an input buffer (requests, split at '\n') and an
 * output buffer (responses).  A connection is "busy" from handing a request
 * to the handler until ctl_reply(); meanwhile it reads nothing, so further
 * requests wait in the kernel's socket buffer (the client feels the back
 * pressure) and responses come back in request order.  Nor does it read
 * while unsent answers pile up past CTL_OUT_SOFT: a client that does not
 * read its answers stops being served, and is dropped once it has made no
 * progress for the idle timeout.  A quiet connection may stay open much
 * longer (CTL_QUIET_MS), and gives up its slot to a new client when all
 * are taken.  A connection is reference counted: the
 * peer may go away while a reply is pending, and the late ctl_reply() then
 * just drops it.
 *
 * Bounds, per connection: CTL_MAX_LINE + one read of input, CTL_OUT_SOFT
 * plus one answer of output (CTL_OUT_MAX at the very most), and the idle
 * time; per server, max_conns connections.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "b13.h"
#include "control.h"

/* Stop taking requests while this much output waits for the client. */
#define CTL_OUT_SOFT	(64 * 1024)
/* A connection whose unsent output would exceed this is dropped. */
#define CTL_OUT_MAX	(4 * 1024 * 1024)
/*
 * A quiet connection (nothing pending either way) may stay this long, or
 * idle_ms if that is longer; and the one quiet longest makes room for a
 * new client when all slots are taken.  Holding a connection open between
 * requests is normal (benchmarks do); holding a partial request or unread
 * answers is what idle_ms is for.
 */
#define CTL_QUIET_MS	(10 * 60 * 1000)
/* Bytes read per wakeup of one connection. */
#define CTL_READ_CHUNK	4096
/* Accepting pauses this long after EMFILE & co., doubling up to the max. */
#define ACCEPT_PAUSE_MS		50
#define ACCEPT_PAUSE_MAX_MS	1000

const char *const ctl_cmd_names[CTL_NR_CMDS] = {
	[CTL_STATUS] = "status",
	[CTL_PROGRESS] = "progress",
	[CTL_RESIZE] = "resize",
	[CTL_STATS] = "stats",
	[CTL_RANGES] = "ranges",
	[CTL_INJECT] = "inject",
	[CTL_STATS_INTERVAL] = "stats-interval",
};

const char *const ctl_inject_names[CTL_NR_INJ] = {
	[CTL_INJ_SHORT] = "short",
	[CTL_INJ_LONG] = "long",
	[CTL_INJ_UNKNOWN] = "unknown",
	[CTL_INJ_HUGE] = "huge",
	[CTL_INJ_OVERRAM] = "overram",
};

/* ---- parsing a request ------------------------------------------------- */

enum field_type { F_UINT, F_KIND };

/* A member a command takes. */
struct field {
	const char *name;
	enum field_type type;
	bool required;
	uint64_t min, max, dflt;
	size_t off;		/* of its uint64_t (or enum) in struct ctl_req */
};

#define UINT_FIELD(n, req, lo, hi, d, member)				\
	{ n, F_UINT, req, lo, hi, d, offsetof(struct ctl_req, member) }

static const struct field resize_fields[] = {
	UINT_FIELD("bytes", true, 0, INT64_MAX, 0, bytes),
};
static const struct field stats_fields[] = {
	UINT_FIELD("timeout_ms", false, 1, CTL_STATS_TIMEOUT_MAX,
		   CTL_STATS_TIMEOUT_MS, timeout_ms),
};
static const struct field ranges_fields[] = {
	UINT_FIELD("from", false, 0, INT64_MAX, 0, from),
};
static const struct field inject_fields[] = {
	{ "kind", F_KIND, true, 0, 0, 0, offsetof(struct ctl_req, kind) },
	UINT_FIELD("count", false, 1, CTL_INJECT_MAX, 1, count),
};

static const struct field interval_fields[] = {
	UINT_FIELD("ms", true, 0, CTL_STATS_INTERVAL_MAX, 0, ms),
};

static const struct {
	const struct field *f;
	size_t n;
} cmd_fields[CTL_NR_CMDS] = {
	[CTL_RESIZE] = { resize_fields, G_N_ELEMENTS(resize_fields) },
	[CTL_STATS] = { stats_fields, G_N_ELEMENTS(stats_fields) },
	[CTL_RANGES] = { ranges_fields, G_N_ELEMENTS(ranges_fields) },
	[CTL_INJECT] = { inject_fields, G_N_ELEMENTS(inject_fields) },
	[CTL_STATS_INTERVAL] = { interval_fields,
				 G_N_ELEMENTS(interval_fields) },
};

/*
 * Client text (a member name, json-glib's message about the line) made fit
 * for a one-line answer: valid UTF-8, no control characters, at most max
 * characters.
 */
static char *printable(const char *s, glong max)
{
	char *v = g_utf8_make_valid(s, -1);
	char *out = g_utf8_substring(v, 0, MIN(g_utf8_strlen(v, -1), max));
	char *c;

	for (c = out; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	g_free(v);
	return out;
}

/* Set field f of req from node n (the member's value), or say why not. */
static int set_field(const struct field *f, JsonNode *n, struct ctl_req *req,
		     char **err)
{
	uint64_t *dst = (uint64_t *)((char *)req + f->off);
	const char *s;
	gint64 v;
	int k;

	if (f->type == F_KIND) {
		if (!JSON_NODE_HOLDS_VALUE(n) ||
		    json_node_get_value_type(n) != G_TYPE_STRING)
			goto bad_kind;
		s = json_node_get_string(n);
		for (k = 0; k < CTL_NR_INJ; k++)
			if (s && !strcmp(s, ctl_inject_names[k])) {
				req->kind = k;
				return 0;
			}
bad_kind:
		*err = g_strdup("\"kind\" must be one of short, long, unknown, "
				"huge, overram");
		return -1;
	}
	if (!JSON_NODE_HOLDS_VALUE(n) ||
	    json_node_get_value_type(n) != G_TYPE_INT64) {
		*err = g_strdup_printf("\"%s\" must be an integer", f->name);
		return -1;
	}
	v = json_node_get_int(n);
	if (v < 0 || (uint64_t)v < f->min || (uint64_t)v > f->max) {
		*err = g_strdup_printf("\"%s\" out of range (%" G_GUINT64_FORMAT
				       "..%" G_GUINT64_FORMAT ")", f->name,
				       f->min, f->max);
		return -1;
	}
	*dst = (uint64_t)v;
	return 0;
}

static int parse_object(JsonObject *o, struct ctl_req *req, char **err)
{
	JsonNode *cmd = json_object_get_member(o, "cmd");
	const struct field *f;
	GList *names, *l;
	const char *s;
	size_t n, i;
	int c, ret = 0;

	if (!cmd || !JSON_NODE_HOLDS_VALUE(cmd) ||
	    json_node_get_value_type(cmd) != G_TYPE_STRING) {
		*err = g_strdup("missing \"cmd\" (a string)");
		return -1;
	}
	s = json_node_get_string(cmd);
	for (c = 0; c < CTL_NR_CMDS; c++)
		if (!strcmp(s, ctl_cmd_names[c]))
			break;
	if (c == CTL_NR_CMDS) {
		char *p = printable(s, 40);

		*err = g_strdup_printf("unknown command \"%s\"", p);
		g_free(p);
		return -1;
	}
	req->cmd = c;
	f = cmd_fields[c].f;
	n = cmd_fields[c].n;
	for (i = 0; i < n; i++)
		if (f[i].type == F_UINT)
			*(uint64_t *)((char *)req + f[i].off) = f[i].dflt;

	/* Every member must be one the command takes, of the right type. */
	names = json_object_get_members(o);
	for (l = names; l && !ret; l = l->next) {
		const char *name = l->data;

		if (!strcmp(name, "cmd"))
			continue;
		for (i = 0; i < n; i++)
			if (!strcmp(name, f[i].name))
				break;
		if (i == n) {
			char *p = printable(name, 40);

			*err = g_strdup_printf("unknown member \"%s\" for "
					       "\"%s\"", p, s);
			g_free(p);
			ret = -1;
		} else {
			ret = set_field(&f[i], json_object_get_member(o, name),
					req, err);
		}
	}
	g_list_free(names);
	for (i = 0; i < n && !ret; i++)
		if (f[i].required && !json_object_has_member(o, f[i].name)) {
			*err = g_strdup_printf("missing \"%s\"", f[i].name);
			ret = -1;
		}
	return ret;
}

int ctl_parse_request(const char *line, size_t len, struct ctl_req *req,
		      char **err)
{
	GError *gerr = NULL;
	JsonParser *p;
	JsonNode *root;
	int ret;

	memset(req, 0, sizeof(*req));
	*err = NULL;
	if (len > CTL_MAX_LINE) {
		*err = g_strdup("request longer than 64 KiB");
		return -1;
	}
	if (memchr(line, 0, len) || !g_utf8_validate(line, len, NULL)) {
		*err = g_strdup("bad JSON: not UTF-8 text");
		return -1;
	}
	if (b13_json_depth(line, len, CTL_MAX_DEPTH) > CTL_MAX_DEPTH) {
		*err = g_strdup_printf("bad JSON: nested deeper than %d levels",
				       CTL_MAX_DEPTH);
		return -1;
	}
	p = json_parser_new_immutable();
	if (!json_parser_load_from_data(p, line, len, &gerr)) {
		char *msg = printable(gerr->message, 200);

		*err = g_strdup_printf("bad JSON: %s", msg);
		g_free(msg);
		g_error_free(gerr);
		ret = -1;
	} else if (!(root = json_parser_get_root(p)) ||
		   !JSON_NODE_HOLDS_OBJECT(root)) {
		*err = g_strdup("request must be a JSON object");
		ret = -1;
	} else {
		ret = parse_object(json_node_get_object(root), req, err);
	}
	g_object_unref(p);
	return ret;
}

/* ---- sockets ------------------------------------------------------------- */

struct ctl_server {
	int fd;
	guint src;		/* accepting; 0 while paused */
	guint pause_src;	/* resumes accepting */
	guint sweep_src;	/* idle check, while there are connections */
	unsigned int pause_ms;
	char *path;
	ctl_handler fn;
	void *data;
	struct ctl_opts o;
	GList *conns;		/* live struct ctl_conn, one ref each */
	struct ctl_counters cnt;
};

/* One GSource per connection, its poll events changed as needed. */
struct conn_source {
	GSource base;
	struct ctl_conn *c;
	gpointer tag;
};

struct ctl_conn {
	int refs;
	int fd;			/* -1 once closed */
	struct conn_source *src;
	GIOCondition events;	/* what src polls for */
	GString *in, *out;
	bool busy;		/* a request is with the handler */
	bool in_lines;		/* inside process_lines() */
	bool eof;		/* peer finished sending */
	gint64 last_active;	/* us: last request taken or output sent */
	gint64 opened;		/* us */
	uid_t uid;		/* of the peer */
	struct ctl_server *srv;
};

static void conn_close(struct ctl_conn *c);
static void process_lines(struct ctl_conn *c);
static void conn_update(struct ctl_conn *c);

static void conn_unref(struct ctl_conn *c)
{
	if (--c->refs)
		return;
	g_string_free(c->in, TRUE);
	g_string_free(c->out, TRUE);
	g_free(c);
}

static void srv_event(struct ctl_server *s, enum ctl_event ev,
		      const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void srv_event(struct ctl_server *s, enum ctl_event ev,
		      const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (!s->o.event)
		return;
	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	s->o.event(ev, msg, s->data);
	g_free(msg);
}

bool accept_error_is_resource(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS ||
	       err == ENOMEM;
}

bool unix_peer_allowed(int fd, gid_t gid, uid_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	gid_t *groups;
	bool ok = false;
	size_t i;

	*uid = (uid_t)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len))
		return false;
	*uid = cr.uid;
	if (cr.uid == 0 || cr.uid == geteuid())
		return true;
	if (gid == (gid_t)-1)
		return false;
	if (cr.gid == gid)
		return true;
	/* Supplementary groups, as the peer had them at connect(). */
	len = 64 * sizeof(gid_t);
	groups = g_malloc(len);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len)) {
		/* ERANGE: len now says how much it needs. */
		if (errno != ERANGE || len > 65536 * sizeof(gid_t))
			len = 0;
		groups = g_realloc(groups, MAX(len, 1));
		if (len && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups,
				      &len))
			len = 0;
	}
	for (i = 0; i < len / sizeof(gid_t) && !ok; i++)
		ok = groups[i] == gid;
	g_free(groups);
	return ok;
}

/* Is someone listening at sa?  (A stale socket file answers nobody.) */
static bool socket_live(const struct sockaddr_un *sa)
{
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (probe < 0)
		return false;
	live = connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(probe);
	return live;
}

/*
 * Bind fd at sa, the file created with mode: under a umask that leaves
 * exactly mode, so nothing ever changes the path afterwards (a chmod()
 * would follow a symlink someone put there meanwhile).
 */
static int bind_mode(int fd, const struct sockaddr_un *sa, mode_t mode)
{
	mode_t old = umask(~mode & 0777);
	int rc = bind(fd, (const struct sockaddr *)sa, sizeof(*sa));

	umask(old);
	return rc;
}

/*
 * With a group: bind in a private directory next to the path (0700, only
 * we write in it), give the socket its group there, then rename() it into
 * place, which replaces whatever is at the path without following it.
 * Returns 0, or -1 with errno (ENAMETOOLONG: the private path does not
 * fit in a socket address).
 */
static int bind_group(int fd, const char *path, mode_t mode, gid_t gid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *dir = g_path_get_dirname(path);
	char *tmp = g_build_filename(dir, ".balloon13d-XXXXXX", NULL);
	char *sock = NULL;
	int rc = -1, e;

	if (!g_mkdtemp_full(tmp, 0700))
		goto out;
	sock = g_build_filename(tmp, "s", NULL);
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		goto out_rmdir;
	}
	strcpy(sa.sun_path, sock);
	if (bind_mode(fd, &sa, mode) || lchown(sock, (uid_t)-1, gid) ||
	    rename(sock, path))
		goto out_unlink;
	rc = 0;
	goto out_rmdir;
out_unlink:
	e = errno;
	unlink(sock);
	errno = e;
out_rmdir:
	e = errno;
	rmdir(tmp);
	errno = e;
out:
	g_free(sock);
	g_free(tmp);
	g_free(dir);
	return rc;
}

int unix_listen_path(const char *path, mode_t mode, gid_t gid, GError **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		g_set_error(err, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
			    "socket path too long (max %zu bytes): %s",
			    sizeof(sa.sun_path) - 1, path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail;
	/* Something is there: a live listener, a stale socket, a file. */
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			errno = EEXIST;
			goto fail_close;
		}
		if (socket_live(&sa)) {
			g_set_error(err, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
				    "%s: another process is listening there",
				    path);
			close(fd);
			return -1;
		}
	}
	mode &= 0777;
	if (gid != (gid_t)-1) {
		rc = bind_group(fd, path, mode, gid);
	} else {
		unlink(path);	/* a stale socket, if any */
		rc = bind_mode(fd, &sa, mode);
	}
	if (rc || listen(fd, 16)) {
		if (!rc) {
			int e = errno;

			unlink(path);
			errno = e;
		}
		goto fail_close;
	}
	return fd;
fail_close:
	close(fd);
fail:
	g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno), "%s: %s",
		    path, g_strerror(errno));
	return -1;
}

/* ---- connections --------------------------------------------------------- */

static bool has_line(const struct ctl_conn *c)
{
	return memchr(c->in->str, '\n', c->in->len) != NULL;
}

/* Read more only when there is room and nothing else to do. */
static bool want_read(const struct ctl_conn *c)
{
	return c->fd >= 0 && !c->eof && !c->busy &&
	       c->out->len < CTL_OUT_SOFT && !has_line(c);
}

/* Nothing pending either way: the peer is just keeping the line open. */
static bool quiet(const struct ctl_conn *c)
{
	return !c->busy && !c->in->len && !c->out->len;
}

/* Done with the peer: everything answered and sent after its EOF. */
static bool finished(const struct ctl_conn *c)
{
	return c->eof && !c->busy && !c->out->len && !has_line(c);
}

/* Write what we can; the rest goes when the socket is writable. */
static void flush_out(struct ctl_conn *c)
{
	while (c->fd >= 0 && c->out->len) {
		ssize_t n = send(c->fd, c->out->str, c->out->len,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		g_string_erase(c->out, 0, n);
		c->last_active = g_get_monotonic_time();
	}
}

static void conn_update(struct ctl_conn *c)
{
	GIOCondition ev = 0;

	if (c->fd < 0)
		return;
	if (finished(c)) {
		conn_close(c);
		return;
	}
	if (want_read(c))
		ev |= G_IO_IN;
	if (c->out->len)
		ev |= G_IO_OUT;
	if (ev != c->events) {
		g_source_modify_unix_fd(&c->src->base, c->src->tag, ev);
		c->events = ev;
	}
}

void ctl_reply(struct ctl_conn *c, JsonNode *resp)
{
	gsize len;
	char *s = json_to_string(resp, FALSE);

	len = strlen(s);
	json_node_unref(resp);
	c->busy = false;	/* answered: closing it now cancels nothing */
	if (c->fd >= 0 && c->out->len + len + 1 > CTL_OUT_MAX) {
		c->srv->cnt.dropped_output++;
		srv_event(c->srv, CTL_EV_DROPPED, "control client dropped: "
			  "%zu bytes of answers unread", c->out->len);
		conn_close(c);
	}
	if (c->fd >= 0) {
		g_string_append_len(c->out, s, len);
		g_string_append_c(c->out, '\n');
	}
	g_free(s);
	if (c->fd >= 0) {
		flush_out(c);
		if (c->fd >= 0 && !c->in_lines)
			process_lines(c);
		conn_update(c);
	}
	conn_unref(c);		/* the handler's reference */
}

void ctl_reply_error(struct ctl_conn *c, const char *fmt, ...)
{
	JsonBuilder *b = json_builder_new_immutable();
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "ok");
	json_builder_add_boolean_value(b, FALSE);
	json_builder_set_member_name(b, "error");
	json_builder_add_string_value(b, msg);
	json_builder_end_object(b);
	ctl_reply(c, json_builder_get_root(b));
	g_object_unref(b);
	g_free(msg);
}

/* Hand complete lines to the handler, one at a time. */
static void process_lines(struct ctl_conn *c)
{
	c->in_lines = true;
	c->refs++;
	while (c->fd >= 0 && !c->busy && c->out->len < CTL_OUT_SOFT) {
		char *nl = memchr(c->in->str, '\n', c->in->len);
		struct ctl_req req;
		size_t len;
		char *err;

		if (!nl)
			break;
		len = nl - c->in->str;
		while (len && (c->in->str[len - 1] == '\r' ||
			       c->in->str[len - 1] == ' ' ||
			       c->in->str[len - 1] == '\t'))
			len--;
		c->last_active = g_get_monotonic_time();
		if (!len) {
			g_string_erase(c->in, 0, nl - c->in->str + 1);
			continue;
		}
		c->busy = true;
		c->refs++;	/* dropped by ctl_reply() */
		if (ctl_parse_request(c->in->str, len, &req, &err)) {
			g_string_erase(c->in, 0, nl - c->in->str + 1);
			ctl_reply_error(c, "%s", err);
			g_free(err);
		} else {
			g_string_erase(c->in, 0, nl - c->in->str + 1);
			c->srv->fn(c, &req, c->srv->data);
		}
	}
	c->in_lines = false;
	conn_update(c);
	conn_unref(c);
}

static void conn_read(struct ctl_conn *c)
{
	char buf[CTL_READ_CHUNK];
	ssize_t n;

	n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		      errno == EINTR))
		return;
	if (n < 0) {
		conn_close(c);
	} else if (n == 0) {
		/* Peer done sending: answer what it sent, then close. */
		c->eof = true;
		if (c->in->len && c->in->str[c->in->len - 1] != '\n')
			g_string_append_c(c->in, '\n');
		process_lines(c);
	} else {
		g_string_append_len(c->in, buf, n);
		if (c->in->len > CTL_MAX_LINE && !has_line(c)) {
			c->srv->cnt.dropped_line++;
			srv_event(c->srv, CTL_EV_DROPPED, "control client "
				  "dropped: request line over %d bytes",
				  CTL_MAX_LINE);
			conn_close(c);
		} else {
			process_lines(c);
		}
	}
}

static gboolean conn_dispatch(GSource *src, GSourceFunc cb, gpointer data)
{
	struct conn_source *cs = (struct conn_source *)src;
	struct ctl_conn *c = cs->c;
	GIOCondition rev = g_source_query_unix_fd(src, cs->tag);

	(void)cb;
	(void)data;
	c->refs++;
	if (c->fd >= 0 && (rev & G_IO_OUT))
		flush_out(c);
	if (c->fd >= 0 && (rev & G_IO_IN) && want_read(c))
		conn_read(c);
	else if (c->fd >= 0 && (rev & (G_IO_HUP | G_IO_ERR | G_IO_NVAL)))
		conn_close(c);	/* gone, with nothing we still read */
	if (c->fd >= 0)
		conn_update(c);
	conn_unref(c);
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs conn_source_funcs = {
	.dispatch = conn_dispatch,
};

static void conn_close(struct ctl_conn *c)
{
	struct ctl_server *s = c->srv;

	if (c->fd < 0)
		return;
	g_source_destroy(&c->src->base);
	g_source_unref(&c->src->base);
	c->src = NULL;
	close(c->fd);
	c->fd = -1;
	s->conns = g_list_remove(s->conns, c);
	s->cnt.open--;
	/* Its request is with the handler: let it answer (nobody) now. */
	if (c->busy && s->o.cancel) {
		c->refs++;
		s->o.cancel(c, s->data);
		conn_unref(c);
	}
	if (!s->conns && s->sweep_src) {
		g_source_remove(s->sweep_src);
		s->sweep_src = 0;
	}
	conn_unref(c);		/* the server's reference */
}

/*
 * Close connections stuck for idle_ms with a partial request or unread
 * answers, and quiet ones after CTL_QUIET_MS.  One waiting for its answer
 * is not idle.
 */
static gboolean sweep(gpointer p)
{
	struct ctl_server *s = p;
	gint64 now = g_get_monotonic_time();
	GList *l, *next;

	for (l = s->conns; l; l = next) {
		struct ctl_conn *c = l->data;
		guint ms = quiet(c) ? MAX(s->o.idle_ms, CTL_QUIET_MS) :
				      s->o.idle_ms;

		next = l->next;
		if (c->busy || now - c->last_active < (gint64)ms * 1000)
			continue;
		s->cnt.dropped_idle++;
		srv_event(s, CTL_EV_DROPPED, "control client dropped: %s for "
			  "%u ms", c->out->len ? "answers unread" :
			  c->in->len ? "request unfinished" : "quiet", ms);
		conn_close(c);
	}
	if (s->conns)
		return G_SOURCE_CONTINUE;
	s->sweep_src = 0;
	return G_SOURCE_REMOVE;
}

/* Best effort: tell a client we turn away why, without waiting for it. */
static void refuse(int fd, const char *msg)
{
	char *line = g_strdup_printf("{\"ok\":false,\"error\":\"%s\"}\n", msg);
	ssize_t n = send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);

	(void)n;
	g_free(line);
	close(fd);
}

static unsigned int conns_of(const struct ctl_server *s, uid_t uid)
{
	unsigned int n = 0;
	GList *l;

	for (l = s->conns; l; l = l->next)
		n += ((struct ctl_conn *)l->data)->uid == uid;
	return n;
}

/*
 * All slots are taken and a client of uid knocks.  The connection quiet
 * longest makes room, if there is one.  If none is quiet (each waits for
 * an answer, up to a stats timeout), the uid holding the most slots
 * gives up its oldest, if it holds more than uid does: so no uid can keep
 * another out, root included, by keeping its own requests waiting.
 */
static void make_room(struct ctl_server *s, uid_t uid)
{
	struct ctl_conn *old = NULL, *c;
	unsigned int most = 0, n;
	GList *l;

	for (l = s->conns; l; l = l->next) {
		c = l->data;
		if (quiet(c) && (!old || c->last_active < old->last_active))
			old = c;
	}
	if (old) {
		s->cnt.evicted++;
		srv_event(s, CTL_EV_FULL, "control client closed to make room: "
			  "quiet for %" G_GINT64_FORMAT " ms",
			  (g_get_monotonic_time() - old->last_active) / 1000);
		conn_close(old);
		return;
	}
	for (l = s->conns; l; l = l->next) {
		c = l->data;
		n = conns_of(s, c->uid);
		if (n > most || (n == most && old && c->opened < old->opened)) {
			most = n;
			old = c;
		}
	}
	if (!old || most <= conns_of(s, uid))
		return;
	s->cnt.evicted_busy++;
	srv_event(s, CTL_EV_FULL, "control client of uid %d closed to make "
		  "room for uid %d: it held %u of %u connections",
		  (int)old->uid, (int)uid, most, s->o.max_conns);
	conn_close(old);
}

static gboolean srv_accept(gint fd, GIOCondition cond, gpointer p);

static gboolean resume_accept(gpointer p)
{
	struct ctl_server *s = p;

	s->pause_src = 0;
	s->src = g_unix_fd_add(s->fd, G_IO_IN, srv_accept, s);
	return G_SOURCE_REMOVE;
}

static gboolean srv_accept(gint fd, GIOCondition cond, gpointer p)
{
	struct ctl_server *s = p;
	struct ctl_conn *c;
	uid_t uid;
	int cfd;

	(void)cond;
	cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0) {
		if (!accept_error_is_resource(errno))
			return G_SOURCE_CONTINUE;
		/* Out of fds: a pending connection would wake us at once. */
		s->pause_ms = s->pause_ms ? MIN(s->pause_ms * 2,
						ACCEPT_PAUSE_MAX_MS) :
					    ACCEPT_PAUSE_MS;
		s->cnt.accept_pauses++;
		srv_event(s, CTL_EV_ACCEPT, "control socket: accept: %s; "
			  "pausing %u ms", g_strerror(errno), s->pause_ms);
		s->src = 0;
		s->pause_src = g_timeout_add(s->pause_ms, resume_accept, s);
		return G_SOURCE_REMOVE;
	}
	s->pause_ms = 0;
	if (!unix_peer_allowed(cfd, s->o.gid, &uid)) {
		s->cnt.denied++;
		srv_event(s, CTL_EV_DENIED, "control client uid %d refused "
			  "(not root, the daemon's uid or its group)",
			  (int)uid);
		refuse(cfd, "permission denied");
		return G_SOURCE_CONTINUE;
	}
	if (s->cnt.open >= s->o.max_conns)
		make_room(s, uid);
	if (s->cnt.open >= s->o.max_conns) {
		s->cnt.refused++;
		srv_event(s, CTL_EV_FULL, "control client refused: %u "
			  "connections open", s->cnt.open);
		refuse(cfd, "too many connections");
		return G_SOURCE_CONTINUE;
	}
	c = g_new0(struct ctl_conn, 1);
	c->refs = 1;
	c->fd = cfd;
	c->in = g_string_new(NULL);
	c->out = g_string_new(NULL);
	c->srv = s;
	c->last_active = c->opened = g_get_monotonic_time();
	c->uid = uid;
	c->src = (struct conn_source *)g_source_new(&conn_source_funcs,
						    sizeof(*c->src));
	c->src->c = c;
	c->events = G_IO_IN;
	c->src->tag = g_source_add_unix_fd(&c->src->base, cfd, c->events);
	g_source_attach(&c->src->base, NULL);
	s->conns = g_list_prepend(s->conns, c);
	s->cnt.open++;
	s->cnt.accepted++;
	if (!s->sweep_src)
		s->sweep_src = g_timeout_add(MAX(s->o.idle_ms / 4, 10), sweep,
					     s);
	return G_SOURCE_CONTINUE;
}

struct ctl_server *ctl_server_new(const char *path,
				  const struct ctl_opts *opts,
				  ctl_handler fn, void *data, GError **err)
{
	struct ctl_server *s;
	int fd = unix_listen_path(path, opts->mode, opts->gid, err);

	if (fd < 0)
		return NULL;
	s = g_new0(struct ctl_server, 1);
	s->fd = fd;
	s->path = g_strdup(path);
	s->fn = fn;
	s->data = data;
	s->o = *opts;
	s->src = g_unix_fd_add(fd, G_IO_IN, srv_accept, s);
	return s;
}

const struct ctl_counters *ctl_server_counters(const struct ctl_server *s)
{
	return &s->cnt;
}

void ctl_server_free(struct ctl_server *s)
{
	if (!s)
		return;
	while (s->conns)
		conn_close(s->conns->data);
	if (s->src)
		g_source_remove(s->src);
	if (s->pause_src)
		g_source_remove(s->pause_src);
	close(s->fd);
	unlink(s->path);
	g_free(s->path);
	g_free(s);
}
