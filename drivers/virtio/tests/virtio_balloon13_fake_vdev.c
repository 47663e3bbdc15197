// SPDX-License-Identifier: GPL-2.0-only
/*
 * A fake virtio memory balloon (device 13) for KUnit tests.
 *
 * The fake is a virtio transport and a device in one.  The driver side is
 * the kernel's own: a virtio_device registered with
 * register_virtio_device() under a kunit device, split virtqueues from
 * vring_create_virtqueue(), unchanged virtio_ring code.  The device side
 * reads and writes the same rings through the host-side vring helpers
 * (vringh), as drivers/vdpa/vdpa_sim does.  The device offers no
 * VIRTIO_F_ACCESS_PLATFORM, so the driver does not use the DMA API and its
 * descriptors carry guest-physical addresses; an identity IOTLB over the
 * memory of every node lets the vringh_*_iotlb() accessors turn them back
 * into pages (and turns an address outside memory into a ring error rather
 * than a crash).
 *
 * Contexts, as on a real transport:
 * - A driver notification may come in atomic context with the driver's
 *   locks held, so fake_vdev_notify() only counts it, wakes waiters and, in
 *   auto mode, queues the outputq work.  Nothing is processed inline: the
 *   device answering from inside virtqueue_kick() would call back into the
 *   driver while it still holds the lock it kicked under.
 * - The device side runs in process context (the test's thread or the
 *   work item), serialised per queue by fake_vdev_queue::lock.  It never
 *   sleeps in memory reclaim while the driver might be waiting for it: the
 *   work item allocates with GFP_NOWAIT only.
 * - Interrupts reach the driver from interrupt context, through an
 *   irq_work per queue, so callbacks run where they would in a VM and
 *   lockdep sees them there.  Not a hard irq_work: a virtio interrupt
 *   handler may be threaded (PREEMPT_RT), so its callbacks may take
 *   spinlock_t, and lockdep (PROVE_RAW_LOCK_NESTING) checks just that.
 *
 * Teardown: reset and del_vqs first mark a queue not ready under its lock
 * (no new device work, no new interrupt), then wait out the interrupt and
 * the work item in flight, then free the ring.  Messages a test still holds
 * become stale; the test completes (and so frees) them, or the device frees
 * them when the test ends.
 */
#include <kunit/device.h>
#include <kunit/test.h>
#include <linux/bitops.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/highmem.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/module.h>
#include <linux/nodemask.h>
#include <linux/slab.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "virtio_balloon13_fake_vdev.h"

/* fake_vdev_queue::irq_pending bits */
#define FAKE_VDEV_IRQ_USED	0	/* used buffers: vring_interrupt() */
#define FAKE_VDEV_IRQ_FORCE	1	/* call the callback regardless */

/*
 * Features the fake can serve: vringh knows split rings only; device 13's
 * own bits all.
 */
#define FAKE_VDEV_FEATURES_OK	(BIT_ULL(VIRTIO_F_VERSION_1) |		\
				 BIT_ULL(VIRTIO_RING_F_EVENT_IDX) |	\
				 BIT_ULL(VIRTIO_RING_F_INDIRECT_DESC) |	\
				 BIT_ULL(FAKE_VDEV_F_WITHDRAW) |	\
				 BIT_ULL(FAKE_VDEV_F_REPORTING) |	\
				 BIT_ULL(FAKE_VDEV_F_FULL_STATS) |	\
				 BIT_ULL(FAKE_VDEV_F_PRESSURE_RELEASE))

/* How long unregistering waits for the last reference to the device. */
#define FAKE_VDEV_RELEASE_TIMEOUT	(10 * HZ)

static atomic_t fake_vdev_seq = ATOMIC_INIT(0);

static struct fake_vdev *to_fake_vdev(struct virtio_device *vdev)
{
	return container_of(vdev, struct fake_vdev, vdev);
}

static void fake_vdev_add(struct fake_vdev *fd, enum fake_vdev_counter c,
			  u64 n)
{
	atomic64_add(n, &fd->count[c]);
}

/* Any context. */
static void fake_vdev_event(struct fake_vdev *fd)
{
	atomic_long_inc(&fd->events);
	wake_up_all(&fd->wq);
}

static u32 fake_vdev_page_bits(struct fake_vdev *fd)
{
	unsigned long flags;
	u32 bits;

	spin_lock_irqsave(&fd->config_lock, flags);
	bits = le32_to_cpu(fd->config.page_bits);
	spin_unlock_irqrestore(&fd->config_lock, flags);
	return bits;
}

/* ---- interrupts ---------------------------------------------------- */

static void fake_vdev_irq_fn(struct irq_work *work)
{
	struct fake_vdev_queue *q = container_of(work, struct fake_vdev_queue,
						 irq);
	struct fake_vdev *fd = q->fd;
	struct virtqueue *vq = READ_ONCE(q->vq);
	bool force = test_and_clear_bit(FAKE_VDEV_IRQ_FORCE, &q->irq_pending);
	bool used = test_and_clear_bit(FAKE_VDEV_IRQ_USED, &q->irq_pending);

	/* A queue being torn down waits for us in irq_work_sync(). */
	if (!READ_ONCE(q->ready) || !vq)
		return;
	if (force) {
		if (vq->callback)
			vq->callback(vq);
	} else if (used) {
		vring_interrupt(0, vq);
	} else {
		return;
	}
	fake_vdev_add(fd, FAKE_VDEV_IRQS_IN + q->index, 1);
	fake_vdev_event(fd);
}

/* Called with q->lock held and the queue ready. */
static void fake_vdev_raise(struct fake_vdev_queue *q, int bit)
{
	lockdep_assert_held(&q->lock);
	set_bit(bit, &q->irq_pending);
	irq_work_queue(&q->irq);
}

/* After completing buffers; honours the driver's interrupt suppression. */
static void fake_vdev_used(struct fake_vdev_queue *q)
{
	lockdep_assert_held(&q->lock);
	if (vringh_need_notify_iotlb(&q->vrh))
		fake_vdev_raise(q, FAKE_VDEV_IRQ_USED);
}

/* ---- device side of a queue ---------------------------------------- */

/* Leave the chain just taken available (what vringh_abandon_*() did). */
static void fake_vdev_abandon(struct fake_vdev_queue *q)
{
	q->vrh.last_avail_idx--;
}

/*
 * Take the next available chain into q->riov/q->wiov.  Return 1 with
 * *head set, 0 if the driver made nothing available, -ENODEV if the queue
 * is not served, -ENOMEM (chain left available) or -EPROTO (malformed
 * ring: the queue is broken from now on).
 */
