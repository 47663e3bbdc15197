// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit self-tests of the fake virtio device 13 (fake_vdev.c).
 *
 * They need no balloon driver: a tiny virtio driver, registered for the
 * suite, binds to fake devices with the test-only ID %FAKE_VDEV_ID_SELFTEST
 * (so it never competes with the real driver for device 13).  Its probe
 * posts some inputq buffers and sends one page-list message naming blocks
 * it allocated; its callbacks record what comes back.  Each test drives
 * the fake device and checks what the tiny driver saw, and the reverse.
 */
#include <kunit/test.h>
#include <linux/gfp.h>
#include <linux/hardirq.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/workqueue.h>

#include "virtio_balloon13_fake_vdev.h"

#define TINY_MAX_BUFS	8
#define TINY_MAX_REQS	16
#define TINY_BLOCKS	2
#define TO		FAKE_VDEV_TIMEOUT_MS

/* A request as the tiny driver received it. */
struct tiny_req {
	u32 type;
	u64 value;
	unsigned int len;
};

/*
 * Shared by a test and the tiny driver bound to its fake device.  The test
 * owns it (it outlives any binding); the driver fills in the rest.
 */
struct tiny {
	/* Set by the test before registering. */
	unsigned int nbufs;		/* inputq buffers to post */
	unsigned int buf_len;		/* their size */
	bool split;			/* probe message in two descriptors */

	/* Driver state; vqs and buffers under @lock. */
	spinlock_t lock;
	struct virtqueue *in, *out;
	void *bufs[TINY_MAX_BUFS];
	struct page *blocks[TINY_BLOCKS];
	unsigned int order;
	struct work_struct stats_work;
	unsigned int probes, removes;
	u32 page_bits;

	/* What the driver saw, under @lock. */
	struct tiny_req reqs[TINY_MAX_REQS];
	unsigned int nreqs;
	unsigned int in_callbacks, in_spurious;
	unsigned int out_returned;
	unsigned int not_hardirq;	/* callbacks outside hard irq context */
};

static struct tiny *tiny_of(struct virtio_device *vdev)
{
	struct fake_vdev *fd = fake_vdev_of(vdev);

	return fd ? fd->priv : NULL;
}

