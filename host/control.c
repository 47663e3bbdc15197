// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13d control socket transport: JSON lines over a unix socket.
 *
 * Each connection has an input buffer (requests, split at '\n') and an output
 * buffer (responses).  A connection is "busy" from handing a request to the
 * handler until ctl_reply(); meanwhile further lines wait, so responses come
 * back in request order.  A connection is reference counted: the peer may go
 * away while a reply is pending, and the late ctl_reply() then just drops it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"

/* Longest request line accepted; a longer one closes the connection. */
#define CTL_MAX_LINE	(64 * 1024)

struct ctl_server {
	int fd;
	guint src;
	char *path;
	ctl_handler fn;
	void *data;
	GList *conns;		/* live struct ctl_conn, one ref each */
};

struct ctl_conn {
	int refs;
	int fd;			/* -1 once closed */
	guint in_src, out_src;
	GString *in, *out;
	bool busy;		/* a request is with the handler */
	bool in_lines;		/* inside process_lines() */
	bool eof;		/* peer finished sending */
	struct ctl_server *srv;
};

static void conn_close(struct ctl_conn *c);
static void process_lines(struct ctl_conn *c);

static void conn_unref(struct ctl_conn *c)
{
	if (--c->refs)
		return;
	g_string_free(c->in, TRUE);
	g_string_free(c->out, TRUE);
	g_free(c);
}

int unix_listen_path(const char *path, GError **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, probe;

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
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		struct stat st;

		if (errno != EADDRINUSE)
			goto fail_close;
		/* Something is there: a live listener, a stale socket, a file. */
		if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			errno = EEXIST;
			goto fail_close;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 &&
		    connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			g_set_error(err, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
				    "%s: another process is listening there",
				    path);
			close(fd);
			return -1;
		}
		if (probe >= 0)
			close(probe);
		unlink(path);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
			goto fail_close;
	}
	if (listen(fd, 8))
		goto fail_close;
	return fd;
fail_close:
	close(fd);
fail:
	g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno), "%s: %s",
		    path, g_strerror(errno));
	return -1;
}

static gboolean conn_writable(gint fd, GIOCondition cond, gpointer p);

/* Write what we can; arm an output watch for the rest. */
static void flush_out(struct ctl_conn *c)
{
	while (c->fd >= 0 && c->out->len) {
		ssize_t n = send(c->fd, c->out->str, c->out->len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (!c->out_src)
				c->out_src = g_unix_fd_add(c->fd, G_IO_OUT,
							   conn_writable, c);
			return;
		}
		if (n <= 0) {
			conn_close(c);
			return;
		}
		g_string_erase(c->out, 0, n);
	}
	if (c->out_src) {
		g_source_remove(c->out_src);
		c->out_src = 0;
	}
	if (c->fd >= 0 && c->eof && !c->busy && !memchr(c->in->str, '\n',
							 c->in->len))
		conn_close(c);
}

static gboolean conn_writable(gint fd, GIOCondition cond, gpointer p)
{
	struct ctl_conn *c = p;

	(void)fd;
	(void)cond;
	c->out_src = 0;		/* flush_out() re-arms if needed */
	flush_out(c);
	return G_SOURCE_REMOVE;
}

void ctl_reply(struct ctl_conn *c, JsonNode *resp)
{
	char *s = json_to_string(resp, FALSE);

	json_node_unref(resp);
	if (c->fd >= 0) {
		g_string_append(c->out, s);
		g_string_append_c(c->out, '\n');
	}
	g_free(s);
	c->busy = false;
	if (c->fd >= 0) {
		flush_out(c);
		if (c->fd >= 0 && !c->in_lines)
			process_lines(c);
	}
	conn_unref(c);		/* the handler's reference */
}