static int fake_vdev_getdesc(struct fake_vdev_queue *q, u16 *head, gfp_t gfp)
{
	int ret;

	lockdep_assert_held(&q->lock);
	if (!q->ready || q->broken)
		return -ENODEV;
	ret = vringh_getdesc_iotlb(&q->vrh, &q->riov, &q->wiov, head, gfp);
	if (ret == -ENOMEM) {
		fake_vdev_abandon(q);
		return ret;
	}
	if (ret < 0) {
		q->broken = true;
		fake_vdev_add(q->fd, FAKE_VDEV_RING_ERRORS, 1);
		return -EPROTO;
	}
	return ret;
}

/*
 * Tell the driver which buffers the device has seen, so that it notifies
 * about the next ones: with VIRTIO_RING_F_EVENT_IDX it kicks only when it
 * passes the avail event index the device published.  Return true if
 * nothing new is available.
 */
static bool fake_vdev_rearm(struct fake_vdev_queue *q)
{
	struct vringh *vrh = &q->vrh;
	__virtio16 *p;
	u16 avail;

	/*
	 * vringh_notify_enable_iotlb() (gone in later kernels), done here:
	 * the ring's addresses are guest-physical, and this fake maps all
	 * memory one to one, so the direct map reaches them.
	 */
	lockdep_assert_held(&q->lock);
	if (!vrh->event_indices) {
		p = phys_to_virt((uintptr_t)&vrh->vring.used->flags);
		WRITE_ONCE(*p, 0);
	} else {
		p = phys_to_virt((uintptr_t)&vring_avail_event(&vrh->vring));
		WRITE_ONCE(*p, cpu_to_vringh16(vrh, vrh->last_avail_idx));
	}
	/* A buffer made available meanwhile: look again after the store. */
	virtio_mb(vrh->weak_barriers);
	p = phys_to_virt((uintptr_t)&vrh->vring.avail->idx);
	avail = vringh16_to_cpu(vrh, READ_ONCE(*p));
	return avail == vrh->last_avail_idx;
}

static void fake_vdev_ring_error(struct fake_vdev_queue *q)
{
	q->broken = true;
	fake_vdev_add(q->fd, FAKE_VDEV_RING_ERRORS, 1);
}

/*
 * Discard one block the driver put in the balloon, and record it.
 *
 * A block whose first page has no references left was freed by the guest
 * while the buffer naming it was still with the device.  That check
 * assumes what the driver's design says: each block is an allocation of
 * its own (an order-0 page, or a naturally aligned buddy block).
 */
static void fake_vdev_take_block(struct fake_vdev *fd, u64 addr, u32 bits)
{
	u64 size, pfn, last;
	struct page *page;
	void *entry;
	u64 seen = 0;
	int fill;

	if (bits < 9 || bits > 40) {
		fake_vdev_add(fd, FAKE_VDEV_BAD_PAGES, 1);
		return;
	}
	size = BIT_ULL(bits);
	if ((addr & (size - 1)) || addr + size < addr) {
		fake_vdev_add(fd, FAKE_VDEV_BAD_PAGES, 1);
		return;
	}
	pfn = PHYS_PFN(addr);
	last = PHYS_PFN(addr + size - 1);
	if (!pfn_valid(pfn) || !pfn_valid(last) ||
	    !page_is_ram(pfn) || !page_is_ram(last)) {
		fake_vdev_add(fd, FAKE_VDEV_BAD_PAGES, 1);
		return;
	}

	page = pfn_to_page(pfn);
	fill = READ_ONCE(fd->discard_fill);
	/*
	 * A zero refcount doesn't mean free: the tail pages of a live
	 * non-compound allocation have none.  A page in the buddy allocator
	 * is free for sure; one on a per-CPU free list is not seen here, but
	 * with discard_fill set and KASAN on, the write below reports it.
	 */
	if (is_free_buddy_page(page)) {
		fake_vdev_add(fd, FAKE_VDEV_FREED_PAGES, 1);
	} else if (fill >= 0) {
		for (; pfn <= last; pfn++) {
			void *p = kmap_local_page(pfn_to_page(pfn));

			memset(p, fill, PAGE_SIZE);
			kunmap_local(p);
		}
	}

	entry = xa_load(&fd->pages, addr >> bits);
	if (xa_is_value(entry))
		seen = xa_to_value(entry);
	entry = xa_store(&fd->pages, addr >> bits, xa_mk_value(seen + 1),
			 GFP_NOWAIT | __GFP_NOWARN);
	if (xa_is_err(entry))
		fake_vdev_add(fd, FAKE_VDEV_RECORD_ERRORS, 1);
	if (xa_is_err(xa_store(&fd->inb, addr >> bits, xa_mk_value(1),
			       GFP_NOWAIT | __GFP_NOWARN)))
		fake_vdev_add(fd, FAKE_VDEV_RECORD_ERRORS, 1);
	fake_vdev_add(fd, FAKE_VDEV_PAGES, 1);
}

/*
 * A WITHDRAW entry: the block leaves the balloon.  The driver must not
 * have freed it yet (it waits for this buffer to come back); one not in
 * the balloon is counted, and the message's other entries still act.
 */
static void fake_vdev_withdraw_block(struct fake_vdev *fd, u64 addr, u32 bits)
{
	if (bits < 9 || bits > 40 || (addr & (BIT_ULL(bits) - 1)) ||
	    !xa_load(&fd->inb, addr >> bits)) {
		fake_vdev_add(fd, FAKE_VDEV_BAD_WITHDRAWN, 1);
		return;
	}
	if (pfn_valid(PHYS_PFN(addr)) &&
	    is_free_buddy_page(pfn_to_page(PHYS_PFN(addr))))
		fake_vdev_add(fd, FAKE_VDEV_FREED_PAGES, 1);
	xa_erase(&fd->inb, addr >> bits);
	fake_vdev_add(fd, FAKE_VDEV_WITHDRAWN, 1);
}

/* Is [@addr, @addr + @len) a run of whole blocks of RAM? */
static bool fake_vdev_range_ok(u64 addr, u64 len, u32 bits)
{
	u64 mask = BIT_ULL(bits) - 1, pfn;

	if (bits < 9 || bits > 40 || !len || ((addr | len) & mask) ||
	    addr + len < addr)
		return false;
	for (pfn = PHYS_PFN(addr); pfn <= PHYS_PFN(addr + len - 1); pfn++) {
		if (!pfn_valid(pfn) || !page_is_ram(pfn))
			return false;
		if (!((pfn + 1) % 4096))
			cond_resched();
	}
	return true;
}

/*
 * Take one free range the guest reported.  Its pages must be what the page
 * reporting core hands a driver: off the free lists (isolated) and without
 * references, until this buffer goes back.  The fake does not write them
 * (a real discard makes them read zeroes): they are free pages, and KASAN
 * would rightly report the write.
 */