/* Queue a message of @len bytes on outputq, in @nsg descriptors. */
static int tiny_send(struct tiny *t, const void *data, size_t len,
		     unsigned int nsg, bool writable)
{
	struct scatterlist sg[2], *sgs[1] = { sg };
	unsigned long flags;
	size_t first;
	void *buf;
	int ret;

	buf = kmemdup(data, len, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	first = nsg == 2 ? min_t(size_t, len, FAKE_VDEV_MSG_HDR_LEN) : len;
	sg_init_table(sg, nsg);
	sg_set_buf(&sg[0], buf, first);
	if (nsg == 2)
		sg_set_buf(&sg[1], buf + first, len - first);

	spin_lock_irqsave(&t->lock, flags);
	if (writable)
		ret = virtqueue_add_sgs(t->out, sgs, 0, 1, buf, GFP_ATOMIC);
	else
		ret = virtqueue_add_outbuf(t->out, sg, nsg, buf, GFP_ATOMIC);
	if (!ret)
		virtqueue_kick(t->out);
	spin_unlock_irqrestore(&t->lock, flags);
	if (ret)
		kfree(buf);
	return ret;
}

static void tiny_stats_work(struct work_struct *work)
{
	struct tiny *t = container_of(work, struct tiny, stats_work);
	__le64 msg[5] = {
		cpu_to_le64(FAKE_VDEV_MSG_STATS),
		cpu_to_le64(4), cpu_to_le64(1000),	/* MEMFREE */
		cpu_to_le64(5), cpu_to_le64(2000),	/* MEMTOT */
	};

	tiny_send(t, msg, sizeof(msg), 1, false);
}

static void tiny_in_done(struct virtqueue *vq)
{
	struct tiny *t = tiny_of(vq->vdev);
	struct scatterlist sg;
	unsigned long flags;
	bool stats = false;
	unsigned int len;
	u8 *buf;

	spin_lock_irqsave(&t->lock, flags);
	t->not_hardirq += !in_hardirq();
	t->in_callbacks++;
	buf = virtqueue_get_buf(vq, &len);
	if (!buf)
		t->in_spurious++;
	for (; buf; buf = virtqueue_get_buf(vq, &len)) {
		struct tiny_req *r = &t->reqs[t->nreqs % TINY_MAX_REQS];

		r->type = le32_to_cpup((__le32 *)buf);
		r->value = le64_to_cpup((__le64 *)(buf + 8));
		r->len = len;
		t->nreqs++;
		stats |= r->type == FAKE_VDEV_REQ_STATS;
		memset(buf, 0, t->buf_len);
		sg_init_one(&sg, buf, t->buf_len);
		virtqueue_add_inbuf(vq, &sg, 1, buf, GFP_ATOMIC);
	}
	virtqueue_kick(vq);
	spin_unlock_irqrestore(&t->lock, flags);
	if (stats)
		schedule_work(&t->stats_work);
}

static void tiny_out_done(struct virtqueue *vq)
{
	struct tiny *t = tiny_of(vq->vdev);
	unsigned long flags;
	unsigned int len;
	void *buf;

	spin_lock_irqsave(&t->lock, flags);
	t->not_hardirq += !in_hardirq();
	while ((buf = virtqueue_get_buf(vq, &len))) {
		t->out_returned++;
		kfree(buf);
	}
	spin_unlock_irqrestore(&t->lock, flags);
}

static void tiny_free(struct tiny *t)
{
	void *buf;
	int i;

	if (t->in)
		while ((buf = virtqueue_detach_unused_buf(t->in)))
			;
	if (t->out)
		while ((buf = virtqueue_detach_unused_buf(t->out)))
			kfree(buf);
	for (i = 0; i < TINY_MAX_BUFS; i++) {
		kfree(t->bufs[i]);
		t->bufs[i] = NULL;
	}
	for (i = 0; i < TINY_BLOCKS; i++) {
		if (t->blocks[i])
			__free_pages(t->blocks[i], t->order);
		t->blocks[i] = NULL;
	}
}

static int tiny_probe(struct virtio_device *vdev)
{
	struct virtqueue_info info[] = {
		{ "inputq", tiny_in_done },
		{ "outputq", tiny_out_done },
	};
	struct tiny *t = tiny_of(vdev);
	struct virtqueue *vqs[2];
	__le64 msg[1 + TINY_BLOCKS];
	struct scatterlist sg;
	__le32 bits;
	int i, err;

	if (!t || t->nbufs > TINY_MAX_BUFS)
		return -EINVAL;
	t->probes++;
	vdev->priv = t;
	virtio_cread_bytes(vdev, 0, &bits, sizeof(bits));
	t->page_bits = le32_to_cpu(bits);
	if (t->page_bits < PAGE_SHIFT || t->page_bits > PAGE_SHIFT + 10)
		return -EINVAL;
	t->order = t->page_bits - PAGE_SHIFT;

	err = virtio_find_vqs(vdev, 2, vqs, info, NULL);
	if (err)
		return err;
	t->in = vqs[0];
	t->out = vqs[1];

	for (i = 0; i < t->nbufs; i++) {
		t->bufs[i] = kzalloc(t->buf_len, GFP_KERNEL);
		if (!t->bufs[i])
			goto err_free;
		sg_init_one(&sg, t->bufs[i], t->buf_len);
		if (virtqueue_add_inbuf(t->in, &sg, 1, t->bufs[i], GFP_KERNEL))
			goto err_free;
	}
	msg[0] = cpu_to_le64(FAKE_VDEV_MSG_PAGES);
	for (i = 0; i < TINY_BLOCKS; i++) {
		t->blocks[i] = alloc_pages(GFP_KERNEL, t->order);
		if (!t->blocks[i])
			goto err_free;
		msg[1 + i] = cpu_to_le64(page_to_phys(t->blocks[i]));
	}

	virtio_device_ready(vdev);
	virtqueue_kick(t->in);
	if (tiny_send(t, msg, sizeof(msg), t->split ? 2 : 1, false))
		goto err_reset;
	return 0;

err_reset:
	virtio_reset_device(vdev);
err_free:
	tiny_free(t);
	vdev->config->del_vqs(vdev);
	t->in = NULL;
	t->out = NULL;
	return -ENOMEM;
}

static void tiny_remove(struct virtio_device *vdev)
{
	struct tiny *t = vdev->priv;

	/* After the reset no callback can queue the stats work again. */
	virtio_reset_device(vdev);
	cancel_work_sync(&t->stats_work);
	tiny_free(t);
	vdev->config->del_vqs(vdev);
	t->in = NULL;
	t->out = NULL;
	t->removes++;
}

static const struct virtio_device_id tiny_id_table[] = {
	{ FAKE_VDEV_ID_SELFTEST, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static struct virtio_driver tiny_driver = {
	.driver.name	= "fake_vdev_selftest",
	.id_table	= tiny_id_table,
	.probe		= tiny_probe,
	.remove		= tiny_remove,
};

/* ---- fixtures ------------------------------------------------------ */

/* Geometries the cases run over. */
struct fake_vdev_geom {
	const char *name;
	u32 page_bits;
	u64 features;
	unsigned int queue_size;
	bool split;
};

static const struct fake_vdev_geom fake_vdev_geoms[] = {
	{ "4K-plain", 12, 0, FAKE_VDEV_QUEUE_SIZE, false },
	{ "2M-event_idx-indirect-split", 21,
	  BIT_ULL(VIRTIO_RING_F_EVENT_IDX) | BIT_ULL(VIRTIO_RING_F_INDIRECT_DESC),
	  16, true },
};

static void fake_vdev_geom_desc(const struct fake_vdev_geom *g, char *desc)
{
	strscpy(desc, g->name, KUNIT_PARAM_DESC_SIZE);
}

KUNIT_ARRAY_PARAM(fake_vdev_geom, fake_vdev_geoms, fake_vdev_geom_desc);

static const struct fake_vdev_geom *geom(struct kunit *test)
{
	return test->param_value ? test->param_value : &fake_vdev_geoms[0];
}

/* A fake device for the tiny driver, set up but not registered. */
static struct fake_vdev *tiny_setup_geom(struct kunit *test,
					 const struct fake_vdev_geom *g,
					 struct tiny **tp)
{
	struct fake_vdev *fd;
	struct tiny *t;

	t = kunit_kzalloc(test, sizeof(*t), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, t);
	t->nbufs = 4;
	t->buf_len = FAKE_VDEV_REQ_LEN;
	t->split = g->split;
	spin_lock_init(&t->lock);
	INIT_WORK(&t->stats_work, tiny_stats_work);

	fd = fake_vdev_create_id(test, FAKE_VDEV_ID_SELFTEST, g->page_bits);
	fd->device_features |= g->features;
	fd->queue_size = g->queue_size;
	fd->priv = t;
	*tp = t;
	return fd;
}

static struct fake_vdev *tiny_setup(struct kunit *test, struct tiny **tp)
{
	return tiny_setup_geom(test, geom(test), tp);
}

static void tiny_bind(struct kunit *test, struct fake_vdev *fd, struct tiny *t)
{
	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_bound(fd));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_posted(fd, t->nbufs, TO));
}

static unsigned int tiny_get(struct tiny *t, unsigned int *field)
{
	unsigned long flags;
	unsigned int v;

	spin_lock_irqsave(&t->lock, flags);
	v = *field;
	spin_unlock_irqrestore(&t->lock, flags);
	return v;
}

static bool tiny_wait_returned(struct fake_vdev *fd, struct tiny *t,
			       unsigned int n)
{
	return fake_vdev_wait(fd, tiny_get(t, &t->out_returned) == n, TO);
}

/* ---- cases --------------------------------------------------------- */

static void fake_vdev_test_probe(struct kunit *test)
{
	struct fake_vdev *fd;
	struct tiny *t;

	fd = tiny_setup(test, &t);
	tiny_bind(test, fd, t);

	KUNIT_EXPECT_EQ(test, t->probes, 1);
	KUNIT_EXPECT_EQ(test, t->page_bits, geom(test)->page_bits);
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd), t->nbufs);
	KUNIT_EXPECT_GE(test, fake_vdev_count(fd, FAKE_VDEV_KICKS_IN), 1);
	KUNIT_EXPECT_TRUE(test, fake_vdev_status(fd) &
			  VIRTIO_CONFIG_S_DRIVER_OK);
	KUNIT_EXPECT_TRUE(test, fake_vdev_status(fd) &
			  VIRTIO_CONFIG_S_FEATURES_OK);
	KUNIT_EXPECT_TRUE(test, virtio_has_feature(&fd->vdev,
						   VIRTIO_F_VERSION_1));
	KUNIT_EXPECT_EQ(test, fd->vdev.features & ~fd->device_features, 0);
}

