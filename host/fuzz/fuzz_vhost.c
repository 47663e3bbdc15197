// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer harness: a hostile vhost-user front end and guest against the
 * daemon's own device (device.c), not a copy of it.  Each input is a
 * conversation over a real socket: vhost-user messages (whole, or cut in
 * two and sent in two writes) carrying fds the input chooses (memfds of
 * its chosen size, the last memfd again, eventfds, pipes), writes into guest memory (rings,
 * descriptors, page lists, stats, withdrawals, reports), kicks, and
 * requests the host queues for the guest.  Every byte goes through the
 * daemon's reader (reader_fill()), its checks (vhost_check.c) and
 * libvhost-user, rebuilt here with ASan and UBSan, and the main loop runs
 * the queue work the way balloon13d's does.
 *
 * libvhost-user maps guest memory with mmap(); here every such mapping
 * gets 16 MiB of PROT_NONE on either side (fuzz_guarded_mmap()), so an
 * access past a region's mapping faults instead of landing in whatever
 * happens to be mapped next.
 *
 * What must hold: nothing the guest or the front end sends makes the
 * device read or write out of bounds, assert, leak or hang.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "device.h"
#include "fuzz.h"

#define MAX_FDS		32
#define MAX_STEPS	64
#define MEMFD_MAX	(1 << 20)
#define GUARD		(16ull << 20)

/* ---- guarded mappings for libvhost-user ------------------------------ */

struct guarded {
	void *addr;
	size_t len;
};
static struct guarded maps[64];

void *fuzz_guarded_mmap(void *addr, size_t len, int prot, int flags, int fd,
			off_t off);
int fuzz_guarded_munmap(void *addr, size_t len);

