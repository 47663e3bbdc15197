// SPDX-License-Identifier: GPL-2.0
/*
 * Virtio memory balloon, device ID 13, as proposed in OASIS VIRTIO-28.
 *
 * DOC: Theory of operation
 *
 * The device writes requests into buffers the driver keeps posted on
 * inputq: RESIZE carries a target balloon size in bytes, STATS asks for the
 * guest's memory statistics.  The driver grows the balloon by allocating
 * guest memory and sending the guest-physical address of every block of
 * 2^page_bits bytes on outputq; it shrinks the balloon by simply freeing
 * blocks again ("withdraw by access"): the device notices when the pages
 * are touched.  No message is sent for that.
 *
 * Withdraw by access is only safe with one ordering rule on each side: the
 * device discards a message's blocks before it returns that buffer, and the
 * driver frees a block only after the buffer naming it has come back used.
 * Otherwise the host could discard a page the guest already reuses.  So a
 * chunk lives on its message's list while the device holds the message, and
 * moves to the acknowledged lists when the message returns; only those are
 * ever freed while the device is live.
 *
 * Two work items run on the freezable system workqueue.  The request worker
 * drains inputq, re-posts every buffer and answers STATS; it never blocks
 * on the device.  The resize worker owns all allocation and error policy:
 * it moves the balloon toward the target chunk by chunk, re-reading the
 * target between chunks so a new RESIZE redirects it at once, and backs off
 * exponentially (bounded) when the allocator says no.  It never waits for
 * the device either: when every message is in flight, or a deflate needs
 * blocks that are still in flight, it returns and the outputq callback
 * queues it again.
 *
 * The device is not trusted: request lengths and types are checked, targets
 * are clamped to what the guest can give above its floor, and nothing the
 * device says leads to a BUG or WARN.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/oom.h>
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/vmstat.h>
#include <linux/jiffies.h>
#include <linux/sizes.h>
#include <kunit/visibility.h>

#include "virtio_balloon13.h"

/* The parameters are visible to the KUnit suite, which changes them. */
VISIBLE_IF_KUNIT unsigned int vb13_floor_mib;
EXPORT_SYMBOL_IF_KUNIT(vb13_floor_mib);
module_param_named(floor_mib, vb13_floor_mib, uint, 0644);
MODULE_PARM_DESC(floor_mib,
		 "Guest memory in MiB never given to the balloon (0 = auto: max(128 MiB, RAM/16))");

VISIBLE_IF_KUNIT bool vb13_oom_release = true;
EXPORT_SYMBOL_IF_KUNIT(vb13_oom_release);
module_param_named(oom_release, vb13_oom_release, bool, 0644);
MODULE_PARM_DESC(oom_release,
		 "Give balloon memory back when the guest is about to OOM-kill (default: Y)");

VISIBLE_IF_KUNIT unsigned int vb13_oom_release_mib = 16;
EXPORT_SYMBOL_IF_KUNIT(vb13_oom_release_mib);
module_param_named(oom_release_mib, vb13_oom_release_mib, uint, 0644);
MODULE_PARM_DESC(oom_release_mib,
		 "MiB given back per OOM notification (default: 16)");

VISIBLE_IF_KUNIT unsigned int vb13_oom_hold_ms = 5000;
EXPORT_SYMBOL_IF_KUNIT(vb13_oom_hold_ms);
module_param_named(oom_hold_ms, vb13_oom_hold_ms, uint, 0644);
MODULE_PARM_DESC(oom_hold_ms,
		 "Milliseconds inflation stays paused after an OOM release (default: 5000)");

/* Automatic floor: never less than this, in bytes. */
#define VB13_FLOOR_MIN		(128 * SZ_1M)
/* Automatic floor: at least 1/2^VB13_FLOOR_SHIFT of guest RAM. */
#define VB13_FLOOR_SHIFT	4
/* First backoff after an allocation failure, in ms; doubles up to the max. */
#define VB13_BACKOFF_MIN_MS	100
#define VB13_BACKOFF_MAX_MS	10000
/* How long remove/freeze waits for the device to return page lists, in ms. */
#define VB13_DRAIN_MS		5000

static struct dentry *vb13_debugfs_root;

/* Counters have one writer at a time and lockless readers. */
static inline void vb13_add(u64 *counter, u64 n)
{
	WRITE_ONCE(*counter, *counter + n);
}

#define vb13_inc(vb, field, n) vb13_add(&(vb)->cnt.field, n)

/* --- block accounting ------------------------------------------------------ */

/**
 * vb13_floor_pages() - guest memory never given to the balloon
 *
 * Return: the floor in pages: floor_mib, or max(128 MiB, RAM/16).
 */
