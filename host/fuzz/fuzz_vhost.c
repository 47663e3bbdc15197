// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer harness: a hostile vhost-user front end.  Each input is a
 * conversation: vhost-user messages with fds the input chooses (memfds of
 * its chosen size, eventfds, pipes), writes into guest memory (rings,
 * descriptors, page lists) and kicks.  Every message passes
 * b13_vu_check_msg() the way balloon13d's process_msg hook does, and what
 * it lets through goes to libvhost-user itself, rebuilt here with ASan and
 * UBSan from the QEMU 10.0.2 source; a kick runs the device's queue work
 * (vu_queue_pop(), b13_handle_msg() for outputq, vu_queue_push(),
 * vu_queue_notify()) on queues balloon13d would call ready.
 *
 * What must hold: nothing the filter passes makes the library or the
 * device read or write out of bounds, assert or hang; and once the filter
 * refuses a message (or the library gives up), the conversation ends, as
 * balloon13d ends the connection.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "standard-headers/linux/virtio_config.h"
#include "b13.h"
#include "fuzz.h"
#include "vhost_check.h"

#define MAX_FDS		32
#define MAX_STEPS	64
#define MEMFD_MAX	(1 << 20)

static struct {
	VuDev dev;
	int peer;		/* the front end's end of the socket */
	VhostUserMsg next;	/* what read_msg hands over */
	bool panicked;
	int fds[MAX_FDS];	/* every fd this input made */
	int nfds;
	int memfds[MAX_FDS];
	int nmem;
} h;

static const struct b13_vu_offer offer = {
	.features = 1ull << VIRTIO_F_VERSION_1 |
		    1ull << VHOST_USER_F_PROTOCOL_FEATURES,
	.protocol_features = B13_VU_PROTOCOL_FEATURES,
};

static void panic_cb(VuDev *dev, const char *err)
{
	(void)dev;
	if (getenv("FUZZ_VHOST_VERBOSE"))
		fprintf(stderr, "libvhost-user: %s\n", err);
	h.panicked = true;
}

static bool read_msg(VuDev *dev, int sock, VhostUserMsg *vmsg)
{
	(void)dev;
	(void)sock;
	*vmsg = h.next;
	return true;
}

static void set_watch(VuDev *dev, int fd, int cond, vu_watch_cb cb, void *d)
{
	(void)dev, (void)fd, (void)cond, (void)cb, (void)d;
}

static void remove_watch(VuDev *dev, int fd)
{
	(void)dev, (void)fd;
}

/* balloon13d's process_msg, minus the logging. */
static int process_msg(VuDev *dev, VhostUserMsg *msg, int *do_reply)
{
	char buf[200];
	int i;

	if (getenv("FUZZ_VHOST_VERBOSE"))
		fprintf(stderr, "request %s\n", b13_vu_request_name(msg->request));
	if (b13_vu_check_msg(dev, msg, &offer, NULL, buf, sizeof(buf))) {
		if (getenv("FUZZ_VHOST_VERBOSE"))
			fprintf(stderr, "refused: %s\n", buf);
		for (i = 0; i < msg->fd_num; i++)
			close(msg->fds[i]);
		msg->fd_num = 0;
		dev->broken = true;
		h.panicked = true;
		shutdown(dev->sock, SHUT_RDWR);
		return 1;
	}
	if (msg->request == VHOST_USER_GET_FEATURES ||
	    msg->request == VHOST_USER_GET_PROTOCOL_FEATURES) {
		msg->payload.u64 = msg->request == VHOST_USER_GET_FEATURES ?
				   offer.features : offer.protocol_features;
		msg->size = sizeof(msg->payload.u64);
		msg->fd_num = 0;
		*do_reply = 1;
		return 1;
	}
	return 0;
}

static int get_config(VuDev *dev, uint8_t *config, uint32_t len)
{
	(void)dev;
	if (len > VHOST_USER_MAX_CONFIG_SIZE)
		return -1;
	memset(config, 0, len);
	config[0] = 12;
	return 0;
}

static int set_config(VuDev *dev, const uint8_t *data, uint32_t offset,
		      uint32_t size, uint32_t flags)
{
	(void)dev, (void)data, (void)offset, (void)size, (void)flags;
	return 0;
}

static void started(VuDev *dev, int qidx, bool on)
{
	(void)dev, (void)qidx, (void)on;
}

static const VuDevIface iface = {
	.process_msg = process_msg,
	.get_config = get_config,
	.set_config = set_config,
	.queue_set_started = started,
};

static int keep_fd(int fd)
{
	if (fd >= 0 && h.nfds < MAX_FDS)
		h.fds[h.nfds++] = fd;
	return fd;
}