static void fake_vdev_test_request(struct kunit *test)
{
	struct fake_vdev *fd;
	struct tiny *t;

	fd = tiny_setup(test, &t);
	tiny_bind(test, fd, t);

	KUNIT_EXPECT_EQ(test, fake_vdev_send_request(fd, FAKE_VDEV_REQ_RESIZE,
						     0x123456789000ULL), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, tiny_get(t, &t->nreqs) == 1,
					       TO));
	KUNIT_EXPECT_EQ(test, t->reqs[0].type, FAKE_VDEV_REQ_RESIZE);
	KUNIT_EXPECT_EQ(test, t->reqs[0].value, 0x123456789000ULL);
	KUNIT_EXPECT_EQ(test, t->reqs[0].len, FAKE_VDEV_REQ_LEN);

	/* The driver reposts: all buffers are available again. */
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, t->nbufs, TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_send_request_wait(fd, 77, 5, TO), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, tiny_get(t, &t->nreqs) == 2,
					       TO));
	KUNIT_EXPECT_EQ(test, t->reqs[1].type, 77);
	KUNIT_EXPECT_EQ(test, t->reqs[1].value, 5);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REQUESTS), 2);
	KUNIT_EXPECT_GE(test, fake_vdev_count(fd, FAKE_VDEV_IRQS_IN), 1);
	KUNIT_EXPECT_EQ(test, tiny_get(t, &t->in_spurious), 0);
	KUNIT_EXPECT_EQ(test, tiny_get(t, &t->not_hardirq), 0);
}