VISIBLE_IF_KUNIT unsigned long vb13_floor_pages(void)
{
	u64 floor = (u64)READ_ONCE(vb13_floor_mib) * SZ_1M;
	unsigned long ram = totalram_pages();

	if (!floor)
		floor = max_t(u64, VB13_FLOOR_MIN,
			      ((u64)ram << PAGE_SHIFT) >> VB13_FLOOR_SHIFT);
	return min_t(u64, floor >> PAGE_SHIFT, ULONG_MAX);
}
EXPORT_SYMBOL_IF_KUNIT(vb13_floor_pages);

/**
 * vb13_max_blocks() - the most blocks the balloon may hold
 * @vb: the balloon
 *
 * Return: guest RAM (what the balloon holds counted back in) less the
 * floor, in whole blocks.
 */
VISIBLE_IF_KUNIT unsigned long vb13_max_blocks(struct virtio_balloon13 *vb)
{
	unsigned long held = vb13_blocks_to_pages(&vb->geom,
						  READ_ONCE(vb->nr_blocks));
	unsigned long ram = totalram_pages() + held;
	unsigned long floor = vb13_floor_pages();

	if (ram <= floor)
		return 0;
	return vb13_pages_to_blocks(&vb->geom, ram - floor);
}
EXPORT_SYMBOL_IF_KUNIT(vb13_max_blocks);

/* Account a chunk entering the balloon; called with vb->lock held. */
static void vb13_account_in(struct virtio_balloon13 *vb, struct page *page,
			    unsigned long blocks)
{
	unsigned long pages = vb13_blocks_to_pages(&vb->geom, blocks);

	lockdep_assert_held(&vb->lock);
	adjust_managed_page_count(page, -(long)pages);
#ifdef CONFIG_MEMORY_BALLOON
	count_vm_events(BALLOON_INFLATE, pages);
#endif
	WRITE_ONCE(vb->nr_blocks, vb->nr_blocks + blocks);
	vb13_inc(vb, blocks_inflated, blocks);
}

/* Account blocks leaving the balloon; called with vb->lock held. */
static void vb13_account_out(struct virtio_balloon13 *vb, struct page *page,
			     unsigned long blocks)
{
	unsigned long pages = vb13_blocks_to_pages(&vb->geom, blocks);

	lockdep_assert_held(&vb->lock);
	adjust_managed_page_count(page, pages);
#ifdef CONFIG_MEMORY_BALLOON
	count_vm_events(BALLOON_DEFLATE, pages);
#endif
	WRITE_ONCE(vb->nr_blocks, vb->nr_blocks - blocks);
	vb13_inc(vb, blocks_withdrawn, blocks);
}

/* Account and free a whole chunk; called with vb->lock held. */
static void vb13_release_chunk(struct virtio_balloon13 *vb, struct page *page)
{
	vb13_account_out(vb, page,
			 vb13_chunk_blocks(&vb->geom, vb13_chunk_order(page)));
	vb13_free_chunk(page);
}

/* --- outputq --------------------------------------------------------------- */

/*
 * Put one message on outputq: @head, then @len2 bytes at @buf2 if @len2.
 * Kicking happens outside the lock: a device may answer from inside the
 * notification.
 */
static int vb13_out_add(struct virtio_balloon13 *vb, void *head,
			unsigned int len, void *buf2, unsigned int len2,
			void *token)
{
	struct virtqueue *vq = vb->vqs[VB13_VQ_OUTPUT];
	struct scatterlist sg[2];
	unsigned long flags;
	bool kick;
	int err;

	sg_init_table(sg, len2 ? 2 : 1);
	sg_set_buf(&sg[0], head, len);
	if (len2)
		sg_set_buf(&sg[1], buf2, len2);
	spin_lock_irqsave(&vb->out_lock, flags);
	err = virtqueue_add_outbuf(vq, sg, len2 ? 2 : 1, token, GFP_ATOMIC);
	if (!err && token != vb->stats_buf)
		vb->on_device++;
	kick = !err && virtqueue_kick_prepare(vq);
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (kick)
		virtqueue_notify(vq);
	return err;
}

static void vb13_out_done(struct virtqueue *vq)
{
	struct virtio_balloon13 *vb = vq->vdev->priv;
	bool pages = false, stats;
	unsigned long flags;
	unsigned int len;
	void *buf;

	spin_lock_irqsave(&vb->out_lock, flags);
	while ((buf = virtqueue_get_buf(vq, &len))) {
		/* virtio_ring only hands back tokens we gave it. */
		if (buf == vb->stats_buf) {
			vb->stats_busy = false;
		} else {
			list_add_tail(&((struct vb13_msg *)buf)->list,
				      &vb->done_msgs);
			vb->on_device--;
			pages = true;
		}
	}
	/* A STATS answer waits for its buffer, or for room on the ring. */
	stats = vb->stats_pending && !vb->stats_busy;
	if (!vb->stop) {
		if (pages)
			queue_delayed_work(system_freezable_wq,
					   &vb->resize_work, 0);
		if (stats)
			queue_work(system_freezable_wq, &vb->req_work);
	}
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (pages)
		wake_up(&vb->out_wq);
}