void *fuzz_guarded_mmap(void *addr, size_t len, int prot, int flags, int fd,
			off_t off)
{
	uint8_t *base, *p;
	size_t i;

	if (addr || len > (64ull << 30))
		return mmap(addr, len, prot, flags, fd, off);
	base = mmap(NULL, len + 2 * GUARD, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return MAP_FAILED;
	p = mmap(base + GUARD, len, prot, flags | MAP_FIXED, fd, off);
	if (p == MAP_FAILED) {
		munmap(base, len + 2 * GUARD);
		return MAP_FAILED;
	}
	for (i = 0; i < G_N_ELEMENTS(maps); i++) {
		if (!maps[i].addr) {
			maps[i] = (struct guarded){ p, len };
			return p;
		}
	}
	abort();	/* more mappings than a conversation can make */
}

int fuzz_guarded_munmap(void *addr, size_t len)
{
	size_t i;

	for (i = 0; i < G_N_ELEMENTS(maps); i++) {
		if (maps[i].addr == addr) {
			FUZZ_CHECK(maps[i].len == len);
			maps[i].addr = NULL;
			return munmap((uint8_t *)addr - GUARD, len + 2 * GUARD);
		}
	}
	return munmap(addr, len);
}

/* ---- the conversation -------------------------------------------------- */

static struct {
	int peer;		/* the front end's end of the socket */
	int fds[MAX_FDS];	/* every fd this input made */
	int nfds;
	int memfds[MAX_FDS];	/* guest memory the input can write */
	int nmem;
	int efds[MAX_FDS];	/* eventfds: kicking writes to them all */
	int nefd;
} h;

static struct b13d d;
static bool narrate;

/*
 * Discards are counted, not made: a guest can legitimately ask for
 * thousands per input, which real madvise() calls (and ASan) make too
 * slow to fuzz.  What is discarded where is fuzz_pagelist's to check.
 */
static int no_discard(void *addr, size_t len, void *arg)
{
	(void)addr, (void)len, (void)arg;
	return 0;
}

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

	switch (kind % 4) {
	case 3:		/* the last memfd again: regions of one file */
		if (h.nmem)
			return dup(h.memfds[h.nmem - 1]);
		/* fall through */
	case 0:
		fd = memfd_create("fuzz-ram", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (in_u16(in) % 257) * 4096))
			abort();
		if (h.nmem < MAX_FDS)
			h.memfds[h.nmem++] = keep_fd(dup(fd));
		return fd;
	case 1:
		fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (h.nefd < MAX_FDS)
			h.efds[h.nefd++] = keep_fd(dup(fd));
		return fd;
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

/* Let the daemon's main loop run until it has nothing left to do now. */
static void pump(void)
{
	int i;

	for (i = 0; i < 256 && g_main_context_iteration(NULL, FALSE); i++)
		drain();
	drain();
}

/* Send bytes (and, with the first write, fds), in one or two writes. */
static void send_msg(const uint8_t *buf, size_t len, const int *fds, int nfd,
		     size_t cut)
{
	char control[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { (void *)buf, cut && cut < len ? cut : len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (nfd) {
		memset(control, 0, sizeof(control));
		mh.msg_control = control;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfd);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfd);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfd);
	}
	if (sendmsg(h.peer, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return;
	if (iov.iov_len < len) {	/* the reader must keep its place */
		pump();
		if (send(h.peer, buf + iov.iov_len, len - iov.iov_len,
			 MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			return;
	}
	pump();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	signal(SIGPIPE, SIG_IGN);
	narrate = getenv("FUZZ_VHOST_VERBOSE") != NULL;
	b13d_init(&d);
	d.inline_discards = true;	/* no worker thread in a fuzzer */
	d.features = B13_F_ALL;
	d.ring_features = true;		/* indirect descriptors, event idx */
	d.map.discard = no_discard;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	int sv[2], step, i;

	memset(&h, 0, sizeof(h));
	verbose = narrate ? 2 : -1;	/* the daemon's log level */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	h.peer = sv[1];
	FUZZ_CHECK(b13d_attach(&d, sv[0]));

	for (step = 0; step < MAX_STEPS && in.left && d.live; step++) {
		uint8_t op = in_u8(&in);

		if (op >= 0xf0) {		/* the guest writes memory */
			uint8_t buf[256];
			size_t len = in_u8(&in);

			for (i = 0; i < (int)len; i++)
				buf[i] = in_u8(&in);
			if (h.nmem && pwrite(h.memfds[in_u8(&in) % h.nmem], buf,
					     len, in_u32(&in) % MEMFD_MAX) < 0)
				continue;
			continue;
		}
		if (op >= 0xe8) {		/* the guest kicks */
			for (i = 0; i < h.nefd; i++)
				if (eventfd_write(h.efds[i], 1))
					break;
			pump();
			continue;
		}
		if (op >= 0xe0) {		/* the host asks the guest */
			static const enum req_kind kinds[] = {
				REQ_RESIZE, REQ_STATS, REQ_STATS_INTERVAL };

			queue_req(&d, kinds[(op - 0xe0) % 3], in_u32(&in));
			flush_requests(&d);
			pump();
			continue;
		}
		{				/* a vhost-user message */
			uint8_t msg[VHOST_USER_HDR_SIZE + sizeof(((VhostUserMsg *)
				NULL)->payload)];
			uint32_t req, flags, len;
			int fds[8], nfd;
			size_t cut;

			req = op < 0xc0 ? op % (VHOST_USER_GET_SHARED_OBJECT + 3)
				       : in_u32(&in);
			flags = in_u8(&in) == 0xff ? in_u32(&in) : 1;
			len = in_u16(&in) % (sizeof(msg) - VHOST_USER_HDR_SIZE +
					     1);
			/* rarely, a size longer than what follows */
			if (op >= 0xb8 && op < 0xc0)
				len = in_u32(&in);
			memcpy(msg, &req, 4);
			memcpy(msg + 4, &flags, 4);
			memcpy(msg + 8, &len, 4);
			for (i = 0; i < (int)(len < sizeof(msg) -
					      VHOST_USER_HDR_SIZE ? len :
					      sizeof(msg) - VHOST_USER_HDR_SIZE);
			     i++)
				msg[VHOST_USER_HDR_SIZE + i] = in_u8(&in);
			nfd = in_u8(&in) % 4;
			if (req == VHOST_USER_SET_MEM_TABLE && len >= 4)
				nfd = msg[VHOST_USER_HDR_SIZE] % 9;
			for (i = 0; i < nfd; i++)
				fds[i] = make_fd(&in);
			cut = in_u8(&in) == 0x5a ? 1 + in_u8(&in) : 0;
			send_msg(msg, VHOST_USER_HDR_SIZE +
				 (len < sizeof(msg) - VHOST_USER_HDR_SIZE ? len :
				  sizeof(msg) - VHOST_USER_HDR_SIZE), fds, nfd,
				 cut);
			for (i = 0; i < nfd; i++)
				close(fds[i]);
		}
	}
	close(h.peer);
	pump();			/* the daemon sees the front end go */
	b13d_detach(&d);
	pump();
	for (i = 0; i < (int)G_N_ELEMENTS(maps); i++)
		FUZZ_CHECK(!maps[i].addr);	/* every mapping undone */
	for (i = 0; i < h.nfds; i++)
		close(h.fds[i]);
	return 0;
}
