/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * balloon13d: what the vhost-user front end sends, checked before
 * libvhost-user acts on it.  The front end (the VMM) is not trusted any
 * more than the guest: libvhost-user 10.0.2 indexes its queue array with
 * the index a message names, maps rings that only start inside guest
 * memory, and trusts region counts and file sizes.  Every request
 * balloon13d lets through has its size, fds, indexes, ring geometry and
 * memory regions checked here; anything else ends the connection.
 */
#ifndef BALLOON13_VHOST_CHECK_H
#define BALLOON13_VHOST_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libvhost-user.h"

/* What the device offers; a front end may acknowledge nothing else. */
struct b13_vu_offer {
	uint64_t features;		/* virtio and vhost-user feature bits */
	uint64_t protocol_features;	/* VHOST_USER_PROTOCOL_F_* */
};

/*
 * The protocol features balloon13d offers: config space, multiqueue (the
 * queue count), reply-ack and memory slots.  Not offered, and so refused:
 * dirty logging, the backend channel, host notifiers, postcopy, inflight
 * tracking, in-band notifications.
 */
#define B13_VU_PROTOCOL_FEATURES					\
	(1ull << VHOST_USER_PROTOCOL_F_MQ |				\
	 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK |			\
	 1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS |		\
	 1ull << VHOST_USER_PROTOCOL_F_CONFIG)

/* The bytes of a file a memory region maps, and what holds them. */
struct b13_vu_file {
	uint64_t gpa, size, qva;	/* the region */
	uint64_t offset;		/* of its first byte in the file */
	uint64_t dev, ino;		/* the file */
	uint32_t fs;			/* statfs f_type */
	uint64_t page;			/* statfs f_bsize: its page size */
};

/*
 * The files of the regions libvhost-user holds, as far as balloon13d let
 * them through: kept by b13_vu_files_note(), so that a region added later
 * cannot map bytes an earlier one maps.
 */
struct b13_vu_files {
	struct b13_vu_file r[VHOST_USER_MAX_RAM_SLOTS];
	uint32_t n;
};

/* The request's name ("VHOST_USER_SET_VRING_NUM"), "unknown" if none. */
const char *b13_vu_request_name(int request);

/*
 * Check msg against dev's current state (queues, memory table, and the
 * files of its regions) before libvhost-user handles it.  Also looks at
 * the fds it carries: memory regions must be regular files at least as
 * long as the region, on a file system fit for guest RAM (tmpfs and
 * memfd, hugetlbfs, ext4, xfs, btrfs), no two of them mapping the same
 * file bytes, and must end below 2^63 in guest-physical and front-end
 * address space; kick and call fds eventfds (made non-blocking, so a
 * write or read never waits).
 *
 * Returns NULL if the library may go ahead, else why not (written into
 * buf, len bytes, and returned).  On refusal the caller closes msg's fds
 * and ends the connection.
 */
const char *b13_vu_check_msg(const VuDev *dev, const VhostUserMsg *msg,
			     const struct b13_vu_offer *offer,
			     const struct b13_vu_files *files, char *buf,
			     size_t len);
/* A memory message was let through: update the files kept for it. */
void b13_vu_files_note(struct b13_vu_files *files, const VhostUserMsg *msg);
/* The page size of the region (gpa, size) noted; 0 if none. */
uint64_t b13_vu_files_page(const struct b13_vu_files *files, uint64_t gpa,
			   uint64_t size);
/* A file system's name, if known ("fuse"), and whether it may hold RAM. */
const char *b13_vu_fs_name(uint32_t magic);
bool b13_vu_fs_trusted(uint32_t magic);

/*
 * Do queue q's three rings lie wholly, and aligned, inside one region of
 * the memory table each?  libvhost-user only checks that each starts in
 * one.  False as well if the queue has no size or no addresses.
 */
bool b13_vu_rings_fit(const VuDev *dev, unsigned int q);

#endif /* BALLOON13_VHOST_CHECK_H */