/* Move returned messages' chunks to the acknowledged lists. */
static void vb13_reap(struct virtio_balloon13 *vb)
{
	struct vb13_msg *msg, *tmp;
	struct page *page, *next;
	unsigned long flags;
	LIST_HEAD(done);

	lockdep_assert_held(&vb->lock);
	spin_lock_irqsave(&vb->out_lock, flags);
	list_splice_init(&vb->done_msgs, &done);
	spin_unlock_irqrestore(&vb->out_lock, flags);

	list_for_each_entry_safe(msg, tmp, &done, list) {
		list_for_each_entry_safe(page, next, &msg->chunks, lru)
			list_move(&page->lru,
				  &vb->acked[vb13_chunk_order(page)]);
		vb->in_flight_blocks -= msg->nr;
		vb13_msg_init(msg);
		list_move(&msg->list, &vb->free_msgs);
	}
}

/* Send the message being filled, if it names anything. */
static int vb13_submit(struct virtio_balloon13 *vb)
{
	struct vb13_msg *msg = vb->fill;
	int err;

	lockdep_assert_held(&vb->lock);
	if (!msg || !msg->nr)
		return 0;
	err = vb13_out_add(vb, &msg->hdr, sizeof(msg->hdr), msg->addrs,
			   vb13_msg_len(msg) - sizeof(msg->hdr), msg);
	if (err)
		return err;	/* stays in vb->fill; retried later */
	vb->fill = NULL;
	vb13_inc(vb, messages_pages, 1);
	return 0;
}

/* --- inflate and deflate --------------------------------------------------- */

/*
 * Make sure vb->fill has room for a chunk of @order.
 * Return: 0, or -EAGAIN when every message is on the device.
 */
static int vb13_make_room(struct virtio_balloon13 *vb, unsigned int order)
{
	int err;

	lockdep_assert_held(&vb->lock);
	if (vb->fill && vb13_msg_room(&vb->geom, vb->fill, vb->msg_max, order))
		return 0;
	err = vb13_submit(vb);
	if (err)
		return err == -ENOSPC ? -EAGAIN : err;
	if (list_empty(&vb->free_msgs))
		return -EAGAIN;
	vb->fill = list_first_entry(&vb->free_msgs, struct vb13_msg, list);
	list_del(&vb->fill->list);
	return 0;
}

/*
 * Allocate one chunk toward @target and add it to the message being
 * filled.  The allocation runs without vb->lock: it may reclaim, and the
 * OOM notifier takes that lock.
 * Return: 0 on progress, -EAGAIN to wait for the device, -ENOMEM.
 */
static int vb13_inflate_one(struct virtio_balloon13 *vb, unsigned long target)
{
	const struct vb13_geom *g = &vb->geom;
	/* Only this worker adds blocks; the OOM notifier only takes some. */
	unsigned long need = target - READ_ONCE(vb->nr_blocks);
	unsigned int order = vb->alloc_order;
	struct page *page;
	int err;

	/* Never overshoot the target. */
	while (order > g->block_order && vb13_chunk_blocks(g, order) > need)
		order--;

	mutex_lock(&vb->lock);
	err = vb13_make_room(vb, order);
	mutex_unlock(&vb->lock);
	if (err)
		return err;

	for (;;) {
		page = vb13_alloc_chunk(g, order);
		if (page || order == g->block_order)
			break;
		/* High orders are gone for now; don't retry them this run. */
		vb->alloc_order = --order;
	}
	if (!page) {
		vb13_inc(vb, alloc_failures, 1);
		return -ENOMEM;
	}

	mutex_lock(&vb->lock);
	vb->in_flight_blocks += vb13_msg_add(g, vb->fill, page);
	vb13_account_in(vb, page, vb13_chunk_blocks(g, order));
	if (vb->fill->nr == vb->msg_max)
		vb13_submit(vb);
	mutex_unlock(&vb->lock);
	return 0;
}

/*
 * Free acknowledged blocks, largest chunks first, until at most @want have
 * been freed.  A chunk larger than what is left to free is split.
 * Return: blocks freed.
 */
static unsigned long vb13_free_acked(struct virtio_balloon13 *vb,
				     unsigned long want)
{
	const struct vb13_geom *g = &vb->geom;
	unsigned long freed = 0;
	int order;

	lockdep_assert_held(&vb->lock);
	for (order = g->max_order; order >= (int)g->block_order && freed < want;
	     order--) {
		struct list_head *head = &vb->acked[order];
		unsigned long blocks = vb13_chunk_blocks(g, order);

		while (!list_empty(head) && freed < want) {
			struct page *page = list_first_entry(head, struct page,
							     lru);

			list_del(&page->lru);
			if (blocks > want - freed) {
				/* Keep the tail, free the head page by page. */
				unsigned long cut = vb13_blocks_to_pages(g,
								want - freed);
				LIST_HEAD(rest);
				struct page *p, *n;
				unsigned long i;

				vb13_split_chunk(page, cut, &rest);
				list_for_each_entry_safe(p, n, &rest, lru)
					list_move(&p->lru,
						  &vb->acked[vb13_chunk_order(p)]);
				vb13_account_out(vb, page, want - freed);
				for (i = 0; i < cut; i++)
					__free_page(page + i);
				freed = want;
				break;
			}
			vb13_release_chunk(vb, page);
			freed += blocks;
		}
	}
	return freed;
}