static void fake_vdev_take_range(struct fake_vdev *fd, u64 addr, u64 len)
{
	u64 pfn, end = PHYS_PFN(addr + len);
	struct page *page = pfn_to_page(PHYS_PFN(addr));
	u64 used = is_free_buddy_page(page);

	for (pfn = PHYS_PFN(addr); pfn < end; pfn++) {
		used += !!page_ref_count(pfn_to_page(pfn));
		if (!((pfn + 1) % 4096))
			cond_resched();
	}
	fake_vdev_add(fd, FAKE_VDEV_REPORT_IN_USE, used);
	fake_vdev_add(fd, FAKE_VDEV_REPORT_BYTES, len);
}

/* A REPORT message: every range valid, or none acted on. */
static bool fake_vdev_take_report(struct fake_vdev *fd, const __le64 *w,
				  size_t n)
{
	u32 bits = fake_vdev_page_bits(fd);
	unsigned int bad = 0;
	size_t i;

	for (i = 0; i < n; i++)
		bad += !fake_vdev_range_ok(le64_to_cpu(w[2 * i]),
					   le64_to_cpu(w[2 * i + 1]), bits);
	if (bad) {
		fake_vdev_add(fd, FAKE_VDEV_BAD_RANGES, bad);
		return false;
	}
	for (i = 0; i < n; i++)
		fake_vdev_take_range(fd, le64_to_cpu(w[2 * i]),
				     le64_to_cpu(w[2 * i + 1]));
	fake_vdev_add(fd, FAKE_VDEV_REPORT_MSGS, 1);
	return true;
}

static void fake_vdev_take_stats(struct fake_vdev *fd, const __le64 *w,
				 unsigned int n)
{
	struct fake_vdev_stats *st = &fd->stats;
	unsigned long flags;
	unsigned int i;

	spin_lock_irqsave(&fd->stats_lock, flags);
	st->n = n;
	for (i = 0; i < n && i < FAKE_VDEV_MAX_STATS; i++) {
		st->s[i].tag = le64_to_cpu(w[2 * i]);
		st->s[i].val = le64_to_cpu(w[2 * i + 1]);
	}
	spin_unlock_irqrestore(&fd->stats_lock, flags);
}

/*
 * The device consumes one outputq message: check it, discard and record
 * its blocks, or record its stats.  @data holds @len bytes, or is NULL if
 * the message was too long to read.  @wlen is the length of any
 * device-writable descriptors, which an outputq message must not have.
 */
static void fake_vdev_consume(struct fake_vdev *fd, const u8 *data,
			      size_t len, size_t wlen)
{
	const __le32 *hdr;
	const __le64 *w;
	size_t body, i;
	u32 bits;

	fake_vdev_add(fd, FAKE_VDEV_MSGS, 1);
	fake_vdev_add(fd, FAKE_VDEV_MSG_BYTES, len);
	if (!data || wlen || len < FAKE_VDEV_MSG_HDR_LEN)
		goto bad;
	hdr = (const __le32 *)data;
	w = (const __le64 *)(data + FAKE_VDEV_MSG_HDR_LEN);
	body = len - FAKE_VDEV_MSG_HDR_LEN;
	if (hdr[1])
		goto bad;

	switch (le32_to_cpu(hdr[0])) {
	case FAKE_VDEV_MSG_PAGES:
		if (!body || body % 8)
			goto bad;
		bits = fake_vdev_page_bits(fd);
		for (i = 0; i < body / 8; i++) {
			fake_vdev_take_block(fd, le64_to_cpu(w[i]), bits);
			if (!((i + 1) % 1024))
				cond_resched();
		}
		fake_vdev_add(fd, FAKE_VDEV_PAGE_MSGS, 1);
		return;
	case FAKE_VDEV_MSG_WITHDRAW:
		if (!body || body % 8 ||
		    !(fd->vdev.features & BIT_ULL(FAKE_VDEV_F_WITHDRAW)))
			goto bad;
		bits = fake_vdev_page_bits(fd);
		for (i = 0; i < body / 8; i++)
			fake_vdev_withdraw_block(fd, le64_to_cpu(w[i]), bits);
		fake_vdev_add(fd, FAKE_VDEV_WITHDRAW_MSGS, 1);
		return;
	case FAKE_VDEV_MSG_STATS:
		if (body % 16)
			goto bad;
		fake_vdev_take_stats(fd, w, body / 16);
		fake_vdev_add(fd, FAKE_VDEV_STATS_MSGS, 1);
		return;
	case FAKE_VDEV_MSG_REPORT:
		if (!__virtio_test_bit(&fd->vdev, FAKE_VDEV_F_REPORTING) ||
		    !body || body % 16)
			goto bad;
		if (fake_vdev_take_report(fd, w, body / 16))
			return;
		goto bad;
	}
bad:
	fake_vdev_add(fd, FAKE_VDEV_BAD_MSGS, 1);
}

static void fake_vdev_auto_work(struct work_struct *work)
{
	struct fake_vdev_queue *q = container_of(work, struct fake_vdev_queue,
						 work);
	struct fake_vdev *fd = q->fd;
	unsigned int done = 0;
	bool again = false;
	size_t len, wlen;
	u16 head;
	int ret;

	mutex_lock(&q->lock);
	if (!READ_ONCE(fd->auto_output) ||
	    !(READ_ONCE(fd->status) & VIRTIO_CONFIG_S_DRIVER_OK))
		goto out;
	do {
		while ((ret = fake_vdev_getdesc(q, &head, GFP_NOWAIT |
						__GFP_NOWARN)) > 0) {
			len = vringh_kiov_length(&q->riov);
			wlen = vringh_kiov_length(&q->wiov);
			if (len <= FAKE_VDEV_MAX_MSG_LEN &&
			    vringh_iov_pull_iotlb(&q->vrh, &q->riov,
						  fd->scratch, len) != len) {
				fake_vdev_ring_error(q);
				break;
			}
			fake_vdev_consume(fd, len <= FAKE_VDEV_MAX_MSG_LEN ?
					  fd->scratch : NULL, len, wlen);
			if (vringh_complete_iotlb(&q->vrh, head, 0)) {
				fake_vdev_ring_error(q);
				break;
			}
			done++;
		}
		/* Ask for a kick for what comes next, unless it came already. */
	} while (!ret && !fake_vdev_rearm(q));
	again = ret == -ENOMEM;
	if (done)
		fake_vdev_used(q);
out:
	mutex_unlock(&q->lock);
	fake_vdev_event(fd);
	if (again) {
		/* Let reclaim make progress, then retry the chain. */
		msleep(FAKE_VDEV_POLL_MS);
		queue_work(system_unbound_wq, &q->work);
	}
}