static void fake_vdev_test_raw(struct kunit *test)
{
	u8 req[2 * FAKE_VDEV_REQ_LEN] = { 1, 0, 0, 0, 0, 0, 0, 0, 42 };
	struct fake_vdev *fd;
	struct tiny *t;

	fd = tiny_setup(test, &t);
	tiny_bind(test, fd, t);

	/* A used length shorter than what was written. */
	KUNIT_EXPECT_EQ(test, fake_vdev_send_raw(fd, req, FAKE_VDEV_REQ_LEN,
						 8), 0);
	/* A used length beyond the buffer: a lie the ring passes on. */
	KUNIT_EXPECT_EQ(test, fake_vdev_send_raw(fd, req, FAKE_VDEV_REQ_LEN,
						 4096), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, tiny_get(t, &t->nreqs) == 2,
					       TO));
	KUNIT_EXPECT_EQ(test, t->reqs[0].len, 8);
	KUNIT_EXPECT_EQ(test, t->reqs[1].len, 4096);
	KUNIT_EXPECT_EQ(test, t->reqs[1].type, 1);
	KUNIT_EXPECT_EQ(test, t->reqs[1].value, 42);

	/* More than the buffer holds: refused, the buffer stays posted. */
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, t->nbufs, TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_send_raw(fd, req, sizeof(req),
						 sizeof(req)), -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd), t->nbufs);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REQUESTS), 2);
}