static bool vb13_oom_hold(struct virtio_balloon13 *vb, unsigned long *left)
{
	unsigned long until = READ_ONCE(vb->oom_hold_until);

	if (!until || time_after_eq(jiffies, until))
		return false;
	*left = until - jiffies;
	return true;
}

static void vb13_backoff(struct virtio_balloon13 *vb)
{
	unsigned int ms = clamp(vb->backoff_ms * 2, VB13_BACKOFF_MIN_MS,
				VB13_BACKOFF_MAX_MS);

	/* Only this worker writes it; debugfs reads it locklessly. */
	WRITE_ONCE(vb->backoff_ms, ms);
	queue_delayed_work(system_freezable_wq, &vb->resize_work,
			   msecs_to_jiffies(ms));
}

static void vb13_resize_fn(struct work_struct *work)
{
	struct virtio_balloon13 *vb = container_of(to_delayed_work(work),
						   struct virtio_balloon13,
						   resize_work);
	const struct vb13_geom *g = &vb->geom;
	unsigned long target, max, left;
	int err;

	vb->alloc_order = g->max_order;
	for (;;) {
		if (READ_ONCE(vb->stop))
			return;

		mutex_lock(&vb->lock);
		vb13_reap(vb);
		max = vb13_max_blocks(vb);
		target = min(READ_ONCE(vb->target_blocks), max);
		WRITE_ONCE(vb->held_by_floor,
			   READ_ONCE(vb->target_blocks) > max &&
			   vb->nr_blocks >= max);

		if (vb->nr_blocks > target) {
			unsigned long freed;

			/* Blocks not sent yet go to the device first. */
			vb13_submit(vb);
			freed = vb13_free_acked(vb, vb->nr_blocks - target);
			mutex_unlock(&vb->lock);
			if (!freed)
				return;	/* all in flight: outputq requeues us */
			cond_resched();
			continue;
		}
		if (vb->nr_blocks == target) {
			/*
			 * Reached: let the device see the last partial
			 * message.  If outputq is full, its callback
			 * requeues us.
			 */
			vb13_submit(vb);
			mutex_unlock(&vb->lock);
			WRITE_ONCE(vb->backoff_ms, 0);
			return;
		}
		mutex_unlock(&vb->lock);

		if (vb13_oom_hold(vb, &left)) {
			queue_delayed_work(system_freezable_wq,
					   &vb->resize_work, left);
			return;
		}
		err = vb13_inflate_one(vb, target);
		if (err == -EAGAIN)
			return;	/* the outputq callback requeues us */
		if (err == -ENOMEM) {
			/* Let the device have what we have; try again later. */
			mutex_lock(&vb->lock);
			vb13_submit(vb);
			mutex_unlock(&vb->lock);
			vb13_backoff(vb);
			return;
		}
		if (err) {
			dev_err_ratelimited(&vb->vdev->dev,
					    "outputq failed (%d); stopping\n",
					    err);
			return;
		}
		WRITE_ONCE(vb->backoff_ms, 0);
		cond_resched();
	}
}

/* --- inputq --------------------------------------------------------------- */

static int vb13_post_req(struct virtio_balloon13 *vb,
			 struct virtio_balloon13_req *req)
{
	struct scatterlist sg;

	memset(req, 0, sizeof(*req));
	sg_init_one(&sg, req, sizeof(*req));
	return virtqueue_add_inbuf(vb->vqs[VB13_VQ_INPUT], &sg, 1, req,
				   GFP_KERNEL);
}

static int vb13_post_all_reqs(struct virtio_balloon13 *vb)
{
	int i, err;

	for (i = 0; i < VB13_NR_REQS; i++) {
		err = vb13_post_req(vb, &vb->reqs[i]);
		if (err)
			return err;
	}
	virtqueue_kick(vb->vqs[VB13_VQ_INPUT]);
	return 0;
}

static void vb13_in_done(struct virtqueue *vq)
{
	struct virtio_balloon13 *vb = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&vb->out_lock, flags);
	if (!vb->stop)
		queue_work(system_freezable_wq, &vb->req_work);
	spin_unlock_irqrestore(&vb->out_lock, flags);
}

