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

/* The request's name ("VHOST_USER_SET_VRING_NUM"), "unknown" if none. */
const char *b13_vu_request_name(int request);

/*
 * Check msg against dev's current state (queues, memory table) before
 * libvhost-user handles it.  Also looks at the fds it carries: memory
 * regions must be regular files at least as long as the region, kick and
 * call fds eventfds (made non-blocking, so a write or read never waits).
 *
 * Returns NULL if the library may go ahead, else why not (written into
 * buf, len bytes, and returned).  On refusal the caller closes msg's fds
 * and ends the connection.
 */
const char *b13_vu_check_msg(const VuDev *dev, const VhostUserMsg *msg,
			     const struct b13_vu_offer *offer, char *buf,
			     size_t len);

/*
 * Do queue q's three rings lie wholly, and aligned, inside one region of
 * the memory table each?  libvhost-user only checks that each starts in
 * one.  False as well if the queue has no size or no addresses.
 */
bool b13_vu_rings_fit(const VuDev *dev, unsigned int q);

#endif /* BALLOON13_VHOST_CHECK_H */