/* Stop serving a queue and wait out its interrupt and work in flight. */
static void fake_vdev_stop_queue(struct fake_vdev_queue *q)
{
	mutex_lock(&q->lock);
	WRITE_ONCE(q->ready, false);
	mutex_unlock(&q->lock);
	irq_work_sync(&q->irq);
	cancel_work_sync(&q->work);
}

/* ---- virtio_config_ops --------------------------------------------- */

static void fake_vdev_get(struct virtio_device *vdev, unsigned int offset,
			  void *buf, unsigned int len)
{
	struct fake_vdev *fd = to_fake_vdev(vdev);
	unsigned long flags;

	memset(buf, 0, len);
	spin_lock_irqsave(&fd->config_lock, flags);
	if (offset < sizeof(fd->config))
		memcpy(buf, (u8 *)&fd->config + offset,
		       min_t(size_t, len, sizeof(fd->config) - offset));
	spin_unlock_irqrestore(&fd->config_lock, flags);
}

/* The config space is read-only: writes are ignored. */
static void fake_vdev_set(struct virtio_device *vdev, unsigned int offset,
			  const void *buf, unsigned int len)
{
}

static u32 fake_vdev_generation(struct virtio_device *vdev)
{
	struct fake_vdev *fd = to_fake_vdev(vdev);
	unsigned long flags;
	u32 gen;

	spin_lock_irqsave(&fd->config_lock, flags);
	gen = fd->config_gen;
	spin_unlock_irqrestore(&fd->config_lock, flags);
	return gen;
}

static u8 fake_vdev_get_status(struct virtio_device *vdev)
{
	return READ_ONCE(to_fake_vdev(vdev)->status);
}

static void fake_vdev_set_status(struct virtio_device *vdev, u8 status)
{
	struct fake_vdev *fd = to_fake_vdev(vdev);
	u8 old = READ_ONCE(fd->status);

	/* What the driver posted before it said it was ready. */
	if (status & ~old & VIRTIO_CONFIG_S_DRIVER_OK)
		WRITE_ONCE(fd->posted_at_ready, fake_vdev_inputq_posted(fd));
	WRITE_ONCE(fd->status, status);
	/* Buffers made available before DRIVER_OK are served now. */
	if ((status & ~old & VIRTIO_CONFIG_S_DRIVER_OK) &&
	    READ_ONCE(fd->auto_output))
		queue_work(system_unbound_wq, &fd->q[FAKE_VDEV_OUTPUTQ].work);
	fake_vdev_event(fd);
}

static void fake_vdev_reset(struct virtio_device *vdev)
{
	struct fake_vdev *fd = to_fake_vdev(vdev);
	int i;

	for (i = 0; i < FAKE_VDEV_NUM_VQS; i++)
		fake_vdev_stop_queue(&fd->q[i]);
	/* After a reset the balloon is empty. */
	mutex_lock(&fd->q[FAKE_VDEV_OUTPUTQ].lock);
	xa_destroy(&fd->inb);
	mutex_unlock(&fd->q[FAKE_VDEV_OUTPUTQ].lock);
	WRITE_ONCE(fd->status, 0);
	fake_vdev_event(fd);
}

static bool fake_vdev_notify(struct virtqueue *vq)
{
	struct fake_vdev_queue *q = vq->priv;
	struct fake_vdev *fd = q->fd;

	fake_vdev_add(fd, FAKE_VDEV_KICKS_IN + q->index, 1);
	if (q->index == FAKE_VDEV_OUTPUTQ && READ_ONCE(fd->auto_output))
		queue_work(system_unbound_wq, &q->work);
	fake_vdev_event(fd);
	return true;
}

static void fake_vdev_del_vqs(struct virtio_device *vdev)
{
	struct fake_vdev *fd = to_fake_vdev(vdev);
	struct virtqueue *vq;
	int i;

	for (i = FAKE_VDEV_NUM_VQS - 1; i >= 0; i--) {
		struct fake_vdev_queue *q = &fd->q[i];

		if (!q->vq)
			continue;
		fake_vdev_stop_queue(q);
		mutex_lock(&q->lock);
		vq = q->vq;
		WRITE_ONCE(q->vq, NULL);
		vringh_kiov_cleanup(&q->riov);
		vringh_kiov_cleanup(&q->wiov);
		mutex_unlock(&q->lock);
		vring_del_virtqueue(vq);
	}
}

static struct virtqueue *fake_vdev_setup_vq(struct fake_vdev *fd,
					    unsigned int index,
					    struct virtqueue_info *info)
{
	struct fake_vdev_queue *q = &fd->q[index];
	struct virtqueue *vq;
	int err;

	vq = vring_create_virtqueue(index, fd->queue_size, SMP_CACHE_BYTES,
				    &fd->vdev, true, true, info->ctx,
				    fake_vdev_notify, info->callback,
				    info->name);
	if (!vq)
		return ERR_PTR(-ENOMEM);
	vq->priv = q;

	mutex_lock(&q->lock);
	err = vringh_init_iotlb(&q->vrh, fd->vdev.features,
				virtqueue_get_vring_size(vq), true,
				(struct vring_desc *)(uintptr_t)
				virtqueue_get_desc_addr(vq),
				(struct vring_avail *)(uintptr_t)
				virtqueue_get_avail_addr(vq),
				(struct vring_used *)(uintptr_t)
				virtqueue_get_used_addr(vq));
	if (!err) {
		vringh_set_iotlb(&q->vrh, &fd->iotlb, &fd->iotlb_lock);
		q->gen++;
		q->broken = false;
		q->irq_pending = 0;
		WRITE_ONCE(q->vq, vq);
		WRITE_ONCE(q->ready, true);
	}
	mutex_unlock(&q->lock);
	if (err) {
		vring_del_virtqueue(vq);
		return ERR_PTR(err);
	}
	return vq;
}

static int fake_vdev_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
			      struct virtqueue *vqs[],
			      struct virtqueue_info vqs_info[],
			      struct irq_affinity *desc)
{
	struct fake_vdev *fd = to_fake_vdev(vdev);
	unsigned int i, index = 0;
	int err;

	err = READ_ONCE(fd->fail_find_vqs);
	if (err)
		return err;
	for (i = 0; i < nvqs; i++) {
		if (!vqs_info[i].name) {
			vqs[i] = NULL;
			continue;
		}
		if (index >= FAKE_VDEV_NUM_VQS) {
			err = -ENOENT;
			goto err_del;
		}
		vqs[i] = fake_vdev_setup_vq(fd, index++, &vqs_info[i]);
		if (IS_ERR(vqs[i])) {
			err = PTR_ERR(vqs[i]);
			goto err_del;
		}
	}
	/* As a transport does when the device stops responding. */
	if (READ_ONCE(fd->break_vqs))
		virtio_break_device(vdev);
	return 0;

err_del:
	fake_vdev_del_vqs(vdev);
	return err;
}