/* An fd of the kind the input picks, for a message to carry. */
static int make_fd(struct in *in)
{
	uint8_t kind = in_u8(in);
	int fd, p[2];

	switch (kind % 3) {
	case 0:
		fd = memfd_create("fuzz-ram", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (in_u16(in) % 257) * 4096))
			abort();
		if (h.nmem < MAX_FDS)
			h.memfds[h.nmem++] = dup(fd);
		return fd;
	case 1:
		return eventfd(0, EFD_CLOEXEC);
	default:
		if (pipe(p))
			abort();
		keep_fd(p[1]);
		return p[0];
	}
}

/* Read and drop the device's replies. */
static void drain(void)
{
	char buf[4096];

	while (recv(h.peer, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static int discard(void *addr, size_t len, void *arg)
{
	(void)addr, (void)len, (void)arg;
	return 0;
}

/* What balloon13d does on a kick, on the queues it would call ready. */
static void kick(struct b13_map *map, struct b13_stats *st)
{
	VuDev *dev = &h.dev;
	struct b13_region_desc desc[16];
	uint32_t i;
	int q, k;

	for (i = 0; i < dev->nregions && i < 16; i++)
		desc[i] = (struct b13_region_desc){
			dev->regions[i].gpa, dev->regions[i].size,
			(uint8_t *)(uintptr_t)(dev->regions[i].mmap_addr +
					       dev->regions[i].mmap_offset), 0 };
	b13_map_set_regions(map, desc, i);
	for (q = 0; q < B13_NUM_VQS; q++) {
		VuVirtq *vq = vu_get_queue(dev, q);

		if (!vu_queue_started(dev, vq) || !vu_queue_enabled(dev, vq) ||
		    vq->call_fd < 0 || !b13_vu_rings_fit(dev, q))
			continue;
		for (k = 0; k < 8 && !dev->broken; k++) {
			VuVirtqElement *e = vu_queue_pop(dev, vq, sizeof(*e));
			struct b13_msg_result res;

			if (!e)
				break;
			if (q == B13_VQ_OUTPUT) {
				b13_handle_msg(map, st, e->out_sg, e->out_num,
					       e->in_num, 0, &res);
				if (getenv("FUZZ_VHOST_VERBOSE"))
					fprintf(stderr, "outputq: %s, %lu "
						"entries\n",
						b13_reject_names[res.why],
						(unsigned long)res.n);
			}
			else if (e->in_num)
				memset(e->in_sg[0].iov_base, 0,
				       e->in_sg[0].iov_len < 16 ?
				       e->in_sg[0].iov_len : 16);
			vu_queue_push(dev, vq, e, 0);
			free(e);
		}
		if (!dev->broken)
			vu_queue_notify(dev, vq);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	/* libvhost-user writes replies without MSG_NOSIGNAL. */
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct b13_stats st = { { 0 }, 0 };
	struct b13_map map;
	int sv[2], step, i;

	memset(&h, 0, sizeof(h));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	h.peer = sv[1];
	FUZZ_CHECK(vu_init(&h.dev, B13_NUM_VQS, sv[0], panic_cb, read_msg,
			   set_watch, remove_watch, &iface));
	b13_map_init(&map, 12);
	map.discard = discard;

	for (step = 0; step < MAX_STEPS && in.left && !h.panicked &&
	     !h.dev.broken; step++) {
		uint8_t op = in_u8(&in);
		VhostUserMsg *m = &h.next;
		size_t len;

		if (op >= 0xf0) {		/* the guest writes memory */
			uint8_t buf[256];

			len = in_u8(&in);
			for (i = 0; i < (int)len; i++)
				buf[i] = in_u8(&in);
			if (h.nmem && pwrite(h.memfds[in_u8(&in) % h.nmem], buf,
					     len, in_u32(&in) % MEMFD_MAX) < 0)
				continue;
			continue;
		}
		if (op >= 0xe0) {		/* the guest kicks */
			kick(&map, &st);
			drain();
			continue;
		}
		/* A message: request, flags, payload, fds. */
		memset(m, 0, sizeof(*m));
		m->request = op < 0xc0 ? op % (VHOST_USER_GET_SHARED_OBJECT + 3)
				       : (int)in_u32(&in);
		m->flags = in_u8(&in) == 0xff ? in_u32(&in) : 1;
		len = in_u16(&in) % (sizeof(m->payload) + 1);
		m->size = len;
		for (i = 0; i < (int)len; i++)
			((uint8_t *)&m->payload)[i] = in_u8(&in);
		m->fd_num = in_u8(&in) % 4;
		if (m->request == VHOST_USER_SET_MEM_TABLE)
			m->fd_num = m->payload.memory.nregions %
				    (VHOST_MEMORY_BASELINE_NREGIONS + 1);
		for (i = 0; i < m->fd_num; i++)
			m->fds[i] = make_fd(&in);
		vu_dispatch(&h.dev);
		drain();
	}
	vu_deinit(&h.dev);
	close(h.peer);
	b13_map_free(&map);
	for (i = 0; i < h.nfds; i++)
		close(h.fds[i]);
	for (i = 0; i < h.nmem; i++)
		close(h.memfds[i]);
	return 0;
}
