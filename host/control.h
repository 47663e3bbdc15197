/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * balloon13d control socket: JSON lines over a unix stream socket.  One
 * request object per line in, one response object per line out, in order.
 * A handler may answer later (ctl_reply() from a timer or another event);
 * the connection reads no further request until it has.
 *
 * The transport trusts no client: the socket is created 0600 whatever the
 * umask (wider only on request), peers are checked with SO_PEERCRED, and
 * connections, their buffers and their idle time are all bounded.  A line
 * becomes a struct ctl_req only after its nesting depth, every member's
 * name and type and every number's range have been checked.
 */
#ifndef BALLOON13_CONTROL_H
#define BALLOON13_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>
#include <json-glib/json-glib.h>

/* ---- the requests ------------------------------------------------------ */

/* Longest request line; a longer one closes the connection. */
#define CTL_MAX_LINE		(64 * 1024)
/* Deepest nesting of arrays and objects in a line (requests need 1). */
#define CTL_MAX_DEPTH		8
/* "stats" waits this long for the guest by default, and at most. */
#define CTL_STATS_TIMEOUT_MS	5000
#define CTL_STATS_TIMEOUT_MAX	600000
/* Most hostile requests one "inject" may queue. */
#define CTL_INJECT_MAX		1024
/* Longest push interval "stats-interval" may ask for: a day. */
#define CTL_STATS_INTERVAL_MAX	86400000

enum ctl_cmd {
	CTL_STATUS,
	CTL_PROGRESS,
	CTL_RESIZE,
	CTL_STATS,
	CTL_RANGES,
	CTL_INJECT,
	CTL_STATS_INTERVAL,
	CTL_NR_CMDS
};

/* Hostile requests "inject" can make the device send (see --chaos). */
enum ctl_inject {
	CTL_INJ_SHORT,		/* 8 bytes written, used len 8 */
	CTL_INJ_LONG,		/* 16 written, used len 4096: a lie */
	CTL_INJ_UNKNOWN,	/* type 7 */
	CTL_INJ_HUGE,		/* RESIZE 2^64 - 1 */
	CTL_INJ_OVERRAM,	/* RESIZE 16 x guest RAM */
	CTL_NR_INJ
};

extern const char *const ctl_cmd_names[CTL_NR_CMDS];
extern const char *const ctl_inject_names[CTL_NR_INJ];

/* A request, every field checked; fields a command lacks are 0. */
struct ctl_req {
	enum ctl_cmd cmd;
	uint64_t bytes;		/* resize: 0..INT64_MAX */
	uint64_t timeout_ms;	/* stats: 1..CTL_STATS_TIMEOUT_MAX */
	uint64_t from;		/* ranges: first guest-physical address */
	enum ctl_inject kind;	/* inject */
	uint64_t count;		/* inject: 1..CTL_INJECT_MAX */
	uint64_t ms;		/* stats-interval: 0..CTL_STATS_INTERVAL_MAX */
};

/*
 * Turn one line (len bytes, no newline) into *req.  Returns 0, or -1 with
 * a one-line reason for the client in *err (g_free() it).  Never passes
 * json-glib a line it could recurse deeply on, and never reads a member
 * before checking its type.
 */
int ctl_parse_request(const char *line, size_t len, struct ctl_req *req,
		      char **err);

/* ---- the transport ----------------------------------------------------- */

struct ctl_server;
struct ctl_conn;

/* Called once per request; must lead to exactly one ctl_reply(). */
typedef void (*ctl_handler)(struct ctl_conn *c, const struct ctl_req *req,
			    void *data);

/* Things worth a (rate-limited) log line. */
enum ctl_event {
	CTL_EV_DENIED,		/* peer not allowed */
	CTL_EV_FULL,		/* connection limit reached (one evicted or
				   the new one refused) */
	CTL_EV_DROPPED,		/* idle, not reading, or a line too long */
	CTL_EV_ACCEPT,		/* accept() failed; accepting pauses */
	CTL_NR_EVENTS
};

struct ctl_opts {
	mode_t mode;		/* of the socket file */
	gid_t gid;		/* group allowed in; (gid_t)-1: none */
	unsigned int max_conns;
	unsigned int idle_ms;	/* close one stuck with a partial request or
				   unread answers this long */
	/* Optional: told about each event, with a one-line description. */
	void (*event)(enum ctl_event ev, const char *what, void *data);
	/*
	 * Optional: a connection closed while its request was with the
	 * handler (evicted, or the peer went away): answer it now with
	 * ctl_reply() (nobody reads it) and forget it.
	 */
	void (*cancel)(struct ctl_conn *c, void *data);
};

/* What the server has done; read by "status". */
struct ctl_counters {
	uint64_t accepted;
	uint64_t denied;	/* peer credentials not allowed */
	uint64_t refused;	/* over max_conns, none of them quiet */
	uint64_t evicted;	/* quiet, closed to make room for a new one */
	uint64_t evicted_busy;	/* waiting, closed to make room for a client
				   of a uid holding fewer connections */
	uint64_t dropped_idle;	/* stuck for idle_ms, or quiet for long */
	uint64_t dropped_output;	/* answers over CTL_OUT_MAX unread */
	uint64_t dropped_line;	/* a line over CTL_MAX_LINE */
	uint64_t accept_pauses;	/* accept() failed (EMFILE...): paused */
	unsigned int open;	/* connections now */
};

/*
 * Listen on path (a stale socket file is replaced; a live one is an
 * error), created with opts->mode whatever the umask, in opts->gid.
 */
struct ctl_server *ctl_server_new(const char *path,
				  const struct ctl_opts *opts,
				  ctl_handler fn, void *data, GError **err);
/* Close every connection and the listening socket, and unlink its path. */
void ctl_server_free(struct ctl_server *s);
const struct ctl_counters *ctl_server_counters(const struct ctl_server *s);

/* Send resp (a JSON object; ownership taken) as the answer to c's request. */
void ctl_reply(struct ctl_conn *c, JsonNode *resp);
/* Convenience: {"ok": false, "error": msg}. */
void ctl_reply_error(struct ctl_conn *c, const char *fmt, ...)
	G_GNUC_PRINTF(2, 3);

/* ---- unix sockets, shared with the vhost-user listener ----------------- */

/*
 * Bind a listening unix stream socket at path, created with mode (and
 * group gid unless (gid_t)-1) whatever the umask.  The path is never
 * chmod()ed or chown()ed after the bind: the mode comes from the umask at
 * bind time, and a socket with a group is made in a private directory and
 * renamed into place, so a symlink swapped in meanwhile is replaced, not
 * followed.  If the path exists and nobody answers on it, it is a stale
 * socket and is replaced; if someone does, fail.  Returns the fd
 * (non-blocking, close-on-exec) or -1 with *err.
 */
int unix_listen_path(const char *path, mode_t mode, gid_t gid, GError **err);

/*
 * May the peer of a connected unix socket in?  Root, our own effective
 * uid, or (if gid is not (gid_t)-1) a process whose group or supplementary
 * groups include gid.  *uid gets the peer's uid (or -1).
 */
bool unix_peer_allowed(int fd, gid_t gid, uid_t *uid);

/* accept4() errors that mean "out of fds or memory": pause, don't spin. */
bool accept_error_is_resource(int err);

#endif /* BALLOON13_CONTROL_H */
