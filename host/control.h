/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * balloon13d control socket: JSON lines over a unix stream socket.  One
 * request object per line in, one response object per line out, in order.
 * A handler may answer later (ctl_reply() from a timer or another event);
 * the connection reads no further request until it has.
 */
#ifndef BALLOON13_CONTROL_H
#define BALLOON13_CONTROL_H

#include <glib.h>
#include <json-glib/json-glib.h>

struct ctl_server;
struct ctl_conn;

/* Called once per request; must lead to exactly one ctl_reply(). */
typedef void (*ctl_handler)(struct ctl_conn *c, JsonObject *req, void *data);

/* Listen on path (a stale socket file is replaced; a live one is an error). */
struct ctl_server *ctl_server_new(const char *path, ctl_handler fn,
				  void *data, GError **err);
/* Close every connection and the listening socket, and unlink its path. */
void ctl_server_free(struct ctl_server *s);

/* Send resp (a JSON object; ownership taken) as the answer to c's request. */
void ctl_reply(struct ctl_conn *c, JsonNode *resp);
/* Convenience: {"ok": false, "error": msg}. */
void ctl_reply_error(struct ctl_conn *c, const char *fmt, ...)
	G_GNUC_PRINTF(2, 3);

/*
 * Bind a listening unix stream socket at path.  If the path exists and
 * nobody answers on it, it is a stale socket and is replaced; if someone
 * does, fail.  Returns the fd (non-blocking, close-on-exec) or -1 with *err.
 */
int unix_listen_path(const char *path, GError **err);

#endif /* BALLOON13_CONTROL_H */