/* Answer a STATS request, or remember it if the last answer is still out. */
static void vb13_send_stats(struct virtio_balloon13 *vb)
{
	unsigned long flags;
	unsigned int n;
	bool busy;

	spin_lock_irqsave(&vb->out_lock, flags);
	busy = vb->stats_busy;
	if (busy) {
		if (vb->stats_pending)
			vb13_inc(vb, stats_coalesced, 1);
		vb->stats_pending = true;
	} else {
		vb->stats_busy = true;	/* the buffer is ours to fill */
		vb->stats_pending = false;
	}
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (busy)
		return;

	n = vb13_fill_stats(vb->stats_buf);
	if (vb13_out_add(vb, vb->stats_buf, vb13_stats_len(n), NULL, 0,
			 vb->stats_buf)) {
		spin_lock_irqsave(&vb->out_lock, flags);
		vb->stats_busy = false;
		vb->stats_pending = true;	/* retried when outputq drains */
		spin_unlock_irqrestore(&vb->out_lock, flags);
		return;
	}
	vb13_inc(vb, messages_stats, 1);
}

static void vb13_handle_req(struct virtio_balloon13 *vb,
			    struct virtio_balloon13_req *req, unsigned int len)
{
	struct device *dev = &vb->vdev->dev;
	unsigned long target;
	u32 type;
	u64 value;
	bool clamped;

	if (len != sizeof(*req)) {
		vb13_inc(vb, requests_malformed, 1);
		dev_warn_ratelimited(dev, "request of %u bytes ignored (want %zu)\n",
				     len, sizeof(*req));
		return;
	}
	type = le32_to_cpu(req->type);
	value = le64_to_cpu(req->value);
	switch (type) {
	case VIRTIO_BALLOON13_REQ_RESIZE:
		vb13_inc(vb, requests_resize, 1);
		WRITE_ONCE(vb->target_bytes, value);
		/*
		 * Keep the target as asked (in whole blocks); the resize
		 * worker applies the floor, which moves with guest RAM.
		 */
		target = vb13_target_blocks(&vb->geom, value, ULONG_MAX,
					    &clamped);
		WRITE_ONCE(vb->target_blocks, target);
		clamped = target > vb13_max_blocks(vb);
		if (clamped) {
			vb13_inc(vb, targets_clamped, 1);
			dev_info_ratelimited(dev, "target %llu bytes is more than the guest can give; clamped\n",
					     value);
		}
		/* Redirect at once, cutting any backoff short. */
		mod_delayed_work(system_freezable_wq, &vb->resize_work, 0);
		break;
	case VIRTIO_BALLOON13_REQ_STATS:
		vb13_inc(vb, requests_stats, 1);
		vb13_send_stats(vb);
		break;
	default:
		vb13_inc(vb, requests_unknown, 1);
		dev_warn_ratelimited(dev, "unknown request type %u ignored\n",
				     type);
	}
}

static void vb13_req_fn(struct work_struct *work)
{
	struct virtio_balloon13 *vb = container_of(work, struct virtio_balloon13,
						   req_work);
	struct virtqueue *vq = vb->vqs[VB13_VQ_INPUT];
	struct virtio_balloon13_req *req;
	bool any = false, pending;
	unsigned long flags;
	unsigned int len;

	while ((req = virtqueue_get_buf(vq, &len))) {
		any = true;
		vb13_handle_req(vb, req, len);
		if (vb13_post_req(vb, req))
			dev_warn_ratelimited(&vb->vdev->dev,
					     "could not re-post a request buffer\n");
	}
	if (any)
		virtqueue_kick(vq);

	spin_lock_irqsave(&vb->out_lock, flags);
	pending = vb->stats_pending && !vb->stats_busy;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	if (pending) {
		vb13_send_stats(vb);
		any = true;
	}
	if (!any)
		vb13_inc(vb, spurious_callbacks, 1);
}

/* --- memory pressure ------------------------------------------------------ */

/*
 * Give back a bounded batch when the guest is about to OOM-kill, and hold
 * inflation off for a while so the balloon doesn't take it straight back.
 * Only acknowledged blocks can go; those still in flight must wait.
 */
static int vb13_oom_notify(struct notifier_block *nb, unsigned long dummy,
			   void *parm)
{
	struct virtio_balloon13 *vb = container_of(nb, struct virtio_balloon13,
						   oom_nb);
	unsigned long *freed = parm, blocks, want, hold;

	if (!READ_ONCE(vb13_oom_release))
		return NOTIFY_OK;

	want = vb13_pages_to_blocks(&vb->geom,
				    ((u64)READ_ONCE(vb13_oom_release_mib) *
				     SZ_1M) >> PAGE_SHIFT);
	if (!want)
		want = 1UL << vb->geom.sub_shift;

	mutex_lock(&vb->lock);
	vb13_reap(vb);
	blocks = vb13_free_acked(vb, want);
	hold = msecs_to_jiffies(READ_ONCE(vb13_oom_hold_ms));
	WRITE_ONCE(vb->oom_hold_until, jiffies + hold ?: 1);
	mutex_unlock(&vb->lock);
	/* Move back toward the target once the hold is over. */
	if (!READ_ONCE(vb->stop))
		queue_delayed_work(system_freezable_wq, &vb->resize_work, hold);

	if (blocks) {
		*freed += vb13_blocks_to_pages(&vb->geom, blocks);
		vb13_inc(vb, pressure_releases, 1);
	}
	return NOTIFY_OK;
}