static void fake_vdev_synchronize_cbs(struct virtio_device *vdev)
{
	struct fake_vdev *fd = to_fake_vdev(vdev);
	int i;

	for (i = 0; i < FAKE_VDEV_NUM_VQS; i++)
		irq_work_sync(&fd->q[i].irq);
}

static u64 fake_vdev_get_features(struct virtio_device *vdev)
{
	return to_fake_vdev(vdev)->device_features;
}

static int fake_vdev_finalize_features(struct virtio_device *vdev)
{
	vring_transport_features(vdev);
	/* A modern-only device. */
	if (!__virtio_test_bit(vdev, VIRTIO_F_VERSION_1))
		return -EINVAL;
	return 0;
}

static const char *fake_vdev_bus_name(struct virtio_device *vdev)
{
	return dev_name(to_fake_vdev(vdev)->parent);
}

static const struct virtio_config_ops fake_vdev_config_ops = {
	.get			= fake_vdev_get,
	.set			= fake_vdev_set,
	.generation		= fake_vdev_generation,
	.get_status		= fake_vdev_get_status,
	.set_status		= fake_vdev_set_status,
	.reset			= fake_vdev_reset,
	.find_vqs		= fake_vdev_find_vqs,
	.del_vqs		= fake_vdev_del_vqs,
	.synchronize_cbs	= fake_vdev_synchronize_cbs,
	.get_features		= fake_vdev_get_features,
	.finalize_features	= fake_vdev_finalize_features,
	.bus_name		= fake_vdev_bus_name,
};

/* ---- life cycle ---------------------------------------------------- */

static void fake_vdev_release(struct device *dev)
{
	struct fake_vdev *fd = to_fake_vdev(dev_to_virtio(dev));

	complete(&fd->released);
}

/**
 * fake_vdev_unregister() - unregister the device
 * @fd: the device.
 *
 * The bound driver is removed first.  Waits until the device's last
 * reference is gone; if that does not happen in time the test fails and
 * the fake is leaked rather than freed under someone's feet.  Does nothing
 * if the device is not registered.
 *
 * Context: process context; sleeps.
 */
void fake_vdev_unregister(struct fake_vdev *fd)
{
	if (!fd->registered)
		return;
	unregister_virtio_device(&fd->vdev);
	fd->registered = false;
	if (!wait_for_completion_timeout(&fd->released,
					 FAKE_VDEV_RELEASE_TIMEOUT)) {
		fd->leaked = true;
		KUNIT_FAIL(fd->test, "virtio device still referenced after unregistering");
	}
}

static void fake_vdev_destroy(void *data)
{
	struct fake_vdev *fd = data;
	struct fake_vdev_msg *msg, *next;
	int i;

	fake_vdev_unregister(fd);
	if (fd->leaked)
		return;
	if (fd->q[FAKE_VDEV_INPUTQ].vq || fd->q[FAKE_VDEV_OUTPUTQ].vq) {
		KUNIT_FAIL(fd->test, "the driver left its virtqueues behind");
		fake_vdev_del_vqs(&fd->vdev);
	}
	for (i = 0; i < FAKE_VDEV_NUM_VQS; i++) {
		cancel_work_sync(&fd->q[i].work);
		irq_work_sync(&fd->q[i].irq);
		vringh_kiov_cleanup(&fd->q[i].riov);
		vringh_kiov_cleanup(&fd->q[i].wiov);
		mutex_destroy(&fd->q[i].lock);
	}
	list_for_each_entry_safe(msg, next, &fd->held, node) {
		list_del(&msg->node);
		kvfree(msg);
	}
	vhost_iotlb_reset(&fd->iotlb);
	xa_destroy(&fd->pages);
	xa_destroy(&fd->inb);
	kvfree(fd->scratch);
	kfree(fd);
}

/* Identity map of every node's memory, for the vringh accessors. */
static int fake_vdev_map_memory(struct fake_vdev *fd)
{
	int nid, err;

	vhost_iotlb_init(&fd->iotlb, nr_node_ids, 0);
	for_each_online_node(nid) {
		u64 start = PFN_PHYS(node_start_pfn(nid));
		u64 end = PFN_PHYS(node_end_pfn(nid));

		if (start >= end)
			continue;
		err = vhost_iotlb_add_range(&fd->iotlb, start, end - 1, start,
					    VHOST_MAP_RW);
		if (err)
			return err;
	}
	return 0;
}

/**
 * fake_vdev_create_id() - create a fake device with any device ID
 * @test: the test; the device is freed (and unregistered) when it ends.
 * @device_id: virtio device ID, e.g. %FAKE_VDEV_ID_SELFTEST.
 * @page_bits: initial config space page_bits (any value, for hostile tests).
 *
 * The device offers VIRTIO_F_VERSION_1 and queues of
 * %FAKE_VDEV_QUEUE_SIZE; change fake_vdev::device_features,
 * fake_vdev::queue_size or fake_vdev::discard_fill before registering.
 * Auto mode is off.  The test fails and aborts if creation fails.
 *
 * Context: process context, from the test's thread; sleeps.
 * Return: the device, not yet registered.
 */
struct fake_vdev *fake_vdev_create_id(struct kunit *test, u32 device_id,
				      u32 page_bits)
{
	struct fake_vdev *fd;
	char name[32];
	int i, err;

	fd = kzalloc_obj(*fd);
	KUNIT_ASSERT_NOT_NULL(test, fd);
	fd->test = test;
	fd->device_id = device_id;
	fd->device_features = BIT_ULL(VIRTIO_F_VERSION_1);
	fd->queue_size = FAKE_VDEV_QUEUE_SIZE;
	fd->discard_fill = -1;
	spin_lock_init(&fd->config_lock);
	fd->config.page_bits = cpu_to_le32(page_bits);
	init_completion(&fd->released);
	spin_lock_init(&fd->iotlb_lock);
	INIT_LIST_HEAD(&fd->held);
	init_waitqueue_head(&fd->wq);
	xa_init(&fd->pages);
	xa_init(&fd->inb);
	spin_lock_init(&fd->stats_lock);
	for (i = 0; i < FAKE_VDEV_NUM_VQS; i++) {
		struct fake_vdev_queue *q = &fd->q[i];

		q->fd = fd;
		q->index = i;
		mutex_init(&q->lock);
		INIT_WORK(&q->work, fake_vdev_auto_work);
		q->irq = IRQ_WORK_INIT(fake_vdev_irq_fn);
	}
	fd->scratch = kvmalloc(FAKE_VDEV_MAX_MSG_LEN, GFP_KERNEL);
	err = fake_vdev_map_memory(fd);
	if (!fd->scratch || err) {
		vhost_iotlb_reset(&fd->iotlb);
		kvfree(fd->scratch);
		kfree(fd);
		KUNIT_FAIL_AND_ABORT(test, "fake_vdev: out of memory");
	}

	/* Registered first, so that it goes after fake_vdev_destroy(). */
	snprintf(name, sizeof(name), "fake_vdev.%d",
		 atomic_inc_return(&fake_vdev_seq));
	fd->parent = kunit_device_register(test, name);
	if (IS_ERR(fd->parent)) {
		err = PTR_ERR(fd->parent);
		vhost_iotlb_reset(&fd->iotlb);
		kvfree(fd->scratch);
		kfree(fd);
		KUNIT_FAIL_AND_ABORT(test, "kunit_device_register: %d", err);
	}
	err = kunit_add_action_or_reset(test, fake_vdev_destroy, fd);
	KUNIT_ASSERT_EQ(test, err, 0);
	return fd;
}