static void fake_vdev_test_output_held(struct kunit *test)
{
	struct fake_vdev_msg *msg;
	struct fake_vdev *fd;
	struct tiny *t;
	int i;

	fd = tiny_setup(test, &t);
	tiny_bind(test, fd, t);

	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_msg_type(msg), FAKE_VDEV_MSG_PAGES);
	KUNIT_EXPECT_EQ(test, msg->len, 8 + 8 * TINY_BLOCKS);
	KUNIT_EXPECT_EQ(test, msg->ndesc, t->split ? 2 : 1);
	KUNIT_EXPECT_EQ(test, msg->wlen, 0);
	for (i = 0; i < TINY_BLOCKS; i++)
		KUNIT_EXPECT_EQ(test, fake_vdev_msg_u64(msg, i),
				page_to_phys(t->blocks[i]));
	KUNIT_EXPECT_EQ(test, fake_vdev_msg_u64(msg, TINY_BLOCKS), U64_MAX);
	KUNIT_EXPECT_EQ(test, fake_vdev_pop_output(fd, &msg), -EAGAIN);

	/* Held: not consumed, not returned. */
	fake_vdev_flush(fd);
	KUNIT_EXPECT_EQ(test, fake_vdev_held(fd), 1);
	KUNIT_EXPECT_EQ(test, tiny_get(t, &t->out_returned), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_page_seen(fd, page_to_phys(t->blocks[0])),
			0);

	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	KUNIT_EXPECT_TRUE(test, tiny_wait_returned(fd, t, 1));
	KUNIT_EXPECT_EQ(test, fake_vdev_held(fd), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 1);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSG_BYTES),
			8 + 8 * TINY_BLOCKS);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGE_MSGS), 1);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), TINY_BLOCKS);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_PAGES), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0);
	for (i = 0; i < TINY_BLOCKS; i++)
		KUNIT_EXPECT_EQ(test,
				fake_vdev_page_seen(fd, page_to_phys(t->blocks[i])),
				1);
	KUNIT_EXPECT_GE(test, fake_vdev_count(fd, FAKE_VDEV_IRQS_OUT), 1);
	KUNIT_EXPECT_EQ(test, tiny_get(t, &t->not_hardirq), 0);
}

static void fake_vdev_test_auto(struct kunit *test)
{
	struct fake_vdev_stats st;
	struct fake_vdev *fd;
	struct tiny *t;

	fd = tiny_setup(test, &t);
	fd->discard_fill = 0;
	fake_vdev_set_auto(fd, true);
	tiny_bind(test, fd, t);

	KUNIT_ASSERT_TRUE(test, tiny_wait_returned(fd, t, 1));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), TINY_BLOCKS);
	KUNIT_EXPECT_EQ(test,
			fake_vdev_page_seen(fd, page_to_phys(t->blocks[1])), 1);

	/* STATS request -> the driver's stats message -> recorded. */
	KUNIT_EXPECT_EQ(test, fake_vdev_send_request(fd, FAKE_VDEV_REQ_STATS, 0),
			0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_STATS_MSGS,
						     1, TO));
	fake_vdev_get_stats(fd, &st);
	KUNIT_EXPECT_EQ(test, st.n, 2);
	KUNIT_EXPECT_EQ(test, st.s[0].tag, 4);
	KUNIT_EXPECT_EQ(test, st.s[0].val, 1000);
	KUNIT_EXPECT_EQ(test, st.s[1].tag, 5);
	KUNIT_EXPECT_EQ(test, st.s[1].val, 2000);
	KUNIT_EXPECT_TRUE(test, tiny_wait_returned(fd, t, 2));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 2);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0);

	fake_vdev_clear_records(fd);
	KUNIT_EXPECT_EQ(test,
			fake_vdev_page_seen(fd, page_to_phys(t->blocks[1])), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 0);
}