/* --- sysfs ---------------------------------------------------------------- */

static struct virtio_balloon13 *dev_to_vb(struct device *dev)
{
	return dev_to_virtio(dev)->priv;
}

static ssize_t size_bytes_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	struct virtio_balloon13 *vb = dev_to_vb(dev);

	return sysfs_emit(buf, "%llu\n",
			  (u64)READ_ONCE(vb->nr_blocks) << vb->geom.page_bits);
}
static DEVICE_ATTR_RO(size_bytes);

static ssize_t target_bytes_show(struct device *dev,
				 struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", READ_ONCE(dev_to_vb(dev)->target_bytes));
}
static DEVICE_ATTR_RO(target_bytes);

static ssize_t page_bits_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", dev_to_vb(dev)->geom.page_bits);
}
static DEVICE_ATTR_RO(page_bits);

static ssize_t num_blocks_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", READ_ONCE(dev_to_vb(dev)->nr_blocks));
}
static DEVICE_ATTR_RO(num_blocks);

static ssize_t floor_bytes_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", (u64)vb13_floor_pages() << PAGE_SHIFT);
}
static DEVICE_ATTR_RO(floor_bytes);

static struct attribute *vb13_attrs[] = {
	&dev_attr_size_bytes.attr,
	&dev_attr_target_bytes.attr,
	&dev_attr_page_bits.attr,
	&dev_attr_num_blocks.attr,
	&dev_attr_floor_bytes.attr,
	NULL,
};
ATTRIBUTE_GROUPS(vb13);

/* --- debugfs -------------------------------------------------------------- */

#ifdef CONFIG_DEBUG_FS
static int vb13_counters_show(struct seq_file *f, void *offset)
{
	struct virtio_balloon13 *vb = f->private;
	const struct vb13_counters *c = &vb->cnt;

#define VB13_SHOW(name, val) seq_printf(f, "%-20s %llu\n", name, (u64)(val))
	VB13_SHOW("requests_resize", READ_ONCE(c->requests_resize));
	VB13_SHOW("requests_stats", READ_ONCE(c->requests_stats));
	VB13_SHOW("requests_unknown", READ_ONCE(c->requests_unknown));
	VB13_SHOW("requests_malformed", READ_ONCE(c->requests_malformed));
	VB13_SHOW("spurious_callbacks", READ_ONCE(c->spurious_callbacks));
	VB13_SHOW("targets_clamped", READ_ONCE(c->targets_clamped));
	VB13_SHOW("blocks_inflated", READ_ONCE(c->blocks_inflated));
	VB13_SHOW("blocks_withdrawn", READ_ONCE(c->blocks_withdrawn));
	VB13_SHOW("messages_pages", READ_ONCE(c->messages_pages));
	VB13_SHOW("messages_stats", READ_ONCE(c->messages_stats));
	VB13_SHOW("stats_coalesced", READ_ONCE(c->stats_coalesced));
	VB13_SHOW("alloc_failures", READ_ONCE(c->alloc_failures));
	VB13_SHOW("pressure_releases", READ_ONCE(c->pressure_releases));
	VB13_SHOW("backoff_ms", READ_ONCE(vb->backoff_ms));
	VB13_SHOW("held_by_floor", READ_ONCE(vb->held_by_floor));
	VB13_SHOW("in_flight_blocks", READ_ONCE(vb->in_flight_blocks));
	VB13_SHOW("num_blocks", READ_ONCE(vb->nr_blocks));
	VB13_SHOW("target_blocks", READ_ONCE(vb->target_blocks));
#undef VB13_SHOW
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vb13_counters);

static void vb13_debugfs_init(struct virtio_balloon13 *vb)
{
	vb->debugfs = debugfs_create_dir(dev_name(&vb->vdev->dev),
					 vb13_debugfs_root);
	debugfs_create_file("counters", 0444, vb->debugfs, vb,
			    &vb13_counters_fops);
}

static void vb13_debugfs_exit(struct virtio_balloon13 *vb)
{
	debugfs_remove_recursive(vb->debugfs);
}
#else
static inline void vb13_debugfs_init(struct virtio_balloon13 *vb) { }
static inline void vb13_debugfs_exit(struct virtio_balloon13 *vb) { }
#endif

/* --- probe and teardown --------------------------------------------------- */

static int vb13_find_vqs(struct virtio_balloon13 *vb)
{
#ifndef VB13_COMPAT_VQ_CALLBACKS
	struct virtqueue_info info[VB13_NR_VQS] = {
		[VB13_VQ_INPUT] = { "inputq", vb13_in_done },
		[VB13_VQ_OUTPUT] = { "outputq", vb13_out_done },
	};

	return virtio_find_vqs(vb->vdev, VB13_NR_VQS, vb->vqs, info, NULL);
#else
	vq_callback_t *cbs[VB13_NR_VQS] = {
		[VB13_VQ_INPUT] = vb13_in_done,
		[VB13_VQ_OUTPUT] = vb13_out_done,
	};
	static const char * const names[VB13_NR_VQS] = {
		[VB13_VQ_INPUT] = "inputq",
		[VB13_VQ_OUTPUT] = "outputq",
	};

	return virtio_find_vqs(vb->vdev, VB13_NR_VQS, vb->vqs, cbs, names,
			       NULL);
#endif
}

