// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer harness: control request lines (ctl_parse_request(), which
 * runs the nesting check, json-glib and the per-command member checks).
 *
 * The input is a stream of lines, split and trimmed the way the transport
 * does.  For each line: a refusal comes with a one-line reason; an
 * accepted request has only values its command allows, and written back
 * as canonical JSON it parses to the same request.  json-glib warnings and
 * criticals abort (a request must never make it complain), as does
 * anything ASan or UBSan finds, including deep recursion.
 */
#define _GNU_SOURCE
#include <stdbool.h>

#include "control.h"
#include "fuzz.h"

static void check_req(const struct ctl_req *r)
{
	FUZZ_CHECK(r->cmd < CTL_NR_CMDS);
	switch (r->cmd) {
	case CTL_RESIZE:
		FUZZ_CHECK(r->bytes <= INT64_MAX);
		break;
	case CTL_STATS:
		FUZZ_CHECK(r->timeout_ms >= 1 &&
			   r->timeout_ms <= CTL_STATS_TIMEOUT_MAX);
		break;
	case CTL_RANGES:
		FUZZ_CHECK(r->from <= INT64_MAX);
		break;
	case CTL_INJECT:
		FUZZ_CHECK(r->kind < CTL_NR_INJ);
		FUZZ_CHECK(r->count >= 1 && r->count <= CTL_INJECT_MAX);
		break;
	case CTL_STATS_INTERVAL:
		FUZZ_CHECK(r->ms <= CTL_STATS_INTERVAL_MAX);
		break;
	default:
		FUZZ_CHECK(!r->bytes && !r->timeout_ms && !r->from &&
			   !r->count && !r->ms);
		break;
	}
}

/* The request as a client would write it. */
static char *canonical(const struct ctl_req *r)
{
	switch (r->cmd) {
	case CTL_RESIZE:
		return g_strdup_printf("{\"cmd\":\"resize\",\"bytes\":%"
				       G_GUINT64_FORMAT "}", r->bytes);
	case CTL_STATS:
		return g_strdup_printf("{\"cmd\":\"stats\",\"timeout_ms\":%"
				       G_GUINT64_FORMAT "}", r->timeout_ms);
	case CTL_RANGES:
		return g_strdup_printf("{\"from\":%" G_GUINT64_FORMAT
				       ",\"cmd\":\"ranges\"}", r->from);
	case CTL_INJECT:
		return g_strdup_printf("{\"cmd\":\"inject\",\"kind\":\"%s\","
				       "\"count\":%" G_GUINT64_FORMAT "}",
				       ctl_inject_names[r->kind], r->count);
	case CTL_STATS_INTERVAL:
		return g_strdup_printf("{\"cmd\":\"stats-interval\",\"ms\":%"
				       G_GUINT64_FORMAT "}", r->ms);
	default:
		return g_strdup_printf("{\"cmd\":\"%s\"}",
				       ctl_cmd_names[r->cmd]);
	}
}

static void one_line(const char *s, size_t len)
{
	struct ctl_req r, again;
	char *err = NULL, *c;

	if (ctl_parse_request(s, len, &r, &err)) {
		FUZZ_CHECK(err && *err);
		FUZZ_CHECK(!strchr(err, '\n') && strlen(err) < 400);
		g_free(err);
		return;
	}
	FUZZ_CHECK(!err);
	FUZZ_CHECK(len <= CTL_MAX_LINE);
	check_req(&r);
	c = canonical(&r);
	FUZZ_CHECK(ctl_parse_request(c, strlen(c), &again, &err) == 0);
	FUZZ_CHECK(!memcmp(&r, &again, sizeof(r)));
	g_free(c);
}

static void fatal_log(const gchar *domain, GLogLevelFlags level,
		      const gchar *msg, gpointer data)
{
	(void)data;
	fprintf(stderr, "glib %s message (level %d): %s\n",
		domain ? domain : "?", level, msg);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	const char *p = (const char *)data, *end = p + size;

	if (!init) {
		g_log_set_default_handler(fatal_log, NULL);
		init = true;
	}
	/* Lines as the transport cuts them: at '\n', trailing \r, space, tab. */
	while (p < end) {
		const char *nl = memchr(p, '\n', end - p);
		size_t len = (nl ? nl : end) - p;

		while (len && (p[len - 1] == '\r' || p[len - 1] == ' ' ||
			       p[len - 1] == '\t'))
			len--;
		if (len)
			one_line(p, len);
		p = nl ? nl + 1 : end;
	}
	return 0;
}