static void fake_vdev_test_bad_messages(struct kunit *test)
{
	struct fake_vdev *fd;
	struct tiny *t;
	u64 block, good;
	__le64 m[3];

	fd = tiny_setup(test, &t);
	fake_vdev_set_auto(fd, true);
	tiny_bind(test, fd, t);
	KUNIT_ASSERT_TRUE(test, tiny_wait_returned(fd, t, 1));
	block = BIT_ULL(t->page_bits);
	good = page_to_phys(t->blocks[0]);

	/* A page list of 8 + 4 bytes. */
	m[0] = cpu_to_le64(FAKE_VDEV_MSG_PAGES);
	m[1] = cpu_to_le64(good);
	KUNIT_EXPECT_EQ(test, tiny_send(t, m, 12, 1, false), 0);
	/* A page list without pages. */
	KUNIT_EXPECT_EQ(test, tiny_send(t, m, 8, 1, false), 0);
	/* A nonzero reserved field. */
	m[0] = cpu_to_le64(FAKE_VDEV_MSG_PAGES | (1ULL << 32));
	KUNIT_EXPECT_EQ(test, tiny_send(t, m, 16, 1, false), 0);
	/* An unknown type. */
	m[0] = cpu_to_le64(9);
	KUNIT_EXPECT_EQ(test, tiny_send(t, m, 16, 1, false), 0);
	/* Stats of 8 + 8 bytes. */
	m[0] = cpu_to_le64(FAKE_VDEV_MSG_STATS);
	KUNIT_EXPECT_EQ(test, tiny_send(t, m, 16, 1, false), 0);
	/* A device-writable buffer. */
	m[0] = cpu_to_le64(FAKE_VDEV_MSG_PAGES);
	KUNIT_EXPECT_EQ(test, tiny_send(t, m, 16, 1, true), 0);
	/* Well formed, but an unaligned block and one beyond RAM. */
	m[1] = cpu_to_le64(good + block / 2);
	m[2] = cpu_to_le64(BIT_ULL(50));
	KUNIT_EXPECT_EQ(test, tiny_send(t, m, 24, 1, false), 0);

	KUNIT_ASSERT_TRUE(test, tiny_wait_returned(fd, t, 8));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 8);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 6);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGE_MSGS), 2);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_PAGES), 2);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), TINY_BLOCKS);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_RING_ERRORS), 0);
}

static void fake_vdev_test_spurious(struct kunit *test)
{
	struct fake_vdev *fd;
	struct tiny *t;

	fd = tiny_setup(test, &t);
	tiny_bind(test, fd, t);

	KUNIT_EXPECT_EQ(test, fake_vdev_interrupt(fd, FAKE_VDEV_INPUTQ), 0);
	KUNIT_EXPECT_EQ(test, tiny_get(t, &t->in_callbacks), 1);
	KUNIT_EXPECT_EQ(test, tiny_get(t, &t->in_spurious), 1);
	KUNIT_EXPECT_EQ(test, tiny_get(t, &t->not_hardirq), 0);
	KUNIT_EXPECT_EQ(test, tiny_get(t, &t->nreqs), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_IRQS_IN), 1);
	KUNIT_EXPECT_EQ(test, fake_vdev_interrupt(fd, FAKE_VDEV_NUM_VQS),
			-EINVAL);
}