void ctl_reply_error(struct ctl_conn *c, const char *fmt, ...)
{
	JsonBuilder *b = json_builder_new();
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
	while (c->fd >= 0 && !c->busy) {
		char *nl = memchr(c->in->str, '\n', c->in->len);
		JsonParser *p;
		GError *err = NULL;
		JsonNode *root;
		char *line;

		if (!nl)
			break;
		line = g_strndup(c->in->str, nl - c->in->str);
		g_string_erase(c->in, 0, nl - c->in->str + 1);
		g_strchomp(line);
		if (!*line) {
			g_free(line);
			continue;
		}
		c->busy = true;
		c->refs++;	/* dropped by ctl_reply() */
		p = json_parser_new();
		if (!json_parser_load_from_data(p, line, -1, &err)) {
			ctl_reply_error(c, "bad JSON: %s", err->message);
			g_error_free(err);
		} else if (!(root = json_parser_get_root(p)) ||
			   !JSON_NODE_HOLDS_OBJECT(root)) {
			ctl_reply_error(c, "request must be a JSON object");
		} else {
			c->srv->fn(c, json_node_get_object(root), c->srv->data);
		}
		g_object_unref(p);
		g_free(line);
	}
	c->in_lines = false;
	if (c->fd >= 0 && c->eof && !c->busy && !c->out->len)
		conn_close(c);
	conn_unref(c);
}

static gboolean conn_readable(gint fd, GIOCondition cond, gpointer p)
{
	struct ctl_conn *c = p;
	gboolean ret = G_SOURCE_CONTINUE;
	char buf[4096];
	ssize_t n;

	(void)cond;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return G_SOURCE_CONTINUE;
	c->refs++;
	if (n < 0) {
		conn_close(c);
	} else if (n == 0) {
		/* Peer done sending: answer what it sent, then close. */
		g_source_remove(c->in_src);
		c->in_src = 0;
		c->eof = true;
		if (c->in->len && c->in->str[c->in->len - 1] != '\n')
			g_string_append_c(c->in, '\n');
		if (!c->in_lines)
			process_lines(c);
		if (c->fd >= 0 && !c->busy && !c->out->len)
			conn_close(c);
	} else {
		g_string_append_len(c->in, buf, n);
		if (c->in->len > CTL_MAX_LINE &&
		    !memchr(c->in->str, '\n', c->in->len))
			conn_close(c);
		else if (!c->in_lines)
			process_lines(c);
	}
	if (c->fd < 0 || c->eof)
		ret = G_SOURCE_REMOVE;
	conn_unref(c);
	return ret;
}

static void conn_close(struct ctl_conn *c)
{
	if (c->fd < 0)
		return;
	if (c->in_src)
		g_source_remove(c->in_src);
	if (c->out_src)
		g_source_remove(c->out_src);
	c->in_src = c->out_src = 0;
	close(c->fd);
	c->fd = -1;
	c->srv->conns = g_list_remove(c->srv->conns, c);
	conn_unref(c);		/* the server's reference */
}

static gboolean srv_accept(gint fd, GIOCondition cond, gpointer p)
{
	struct ctl_server *s = p;
	struct ctl_conn *c;
	int cfd;

	(void)cond;
	cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0)
		return G_SOURCE_CONTINUE;
	c = g_new0(struct ctl_conn, 1);
	c->refs = 1;
	c->fd = cfd;
	c->in = g_string_new(NULL);
	c->out = g_string_new(NULL);
	c->srv = s;
	c->in_src = g_unix_fd_add(cfd, G_IO_IN, conn_readable, c);
	s->conns = g_list_prepend(s->conns, c);
	return G_SOURCE_CONTINUE;
}

struct ctl_server *ctl_server_new(const char *path, ctl_handler fn,
				  void *data, GError **err)
{
	struct ctl_server *s;
	int fd = unix_listen_path(path, err);

	if (fd < 0)
		return NULL;
	s = g_new0(struct ctl_server, 1);
	s->fd = fd;
	s->path = g_strdup(path);
	s->fn = fn;
	s->data = data;
	s->src = g_unix_fd_add(fd, G_IO_IN, srv_accept, s);
	return s;
}

void ctl_server_free(struct ctl_server *s)
{
	if (!s)
		return;
	while (s->conns)
		conn_close(s->conns->data);
	g_source_remove(s->src);
	close(s->fd);
	unlink(s->path);
	g_free(s->path);
	g_free(s);
}