/* Queues up, buffers posted, device live.  Undone by vb13_stop_device(). */
static int vb13_start_device(struct virtio_balloon13 *vb)
{
	int i, err;

	err = vb13_find_vqs(vb);
	if (err)
		return err;

	INIT_LIST_HEAD(&vb->free_msgs);
	INIT_LIST_HEAD(&vb->done_msgs);
	for (i = 0; i < VB13_NR_MSGS; i++) {
		vb13_msg_init(&vb->msgs[i]);
		list_add_tail(&vb->msgs[i].list, &vb->free_msgs);
	}
	vb->fill = NULL;
	vb->on_device = 0;
	vb->in_flight_blocks = 0;
	vb->stats_busy = false;
	vb->stats_pending = false;
	vb->stop = false;

	virtio_device_ready(vb->vdev);
	err = vb13_post_all_reqs(vb);
	if (err) {
		virtio_reset_device(vb->vdev);
		vb->vdev->config->del_vqs(vb->vdev);
		return err;
	}
	return 0;
}

static bool vb13_nothing_on_device(struct virtio_balloon13 *vb)
{
	unsigned long flags;
	bool none;

	spin_lock_irqsave(&vb->out_lock, flags);
	none = !vb->on_device;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	return none;
}

/* Free a message's chunks; the device must not be able to touch them. */
static void vb13_drop_msg(struct virtio_balloon13 *vb, struct vb13_msg *msg)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, &msg->chunks, lru) {
		list_del(&page->lru);
		vb13_release_chunk(vb, page);
	}
	vb->in_flight_blocks -= msg->nr;
	vb13_msg_init(msg);
}

/*
 * Stop the workers, reset the device, return every page, delete the queues.
 *
 * The order keeps withdraw-by-access safe: the device gets a bounded time
 * to return the page lists it holds, and nothing is freed before the reset,
 * after which it can no longer discard anything.  Chunks in the message
 * being filled were never sent and go at once.
 */
static void vb13_stop_device(struct virtio_balloon13 *vb)
{
	struct virtqueue *outq = vb->vqs[VB13_VQ_OUTPUT];
	struct vb13_msg *msg;
	unsigned long flags;
	void *buf;

	spin_lock_irqsave(&vb->out_lock, flags);
	vb->stop = true;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	cancel_work_sync(&vb->req_work);
	cancel_delayed_work_sync(&vb->resize_work);

	mutex_lock(&vb->lock);
	if (vb->fill) {
		/* Never sent: the device doesn't know these blocks. */
		vb13_drop_msg(vb, vb->fill);
		list_add(&vb->fill->list, &vb->free_msgs);
		vb->fill = NULL;
	}
	mutex_unlock(&vb->lock);

	wait_event_timeout(vb->out_wq, vb13_nothing_on_device(vb),
			   msecs_to_jiffies(VB13_DRAIN_MS));
	virtio_reset_device(vb->vdev);

	mutex_lock(&vb->lock);
	/* Returned before the reset, including any the callback took last. */
	vb13_reap(vb);
	vb13_free_acked(vb, ULONG_MAX);
	/* Still on the device: it can no longer discard them. */
	while ((buf = virtqueue_detach_unused_buf(outq))) {
		if (buf == vb->stats_buf)
			continue;
		msg = buf;
		vb13_drop_msg(vb, msg);
		list_add(&msg->list, &vb->free_msgs);
	}
	vb->on_device = 0;
	vb->stats_busy = false;
	mutex_unlock(&vb->lock);
	while (virtqueue_detach_unused_buf(vb->vqs[VB13_VQ_INPUT]))
		;
	vb->vdev->config->del_vqs(vb->vdev);
}

static void vb13_free_bufs(struct virtio_balloon13 *vb)
{
	int i;

	for (i = 0; i < VB13_NR_MSGS; i++)
		kfree(vb->msgs[i].addrs);
	kfree(vb->stats_buf);
}

/* Message buffers of the largest size that can be had, once, at probe. */
static int vb13_alloc_bufs(struct virtio_balloon13 *vb)
{
	size_t bytes = VB13_MSG_BYTES_MAX;
	int i;

	vb->stats_buf = kzalloc(sizeof(*vb->stats_buf), GFP_KERNEL);
	if (!vb->stats_buf)
		return -ENOMEM;
	for (i = 0; i < VB13_NR_MSGS; i++) {
		for (;;) {
			vb->msgs[i].addrs = kmalloc(bytes,
						    GFP_KERNEL | __GFP_NOWARN);
			if (vb->msgs[i].addrs)
				break;
			if (bytes <= VB13_MSG_BYTES_MIN)
				return -ENOMEM;
			bytes /= 2;
		}
	}
	/* Every message uses the smallest size that succeeded. */
	vb->msg_max = bytes / sizeof(__le64);
	return 0;
}