/**
 * fake_vdev_create() - create a fake virtio memory balloon (device 13)
 * @test: the test; the device is freed (and unregistered) when it ends.
 * @page_bits: config space page_bits.
 *
 * As fake_vdev_create_id() with %FAKE_VDEV_ID_BALLOON13.
 *
 * Context: process context, from the test's thread; sleeps.
 * Return: the device, not yet registered.
 */
struct fake_vdev *fake_vdev_create(struct kunit *test, u32 page_bits)
{
	return fake_vdev_create_id(test, FAKE_VDEV_ID_BALLOON13, page_bits);
}

/**
 * fake_vdev_register() - register the device on the virtio bus
 * @fd: the device.
 *
 * A driver matching the device ID binds and probes before this returns
 * (unless it probes asynchronously).  A probe that fails does not make
 * this fail: check fake_vdev_bound().  The device may be registered again
 * after fake_vdev_unregister().
 *
 * Context: process context; sleeps.
 * Return: 0, or the error from register_virtio_device(); -EBUSY if
 * already registered.
 */
int fake_vdev_register(struct fake_vdev *fd)
{
	int ret;

	if (fd->registered || fd->leaked)
		return -EBUSY;
	memset(&fd->vdev, 0, sizeof(fd->vdev));
	fd->vdev.dev.parent = fd->parent;
	fd->vdev.dev.release = fake_vdev_release;
	fd->vdev.config = &fake_vdev_config_ops;
	fd->vdev.id.device = fd->device_id;
	fd->device_features &= FAKE_VDEV_FEATURES_OK;
	WRITE_ONCE(fd->status, 0);
	reinit_completion(&fd->released);

	ret = register_virtio_device(&fd->vdev);
	if (ret) {
		put_device(&fd->vdev.dev);
		if (!wait_for_completion_timeout(&fd->released,
						 FAKE_VDEV_RELEASE_TIMEOUT))
			fd->leaked = true;
		return ret;
	}
	fd->registered = true;
	return 0;
}

/**
 * fake_vdev_bound() - is a driver bound to the device?
 * @fd: the device.
 *
 * Return: true if registered and a driver probed it successfully.
 */
bool fake_vdev_bound(struct fake_vdev *fd)
{
	return fd->registered && device_is_bound(&fd->vdev.dev);
}

/**
 * fake_vdev_of() - the fake behind a virtio device
 * @vdev: a virtio device.
 *
 * Return: the fake device, or NULL if @vdev is not one.
 */
struct fake_vdev *fake_vdev_of(struct virtio_device *vdev)
{
	return vdev->config == &fake_vdev_config_ops ? to_fake_vdev(vdev) :
						       NULL;
}

/**
 * fake_vdev_status() - the device status the driver set
 * @fd: the device.
 *
 * Return: VIRTIO_CONFIG_S_* bits.
 */
u8 fake_vdev_status(struct fake_vdev *fd)
{
	return READ_ONCE(fd->status);
}

/**
 * fake_vdev_set_page_bits() - change page_bits in the config space
 * @fd: the device.
 * @page_bits: the new value.
 *
 * Bumps the config generation and, once the driver is running, sends a
 * config change notification.
 *
 * Context: process context.
 */
void fake_vdev_set_page_bits(struct fake_vdev *fd, u32 page_bits)
{
	unsigned long flags;

	spin_lock_irqsave(&fd->config_lock, flags);
	fd->config.page_bits = cpu_to_le32(page_bits);
	fd->config_gen++;
	spin_unlock_irqrestore(&fd->config_lock, flags);
	if (fd->registered && (fake_vdev_status(fd) & VIRTIO_CONFIG_S_DRIVER_OK))
		virtio_config_changed(&fd->vdev);
}

/* ---- inputq -------------------------------------------------------- */

/**
 * fake_vdev_send_raw() - fill one inputq buffer with anything
 * @fd: the device.
 * @buf: bytes to write into the buffer.
 * @len: how many; the buffer must hold at least that many.
 * @used_len: the length reported in the used ring.  The truth is @len; a
 *	hostile device may say less, or more than the buffer holds.
 *
 * Takes the oldest buffer the driver posted, writes @buf, returns the
 * buffer used and interrupts the driver (unless it suppressed interrupts).
 *
 * Context: process context; sleeps.
 * Return: 0; -EAGAIN if no buffer is posted; -EMSGSIZE if the buffer is
 * shorter than @len (it stays posted); -EBUSY before DRIVER_OK; -ENODEV
 * if the queue is not set up or broken; -EPROTO if the driver posted a
 * device-readable buffer (it stays posted) or the ring is malformed.
 */
int fake_vdev_send_raw(struct fake_vdev *fd, const void *buf, size_t len,
		       u32 used_len)
{
	struct fake_vdev_queue *q = &fd->q[FAKE_VDEV_INPUTQ];
	u16 head;
	int ret;

	mutex_lock(&q->lock);
	if (!q->ready || q->broken) {
		ret = -ENODEV;
		goto out;
	}
	if (!(fake_vdev_status(fd) & VIRTIO_CONFIG_S_DRIVER_OK)) {
		ret = -EBUSY;
		goto out;
	}
	ret = fake_vdev_getdesc(q, &head, GFP_KERNEL);
	if (ret >= 0)
		fake_vdev_rearm(q);
	if (ret <= 0) {
		ret = ret ? ret : -EAGAIN;
		goto out;
	}
	if (q->riov.used) {
		fake_vdev_abandon(q);
		ret = -EPROTO;
		goto out;
	}
	if (vringh_kiov_length(&q->wiov) < len) {
		fake_vdev_abandon(q);
		ret = -EMSGSIZE;
		goto out;
	}
	if (vringh_iov_push_iotlb(&q->vrh, &q->wiov, buf, len) != len ||
	    vringh_complete_iotlb(&q->vrh, head, used_len)) {
		fake_vdev_ring_error(q);
		ret = -EPROTO;
		goto out;
	}
	fake_vdev_add(fd, FAKE_VDEV_REQUESTS, 1);
	fake_vdev_used(q);
	ret = 0;
out:
	mutex_unlock(&q->lock);
	/*
	 * Only a change is an event: a waiter retrying while no buffer is
	 * posted must sleep, not spin (and starve the driver's worker).
	 */
	if (ret != -EAGAIN && ret != -EBUSY)
		fake_vdev_event(fd);
	return ret;
}

