// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13d - reference device for the virtio memory balloon, device ID 13.
 *
 * main(): the command line, the control socket and the main loop.  The
 * device itself is device.c; the control commands commands.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "device.h"
#include "version.h"

#define DEFAULT_CONTROL		"/run/balloon13d.ctl"
#define DEFAULT_PAGE_BITS	12
#define DEFAULT_STALL_MS	5000
/* Control connections at once, and how long one may sit idle. */
#define DEFAULT_CTL_CLIENTS	32
#define DEFAULT_CTL_IDLE_MS	30000

static void ctl_event(enum ctl_event ev, const char *what, void *data)
{
	struct b13d *d = data;

	logrl(d, ev == CTL_EV_ACCEPT ? LOG_ACCEPT : LOG_CONTROL, "%s", what);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: balloon13d -s PATH [options]\n"
"The virtio memory balloon, device ID 13, as a vhost-user device: a VMM\n"
"connects to PATH and offers it to its guest; ballooned guest memory is given\n"
"back to the host.  Guest RAM must be a shared memory backend.\n"
"\n"
"  -s, --socket-path PATH vhost-user socket to listen on (required)\n"
"      --socket-mode MODE its file mode, octal [0600 whatever the umask]\n"
"      --socket-group GRP its group; members may connect too\n"
"  -c, --control PATH     control socket (JSON lines, see balloon13ctl)\n"
"                         [default: $BALLOON13_CONTROL or " DEFAULT_CONTROL "]\n"
"      --control-mode MODE  its file mode, octal [0600 whatever the umask]\n"
"      --control-group GRP  its group; members may connect too (otherwise\n"
"                         only root and the daemon's own uid may)\n"
"      --control-clients N  control connections at once, 1..1024 [%d]; when\n"
"                         all are taken the one quiet longest makes room\n"
"      --control-idle-ms N  drop a control connection stuck this long with\n"
"                         half a request or unread answers, 100..3600000 [%d]\n"
"  -b, --page-bits N      block size 2^N advertised in config, 0..63 [%d];\n"
"                         values a guest must refuse (e.g. 5, 41) are allowed\n"
"  -f, --features LIST    device features offered: all, none, or a comma list\n"
"                         of withdraw, free-page-reporting, full-stats,\n"
"                         pressure-release [all]\n"
"      --hold-ms N        keep page-list buffers N ms after discarding their\n"
"                         blocks before returning them used (0..%d) [0]\n"
"      --no-discard       never discard guest memory: ballooned blocks are\n"
"                         only counted.  Use it when guest RAM is pinned\n"
"                         where the daemon can't see it (a device assigned\n"
"                         to the guest through VFIO, vhost-vdpa, ...)\n"
"      --stall-after-ms N status says \"stalled\" when the target is not\n"
"                         reached and no new block arrived for N ms\n"
"                         (1..%d) [%d]\n"
"      --chaos            allow the control command \"inject\" (hostile\n"
"                         requests: short, long, unknown, huge, overram)\n"
"      --ring-features    also offer VIRTIO_RING_F_INDIRECT_DESC and\n"
"                         VIRTIO_RING_F_EVENT_IDX\n"
"  -v, --verbose          log every message, without rate limits (twice:\n"
"                         every vhost-user request)\n"
"  -V, --version          show the version\n"
"  -h, --help             show this help\n"
"\n"
"With QEMU (KVM if it can, TCG otherwise; add your guest's disk):\n"
"\n"
"  balloon13d -s /run/balloon13d.sock -c /run/balloon13d.ctl &\n"
"  qemu-system-x86_64 -machine q35,memory-backend=mem -accel kvm -accel tcg \\\n"
"    -m 4G -object memory-backend-memfd,id=mem,size=4G,share=on \\\n"
"    -chardev socket,id=b13,path=/run/balloon13d.sock \\\n"
"    -device vhost-user-test-device-pci,chardev=b13,virtio-id=13,num_vqs=2,config_size=4 \\\n"
"    -drive file=guest.qcow2,if=virtio\n"
"  balloon13ctl -c /run/balloon13d.ctl resize 1G    # a balloon of 1 GiB\n"
"\n"
"QEMU names the generic device vhost-user-test-device-pci from 10.2 on;\n"
"8.2 to 10.1 call it vhost-user-device-pci (same properties) and only\n"
"create it when patched to (this project's QEMU is).  share=on is what\n"
"lets the device see guest RAM and give it back.\n"
"\n"
"SIGTERM or SIGINT: exit 0, removing both sockets.  Exit 2: bad command line.\n",
		DEFAULT_CTL_CLIENTS, DEFAULT_CTL_IDLE_MS, DEFAULT_PAGE_BITS,
		MAX_HOLD_MS, 3600000, DEFAULT_STALL_MS);
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

/* An octal file mode that keeps the owner's read and write. */
static mode_t opt_mode(const char *opt, const char *arg)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 8);
	if (!*arg || *end || errno || *arg == '-' || v > 0777)
		usage_error("%s '%s': expected an octal mode, at most 0777",
			    opt, arg);
	if ((v & 0600) != 0600)
		usage_error("%s '%s': the owner must keep read and write "
			    "(0600)", opt, arg);
	return (mode_t)v;
}

/* A group name or number. */
static gid_t opt_group(const char *opt, const char *arg)
{
	struct group *g;
	const char *why;
	uint64_t v;

	if (!*arg)
		usage_error("%s needs a group name or number", opt);
	g = getgrnam(arg);
	if (g)
		return g->gr_gid;
	if (!b13_parse_uint(arg, 0, (gid_t)-2, &v, &why))
		return (gid_t)v;
	usage_error("%s '%s': no such group", opt, arg);
}

/*
 * The option getopt stopped at, as written: "--page-bits", or "-b" out of
 * a cluster like "-vb".
 */