static int vb13_probe(struct virtio_device *vdev)
{
	struct virtio_balloon13 *vb;
	u32 page_bits;
	int i, err;

	BUILD_BUG_ON(sizeof(struct virtio_balloon13_config) != 4);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_req) != 16);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_resp_hdr) != 8);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_pages) != 8);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_stat) != 16);
	BUILD_BUG_ON(sizeof(struct virtio_balloon13_stats) != 8 + 16 * 6);

	if (!virtio_has_feature(vdev, VIRTIO_F_VERSION_1)) {
		dev_err(&vdev->dev, "device is not VIRTIO 1.0 compliant\n");
		return -ENODEV;
	}
	if (!vdev->config->get) {
		dev_err(&vdev->dev, "config space access is disabled\n");
		return -EINVAL;
	}

	vb = kzalloc(sizeof(*vb), GFP_KERNEL);
	if (!vb)
		return -ENOMEM;
	vb->vdev = vdev;
	vdev->priv = vb;
	mutex_init(&vb->lock);
	spin_lock_init(&vb->out_lock);
	init_waitqueue_head(&vb->out_wq);
	INIT_WORK(&vb->req_work, vb13_req_fn);
	INIT_DELAYED_WORK(&vb->resize_work, vb13_resize_fn);
	for (i = 0; i <= VB13_MAX_ORDER; i++)
		INIT_LIST_HEAD(&vb->acked[i]);

	err = vb13_alloc_bufs(vb);
	if (err)
		goto out_free;

	virtio_cread_le(vdev, struct virtio_balloon13_config, page_bits,
			&page_bits);
	if (vb13_geom_init(&vb->geom, page_bits, vb->msg_max)) {
		dev_err(&vdev->dev,
			"unsupported page_bits %u: this guest serves %u to %u\n",
			page_bits, VB13_MIN_PAGE_BITS,
			PAGE_SHIFT + VB13_MAX_ORDER);
		err = -EINVAL;
		goto out_free;
	}

	err = vb13_start_device(vb);
	if (err)
		goto out_free;

	vb->oom_nb.notifier_call = vb13_oom_notify;
	vb->oom_nb.priority = 0;
	err = register_oom_notifier(&vb->oom_nb);
	if (err)
		goto out_stop;

	vb13_debugfs_init(vb);
	dev_info(&vdev->dev, "balloon ready: %u-byte blocks, %u addresses per message, floor %lu MiB\n",
		 1U << page_bits, vb->msg_max,
		 vb13_floor_pages() >> (20 - PAGE_SHIFT));
	return 0;

out_stop:
	vb13_stop_device(vb);
out_free:
	vb13_free_bufs(vb);
	kfree(vb);
	vdev->priv = NULL;
	return err;
}

static void vb13_remove(struct virtio_device *vdev)
{
	struct virtio_balloon13 *vb = vdev->priv;

	vb13_debugfs_exit(vb);
	unregister_oom_notifier(&vb->oom_nb);
	vb13_stop_device(vb);
	vb13_free_bufs(vb);
	kfree(vb);
}

#ifdef CONFIG_PM_SLEEP
static int vb13_freeze(struct virtio_device *vdev)
{
	/* Every page goes back; restore moves toward the last target again. */
	vb13_stop_device(vdev->priv);
	return 0;
}

static int vb13_restore(struct virtio_device *vdev)
{
	struct virtio_balloon13 *vb = vdev->priv;
	int err;

	err = vb13_start_device(vb);
	if (err)
		return err;
	queue_delayed_work(system_freezable_wq, &vb->resize_work, 0);
	return 0;
}
#endif

static const struct virtio_device_id vb13_id_table[] = {
	{ VIRTIO_ID_MEMORY_BALLOON, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, vb13_id_table);

static struct virtio_driver vb13_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.dev_groups = vb13_groups,
	.id_table = vb13_id_table,
	.probe = vb13_probe,
	.remove = vb13_remove,
#ifdef CONFIG_PM_SLEEP
	.freeze = vb13_freeze,
	.restore = vb13_restore,
#endif
};

static int __init vb13_init(void)
{
	int err;

	vb13_debugfs_root = debugfs_create_dir(KBUILD_MODNAME, NULL);
	err = register_virtio_driver(&vb13_driver);
	if (err)
		debugfs_remove_recursive(vb13_debugfs_root);
	return err;
}
module_init(vb13_init);

static void __exit vb13_exit(void)
{
	unregister_virtio_driver(&vb13_driver);
	debugfs_remove_recursive(vb13_debugfs_root);
}
module_exit(vb13_exit);

MODULE_DESCRIPTION("Virtio memory balloon driver (device ID 13)");
MODULE_LICENSE("GPL");