static void fake_vdev_test_not_ready(struct kunit *test)
{
	struct fake_vdev_msg *msg;
	struct fake_vdev *fd;
	struct tiny *t;

	fd = tiny_setup(test, &t);
	KUNIT_EXPECT_FALSE(test, fake_vdev_bound(fd));
	KUNIT_EXPECT_EQ(test, fake_vdev_send_request(fd, 0, 0), -ENODEV);
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_pop_output(fd, &msg), -ENODEV);
	KUNIT_EXPECT_EQ(test, fake_vdev_interrupt(fd, FAKE_VDEV_INPUTQ),
			-ENODEV);

	/* A probe that fails leaves the device unbound and clean. */
	t->nbufs = TINY_MAX_BUFS + 1;
	KUNIT_EXPECT_EQ(test, fake_vdev_register(fd), 0);
	KUNIT_EXPECT_FALSE(test, fake_vdev_bound(fd));
	KUNIT_EXPECT_EQ(test, fake_vdev_register(fd), -EBUSY);
}

static void fake_vdev_test_unregister_held(struct kunit *test)
{
	struct fake_vdev_msg *msg;
	struct fake_vdev *fd;
	struct tiny *t;

	fd = tiny_setup(test, &t);
	tiny_bind(test, fd, t);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);

	/* Remove the driver while the device holds its message. */
	fake_vdev_unregister(fd);
	KUNIT_EXPECT_EQ(test, t->removes, 1);
	KUNIT_EXPECT_FALSE(test, fake_vdev_bound(fd));
	KUNIT_EXPECT_FALSE(test, fake_vdev_status(fd) &
			   VIRTIO_CONFIG_S_DRIVER_OK);
	KUNIT_EXPECT_EQ(test, fake_vdev_held(fd), 1);
	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msg), -ESTALE);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 0);

	/* Register again: a fresh probe on fresh queues. */
	tiny_bind(test, fd, t);
	KUNIT_EXPECT_EQ(test, t->probes, 2);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	/* Left held: the test's end frees it. */
}

/*
 * The device notices a block the guest freed before the buffer came back.
 * 2 MiB blocks: a freed one is rarely handed out again at once.
 */
static void fake_vdev_test_freed_block(struct kunit *test)
{
	static const struct fake_vdev_geom g = {
		"2M", 21, 0, FAKE_VDEV_QUEUE_SIZE, false
	};
	struct fake_vdev_msg *msg;
	struct fake_vdev *fd;
	struct tiny *t;

	fd = tiny_setup_geom(test, &g, &t);
	tiny_bind(test, fd, t);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);

	__free_pages(t->blocks[0], t->order);
	t->blocks[0] = NULL;
	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 1);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), TINY_BLOCKS);
}

static int fake_vdev_suite_init(struct kunit_suite *suite)
{
	return register_virtio_driver(&tiny_driver);
}

static void fake_vdev_suite_exit(struct kunit_suite *suite)
{
	unregister_virtio_driver(&tiny_driver);
}

static struct kunit_case fake_vdev_test_cases[] = {
	KUNIT_CASE_PARAM(fake_vdev_test_probe, fake_vdev_geom_gen_params),
	KUNIT_CASE_PARAM(fake_vdev_test_request, fake_vdev_geom_gen_params),
	KUNIT_CASE(fake_vdev_test_raw),
	KUNIT_CASE_PARAM(fake_vdev_test_output_held, fake_vdev_geom_gen_params),
	KUNIT_CASE_PARAM(fake_vdev_test_auto, fake_vdev_geom_gen_params),
	KUNIT_CASE_PARAM(fake_vdev_test_bad_messages, fake_vdev_geom_gen_params),
	KUNIT_CASE(fake_vdev_test_spurious),
	KUNIT_CASE(fake_vdev_test_not_ready),
	KUNIT_CASE(fake_vdev_test_unregister_held),
	KUNIT_CASE(fake_vdev_test_freed_block),
	{}
};

static struct kunit_suite fake_vdev_test_suite = {
	.name = "virtio_balloon13_fake_vdev",
	.suite_init = fake_vdev_suite_init,
	.suite_exit = fake_vdev_suite_exit,
	.test_cases = fake_vdev_test_cases,
};

kunit_test_suite(fake_vdev_test_suite);