static const char *opt_name(const char *arg)
{
	static char s[3] = "-";

	if (!strncmp(arg, "--", 2) || !optopt || optopt >= 256)
		return arg;
	s[1] = (char)optopt;
	return s;
}

static gboolean on_signal(gpointer p)
{
	struct b13d *d = p;

	logm(0, "signal received, exiting");
	g_main_loop_quit(d->loop);
	return G_SOURCE_CONTINUE;
}

enum { OPT_HOLD = 256, OPT_STALL, OPT_CHAOS, OPT_NO_DISCARD,
       OPT_RING, OPT_SOCKET_MODE, OPT_SOCKET_GROUP, OPT_CONTROL_MODE,
       OPT_CONTROL_GROUP, OPT_CONTROL_CLIENTS, OPT_CONTROL_IDLE };

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket-path", required_argument, NULL, 's' },
		{ "socket-mode", required_argument, NULL, OPT_SOCKET_MODE },
		{ "socket-group", required_argument, NULL, OPT_SOCKET_GROUP },
		{ "control", required_argument, NULL, 'c' },
		{ "control-mode", required_argument, NULL, OPT_CONTROL_MODE },
		{ "control-group", required_argument, NULL, OPT_CONTROL_GROUP },
		{ "control-clients", required_argument, NULL,
		  OPT_CONTROL_CLIENTS },
		{ "control-idle-ms", required_argument, NULL, OPT_CONTROL_IDLE },
		{ "page-bits", required_argument, NULL, 'b' },
		{ "features", required_argument, NULL, 'f' },
		{ "hold-ms", required_argument, NULL, OPT_HOLD },
		{ "stall-after-ms", required_argument, NULL, OPT_STALL },
		{ "chaos", no_argument, NULL, OPT_CHAOS },
		{ "no-discard", no_argument, NULL, OPT_NO_DISCARD },
		{ "ring-features", no_argument, NULL, OPT_RING },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static struct b13d d;
	GError *err = NULL;
	int o;

	b13d_init(&d);
	d.ctl_opts = (struct ctl_opts){
		.mode = 0600, .gid = (gid_t)-1,
		.max_conns = DEFAULT_CTL_CLIENTS,
		.idle_ms = DEFAULT_CTL_IDLE_MS, .event = ctl_event,
	};
	d.control_path = getenv("BALLOON13_CONTROL");
	if (!d.control_path || !*d.control_path)
		d.control_path = DEFAULT_CONTROL;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":s:c:b:f:vVh", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			d.socket_path = optarg;
			break;
		case OPT_SOCKET_MODE:
			d.socket_mode = opt_mode("--socket-mode", optarg);
			break;
		case OPT_SOCKET_GROUP:
			d.socket_gid = opt_group("--socket-group", optarg);
			break;
		case 'c':
			d.control_path = optarg;
			break;
		case OPT_CONTROL_MODE:
			d.ctl_opts.mode = opt_mode("--control-mode", optarg);
			break;
		case OPT_CONTROL_GROUP:
			d.ctl_opts.gid = opt_group("--control-group", optarg);
			break;
		case OPT_CONTROL_CLIENTS:
			d.ctl_opts.max_conns = opt_uint("--control-clients",
							optarg, 1, 1024);
			break;
		case OPT_CONTROL_IDLE:
			d.ctl_opts.idle_ms = opt_uint("--control-idle-ms",
						      optarg, 100, 3600000);
			break;
		case 'b':
			d.page_bits = opt_uint("--page-bits", optarg, 0, 63);
			break;
		case 'f': {
			const char *why;

			if (b13_parse_features(optarg, &d.features, &why))
				usage_error("--features '%s': %s", optarg, why);
			break;
		}
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
		case OPT_NO_DISCARD:
			d.no_discard = true;
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
		case 'V':
			printf("balloon13d %s\n", B13_VERSION);
			return 0;
		case ':':
			usage_error("option '%s' needs a value",
				    opt_name(argv[optind - 1]));
		default:
			usage_error("unknown option '%s'",
				    opt_name(argv[optind - 1]));
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
	b13d_catch_sigbus();
	setvbuf(stderr, NULL, _IOLBF, 0);
	commands_init(&d);

	/* SIGTERM from here on exits cleanly, even before the loop runs. */
	d.loop = g_main_loop_new(NULL, FALSE);
	g_unix_signal_add(SIGTERM, on_signal, &d);
	g_unix_signal_add(SIGINT, on_signal, &d);
	b13d_time_loop(&d);
	if (b13d_listen(&d, &err)) {
		fprintf(stderr, "balloon13d: %s\n", err->message);
		return 1;
	}
	d.ctl = ctl_server_new(d.control_path, &d.ctl_opts, on_control, &d,
			       &err);
	if (!d.ctl) {
		fprintf(stderr, "balloon13d: control socket: %s\n",
			err->message);
		b13d_shutdown(&d);
		return 1;
	}
	logm(0, "balloon13d %s listening on %s (control %s), page_bits %u, "
	     "features 0x%" PRIx64 "%s%s", B13_VERSION, d.socket_path,
	     d.control_path, d.page_bits, d.features,
	     d.chaos ? ", chaos" : "", d.ring_features ? ", ring features" : "");
	if (d.hold_ms)
		logm(0, "page-list buffers held %u ms after discard", d.hold_ms);
	if (d.no_discard)
		logm(0, "--no-discard: ballooned blocks are counted, never "
		     "discarded");

	g_main_loop_run(d.loop);

	b13d_detach(&d);
	commands_stop(&d, "balloon13d is exiting");
	ctl_server_free(d.ctl);
	b13d_shutdown(&d);
	g_main_loop_unref(d.loop);
	return 0;
}