/**
 * fake_vdev_send_request() - send one request on inputq
 * @fd: the device.
 * @type: %FAKE_VDEV_REQ_RESIZE, %FAKE_VDEV_REQ_STATS, or anything else.
 * @value: the request's value (bytes for RESIZE).
 *
 * Writes the 16-byte request into the oldest posted buffer and returns it
 * used with length 16; see fake_vdev_send_raw().
 *
 * Context: process context; sleeps.
 * Return: as fake_vdev_send_raw().
 */
int fake_vdev_send_request(struct fake_vdev *fd, u32 type, u64 value)
{
	struct {
		__le32 type;
		__le32 reserved;
		__le64 value;
	} req = {
		.type = cpu_to_le32(type),
		.value = cpu_to_le64(value),
	};

	BUILD_BUG_ON(sizeof(req) != FAKE_VDEV_REQ_LEN);
	return fake_vdev_send_raw(fd, &req, sizeof(req), sizeof(req));
}

/**
 * fake_vdev_send_request_wait() - send a request once a buffer is posted
 * @fd: the device.
 * @type: request type.
 * @value: request value.
 * @timeout_ms: how long to wait for a posted buffer, in milliseconds.
 *
 * Context: process context; sleeps.
 * Return: as fake_vdev_send_request(); -EAGAIN or -EBUSY after a timeout.
 */
int fake_vdev_send_request_wait(struct fake_vdev *fd, u32 type, u64 value,
				unsigned int timeout_ms)
{
	int ret;

	fake_vdev_wait(fd, (ret = fake_vdev_send_request(fd, type, value)) !=
		       -EAGAIN && ret != -EBUSY, timeout_ms);
	return ret;
}

/**
 * fake_vdev_inputq_posted() - inputq buffers the driver has posted
 * @fd: the device.
 *
 * Context: process context; sleeps.
 * Return: buffers made available and not yet used by the device; 0 if the
 * queue is not set up.
 */
unsigned int fake_vdev_inputq_posted(struct fake_vdev *fd)
{
	struct fake_vdev_queue *q = &fd->q[FAKE_VDEV_INPUTQ];
	const struct vring *vr;
	unsigned int n = 0;

	mutex_lock(&q->lock);
	if (q->ready && !q->broken) {
		vr = virtqueue_get_vring(q->vq);
		n = (u16)(virtio16_to_cpu(&fd->vdev, READ_ONCE(vr->avail->idx)) -
			  q->vrh.last_avail_idx);
	}
	mutex_unlock(&q->lock);
	return n;
}

/* ---- outputq ------------------------------------------------------- */

/**
 * fake_vdev_pop_output() - take one outputq message and hold it
 * @fd: the device.
 * @msgp: where to put the message.
 *
 * Copies the message out (its length is the sum of the chain's readable
 * descriptors; at most %FAKE_VDEV_MAX_MSG_LEN bytes are copied) and keeps
 * the buffer: the driver does not get it back, and must not free the
 * blocks it names, until fake_vdev_complete_output().  The message is not
 * checked or recorded until then either.
 *
 * Context: process context; sleeps; allocates with GFP_KERNEL.
 * Return: 0; -EAGAIN if the driver sent nothing; -ENODEV if the queue is
 * not set up or broken; -ENOMEM; -EPROTO if the ring is malformed.
 */
int fake_vdev_pop_output(struct fake_vdev *fd, struct fake_vdev_msg **msgp)
{
	struct fake_vdev_queue *q = &fd->q[FAKE_VDEV_OUTPUTQ];
	struct fake_vdev_msg *msg;
	size_t len, copy;
	u16 head;
	int ret;

	mutex_lock(&q->lock);
	ret = fake_vdev_getdesc(q, &head, GFP_KERNEL);
	if (ret >= 0)
		fake_vdev_rearm(q);
	if (ret <= 0) {
		ret = ret ? ret : -EAGAIN;
		goto out;
	}
	len = vringh_kiov_length(&q->riov);
	copy = min_t(size_t, len, FAKE_VDEV_MAX_MSG_LEN);
	msg = kvzalloc(struct_size(msg, data, copy), GFP_KERNEL);
	if (!msg) {
		fake_vdev_abandon(q);
		ret = -ENOMEM;
		goto out;
	}
	if (vringh_iov_pull_iotlb(&q->vrh, &q->riov, msg->data, copy) != copy) {
		kvfree(msg);
		fake_vdev_ring_error(q);
		ret = -EPROTO;
		goto out;
	}
	msg->gen = q->gen;
	msg->head = head;
	msg->ndesc = q->riov.used + q->wiov.used;
	msg->wlen = vringh_kiov_length(&q->wiov);
	msg->len = len;
	list_add_tail(&msg->node, &fd->held);
	*msgp = msg;
	ret = 0;
out:
	mutex_unlock(&q->lock);
	return ret;
}

/**
 * fake_vdev_wait_output() - wait for an outputq message and hold it
 * @fd: the device.
 * @msgp: where to put the message.
 * @timeout_ms: how long to wait at most, in milliseconds.
 *
 * Context: process context; sleeps.
 * Return: as fake_vdev_pop_output(); -EAGAIN after a timeout.
 */
int fake_vdev_wait_output(struct fake_vdev *fd, struct fake_vdev_msg **msgp,
			  unsigned int timeout_ms)
{
	int ret;

	fake_vdev_wait(fd, (ret = fake_vdev_pop_output(fd, msgp)) != -EAGAIN,
		       timeout_ms);
	return ret;
}

/**
 * fake_vdev_complete_output() - consume a held message and return it
 * @fd: the device.
 * @msg: a message from fake_vdev_pop_output() on @fd; freed here.
 *
 * The device checks the message, discards and records its blocks (or
 * records its stats), and only then returns the buffer used and interrupts
 * the driver.
 *
 * Context: process context; sleeps.
 * Return: 0; -ESTALE if the queue was reset or deleted since the message
 * was taken (nothing is returned to the driver then).
 */
int fake_vdev_complete_output(struct fake_vdev *fd, struct fake_vdev_msg *msg)
{
	struct fake_vdev_queue *q = &fd->q[FAKE_VDEV_OUTPUTQ];
	size_t copied = min_t(size_t, msg->len, FAKE_VDEV_MAX_MSG_LEN);
	int ret = -ESTALE;

	mutex_lock(&q->lock);
	list_del(&msg->node);
	if (q->ready && !q->broken && msg->gen == q->gen) {
		fake_vdev_consume(fd, copied == msg->len ? msg->data : NULL,
				  msg->len, msg->wlen);
		if (vringh_complete_iotlb(&q->vrh, msg->head, 0)) {
			fake_vdev_ring_error(q);
			ret = -EPROTO;
		} else {
			fake_vdev_used(q);
			ret = 0;
		}
	}
	mutex_unlock(&q->lock);
	kvfree(msg);
	fake_vdev_event(fd);
	return ret;
}

/**
 * fake_vdev_held() - number of messages taken and not yet completed
 * @fd: the device.
 *
 * Context: process context; sleeps.
 * Return: the number, stale messages included.
 */
unsigned int fake_vdev_held(struct fake_vdev *fd)
{
	struct fake_vdev_queue *q = &fd->q[FAKE_VDEV_OUTPUTQ];
	struct fake_vdev_msg *msg;
	unsigned int n = 0;

	mutex_lock(&q->lock);
	list_for_each_entry(msg, &fd->held, node)
		n++;
	mutex_unlock(&q->lock);
	return n;
}

/**
 * fake_vdev_set_auto() - consume outputq messages as they arrive, or not
 * @fd: the device.
 * @on: true to consume every message as soon as the driver kicks (from a
 *	work item), false to leave them for fake_vdev_pop_output().
 *
 * Turning it on also consumes what is already waiting.  When turning it
 * off returns, no automatic processing is in progress any more.
 *
 * Context: process context; sleeps.
 */
void fake_vdev_set_auto(struct fake_vdev *fd, bool on)
{
	struct work_struct *work = &fd->q[FAKE_VDEV_OUTPUTQ].work;

	WRITE_ONCE(fd->auto_output, on);
	if (on)
		queue_work(system_unbound_wq, work);
	else
		flush_work(work);
}

/**
 * fake_vdev_flush() - wait for the device's work and interrupts in flight
 * @fd: the device.
 *
 * On return, every message the driver kicked before the call has been
 * consumed (in auto mode) and every interrupt raised has been delivered.
 *
 * Context: process context; sleeps.
 */
void fake_vdev_flush(struct fake_vdev *fd)
{
	int i;

	for (i = 0; i < FAKE_VDEV_NUM_VQS; i++) {
		flush_work(&fd->q[i].work);
		irq_work_sync(&fd->q[i].irq);
	}
}

/**
 * fake_vdev_interrupt() - call a queue's callback, needed or not
 * @fd: the device.
 * @vq: queue index.
 *
 * Raises the queue's interrupt and calls the driver's callback from hard
 * interrupt context even when no buffer was used (vring_interrupt() would
 * filter that out), as a spurious or shared interrupt can.  Returns after
 * the callback ran.
 *
 * Context: process context; sleeps.
 * Return: 0; -EINVAL for a bad index; -ENODEV if the queue is not set up.
 */
int fake_vdev_interrupt(struct fake_vdev *fd, unsigned int vq)
{
	struct fake_vdev_queue *q;
	int ret = 0;

	if (vq >= FAKE_VDEV_NUM_VQS)
		return -EINVAL;
	q = &fd->q[vq];
	mutex_lock(&q->lock);
	if (q->ready)
		fake_vdev_raise(q, FAKE_VDEV_IRQ_FORCE);
	else
		ret = -ENODEV;
	mutex_unlock(&q->lock);
	irq_work_sync(&q->irq);
	return ret;
}

/* ---- records ------------------------------------------------------- */

/**
 * fake_vdev_page_seen() - how often the device took a block
 * @fd: the device.
 * @addr: guest-physical address of the block.
 *
 * Blocks are recorded by address >> page_bits with the page_bits in force
 * when they were taken.  A block withdrawn and inflated again counts again.
 *
 * Return: the number of page-list entries naming @addr that the device
 * accepted (0 if none, or if recording it failed for lack of memory).
 */
/**
 * fake_vdev_ballooned() - blocks in the balloon, counted from messages
 * @fd: the device.
 *
 * What a device that negotiated VIRTIO_BALLOON13_F_WITHDRAW counts: blocks
 * named by PAGES and not by a WITHDRAW since (or since the records were
 * cleared).
 *
 * Return: the number of such blocks.
 */
unsigned long fake_vdev_ballooned(struct fake_vdev *fd)
{
	unsigned long index, n = 0;
	void *entry;

	xa_for_each(&fd->inb, index, entry)
		n++;
	return n;
}

unsigned int fake_vdev_page_seen(struct fake_vdev *fd, u64 addr)
{
	u32 bits = fake_vdev_page_bits(fd);
	void *entry;

	if (bits < 9 || bits > 40)
		return 0;
	entry = xa_load(&fd->pages, addr >> bits);
	return xa_is_value(entry) ? xa_to_value(entry) : 0;
}

/**
 * fake_vdev_get_stats() - copy the last stats message the device consumed
 * @fd: the device.
 * @stats: where to copy it; @stats->n is 0 if none arrived.
 */
void fake_vdev_get_stats(struct fake_vdev *fd, struct fake_vdev_stats *stats)
{
	unsigned long flags;

	spin_lock_irqsave(&fd->stats_lock, flags);
	*stats = fd->stats;
	spin_unlock_irqrestore(&fd->stats_lock, flags);
}

/**
 * fake_vdev_clear_records() - forget recorded blocks and stats, zero counters
 * @fd: the device.
 *
 * Context: process context; sleeps.
 */
void fake_vdev_clear_records(struct fake_vdev *fd)
{
	struct fake_vdev_queue *q = &fd->q[FAKE_VDEV_OUTPUTQ];
	unsigned long flags;
	int i;

	mutex_lock(&q->lock);
	xa_destroy(&fd->pages);
	xa_destroy(&fd->inb);
	spin_lock_irqsave(&fd->stats_lock, flags);
	memset(&fd->stats, 0, sizeof(fd->stats));
	spin_unlock_irqrestore(&fd->stats_lock, flags);
	for (i = 0; i < FAKE_VDEV_NR_COUNTERS; i++)
		atomic64_set(&fd->count[i], 0);
	mutex_unlock(&q->lock);
}

MODULE_DESCRIPTION("KUnit tests for virtio_balloon13, with a fake device 13");
MODULE_LICENSE("GPL");
