// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests of the whole virtio_balloon13 driver bound to a fake device
 * 13 (virtio_balloon13_fake_vdev.c): real virtqueues, the device side served with vringh.
 */
#include <kunit/test.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/gfp.h>
#include <linux/memory.h>
#include <linux/moduleparam.h>
#include <linux/dma-mapping.h>
#include <linux/mm.h>
#include <linux/page-flags.h>
#include <linux/page_ref.h>
#include <linux/page_reporting.h>
#include <linux/pageblock-flags.h>
#include <linux/pfn.h>
#include <linux/prandom.h>
#include <linux/seq_file.h>
#include <linux/shrinker.h>
#include <linux/sizes.h>
#include <linux/string.h>
#include <linux/vmstat.h>
#include <linux/workqueue.h>

#include "../virtio_balloon13_internal.h"
#include "virtio_balloon13_fake_vdev.h"

#define TO	FAKE_VDEV_TIMEOUT_MS

/* How long to watch for something that must not happen. */
#define QUIET_MS	300

static struct virtio_balloon13 *vb_of(struct fake_vdev *fd)
{
	return fd->vdev.priv;
}

/* Create a fake device 13 with rings of @qsize and bind the driver. */
static struct fake_vdev *bind_q(struct kunit *test, u32 page_bits,
				bool auto_out, unsigned int qsize)
{
	struct fake_vdev *fd = fake_vdev_create(test, page_bits);
	unsigned int posted;

	/*
	 * Like a real discard, overwrite each block when the device takes
	 * it: with KASAN, a block the driver freed too early is reported.
	 */
	fd->discard_fill = 0x5a;
	fd->queue_size = qsize;
	/* As QEMU and balloon13d do by default. */
	fd->device_features |= BIT_ULL(VIRTIO_BALLOON13_F_PRESSURE_RELEASE);
	fake_vdev_set_auto(fd, auto_out);
	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_bound(fd));
	posted = min_t(unsigned int, VB13_NR_REQS, qsize);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_posted(fd, posted, TO));
	KUNIT_ASSERT_NOT_NULL(test, vb_of(fd));
	return fd;
}

static struct fake_vdev *bind(struct kunit *test, u32 page_bits, bool auto_out)
{
	return bind_q(test, page_bits, auto_out, FAKE_VDEV_QUEUE_SIZE);
}

/* Module parameters changed by a test are put back when it ends. */
struct saved_params {
	unsigned int floor_mib, oom_release_mib, oom_hold_ms, page_list_kib;
	unsigned int shrinker_mode, req_budget;
	unsigned long floor_min_bytes;
	int pressure_release;
	bool fill_holes;
};

static void restore_params(void *data)
{
	struct saved_params *p = data;

	WRITE_ONCE(vb13_floor_mib, p->floor_mib);
	WRITE_ONCE(vb13_floor_min_bytes, p->floor_min_bytes);
	WRITE_ONCE(vb13_pressure_release, p->pressure_release);
	WRITE_ONCE(vb13_oom_release_mib, p->oom_release_mib);
	WRITE_ONCE(vb13_oom_hold_ms, p->oom_hold_ms);
	WRITE_ONCE(vb13_page_list_kib, p->page_list_kib);
	WRITE_ONCE(vb13_shrinker_mode, p->shrinker_mode);
	WRITE_ONCE(vb13_req_budget, p->req_budget);
	WRITE_ONCE(vb13_fill_holes, p->fill_holes);
}

static void save_params(struct kunit *test)
{
	struct saved_params *p = kunit_kzalloc(test, sizeof(*p), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, p);
	p->floor_mib = vb13_floor_mib;
	p->floor_min_bytes = vb13_floor_min_bytes;
	p->pressure_release = vb13_pressure_release;
	p->oom_release_mib = vb13_oom_release_mib;
	p->oom_hold_ms = vb13_oom_hold_ms;
	p->page_list_kib = vb13_page_list_kib;
	p->shrinker_mode = vb13_shrinker_mode;
	p->req_budget = vb13_req_budget;
	p->fill_holes = vb13_fill_holes;
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, restore_params, p),
			0);
}

/* Leave the balloon at most @mib MiB of room above the floor. */
static void limit_room(struct kunit *test, unsigned long mib)
{
	unsigned long ram_mib = totalram_pages() >> (20 - PAGE_SHIFT);

	save_params(test);
	KUNIT_ASSERT_GT(test, ram_mib, mib + 64);
	WRITE_ONCE(vb13_floor_mib, ram_mib - mib);
}

static unsigned long blocks_of(struct virtio_balloon13 *vb, u64 bytes)
{
	return bytes >> vb->geom.page_bits;
}

/* The byte cap of one message, in blocks. */
static unsigned long cap_blocks(struct virtio_balloon13 *vb)
{
	return vb13_pages_to_blocks(&vb->geom, vb->geom.msg_pages);
}

/* Addresses in a page-list message the device holds. */
static unsigned long msg_blocks(const struct fake_vdev_msg *msg)
{
	return (msg->len - FAKE_VDEV_MSG_HDR_LEN) / 8;
}

/* The balloon holds @blocks, all acknowledged by the device. */
static bool settled_at(struct virtio_balloon13 *vb, unsigned long blocks)
{
	return READ_ONCE(vb->nr_blocks) == blocks &&
	       !READ_ONCE(vb->in_flight_blocks);
}

static int resize(struct fake_vdev *fd, u64 bytes)
{
	return fake_vdev_send_request(fd, VIRTIO_BALLOON13_REQ_RESIZE, bytes);
}

static int resize_wait(struct fake_vdev *fd, u64 bytes)
{
	return fake_vdev_send_request_wait(fd, VIRTIO_BALLOON13_REQ_RESIZE,
					   bytes, TO);
}

static int ask_stats(struct fake_vdev *fd)
{
	return fake_vdev_send_request(fd, VIRTIO_BALLOON13_REQ_STATS, 0);
}

/* Wait until a driver counter reaches @n. */
static bool wait_cnt(struct fake_vdev *fd, const u64 *counter, u64 n)
{
	return fake_vdev_wait(fd, READ_ONCE(*counter) >= n, TO);
}

/*
 * Every block the driver holds was received by the device, and every page
 * of it is PageOffline().  Unless @reused, each exactly once: a test in
 * which blocks left the balloon (withdrawn by access, which the device
 * doesn't see) and the balloon refilled may hold a block the device
 * received once per time it entered the balloon.
 * Return: the number of blocks checked.
 */
static unsigned long __check_owned(struct kunit *test, struct fake_vdev *fd,
				   bool reused)
{
	struct virtio_balloon13 *vb = vb_of(fd);
	unsigned long n = 0, unseen = 0, repeated = 0, online = 0;
	struct page *page;
	int order;

	LIST_HEAD(listed);

	mutex_lock(&vb->lock);
	/*
	 * A migratable balloon's pages on the kernel's balloon list: taken
	 * off it to be looked at (its lock is the core's), and put back.
	 */
	while (balloon_page_list_dequeue(&vb->bdev, &listed, 1024))
		;
	list_for_each_entry(page, &listed, lru)
		set_page_private(page, 0);
	for (order = 0; order <= MAX_PAGE_ORDER + 1; order++) {
		struct list_head *head = order <= MAX_PAGE_ORDER ?
					 &vb->acked[order] : &listed;

		list_for_each_entry(page, head, lru) {
			unsigned long i, blocks;
			u64 base = PFN_PHYS(page_to_pfn(page));

			blocks = vb13_chunk_blocks(&vb->geom,
						   vb13_chunk_order(page));
			for (i = 0; i < blocks; i++) {
				unsigned int seen = fake_vdev_page_seen(fd,
					base + (i << vb->geom.page_bits));

				unseen += !seen;
				repeated += seen > 1;
				n++;
			}
			for (i = 0; i < 1UL << vb13_chunk_order(page); i++)
				online += !PageOffline(page + i);
		}
	}
	if (!list_empty(&listed))
		balloon_page_list_enqueue(&vb->bdev, &listed);
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, unseen, 0UL);
	if (!reused)
		KUNIT_EXPECT_EQ(test, repeated, 0UL);
	KUNIT_EXPECT_EQ(test, online, 0UL);
	return n;
}

static unsigned long check_owned(struct kunit *test, struct fake_vdev *fd)
{
	return __check_owned(test, fd, false);
}

/*
 * Take page-list messages from the device and hold them, until they name
 * @blocks blocks in all; at most @max messages.
 * Return: the number of messages held.
 */
static unsigned int hold_msgs(struct kunit *test, struct fake_vdev *fd,
			      struct fake_vdev_msg **msgs, unsigned int max,
			      unsigned long blocks)
{
	unsigned long got = 0;
	unsigned int n = 0;

	while (got < blocks) {
		KUNIT_ASSERT_LT(test, n, max);
		KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msgs[n], TO), 0);
		KUNIT_ASSERT_EQ(test, fake_vdev_msg_type(msgs[n]), 0U);
		got += msg_blocks(msgs[n]);
		n++;
	}
	KUNIT_EXPECT_EQ(test, got, blocks);
	return n;
}

/* The text a sysfs attribute of the driver shows, through its show(). */
static char *sysfs_show(struct kunit *test, struct fake_vdev *fd,
			const char *name)
{
	const struct attribute_group *const *groups =
		fd->vdev.dev.driver->dev_groups;
	char *buf = kunit_kzalloc(test, PAGE_SIZE, GFP_KERNEL);
	struct device_attribute *da;
	struct attribute **a;
	ssize_t n;

	KUNIT_ASSERT_NOT_NULL(test, buf);
	for (; groups && *groups; groups++) {
		for (a = (*groups)->attrs; *a; a++) {
			if (strcmp((*a)->name, name))
				continue;
			da = container_of(*a, struct device_attribute, attr);
			n = da->show(&fd->vdev.dev, da, buf);
			KUNIT_ASSERT_GT(test, n, 0L);
			KUNIT_EXPECT_EQ(test, buf[n - 1], '\n');
			return buf;
		}
	}
	KUNIT_FAIL_AND_ABORT(test, "no sysfs attribute %s", name);
	return NULL;
}

static u64 sysfs_u64(struct kunit *test, struct fake_vdev *fd, const char *name)
{
	u64 v = U64_MAX;

	KUNIT_EXPECT_EQ(test, kstrtoull(strim(sysfs_show(test, fd, name)), 10,
					&v), 0);
	return v;
}

/* --- probe -------------------------------------------------------------- */

static void probe_posts_buffers(struct kunit *test)
{
	struct fake_vdev *fd = bind(test, 12, true);
	struct virtio_balloon13 *vb = vb_of(fd);
	unsigned long cap = (unsigned long)vb13_page_list_kib >> (PAGE_SHIFT - 10);
	unsigned int at_ready = READ_ONCE(fd->posted_at_ready);

	KUNIT_EXPECT_TRUE(test, fake_vdev_status(fd) & VIRTIO_CONFIG_S_DRIVER_OK);
	/* Every request buffer was posted before DRIVER_OK. */
	KUNIT_EXPECT_EQ(test, at_ready, (unsigned int)VB13_NR_REQS);
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd),
			(unsigned int)VB13_NR_REQS);
	KUNIT_EXPECT_EQ(test, vb->nr_reqs, (unsigned int)VB13_NR_REQS);
	KUNIT_EXPECT_EQ(test, vb->nr_msgs, (unsigned int)VB13_NR_MSGS);
	KUNIT_EXPECT_EQ(test, vb->geom.page_bits, 12U);
	/* Addresses for exactly the byte cap: 4 KiB blocks, one per page. */
	KUNIT_EXPECT_EQ(test, vb->geom.msg_pages, cap);
	KUNIT_EXPECT_EQ(test, (unsigned long)vb->geom.msg_addrs, cap);
	KUNIT_EXPECT_TRUE(test, vb->live);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	/* Nothing is sent before the device asks. */
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 0ULL);
}

static const u32 hostile_bits[] = { 0, 5, 11, 23, 40, 63 };

static void bits_desc(const u32 *bits, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "page_bits=%u", *bits);
}

KUNIT_ARRAY_PARAM(hostile_bits, hostile_bits, bits_desc);

static void probe_rejects_page_bits(struct kunit *test)
{
	const u32 *bits = test->param_value;
	struct fake_vdev *fd = fake_vdev_create(test, *bits);

	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
	KUNIT_EXPECT_FALSE(test, fake_vdev_bound(fd));
	KUNIT_EXPECT_FALSE(test, fake_vdev_status(fd) & VIRTIO_CONFIG_S_DRIVER_OK);
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd), 0U);
}

/* Rings of 1, 2 and 4 entries: the driver uses what it was given. */
static const unsigned int ring_sizes[] = { 1, 2, 4 };

static void ring_desc(const unsigned int *n, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "queue_size=%u", *n);
}

KUNIT_ARRAY_PARAM(ring_sizes, ring_sizes, ring_desc);

static void small_rings(struct kunit *test)
{
	const unsigned int *qsize = test->param_value;
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	int i;

	fd = bind_q(test, 12, true, *qsize);
	vb = vb_of(fd);
	KUNIT_EXPECT_EQ(test, vb->nr_reqs, min_t(unsigned int, *qsize,
						 VB13_NR_REQS));
	KUNIT_EXPECT_EQ(test, vb->nr_msgs, clamp_t(unsigned int, *qsize - 1, 1,
						   VB13_NR_MSGS));
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd), vb->nr_reqs);

	/* Statistics and page lists share the ring; neither stalls. */
	KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
	KUNIT_ASSERT_EQ(test, resize_wait(fd, SZ_32M), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_send_request_wait(fd,
							  VIRTIO_BALLOON13_REQ_STATS,
							  0, TO), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 8192), TO));
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_STATS_MSGS,
						     2, TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 8192ULL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 8192UL);

	/* Requests one after another through the same few buffers. */
	for (i = 0; i < 3 * VB13_NR_REQS; i++)
		KUNIT_ASSERT_EQ(test, resize_wait(fd, i & 1 ? SZ_8M : SZ_16M),
				0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_resize,
					 1 + 3 * VB13_NR_REQS));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_ASSERT_EQ(test, resize_wait(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}

/* --- inflate and deflate ------------------------------------------------ */

static const u32 inflate_bits[] = { 12, 16, 21, 22 };
KUNIT_ARRAY_PARAM(inflate_bits, inflate_bits, bits_desc);

static void inflate_exact(struct kunit *test)
{
	const u32 *bits = test->param_value;
	unsigned long ram = totalram_pages(), want, pages;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, *bits, true);
	vb = vb_of(fd);
	want = blocks_of(vb, SZ_32M);
	pages = SZ_32M >> PAGE_SHIFT;

	KUNIT_ASSERT_EQ(test, resize(fd, SZ_32M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, want), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), (u64)want);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), want);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), pages);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_inflated), (u64)want);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.alloc_failures), 0ULL);

	/* Back to zero: all memory returns, and the device isn't told. */
	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), (u64)want);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_withdrawn), (u64)want);
}

#ifdef CONFIG_BALLOON
static void vmstat_counts_pages(struct kunit *test)
{
	unsigned long ev[NR_VM_EVENT_ITEMS], in, out;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 21, true);
	vb = vb_of(fd);
	all_vm_events(ev);
	in = ev[BALLOON_INFLATE];
	out = ev[BALLOON_DEFLATE];
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 8), TO));
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2), TO));
	all_vm_events(ev);
	KUNIT_EXPECT_EQ(test, ev[BALLOON_INFLATE] - in,
			(unsigned long)(SZ_16M >> PAGE_SHIFT));
	KUNIT_EXPECT_EQ(test, ev[BALLOON_DEFLATE] - out,
			(unsigned long)(SZ_4M + SZ_8M) >> PAGE_SHIFT);
}
#endif

/* Withdrawal to an exact size, splitting chunks where it must. */
static void deflate_to_target(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_32M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 8192), TO));

	/* 5 blocks less than 12 MiB: not a multiple of any large chunk. */
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M + SZ_4M - 5 * 4096), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 3067), TO));
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 3067UL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 3067UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_withdrawn),
			8192ULL - 3067);
	/* Deflating sends nothing. */
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 8192ULL);

	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}

/*
 * The data-safety rule: a block is freed only after the device returned
 * the buffer naming it.  The device holds the messages; a deflate waits.
 */
static void deflate_waits_for_in_flight(struct kunit *test)
{
	struct fake_vdev_msg *msgs[VB13_NR_MSGS];
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned int n, i;

	fd = bind(test, 12, false);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	n = hold_msgs(test, fd, msgs, VB13_NR_MSGS, 2048);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->in_flight_blocks), 2048UL);

	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_resize, 2));
	msleep(QUIET_MS);
	/* Still held: nothing freed, MemTotal still reduced. */
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 2048UL);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_withdrawn), 0ULL);

	/* The device discards (and checks nothing was freed), then returns. */
	for (i = 0; i < n; i++)
		KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msgs[i]), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 2048ULL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}

/*
 * At most nr_msgs messages in flight, each naming at most the byte cap;
 * while the device holds them all, allocation stops.
 */
static void in_flight_bound(struct kunit *test)
{
	struct fake_vdev_msg *msgs[VB13_NR_MSGS], *extra;
	unsigned long held = 0, cap;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned int i;

	fd = bind(test, 12, false);
	vb = vb_of(fd);
	cap = cap_blocks(vb);
	/* 64 MiB: far more than four messages' worth. */
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	for (i = 0; i < VB13_NR_MSGS; i++) {
		KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msgs[i], TO), 0);
		KUNIT_EXPECT_EQ(test, fake_vdev_msg_type(msgs[i]), 0U);
		KUNIT_EXPECT_LE(test, msg_blocks(msgs[i]), cap);
		held += msg_blocks(msgs[i]);
	}
	KUNIT_EXPECT_EQ(test, fake_vdev_wait_output(fd, &extra, QUIET_MS),
			-EAGAIN);
	/* Nothing unsent: every block held is in one of those messages. */
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), held);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->in_flight_blocks), held);
	KUNIT_EXPECT_LE(test, held, VB13_NR_MSGS * cap);

	fake_vdev_set_auto(fd, true);
	for (i = 0; i < VB13_NR_MSGS; i++)
		KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msgs[i]), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 16384ULL);
	KUNIT_EXPECT_GE(test, fake_vdev_count(fd, FAKE_VDEV_PAGE_MSGS),
			(u64)DIV_ROUND_UP(16384, cap));
	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
}

/*
 * The byte cap, for 4 KiB and 2 MiB blocks alike: the first message of a
 * run names 1 MiB (or one block) so the device starts at once, each next
 * one at most twice the one before, none more than the 16 MiB cap, and
 * what is unsent or in flight never exceeds nr_msgs messages' worth.
 */
static const u32 cap_bits[] = { 12, 21 };
KUNIT_ARRAY_PARAM(cap_bits, cap_bits, bits_desc);

static void msg_byte_cap(struct kunit *test)
{
	const u32 *bits = test->param_value;
	struct fake_vdev_msg *held[VB13_NR_MSGS], *msg;
	unsigned long want, total = 0, cap, first, limit, most = 0;
	struct virtio_balloon13 *vb;
	unsigned int nh = 0, nmsgs = 0, i;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_page_list_kib, 16 * 1024);
	fd = bind(test, *bits, false);
	vb = vb_of(fd);
	cap = cap_blocks(vb);
	KUNIT_ASSERT_EQ(test, cap, (unsigned long)(SZ_16M >> *bits));
	KUNIT_EXPECT_EQ(test, vb->geom.msg_pages,
			(unsigned long)(SZ_16M >> PAGE_SHIFT));
	first = max_t(unsigned long, 1, SZ_1M >> *bits);
	limit = first;
	want = SZ_64M >> *bits;

	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	while (total < want) {
		if (nh == vb->nr_msgs) {
			/* The device holds all it can: the bound holds. */
			KUNIT_EXPECT_LE(test, READ_ONCE(vb->in_flight_blocks),
					vb->nr_msgs * cap);
			KUNIT_EXPECT_EQ(test,
					fake_vdev_complete_output(fd, held[0]),
					0);
			memmove(held, held + 1, --nh * sizeof(held[0]));
		}
		KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
		KUNIT_ASSERT_EQ(test, fake_vdev_msg_type(msg), 0U);
		/* Slow start: 1 MiB, then doubling up to the cap. */
		KUNIT_EXPECT_LE(test, msg_blocks(msg), limit);
		limit = min(2 * limit, cap);
		KUNIT_EXPECT_LE(test, msg_blocks(msg), cap);
		KUNIT_EXPECT_LE(test, READ_ONCE(vb->in_flight_blocks),
				vb->nr_msgs * cap);
		most = max(most, msg_blocks(msg));
		total += msg_blocks(msg);
		held[nh++] = msg;
		nmsgs++;
	}
	KUNIT_EXPECT_EQ(test, total, want);
	for (i = 0; i < nh; i++)
		KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, held[i]), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, want), TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_pages), (u64)nmsgs);
	KUNIT_EXPECT_GE(test, nmsgs, (unsigned int)(want / cap));
	/* They grew to the cap. */
	KUNIT_EXPECT_EQ(test, most, cap);
	kunit_info(test, "%u messages, largest %lu blocks (cap %lu)\n", nmsgs,
		   most, cap);
}

/*
 * A byte cap above what a message can carry (64 MiB of 4 KiB blocks would
 * be 16384 addresses): messages stop at VIRTIO_BALLOON13_MSG_MAX_LEN
 * (8191 addresses), and the balloon still reaches its target.
 */
static void msg_len_max(struct kunit *test)
{
	struct fake_vdev_msg *held[VB13_NR_MSGS], *msg;
	unsigned long want, total = 0, most = 0;
	struct virtio_balloon13 *vb;
	unsigned int nh = 0, i;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_page_list_kib, 64 * 1024);
	fd = bind(test, 12, false);
	vb = vb_of(fd);
	KUNIT_EXPECT_EQ(test, vb->geom.msg_addrs,
			(unsigned int)VB13_MSG_ADDRS_MAX);
	want = SZ_64M >> 12;
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	while (total < want) {
		if (nh == vb->nr_msgs) {
			KUNIT_EXPECT_EQ(test,
					fake_vdev_complete_output(fd, held[0]),
					0);
			memmove(held, held + 1, --nh * sizeof(held[0]));
		}
		KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
		KUNIT_ASSERT_EQ(test, fake_vdev_msg_type(msg), 0U);
		KUNIT_EXPECT_LE(test, msg->len,
				(size_t)VIRTIO_BALLOON13_MSG_MAX_LEN);
		most = max(most, msg_blocks(msg));
		total += msg_blocks(msg);
		held[nh++] = msg;
	}
	KUNIT_EXPECT_EQ(test, total, want);
	for (i = 0; i < nh; i++)
		KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, held[i]), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, want), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);
	/* Past the default cap (4096), up to what fits. */
	KUNIT_EXPECT_GT(test, most, 4096UL);
	KUNIT_EXPECT_LE(test, most, (unsigned long)VB13_MSG_ADDRS_MAX);
	kunit_info(test, "largest message %lu addresses\n", most);
}

/* Messages the device returns in any order free exactly their blocks. */
static void out_of_order_completion(struct kunit *test)
{
	struct fake_vdev_msg *msgs[VB13_NR_MSGS];
	unsigned long ram = totalram_pages(), kept = 0;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned int n, i;

	fd = bind(test, 12, false);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M + SZ_4M), 0);
	n = hold_msgs(test, fd, msgs, VB13_NR_MSGS, 3072);
	KUNIT_ASSERT_GE(test, n, 2U);
	/* The device returns the odd ones, last first; it keeps the rest. */
	for (i = n; i-- > 0;) {
		if (i & 1)
			KUNIT_ASSERT_EQ(test,
					fake_vdev_complete_output(fd, msgs[i]),
					0);
		else
			kept += msg_blocks(msgs[i]);
	}
	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->nr_blocks) ==
					       kept, TO));
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), kept);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->in_flight_blocks), kept);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), kept);
	for (i = 0; i < n; i += 2)
		KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msgs[i]), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 3072ULL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}

/* A new RESIZE redirects a run in progress. */
static void resize_redirects(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_128M), 0);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_resize, 2));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 4096), TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->target_blocks), 4096UL);
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 4096UL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 4096UL);
}

/* 200 random targets in a row: the balloon ends at the last, exactly. */
static void resize_storm(struct kunit *test)
{
	unsigned long ram = totalram_pages(), last = 0;
	struct virtio_balloon13 *vb;
	struct rnd_state rnd;
	struct fake_vdev *fd;
	int i;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	prandom_seed_state(&rnd, 0xb13);
	for (i = 0; i < 200; i++) {
		u64 t = (u64)(prandom_u32_state(&rnd) % 48) * SZ_1M +
			(prandom_u32_state(&rnd) % 256) * 4096;

		KUNIT_ASSERT_EQ(test, resize_wait(fd, t), 0);
		last = t >> 12;
	}
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_resize, 200));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, last), TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_resize), 200ULL);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), last);
	/* 200 targets up and down: a freed block may be taken again. */
	KUNIT_EXPECT_EQ(test, __check_owned(test, fd, true), last);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_inflated) -
			READ_ONCE(vb->cnt.blocks_withdrawn), (u64)last);
	KUNIT_ASSERT_EQ(test, resize_wait(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}

/* --- allocation failures ---------------------------------------------------- */

static atomic_t stub_calls = ATOMIC_INIT(0);

/* The allocator says no, at every order. */
static struct page *alloc_fails(struct virtio_balloon13 *vb, unsigned int order)
{
	if (order == vb->geom.block_order)
		atomic_inc(&stub_calls);
	return NULL;
}

/*
 * ENOMEM backs off exponentially; the same target again (a storm of it)
 * leaves the backoff alone, so the device can't drive a reclaim storm; a
 * new target cuts the wait short, and success ends it.
 */
static void enomem_backoff(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	u64 fails;
	int i;

	atomic_set(&stub_calls, 0);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	WRITE_ONCE(vb->alloc_stub, alloc_fails);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	/* 100, 200, 400 ms: three failures within a second or so. */
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.alloc_failures, 3));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	KUNIT_EXPECT_GE(test, READ_ONCE(vb->backoff_ms), 400U);
	/* Each failure is one try at the block order, after the high ones. */
	KUNIT_EXPECT_EQ(test, (u64)atomic_read(&stub_calls),
			READ_ONCE(vb->cnt.alloc_failures));

	fails = READ_ONCE(vb->cnt.alloc_failures);
	for (i = 0; i < 64; i++)
		KUNIT_ASSERT_EQ(test, resize_wait(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_resize, 65));
	msleep(QUIET_MS);
	/*
	 * The backoff (800 ms, then 1.6 s) went on: a try or two more at
	 * most, however slowly the storm went; not one per request.
	 */
	KUNIT_EXPECT_LE(test, READ_ONCE(vb->cnt.alloc_failures) - fails, 2ULL);
	KUNIT_EXPECT_GE(test, READ_ONCE(vb->backoff_ms), 400U);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);

	/*
	 * Memory again, and a new target: the worker tries again when the
	 * backoff ends (a new target that needs allocating doesn't cut it
	 * short: see backoff_alternating_targets).
	 */
	WRITE_ONCE(vb->alloc_stub, NULL);
	KUNIT_ASSERT_EQ(test, resize_wait(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->backoff_ms), 0U);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 2048UL);
}

/*
 * A device alternating between two targets, both beyond what the guest
 * can allocate, must not cut the backoff short each time: the tries stay
 * as few as one target would give.  A target the balloon already holds
 * (needing no allocation) still cuts it short.
 */
static void backoff_alternating_targets(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	u64 fails;
	int i;

	atomic_set(&stub_calls, 0);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	WRITE_ONCE(vb->alloc_stub, alloc_fails);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.alloc_failures, 3));
	fails = READ_ONCE(vb->cnt.alloc_failures);
	/* 40 requests over about a second: 16 MiB, 24 MiB, 16 MiB, ... */
	for (i = 0; i < 40; i++) {
		KUNIT_ASSERT_EQ(test, resize_wait(fd, i & 1 ? SZ_16M : SZ_16M +
						  SZ_8M), 0);
		msleep(25);
	}
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_resize, 41));
	msleep(QUIET_MS);
	/* The backoff (800 ms, then 1.6 s) held: a try or two at most. */
	KUNIT_EXPECT_LE(test, READ_ONCE(vb->cnt.alloc_failures) - fails, 2ULL);
	KUNIT_EXPECT_GE(test, READ_ONCE(vb->backoff_ms), 800U);
	/* A target of 0 needs nothing allocated: it is honoured at once. */
	KUNIT_ASSERT_EQ(test, resize_wait(fd, 0), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, !READ_ONCE(vb->backoff_ms),
					       TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
}

/* --- the floor ------------------------------------------------------------- */

/* A target past the floor stops at the floor and doesn't spin. */
static void floor_holds(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long max;
	u64 msgs, inflated;

	limit_room(test, 24);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	max = vb13_max_blocks(vb);
	KUNIT_ASSERT_GT(test, max, 0UL);
	/* The floor is set in whole MiB: up to one more MiB of room. */
	KUNIT_ASSERT_LE(test, max, 25UL << 8);

	KUNIT_ASSERT_EQ(test, resize(fd, SZ_256M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, max) &&
					       READ_ONCE(vb->held_by_floor), TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.targets_clamped), 1ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->target_bytes), (u64)SZ_256M);
	/* Exactly the floor is left (4 KiB blocks). */
	KUNIT_EXPECT_EQ(test, totalram_pages(), vb13_floor_pages());
	msgs = READ_ONCE(vb->cnt.messages_pages);
	inflated = READ_ONCE(vb->cnt.blocks_inflated);
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_pages), msgs);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_inflated), inflated);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.alloc_failures), 0ULL);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->resize_work));
}

/*
 * The automatic floor is RAM/16 (here without the 128 MiB minimum, which
 * would hide it in a small test kernel), RAM counting what the balloon
 * holds: it does not move as the balloon grows, nor does sysfs.
 */
static void floor_auto(struct kunit *test)
{
	unsigned long ram = totalram_pages(), floor;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_floor_mib, 0);
	WRITE_ONCE(vb13_floor_min_bytes, 0);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_EXPECT_EQ(test, vb13_ram_pages(), ram);
	floor = vb13_floor_pages();
	KUNIT_EXPECT_EQ(test, floor, ram >> 4);
	KUNIT_EXPECT_EQ(test, sysfs_u64(test, fd, "floor_bytes"),
			(u64)floor << PAGE_SHIFT);
	KUNIT_EXPECT_EQ(test, vb13_max_blocks(vb), ram - floor);

	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 16384UL);
	KUNIT_EXPECT_EQ(test, vb13_ram_pages(), ram);
	KUNIT_EXPECT_EQ(test, vb13_floor_pages(), floor);
	KUNIT_EXPECT_EQ(test, sysfs_u64(test, fd, "floor_bytes"),
			(u64)floor << PAGE_SHIFT);
	/* The room left is the same too: held blocks count in. */
	KUNIT_EXPECT_EQ(test, vb13_max_blocks(vb), ram - floor);

	/* With the 128 MiB minimum back, the larger of the two. */
	WRITE_ONCE(vb13_floor_min_bytes, SZ_128M);
	KUNIT_EXPECT_EQ(test, vb13_floor_pages(),
			max(ram >> 4, (unsigned long)(SZ_128M >> PAGE_SHIFT)));
	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, vb13_ram_pages(), ram);
}

/* --- statistics, sysfs and debugfs ------------------------------------------ */

static void stats_round_trip(struct kunit *test)
{
	struct fake_vdev_stats st;
	struct fake_vdev *fd;
	unsigned int i;

	fd = bind(test, 12, true);
	KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_STATS_MSGS,
						     1, TO));
	fake_vdev_get_stats(fd, &st);
	KUNIT_ASSERT_EQ(test, st.n, 6U);
	for (i = 0; i < st.n; i++)
		KUNIT_EXPECT_EQ(test, st.s[i].tag, (u64)i);
	KUNIT_EXPECT_EQ(test, st.s[VIRTIO_BALLOON13_TAG_MEMTOT].val,
			(u64)totalram_pages() << PAGE_SHIFT);
	KUNIT_EXPECT_LE(test, st.s[VIRTIO_BALLOON13_TAG_MEMFREE].val,
			st.s[VIRTIO_BALLOON13_TAG_MEMTOT].val);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb_of(fd)->cnt.messages_stats), 1ULL);
}

/* STATS while the previous answer is on the device: nothing lost or leaked. */
static void stats_while_in_flight(struct kunit *test)
{
	struct fake_vdev_msg *a, *b, *none;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, false);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &a, TO), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_msg_type(a), 1U);
	KUNIT_EXPECT_EQ(test, a->len, vb13_stats_len(6));

	KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
	KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_stats, 3));
	KUNIT_EXPECT_EQ(test, fake_vdev_wait_output(fd, &none, QUIET_MS),
			-EAGAIN);

	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, a), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &b, TO), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_msg_type(b), 1U);
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, b), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_wait_output(fd, &none, QUIET_MS),
			-EAGAIN);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_stats), 2ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.stats_coalesced), 1ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS), 2ULL);
	/* Every request buffer is back on inputq. */
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
}

/* The debugfs counters file, parsed: "name value" lines in a fixed order. */
static const char * const counter_names[] = {
	"requests_resize", "requests_stats", "requests_unknown",
	"requests_malformed", "request_budget_hits", "spurious_callbacks",
	"targets_clamped", "blocks_inflated", "blocks_withdrawn",
	"blocks_unsent_freed", "messages_pages", "messages_withdraw",
	"messages_stats", "stats_coalesced", "alloc_failures",
	"pressure_releases", "pressure_blocks", "hotplug_blocks",
	"blocks_migrated", "backoff_ms",
	"hold_ms", "held_by_floor", "held_by_zones", "held_by_watermark",
	"movable_blocks",
	"broken", "in_flight_blocks",
	"withdrawing_blocks", "num_blocks", "target_blocks", "msg_max_blocks",
	"requests_interval", "stats_pushed", "stats_interval_ms",
	"messages_report", "report_bytes", "report_skipped", "report_aborted",
	"reporting_active", "reporting_order",
};

static void read_counters(struct kunit *test, struct virtio_balloon13 *vb,
			  u64 *vals)
{
	struct seq_file *m = kunit_kzalloc(test, sizeof(*m), GFP_KERNEL);
	char *line, *text, name[32];
	unsigned int i = 0;
	int n;

	KUNIT_ASSERT_NOT_NULL(test, m);
	m->size = PAGE_SIZE;
	m->buf = kunit_kzalloc(test, m->size + 1, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, m->buf);
	m->private = vb;
	KUNIT_ASSERT_EQ(test, vb13_counters_show(m, NULL), 0);
	KUNIT_ASSERT_FALSE(test, seq_has_overflowed(m));
	text = m->buf;
	while ((line = strsep(&text, "\n")) && *line) {
		KUNIT_ASSERT_LT(test, i, (unsigned int)ARRAY_SIZE(counter_names));
		n = sscanf(line, "%31s %llu", name, &vals[i]);
		KUNIT_ASSERT_EQ(test, n, 2);
		KUNIT_EXPECT_STREQ(test, name, counter_names[i]);
		/* Names padded to one column. */
		KUNIT_EXPECT_EQ(test, line[20], ' ');
		i++;
	}
	KUNIT_EXPECT_EQ(test, i, (unsigned int)ARRAY_SIZE(counter_names));
}

static u64 counter(const u64 *vals, const char *name)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(counter_names); i++)
		if (!strcmp(counter_names[i], name))
			return vals[i];
	return U64_MAX;
}

static void sysfs_debugfs_output(struct kunit *test)
{
	u64 vals[ARRAY_SIZE(counter_names)];
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M + 4096), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 4097), TO));
	KUNIT_ASSERT_EQ(test, fake_vdev_send_request(fd, 9, 0), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_unknown, 1));

	KUNIT_EXPECT_STREQ(test, sysfs_show(test, fd, "size_bytes"), "16781312\n");
	KUNIT_EXPECT_STREQ(test, sysfs_show(test, fd, "target_bytes"),
			   "16781312\n");
	KUNIT_EXPECT_STREQ(test, sysfs_show(test, fd, "page_bits"), "12\n");
	KUNIT_EXPECT_STREQ(test, sysfs_show(test, fd, "num_blocks"), "4097\n");
	KUNIT_EXPECT_EQ(test, sysfs_u64(test, fd, "floor_bytes"),
			(u64)vb13_floor_pages() << PAGE_SHIFT);

	read_counters(test, vb, vals);
	KUNIT_EXPECT_EQ(test, counter(vals, "requests_resize"), 1ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "requests_unknown"), 1ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "requests_malformed"), 0ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "blocks_inflated"), 4097ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "blocks_withdrawn"), 0ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "messages_pages"),
			fake_vdev_count(fd, FAKE_VDEV_PAGE_MSGS));
	KUNIT_EXPECT_EQ(test, counter(vals, "num_blocks"), 4097ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "target_blocks"), 4097ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "in_flight_blocks"), 0ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "held_by_floor"), 0ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "hold_ms"), 0ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "backoff_ms"), 0ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "msg_max_blocks"),
			(u64)cap_blocks(vb));

	KUNIT_ASSERT_EQ(test, resize(fd, 4096), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1), TO));
	KUNIT_EXPECT_STREQ(test, sysfs_show(test, fd, "size_bytes"), "4096\n");
	read_counters(test, vb, vals);
	KUNIT_EXPECT_EQ(test, counter(vals, "blocks_withdrawn"), 4096ULL);
	KUNIT_EXPECT_EQ(test, counter(vals, "requests_resize"), 2ULL);
}

/* --- remove, freeze and restore ------------------------------------------------ */

static void remove_returns_memory(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	struct sysinfo before, after;

	si_meminfo(&before);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 16384UL);

	fake_vdev_unregister(fd);
	KUNIT_EXPECT_FALSE(test, fake_vdev_bound(fd));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	si_meminfo(&after);
	/* Free memory came back (give slack for other activity: 8 MiB). */
	KUNIT_EXPECT_GE(test, after.freeram + (SZ_8M >> PAGE_SHIFT),
			before.freeram);
}

/* Remove while the device holds a message: its blocks come back too. */
static void remove_with_message_held(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct fake_vdev_msg *msg;
	struct fake_vdev *fd;

	fd = bind(test, 12, false);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, ram - totalram_pages() ==
					       1024, TO));
	fake_vdev_unregister(fd);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	/* The queue is gone: the held message is stale now. */
	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msg), -ESTALE);
}

/* Only single blocks can be had: chunks of one 4 KiB page each. */
static struct page *alloc_small(struct virtio_balloon13 *vb, unsigned int order)
{
	if (order > vb->geom.block_order)
		return NULL;
	return vb13_alloc_chunk(&vb->geom, order);
}

/*
 * A ring of one entry, held by a STATS answer: the page list being filled
 * (128 chunks of one block, half the first message's 1 MiB) can't go out
 * and stays unsent, without the worker spinning.
 */
#define BLOCKED	128UL

static struct fake_vdev *bind_blocked(struct kunit *test,
				      struct fake_vdev_msg **stats)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	save_params(test);
	fd = bind_q(test, 12, false, 1);
	vb = vb_of(fd);
	WRITE_ONCE(vb->alloc_stub, alloc_small);
	KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, stats, TO), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_msg_type(*stats), 1U);
	KUNIT_ASSERT_EQ(test, resize_wait(fd, BLOCKED * 4096), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->nr_blocks) ==
					       BLOCKED, TO));
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_pages), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->in_flight_blocks), BLOCKED);
	mutex_lock(&vb->lock);
	KUNIT_EXPECT_TRUE(test, vb->fill && vb->fill->nr == BLOCKED);
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->resize_work));
	return fd;
}

static void remove_with_partial_message(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct fake_vdev_msg *stats;
	struct fake_vdev *fd;

	fd = bind_blocked(test, &stats);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), BLOCKED);
	fake_vdev_unregister(fd);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	/* Freed without the device ever seeing them. */
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, stats), -ESTALE);
}

/*
 * Blocks not sent yet are the first reclaim may take: the shrinker counts
 * them (the device doesn't know them), and gives them back.
 */
static void shrinker_counts_unsent(struct kunit *test)
{
	struct shrink_control sc = { .gfp_mask = GFP_KERNEL };
	unsigned long ram = totalram_pages();
	struct fake_vdev_msg *stats;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	struct shrinker *s;

	fd = bind_blocked(test, &stats);
	vb = vb_of(fd);
	s = vb->shrinker;
	WRITE_ONCE(vb13_shrinker_mode, 2);
	KUNIT_EXPECT_EQ(test, s->count_objects(s, &sc), BLOCKED);
	sc.nr_to_scan = BLOCKED;
	sc.nr_scanned = BLOCKED;
	KUNIT_EXPECT_EQ(test, s->scan_objects(s, &sc), BLOCKED);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_unsent_freed), BLOCKED);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 0ULL);
	WRITE_ONCE(vb13_shrinker_mode, 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, stats), 0);
}

/*
 * The request buffers, the only memory the device writes, are an
 * allocation of their own in whole cache lines: no CPU store to the
 * driver's state can share a line with a device write (non-coherent DMA).
 */
static void requests_dma_safe(struct kunit *test)
{
	size_t line = max_t(size_t, L1_CACHE_BYTES, dma_get_cache_alignment());
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long r;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	r = (unsigned long)vb->reqs;
	KUNIT_EXPECT_TRUE(test, r + vb13_reqs_size() <= (unsigned long)vb ||
			  r >= (unsigned long)(vb + 1));
	KUNIT_EXPECT_EQ(test, r % line, 0UL);
	KUNIT_EXPECT_EQ(test, vb13_reqs_size() % line, 0UL);
	/* A line of its own for each request buffer. */
	KUNIT_EXPECT_GE(test, vb13_reqs_size(), VB13_NR_REQS * line);
	KUNIT_EXPECT_GE(test, ksize(vb->reqs), vb13_reqs_size());
	/* And they work: a request lands in one. */
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1024), TO));
}

/*
 * outputq failing other than by being full: the page list being filled
 * (never sent) is freed, not stranded, and the balloon gives back all it
 * can and stays empty.
 */
static void broken_outputq_gives_back(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1024), TO));
	__virtqueue_break(vb->vqs[VB13_VQ_OUTPUT]);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->broken), TO));
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, !READ_ONCE(vb->nr_blocks) &&
					       !READ_ONCE(vb->in_flight_blocks),
					       TO));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_GT(test, READ_ONCE(vb->cnt.blocks_unsent_freed), 0ULL);
	/* Nothing more was sent or is kept. */
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 1024ULL);
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
}

#ifdef CONFIG_PM_SLEEP
/*
 * A device whose block size changed over suspend is refused at restore
 * (the geometry and the buffers follow page_bits): the driver stays
 * stopped, holds nothing, and remove still works.
 */
static void restore_page_bits_changed(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long flags;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1024), TO));
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&fd->vdev), 0);
	spin_lock_irqsave(&fd->config_lock, flags);
	fd->config.page_bits = cpu_to_le32(21);
	fd->config_gen++;
	spin_unlock_irqrestore(&fd->config_lock, flags);
	KUNIT_EXPECT_NE(test, virtio_device_restore(&fd->vdev), 0);
	KUNIT_EXPECT_FALSE(test, vb->live);
	KUNIT_EXPECT_EQ(test, vb->geom.page_bits, 12U);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	fake_vdev_unregister(fd);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}

/* Freeze gives every page back; restore moves back to the last target. */
static void freeze_restore(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 4096), TO));

	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&fd->vdev), 0);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_FALSE(test, vb->live);

	/* The same pages may come back into the balloon: count afresh. */
	fake_vdev_clear_records(fd);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&fd->vdev), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 4096), TO));
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 4096UL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 4096UL);
}

struct late_complete {
	struct delayed_work work;
	struct fake_vdev *fd;
	struct fake_vdev_msg *msgs[VB13_NR_MSGS];
	unsigned int n;
	int ret;
};

static void late_complete_fn(struct work_struct *work)
{
	struct late_complete *lc = container_of(to_delayed_work(work),
						struct late_complete, work);
	unsigned int i;

	for (i = 0; i < lc->n; i++)
		lc->ret |= fake_vdev_complete_output(lc->fd, lc->msgs[i]);
}

/*
 * Freeze while the device holds page lists: freeze waits for them (the
 * device returns them 200 ms later, here), frees nothing before, and then
 * everything; restore inflates again.
 */
static void freeze_with_held_message(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct late_complete *lc;
	struct fake_vdev *fd;

	lc = kunit_kzalloc(test, sizeof(*lc), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, lc);
	fd = bind(test, 12, false);
	vb = vb_of(fd);
	lc->fd = fd;
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	lc->n = hold_msgs(test, fd, lc->msgs, VB13_NR_MSGS, 2048);

	INIT_DELAYED_WORK(&lc->work, late_complete_fn);
	schedule_delayed_work(&lc->work, msecs_to_jiffies(200));
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&fd->vdev), 0);
	/* Freeze returned only after the device had returned them. */
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&lc->work));
	flush_delayed_work(&lc->work);
	KUNIT_EXPECT_EQ(test, lc->ret, 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 2048ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);

	fake_vdev_clear_records(fd);
	fake_vdev_set_auto(fd, true);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&fd->vdev), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 2048UL);
}

/* Restore fails in queue setup, or in posting the request buffers. */
enum restore_fault { FAULT_FIND_VQS, FAULT_POSTING };

static const enum restore_fault restore_faults[] = {
	FAULT_FIND_VQS, FAULT_POSTING,
};

static void fault_desc(const enum restore_fault *f, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "%s",
		 *f == FAULT_FIND_VQS ? "find_vqs fails" : "posting fails");
}

KUNIT_ARRAY_PARAM(restore_faults, restore_faults, fault_desc);

/*
 * A failed restore leaves a stopped driver: no queues, nothing queued by
 * the OOM notifier, and remove takes it down once (the fake complains
 * about queues left behind; the virtio core warns about a device not
 * reset, which fails the run).
 */
static void restore_fails(struct kunit *test)
{
	const enum restore_fault *f = test->param_value;
	unsigned long ram = totalram_pages(), freed = 0;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 4096), TO));
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&fd->vdev), 0);

	if (*f == FAULT_FIND_VQS)
		fd->fail_find_vqs = -ENOMEM;
	else
		fd->break_vqs = true;
	KUNIT_EXPECT_LT(test, virtio_device_restore(&fd->vdev), 0);
	fd->fail_find_vqs = 0;
	fd->break_vqs = false;

	KUNIT_EXPECT_FALSE(test, vb->live);
	KUNIT_EXPECT_TRUE(test, READ_ONCE(vb->stop));
	KUNIT_EXPECT_NULL(test, vb->vqs[VB13_VQ_INPUT]);
	KUNIT_EXPECT_NULL(test, vb->vqs[VB13_VQ_OUTPUT]);
	KUNIT_EXPECT_NULL(test, fd->q[FAKE_VDEV_INPUTQ].vq);
	KUNIT_EXPECT_NULL(test, fd->q[FAKE_VDEV_OUTPUTQ].vq);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);

	/* Memory pressure now: nothing to give, nothing queued. */
	KUNIT_EXPECT_EQ(test, vb->oom_nb.notifier_call(&vb->oom_nb, 0, &freed),
			NOTIFY_OK);
	KUNIT_EXPECT_EQ(test, freed, 0UL);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->resize_work));
	KUNIT_EXPECT_FALSE(test, work_pending(&vb->req_work));

	/* Freezing again is harmless; remove takes it down. */
	KUNIT_EXPECT_EQ(test, virtio_device_freeze(&fd->vdev), 0);
	fake_vdev_unregister(fd);
	KUNIT_EXPECT_FALSE(test, fake_vdev_bound(fd));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}
#endif

/* --- hostile device --------------------------------------------------------- */

static void hostile_request_length(struct kunit *test)
{
	struct virtio_balloon13_req req = {
		.type = cpu_to_le32(VIRTIO_BALLOON13_REQ_RESIZE),
		.value = cpu_to_le64(SZ_4M),
	};
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	/* Short, zero, and longer than the buffer (a lie). */
	KUNIT_ASSERT_EQ(test, fake_vdev_send_raw(fd, &req, sizeof(req), 8), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_send_raw(fd, &req, sizeof(req), 0), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_send_raw(fd, &req, sizeof(req), 4096), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_malformed, 3));
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_resize), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 0ULL);
	/* A good request still works. */
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1024), TO));
}

static void hostile_unknown_type(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, fake_vdev_send_request(fd, 7, SZ_4M), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_send_request(fd, U32_MAX, 0), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_unknown, 2));
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_malformed), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 0ULL);
}

/* The reserved field of a request means nothing to the driver. */
static void hostile_request_reserved(struct kunit *test)
{
	struct virtio_balloon13_req req = {
		.type = cpu_to_le32(VIRTIO_BALLOON13_REQ_RESIZE),
		.reserved = cpu_to_le32(0xffffffff),
		.value = cpu_to_le64(SZ_4M),
	};
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, fake_vdev_send_raw(fd, &req, sizeof(req),
						 sizeof(req)), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1024), TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_resize), 1ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_malformed), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_unknown), 0ULL);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
}

static const u64 hostile_targets[] = { U64_MAX, 1ULL << 63, 1ULL << 40 };

static void target_desc(const u64 *t, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "target=%#llx", *t);
}

KUNIT_ARRAY_PARAM(hostile_targets, hostile_targets, target_desc);

/* A target above RAM is clamped to what the guest can give. */
static void hostile_huge_target(struct kunit *test)
{
	const u64 *target = test->param_value;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long max;

	limit_room(test, 16);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	max = vb13_max_blocks(vb);
	KUNIT_ASSERT_EQ(test, resize(fd, *target), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, max) &&
					       READ_ONCE(vb->held_by_floor), TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.targets_clamped), 1ULL);
	/* The target is kept as asked, in whole blocks (at most ULONG_MAX). */
	KUNIT_EXPECT_EQ(test, (u64)READ_ONCE(vb->target_blocks),
			min_t(u64, *target >> 12, ULONG_MAX));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->target_bytes), *target);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), (u64)max);
}

/* Interrupts with nothing used change nothing. */
static void hostile_spurious_interrupts(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	u64 spurious;
	int i;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	for (i = 0; i < 16; i++) {
		KUNIT_EXPECT_EQ(test, fake_vdev_interrupt(fd, FAKE_VDEV_INPUTQ), 0);
		KUNIT_EXPECT_EQ(test, fake_vdev_interrupt(fd, FAKE_VDEV_OUTPUTQ),
				0);
	}
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_resize), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_malformed), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd),
			(unsigned int)VB13_NR_REQS);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSGS), 0ULL);
	/* What the inputq interrupts woke found nothing to do: spurious. */
	spurious = READ_ONCE(vb->cnt.spurious_callbacks);
	KUNIT_EXPECT_LE(test, spurious, 16ULL);
	/* So does our own callback, run by hand with nothing to do. */
	vb->vqs[VB13_VQ_INPUT]->callback(vb->vqs[VB13_VQ_INPUT]);
	KUNIT_EXPECT_TRUE(test, wait_cnt(fd, &vb->cnt.spurious_callbacks,
					 spurious + 1));
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1024), TO));
}

/* --- memory pressure ------------------------------------------------------ */

static unsigned long oom_call(struct virtio_balloon13 *vb)
{
	unsigned long freed = 0;

	vb->oom_nb.notifier_call(&vb->oom_nb, 0, &freed);
	return freed;
}

/*
 * Each OOM notification within the hold-off gives back twice the one
 * before; inflation holds off, then goes back to the target.
 */
static void oom_batches_grow(struct kunit *test)
{
	unsigned long ram, base = 2048;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_oom_release_mib, 8);
	WRITE_ONCE(vb13_oom_hold_ms, 1000);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	ram = totalram_pages();

	/* Whole chunks: at least the batch, less than one chunk more. */
	KUNIT_EXPECT_GE(test, oom_call(vb), base);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->pressure_batch), base);
	KUNIT_EXPECT_GE(test, oom_call(vb), 2 * base);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->pressure_batch), 2 * base);
	KUNIT_EXPECT_GE(test, oom_call(vb), 4 * base);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->pressure_batch), 4 * base);
	KUNIT_EXPECT_EQ(test, totalram_pages() - ram,
			16384 - READ_ONCE(vb->nr_blocks));
	KUNIT_EXPECT_LE(test, READ_ONCE(vb->nr_blocks), 16384 - 7 * base);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_releases), 3ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_blocks),
			16384 - READ_ONCE(vb->nr_blocks));

	/* Inflation holds off for a while, then goes back to the target. */
	msleep(QUIET_MS);
	KUNIT_EXPECT_LE(test, READ_ONCE(vb->nr_blocks), 16384 - 7 * base);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));

	/* After the hold, the first notification is a small batch again. */
	KUNIT_EXPECT_GE(test, oom_call(vb), base);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->pressure_batch), base);
}

/*
 * The shrinker: reclaim leaves the balloon alone until an OOM notification
 * opens a pressure episode (shrinker=1); then it takes whole
 * chunks, at least the OOM batch, reports what it took, and keeps the
 * hold-off going.  After
 * the hold-off the episode is over and the balloon refills.  shrinker=2
 * is always on, shrinker=0 (the default) never.
 */
static void shrinker_episode(struct kunit *test)
{
	struct shrink_control sc = { .gfp_mask = GFP_KERNEL };
	unsigned long before, freed;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	struct shrinker *s;

	save_params(test);
	WRITE_ONCE(vb13_shrinker_mode, 1);
	WRITE_ONCE(vb13_oom_release_mib, 4);
	WRITE_ONCE(vb13_oom_hold_ms, 1000);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	s = vb->shrinker;
	KUNIT_ASSERT_NOT_NULL(test, s);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_32M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 8192), TO));

	/* No pressure yet: nothing for reclaim. */
	KUNIT_EXPECT_EQ(test, s->count_objects(s, &sc), SHRINK_EMPTY);

	KUNIT_EXPECT_GE(test, oom_call(vb), 1024UL);
	before = READ_ONCE(vb->nr_blocks);
	KUNIT_EXPECT_EQ(test, s->count_objects(s, &sc), before);
	/* At least the OOM batch (4 MiB), in whole chunks, and said so. */
	sc.nr_to_scan = 300;
	sc.nr_scanned = 300;
	freed = s->scan_objects(s, &sc);
	KUNIT_EXPECT_GE(test, freed, 1024UL);
	KUNIT_EXPECT_LT(test, freed, 2048UL);
	KUNIT_EXPECT_EQ(test, sc.nr_scanned, freed);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), before - freed);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_releases), 2ULL);
	KUNIT_EXPECT_FALSE(test, READ_ONCE(vb->held_by_floor));

	/* The hold-off ends the episode; the balloon refills. */
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 8192), TO));
	KUNIT_EXPECT_EQ(test, s->count_objects(s, &sc), SHRINK_EMPTY);
	sc.nr_to_scan = 300;
	KUNIT_EXPECT_EQ(test, s->scan_objects(s, &sc), SHRINK_STOP);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 8192UL);

	WRITE_ONCE(vb13_shrinker_mode, 2);
	KUNIT_EXPECT_EQ(test, s->count_objects(s, &sc), 8192UL);
	WRITE_ONCE(vb13_shrinker_mode, 0);
	KUNIT_EXPECT_GE(test, oom_call(vb), 1024UL);
	KUNIT_EXPECT_EQ(test, s->count_objects(s, &sc), SHRINK_EMPTY);
	/* The refill may have taken blocks the shrinker gave back. */
	KUNIT_EXPECT_EQ(test, __check_owned(test, fd, true),
			READ_ONCE(vb->nr_blocks));
}

/*
 * The OOM batch of an episode long over does not stay: after an episode
 * that doubled the batch, the always-on shrinker (shrinker=2) gives back
 * about what reclaim asks for, not the old batch.
 */
static void shrinker_batch_decays(struct kunit *test)
{
	struct shrink_control sc = { .gfp_mask = GFP_KERNEL };
	unsigned long before, freed;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	struct shrinker *s;

	save_params(test);
	WRITE_ONCE(vb13_oom_release_mib, 4);
	WRITE_ONCE(vb13_oom_hold_ms, 300);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	s = vb->shrinker;
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	/* An episode: 4, 8, 16 MiB. */
	oom_call(vb);
	oom_call(vb);
	oom_call(vb);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->pressure_batch), 4096UL);
	/* Over, and the balloon refilled. */
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	KUNIT_EXPECT_TRUE(test, time_after_eq(jiffies,
					      READ_ONCE(vb->episode_until)));
	WRITE_ONCE(vb13_shrinker_mode, 2);
	before = READ_ONCE(vb->nr_blocks);
	sc.nr_to_scan = 64;
	sc.nr_scanned = 64;
	freed = s->scan_objects(s, &sc);
	/* 64 pages in whole chunks: at most one chunk (4 MiB) more. */
	KUNIT_EXPECT_GE(test, freed, 64UL);
	KUNIT_EXPECT_LE(test, freed, 64UL + (1UL << vb->geom.max_order));
	KUNIT_EXPECT_LT(test, freed, 4096UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), before - freed);
	WRITE_ONCE(vb13_shrinker_mode, 0);
}

/*
 * shrinker=1: reclaim's own releases don't extend the pressure episode,
 * or a shrinker called now and then would keep itself on and drain the
 * balloon for good.  The episode ends a hold-off after the last OOM
 * notification, however often reclaim calls; then the balloon refills.
 */
static void shrinker_episode_ends(struct kunit *test)
{
	struct shrink_control sc = { .gfp_mask = GFP_KERNEL };
	unsigned long end;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	struct shrinker *s;

	save_params(test);
	WRITE_ONCE(vb13_shrinker_mode, 1);
	WRITE_ONCE(vb13_oom_release_mib, 1);
	WRITE_ONCE(vb13_oom_hold_ms, 400);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	s = vb->shrinker;
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	KUNIT_EXPECT_GE(test, oom_call(vb), 256UL);
	/* Reclaim calls every 50 ms for three hold-offs. */
	end = jiffies + msecs_to_jiffies(1200);
	while (time_before(jiffies, end)) {
		sc.nr_to_scan = 1;
		sc.nr_scanned = 1;
		s->scan_objects(s, &sc);
		msleep(50);
	}
	KUNIT_EXPECT_EQ(test, s->count_objects(s, &sc), SHRINK_EMPTY);
	KUNIT_EXPECT_GT(test, READ_ONCE(vb->nr_blocks), 0UL);
	/* Not held off for ever: back at the target. */
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	WRITE_ONCE(vb13_shrinker_mode, 0);
}

/*
 * Under pressure, blocks never sent go first, and what stays of a partial
 * message is sent at once rather than after the hold-off.
 */
static void oom_unsent_first(struct kunit *test)
{
	struct fake_vdev_msg *stats, *msg;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long freed;

	fd = bind_blocked(test, &stats);
	vb = vb_of(fd);
	/* 0 MiB: the smallest batch, one block (the newest chunk). */
	WRITE_ONCE(vb13_oom_release_mib, 0);
	WRITE_ONCE(vb13_oom_hold_ms, 3000);

	freed = oom_call(vb);
	KUNIT_EXPECT_EQ(test, freed, 1UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_unsent_freed), 1ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), BLOCKED - 1);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->in_flight_blocks), BLOCKED - 1);

	/* Ring room: the rest goes out now, during the hold-off. */
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, stats), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_EXPECT_TRUE(test, time_before(jiffies, READ_ONCE(vb->hold_until)));
	KUNIT_EXPECT_EQ(test, msg_blocks(msg), BLOCKED - 1);
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	/* Named again after the release: every address still a held block. */
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES),
			(u64)(BLOCKED - 1));
	fake_vdev_set_auto(fd, true);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, BLOCKED), TO));
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), BLOCKED);
}

/* A deflate frees unsent blocks without the device ever seeing them. */
static void deflate_unsent_first(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct fake_vdev_msg *stats;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind_blocked(test, &stats);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize_wait(fd, 100 * 4096), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->nr_blocks) ==
					       100, TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_unsent_freed),
			BLOCKED - 100ULL);
	KUNIT_ASSERT_EQ(test, resize_wait(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_unsent_freed),
			(u64)BLOCKED);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	/* The ring frees up: nothing is sent, nothing was seen. */
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, stats), 0);
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_pages), 0ULL);
}

static void oom_release_off(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_pressure_release, 0);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	/* Offered, but not taken: the device knows the guest won't release. */
	KUNIT_EXPECT_FALSE(test,
			   virtio_has_feature(&fd->vdev,
					      VIRTIO_BALLOON13_F_PRESSURE_RELEASE));
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, oom_call(vb), 0UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_releases), 0ULL);
}

/*
 * A device that does not offer VIRTIO_BALLOON13_F_PRESSURE_RELEASE keeps
 * the balloon at its target under pressure: neither the OOM notifier nor
 * the shrinker (even in its "always" mode) gives anything back.
 */
static void pressure_release_not_offered(struct kunit *test)
{
	struct shrink_control sc = { .gfp_mask = GFP_KERNEL, .nr_to_scan = 512 };
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_shrinker_mode, 2);
	fd = fake_vdev_create(test, 12);
	fd->discard_fill = 0x5a;
	fake_vdev_set_auto(fd, true);
	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_bound(fd));
	vb = vb_of(fd);
	KUNIT_ASSERT_NOT_NULL(test, vb);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, oom_call(vb), 0UL);
	KUNIT_EXPECT_EQ(test, vb->shrinker->count_objects(vb->shrinker, &sc),
			SHRINK_EMPTY);
	KUNIT_EXPECT_EQ(test, vb->shrinker->scan_objects(vb->shrinker, &sc),
			SHRINK_STOP);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_releases), 0ULL);
	/* Offered and followed: the same calls give memory back. */
	fake_vdev_unregister(fd);
	fd->device_features |= BIT_ULL(FAKE_VDEV_F_PRESSURE_RELEASE);
	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
	vb = vb_of(fd);
	KUNIT_ASSERT_NOT_NULL(test, vb);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_EXPECT_GT(test, oom_call(vb), 0UL);
	KUNIT_EXPECT_LT(test, READ_ONCE(vb->nr_blocks), 2048UL);
}

/* --- explicit withdrawal (VIRTIO_BALLOON13_F_WITHDRAW) ----------------------- */

static struct fake_vdev *bind_withdraw(struct kunit *test, bool auto_out)
{
	struct fake_vdev *fd = fake_vdev_create(test, 12);

	fd->discard_fill = 0x5a;
	fd->device_features |= BIT_ULL(FAKE_VDEV_F_WITHDRAW) |
			       BIT_ULL(FAKE_VDEV_F_PRESSURE_RELEASE);
	fake_vdev_set_auto(fd, auto_out);
	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_bound(fd));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
	KUNIT_ASSERT_NOT_NULL(test, vb_of(fd));
	KUNIT_ASSERT_TRUE(test, virtio_has_feature(&fd->vdev,
						   VIRTIO_BALLOON13_F_WITHDRAW));
	return fd;
}

/* Settled, with no WITHDRAW on its way either. */
static bool withdrawn_at(struct virtio_balloon13 *vb, unsigned long blocks)
{
	return settled_at(vb, blocks) && !READ_ONCE(vb->withdrawing);
}

/*
 * Deflating names exactly the blocks that leave in WITHDRAW messages (a
 * chunk cut where the target falls inside it), each block the device
 * holds; the device, counting from messages alone, ends where the driver
 * does, and no block was freed before its WITHDRAW came back.
 */
static void withdraw_deflate(struct kunit *test)
{
	unsigned long ram;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind_withdraw(test, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 2048UL);
	ram = totalram_pages();

	/* 3 MiB - 4 KiB: not a whole chunk of any order above 0. */
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_2M + SZ_1M - SZ_4K), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 767), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 767UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAWN), 1281ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_WITHDRAWN), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAW_MSGS),
			READ_ONCE(vb->cnt.messages_withdraw));
	KUNIT_EXPECT_GE(test, READ_ONCE(vb->cnt.messages_withdraw), 1ULL);
	KUNIT_EXPECT_EQ(test, totalram_pages() - ram, 1281UL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 767UL);

	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 0UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAWN), 2048ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
}

/*
 * A block named in a WITHDRAW stays in the balloon, untouched, until the
 * device returns the message: only then does the guest get it back.
 */
static void withdraw_waits_for_device(struct kunit *test)
{
	struct fake_vdev_msg *msg;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long ram;

	fd = bind_withdraw(test, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 1024), TO));
	ram = totalram_pages();
	fake_vdev_set_auto(fd, false);
	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_msg_type(msg),
			(u32)VIRTIO_BALLOON13_RESP_WITHDRAW);
	KUNIT_EXPECT_EQ(test, msg_blocks(msg), 1024UL);
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 1024UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->withdrawing), 1024UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram + 1024);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 0UL);
}

/*
 * Pressure release withdraws too: the OOM notifier reports only blocks
 * whose WITHDRAW came back; a device that keeps the message holds the
 * blocks (a bounded wait), which leave once it returns it.
 */
static void withdraw_oom(struct kunit *test)
{
	struct fake_vdev_msg *msg;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long freed;
	u64 withdrawn;

	save_params(test);
	WRITE_ONCE(vb13_oom_release_mib, 4);
	WRITE_ONCE(vb13_oom_hold_ms, 1000);
	fd = bind_withdraw(test, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 4096), TO));
	freed = oom_call(vb);
	KUNIT_EXPECT_GE(test, freed, 1024UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 4096 - freed);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAWN),
			(u64)freed);
	KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 4096 - freed);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_blocks), (u64)freed);

	/* The device sits on the next one: nothing is freed yet. */
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 4096), TO));
	/* A hold-off that outlasts the notifier's own wait (1 s). */
	WRITE_ONCE(vb13_oom_hold_ms, 5000);
	/* (Balloon migration, by kcompactd, counts in blocks_migrated.) */
	withdrawn = READ_ONCE(vb->cnt.blocks_withdrawn);
	fake_vdev_set_auto(fd, false);
	KUNIT_EXPECT_EQ(test, oom_call(vb), 0UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 4096UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_withdrawn), withdrawn);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_msg_type(msg),
			(u32)VIRTIO_BALLOON13_RESP_WITHDRAW);
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	/*
	 * Back: those blocks leave now, a page at a time (the kernel's
	 * balloon list holds them as single pages): wait for all of them,
	 * not for the first.
	 */
	KUNIT_EXPECT_TRUE(test,
			  fake_vdev_wait(fd, READ_ONCE(vb->cnt.blocks_withdrawn) >=
					 withdrawn + 1024, TO));
	KUNIT_EXPECT_LE(test, READ_ONCE(vb->nr_blocks), 4096UL - 1024);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
}

/*
 * An OOM batch that takes more WITHDRAW messages than can be in flight:
 * the notifier names the rest as messages come back, so one notification
 * gives back the whole batch (before, it gave back what the messages in
 * flight could name, and the workload paid another round of failed
 * reclaim and an OOM notification for each such slice).
 */
static void withdraw_oom_waves(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long freed;

	save_params(test);
	WRITE_ONCE(vb13_page_list_kib, 1024);	/* 256 blocks a message */
	WRITE_ONCE(vb13_oom_release_mib, 8);	/* 2048 blocks */
	WRITE_ONCE(vb13_oom_hold_ms, 1000);
	fd = bind_withdraw(test, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, vb->geom.msg_pages, 256UL);
	KUNIT_ASSERT_LT(test, VB13_NR_MSGS * 256UL, 2048UL);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 4096), TO));
	freed = oom_call(vb);
	KUNIT_EXPECT_GE(test, freed, 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 4096 - freed);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAWN),
			(u64)freed);
	KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 4096 - freed);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_releases), 1ULL);
	KUNIT_EXPECT_GE(test, READ_ONCE(vb->cnt.messages_withdraw), 8ULL);
}

/* Not offered, not used: the device never sees a WITHDRAW. */
static void withdraw_not_offered(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_EXPECT_FALSE(test, virtio_has_feature(&fd->vdev,
						    VIRTIO_BALLOON13_F_WITHDRAW));
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAW_MSGS), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_withdraw), 0ULL);
}

/* --- paths the first review found untested ----------------------------------- */

/*
 * OOM while the device holds every page list: only blocks it returned (or
 * never saw) may go; those it holds stay, and none is freed early.
 */
static void oom_with_messages_held(struct kunit *test)
{
	struct fake_vdev_msg *msgs[VB13_NR_MSGS];
	unsigned long freed, held;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned int n, i;

	save_params(test);
	WRITE_ONCE(vb13_oom_release_mib, 64);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	fake_vdev_set_auto(fd, false);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	/* The page lists grow (256, 512, 1024 blocks): hold every one. */
	for (n = 0, held = 0; n < VB13_NR_MSGS && held < 2048; n++) {
		KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msgs[n], TO),
				0);
		held += msg_blocks(msgs[n]);
	}
	KUNIT_ASSERT_GE(test, held, 1024UL);
	freed = oom_call(vb);
	/* The 2048 acknowledged blocks, and whatever was not sent yet. */
	KUNIT_EXPECT_GE(test, freed, 2048UL);
	KUNIT_EXPECT_GE(test, READ_ONCE(vb->nr_blocks), held);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	for (i = 0; i < n; i++)
		KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msgs[i]), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	fake_vdev_set_auto(fd, true);
}

static DECLARE_COMPLETION(stub_go);
static atomic_t stub_waiting = ATOMIC_INIT(0);

/* The allocator stalls (as under reclaim) until the test lets it go. */
static struct page *alloc_stalls(struct virtio_balloon13 *vb,
				 unsigned int order)
{
	if (order > vb->geom.block_order)
		return NULL;
	if (atomic_inc_return(&stub_waiting) == 64)
		wait_for_completion_timeout(&stub_go, 10 * HZ);
	return vb13_alloc_chunk(&vb->geom, order);
}

/*
 * OOM racing the worker mid-allocation: the worker allocates without the
 * balloon lock, so the notifier goes ahead (giving back what is not on
 * the device), and the sizes add up once the worker resumes.
 */
static void oom_racing_allocation(struct kunit *test)
{
	unsigned long ram = totalram_pages(), freed;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_oom_release_mib, 1);
	WRITE_ONCE(vb13_oom_hold_ms, 300);
	reinit_completion(&stub_go);
	atomic_set(&stub_waiting, 0);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	WRITE_ONCE(vb->alloc_stub, alloc_stalls);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_1M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd,
					       atomic_read(&stub_waiting) >= 64,
					       TO));
	/* The worker is inside the allocator with 63 blocks unsent. */
	freed = oom_call(vb);
	KUNIT_EXPECT_EQ(test, freed, 63UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	complete(&stub_go);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 256), TO));
	WRITE_ONCE(vb->alloc_stub, NULL);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 256UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 256UL);
}

/*
 * Two balloons share one floor: together they never take the guest below
 * it, however much each device asks for.
 */
static void two_balloons_one_floor(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *a, *b;
	struct fake_vdev *fa, *fb;

	limit_room(test, 24);
	fa = bind(test, 12, true);
	fb = bind(test, 12, true);
	a = vb_of(fa);
	b = vb_of(fb);
	KUNIT_ASSERT_EQ(test, resize(fa, SZ_64M), 0);
	KUNIT_ASSERT_EQ(test, resize(fb, SZ_64M), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fa, READ_ONCE(a->held_by_floor) &&
					       READ_ONCE(b->held_by_floor) &&
					       !READ_ONCE(a->in_flight_blocks) &&
					       !READ_ONCE(b->in_flight_blocks),
					       TO));
	/* The floor is set in whole MiB: up to one more MiB of room. */
	KUNIT_EXPECT_LE(test, READ_ONCE(a->nr_blocks) + READ_ONCE(b->nr_blocks),
			25UL << 8);
	KUNIT_EXPECT_GE(test, READ_ONCE(a->nr_blocks) + READ_ONCE(b->nr_blocks),
			23UL << 8);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(),
			READ_ONCE(a->nr_blocks) + READ_ONCE(b->nr_blocks));
}

#ifdef CONFIG_PM_SLEEP
/* OOM while frozen (nothing held, queues gone) and right after restore. */
static void oom_across_freeze(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&fd->vdev), 0);
	KUNIT_EXPECT_EQ(test, oom_call(vb), 0UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	fake_vdev_clear_records(fd);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&fd->vdev), 0);
	/* Whatever it finds mid-refill, the notifier gives back safely. */
	oom_call(vb);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
}
#endif

/* --- memory hotplug and the floor ------------------------------------------ */

/* 128 MiB, x86's memory block: the memory notifier sees whole blocks. */
#define MEMBLOCK_PAGES	(SZ_128M >> PAGE_SHIFT)

static int mem_notify(struct virtio_balloon13 *vb, unsigned long action,
		      unsigned long start_pfn)
{
	struct memory_notify mn = {
		.start_pfn = start_pfn,
		.nr_pages = MEMBLOCK_PAGES,
	};

	return vb->mem_nb.notifier_call(&vb->mem_nb, action, &mn);
}

/*
 * Acknowledged chunks stay chunks, as where balloon migration is not
 * built in or blocks are larger than a page: set before inflating.
 */
static void keep_chunks(struct virtio_balloon13 *vb)
{
	mutex_lock(&vb->lock);
	vb->migratable = false;
	mutex_unlock(&vb->lock);
}

/*
 * A real offline isolates the range first, so nothing refills from it
 * while the notifier works; here a pressure hold-off stands in for that.
 */
static void hold_inflation(struct virtio_balloon13 *vb)
{
	mutex_lock(&vb->lock);
	WRITE_ONCE(vb->hold_until, jiffies + 10 * HZ);
	mutex_unlock(&vb->lock);
}

/* Blocks of acknowledged chunks in the memory block at @start_pfn. */
static unsigned long acked_in(struct virtio_balloon13 *vb,
			      unsigned long start_pfn)
{
	unsigned long n = 0, pfn;
	struct page *page;
	int order;

	mutex_lock(&vb->lock);
	for (order = 0; order <= MAX_PAGE_ORDER; order++)
		list_for_each_entry(page, &vb->acked[order], lru) {
			pfn = page_to_pfn(page);
			if (pfn >= start_pfn && pfn < start_pfn + MEMBLOCK_PAGES)
				n += vb13_chunk_blocks(&vb->geom, order);
		}
	mutex_unlock(&vb->lock);
	return n;
}

/* The memory block holding the balloon's first acknowledged chunk. */
static unsigned long a_ballooned_memblock(struct virtio_balloon13 *vb)
{
	unsigned long pfn = ULONG_MAX;
	int order;

	mutex_lock(&vb->lock);
	for (order = MAX_PAGE_ORDER; order >= 0 && pfn == ULONG_MAX; order--)
		if (!list_empty(&vb->acked[order]))
			pfn = page_to_pfn(list_first_entry(&vb->acked[order],
							   struct page, lru));
	mutex_unlock(&vb->lock);
	return round_down(pfn, MEMBLOCK_PAGES);
}

/*
 * Memory going offline: every block of the balloon in it is freed
 * (withdrawn by access: it was acknowledged), so offlining finds free
 * pages; a cancelled offline sends the balloon back to its target.
 */
static void memory_offline_frees(struct kunit *test)
{
	unsigned long start, n;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	keep_chunks(vb);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	start = a_ballooned_memblock(vb);
	n = acked_in(vb, start);
	KUNIT_ASSERT_GT(test, n, 0UL);
	hold_inflation(vb);
	KUNIT_EXPECT_EQ(test, mem_notify(vb, MEM_GOING_OFFLINE, start),
			NOTIFY_OK);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.hotplug_blocks), (u64)n);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	WRITE_ONCE(vb->hold_until, 0);
	KUNIT_EXPECT_EQ(test, mem_notify(vb, MEM_CANCEL_OFFLINE, start),
			NOTIFY_OK);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
}

/* With VIRTIO_BALLOON13_F_WITHDRAW, the device is told before they go. */
static void memory_offline_withdraws(struct kunit *test)
{
	unsigned long start, n;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind_withdraw(test, true);
	vb = vb_of(fd);
	keep_chunks(vb);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 16384), TO));
	start = a_ballooned_memblock(vb);
	n = acked_in(vb, start);
	KUNIT_ASSERT_GT(test, n, 0UL);
	hold_inflation(vb);
	KUNIT_EXPECT_EQ(test, mem_notify(vb, MEM_GOING_OFFLINE, start),
			NOTIFY_OK);
	KUNIT_EXPECT_EQ(test, acked_in(vb, start), 0UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.hotplug_blocks), (u64)n);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAWN), (u64)n);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	WRITE_ONCE(vb->hold_until, 0);
	KUNIT_EXPECT_EQ(test, mem_notify(vb, MEM_CANCEL_OFFLINE, start),
			NOTIFY_OK);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 16384), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 16384UL);
}

/*
 * Memory whose blocks the device still holds can't go offline (they may
 * be discarded yet): the notifier waits a while, then refuses.
 */
static void memory_offline_in_flight(struct kunit *test)
{
	struct fake_vdev_msg *msg;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long start;

	fd = bind(test, 12, false);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_1M), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_ASSERT_GE(test, msg->len, 16UL);
	start = round_down(PHYS_PFN(le64_to_cpu(*(__le64 *)(msg->data + 8))),
			   MEMBLOCK_PAGES);
	KUNIT_EXPECT_EQ(test, mem_notify(vb, MEM_GOING_OFFLINE, start),
			NOTIFY_BAD);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 256UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 256), TO));
	KUNIT_EXPECT_EQ(test, mem_notify(vb, MEM_GOING_OFFLINE, start),
			NOTIFY_OK);
}

/*
 * Writing floor_mib moves the balloon to what the new floor allows at
 * once, without waiting for the device's next RESIZE.
 */
static void floor_write_requeues(struct kunit *test)
{
	const struct kernel_param kp = { .arg = &vb13_floor_mib };
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	char val[24];

	save_params(test);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	/* Room for 16 MiB (what the balloon holds counts as RAM). */
	snprintf(val, sizeof(val), "%lu",
		 (vb13_ram_pages() >> (20 - PAGE_SHIFT)) - 16);
	KUNIT_ASSERT_EQ(test, vb13_floor_mib_set(val, &kp), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->nr_blocks) <=
					       4096 + 256 &&
					       READ_ONCE(vb->held_by_floor),
					       TO));
	snprintf(val, sizeof(val), "0");
	KUNIT_ASSERT_EQ(test, vb13_floor_mib_set(val, &kp), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
}

/* --- full statistics and free page reporting --------------------------------- */

/* Bind to a device offering @features (FAKE_VDEV_F_*) and pressure release. */
static struct fake_vdev *bind_feat(struct kunit *test, u32 page_bits,
				   bool auto_out, u64 features)
{
	struct fake_vdev *fd = fake_vdev_create(test, page_bits);

	fd->discard_fill = 0x5a;
	fd->device_features |= BIT_ULL(FAKE_VDEV_F_PRESSURE_RELEASE) | features;
	fake_vdev_set_auto(fd, auto_out);
	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_bound(fd));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
	KUNIT_ASSERT_NOT_NULL(test, vb_of(fd));
	return fd;
}

static int stats_interval(struct fake_vdev *fd, u64 ms)
{
	return fake_vdev_send_request_wait(fd, FAKE_VDEV_REQ_STATS_INTERVAL, ms,
					   TO);
}

/*
 * With VIRTIO_BALLOON13_F_FULL_STATS the answer carries tags 6 to 15 as
 * virtio_balloon computes them (8 and 9 only with hugetlb), each once, in
 * tag order after the base six; 16 and 17 come as a pair, when PSI can be
 * read (not while the suite runs: no /proc yet).
 */
static void full_stats_tags(struct kunit *test)
{
	unsigned long *before, *after, stall_lo = 0, stall_hi = 0;
	bool htlb = IS_ENABLED(CONFIG_HUGETLB_PAGE) &&
		    IS_ENABLED(CONFIG_VM_EVENT_COUNTERS);
	u64 val[VB13_NR_STATS], mask = 0, want;
	struct fake_vdev_stats st;
	struct fake_vdev *fd;
	unsigned int i;
	int zid;

	before = kunit_kcalloc(test, NR_VM_EVENT_ITEMS, sizeof(long), GFP_KERNEL);
	after = kunit_kcalloc(test, NR_VM_EVENT_ITEMS, sizeof(long), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, before);
	KUNIT_ASSERT_NOT_NULL(test, after);
	fd = bind_feat(test, 12, true, BIT_ULL(FAKE_VDEV_F_FULL_STATS));
	KUNIT_ASSERT_TRUE(test, virtio_has_feature(&fd->vdev,
						   VIRTIO_BALLOON13_F_FULL_STATS));
#ifdef CONFIG_VM_EVENT_COUNTERS
	all_vm_events(before);
#endif
	KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_STATS_MSGS,
						     1, TO));
#ifdef CONFIG_VM_EVENT_COUNTERS
	all_vm_events(after);
#endif
	fake_vdev_get_stats(fd, &st);
	KUNIT_ASSERT_LE(test, st.n, (unsigned int)VB13_NR_STATS);
	for (i = 0; i < st.n; i++) {
		KUNIT_ASSERT_LT(test, st.s[i].tag, (u64)VB13_NR_STATS);
		if (i)
			KUNIT_EXPECT_LT(test, st.s[i - 1].tag, st.s[i].tag);
		mask |= BIT_ULL(st.s[i].tag);
		val[st.s[i].tag] = st.s[i].val;
	}
	want = GENMASK_ULL(15, 0) & ~(htlb ? 0 : GENMASK_ULL(9, 8));
	if (!IS_ENABLED(CONFIG_VM_EVENT_COUNTERS))
		want &= ~(GENMASK_ULL(3, 0) | GENMASK_ULL(15, 10));
	KUNIT_EXPECT_EQ(test, mask & GENMASK_ULL(15, 0), want);
	KUNIT_EXPECT_EQ(test, !!(mask & BIT_ULL(16)), !!(mask & BIT_ULL(17)));
	KUNIT_EXPECT_EQ(test, st.n, (unsigned int)hweight64(mask));

	/* Bytes, whole pages, within what the guest has. */
	KUNIT_EXPECT_GT(test, val[VIRTIO_BALLOON13_TAG_AVAIL], 0ULL);
	KUNIT_EXPECT_LE(test, val[VIRTIO_BALLOON13_TAG_AVAIL],
			val[VIRTIO_BALLOON13_TAG_MEMTOT]);
	KUNIT_EXPECT_LE(test, val[VIRTIO_BALLOON13_TAG_CACHES],
			val[VIRTIO_BALLOON13_TAG_MEMTOT]);
	KUNIT_EXPECT_EQ(test, (val[VIRTIO_BALLOON13_TAG_AVAIL] |
			       val[VIRTIO_BALLOON13_TAG_CACHES]) &
			(PAGE_SIZE - 1), 0ULL);
#ifdef CONFIG_VM_EVENT_COUNTERS
	/* Each count lies between two snapshots taken around the answer. */
	KUNIT_EXPECT_GE(test, val[VIRTIO_BALLOON13_TAG_OOM_KILL],
			(u64)before[OOM_KILL]);
	KUNIT_EXPECT_LE(test, val[VIRTIO_BALLOON13_TAG_OOM_KILL],
			(u64)after[OOM_KILL]);
	for (zid = 0; zid < MAX_NR_ZONES; zid++) {
		stall_lo += before[ALLOCSTALL_NORMAL - ZONE_NORMAL + zid];
		stall_hi += after[ALLOCSTALL_NORMAL - ZONE_NORMAL + zid];
	}
	KUNIT_EXPECT_GE(test, val[VIRTIO_BALLOON13_TAG_ALLOC_STALL],
			(u64)stall_lo);
	KUNIT_EXPECT_LE(test, val[VIRTIO_BALLOON13_TAG_ALLOC_STALL],
			(u64)stall_hi);
	KUNIT_EXPECT_GE(test, val[VIRTIO_BALLOON13_TAG_ASYNC_SCAN],
			(u64)vb13_reclaim_pages(before, PGSCAN_KSWAPD) << PAGE_SHIFT);
	KUNIT_EXPECT_LE(test, val[VIRTIO_BALLOON13_TAG_ASYNC_SCAN],
			(u64)vb13_reclaim_pages(after, PGSCAN_KSWAPD) << PAGE_SHIFT);
	KUNIT_EXPECT_GE(test, val[VIRTIO_BALLOON13_TAG_DIRECT_RECLAIM],
			(u64)vb13_reclaim_pages(before, PGSTEAL_DIRECT) << PAGE_SHIFT);
	KUNIT_EXPECT_LE(test, val[VIRTIO_BALLOON13_TAG_DIRECT_RECLAIM],
			(u64)vb13_reclaim_pages(after, PGSTEAL_DIRECT) << PAGE_SHIFT);
#endif
}

/*
 * REQ_STATS_INTERVAL: 1 ms is raised to 100 ms, so a second brings about
 * ten pushed answers, not hundreds; the first comes an interval after the
 * request; with an interval set, requests are still answered; 0 stops
 * them; the unbind stops the timer (KASAN would see it run on a freed
 * balloon).
 */
static void stats_interval_pushes(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	u64 n0, got, i;

	fd = bind_feat(test, 12, true, BIT_ULL(FAKE_VDEV_F_FULL_STATS));
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, stats_interval(fd, 1), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->stats_interval_ms)
					       == 100, TO));
	/* The first push one interval later. */
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_STATS_MSGS,
						     1, TO));
	n0 = fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS);
	msleep(1000);
	got = fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS) - n0;
	kunit_info(test, "%llu pushed answers in 1 s at 100 ms", got);
	KUNIT_EXPECT_GE(test, got, 4ULL);
	KUNIT_EXPECT_LE(test, got, 13ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_stats), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_stats_interval), 1ULL);
	KUNIT_EXPECT_GE(test, READ_ONCE(vb->cnt.stats_pushed), got);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);

	/*
	 * A long interval: nothing pushed before it has passed, and each
	 * STATS request still gets its answer.
	 */
	KUNIT_ASSERT_EQ(test, stats_interval(fd, 60000), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->stats_interval_ms)
					       == 60000, TO));
	msleep(QUIET_MS);
	n0 = fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS);
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS), n0);
	for (i = 1; i <= 2; i++) {
		n0 = fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS);
		KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
		KUNIT_EXPECT_TRUE(test, fake_vdev_wait_count(fd,
							     FAKE_VDEV_STATS_MSGS,
							     n0 + 1, 1000));
		KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_stats), (u64)i);
	}

	KUNIT_ASSERT_EQ(test, stats_interval(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, !READ_ONCE(vb->stats_interval_ms),
					       TO));
	msleep(QUIET_MS);
	n0 = fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS);
	msleep(3 * QUIET_MS);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS), n0);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->stats_work));

	KUNIT_ASSERT_EQ(test, stats_interval(fd, 150), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_STATS_MSGS,
						     n0 + 2, TO));
	fake_vdev_unregister(fd);
	msleep(3 * QUIET_MS);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, 0, TO));
}

/* Without the bit, REQ_STATS_INTERVAL is an unknown request. */
static void stats_interval_not_negotiated(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, stats_interval(fd, 200), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_unknown, 1));
	msleep(3 * QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_stats_interval), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->stats_interval_ms), 0U);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS), 0ULL);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
}

#ifdef CONFIG_PM_SLEEP
/* Pushes stop while frozen and go on at the same interval after restore. */
static void stats_interval_freeze(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	u64 n0;

	fd = bind_feat(test, 12, true, BIT_ULL(FAKE_VDEV_F_FULL_STATS));
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, stats_interval(fd, 200), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_STATS_MSGS,
						     2, TO));
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&fd->vdev), 0);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->stats_work));
	n0 = fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS);
	msleep(3 * QUIET_MS);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->stats_work));
	KUNIT_EXPECT_FALSE(test, work_pending(&vb->req_work));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_STATS_MSGS), n0);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&fd->vdev), 0);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->stats_interval_ms), 200U);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_STATS_MSGS,
						     n0 + 2, TO));
}
#endif

/* A page the reporting core holds: off the free lists, unreferenced. */
static bool isolated(u64 addr)
{
	struct page *page = pfn_to_page(PHYS_PFN(addr));

	return !is_free_buddy_page(page) && !page_ref_count(page);
}

/* Another reporting device: can it register now?  (It leaves again.) */
static int dummy_report(struct page_reporting_dev_info *pr,
			struct scatterlist *sg, unsigned int nents)
{
	return -EIO;
}

static int try_register_reporting(struct kunit *test)
{
	struct page_reporting_dev_info *pr;
	int err;

	pr = kunit_kzalloc(test, sizeof(*pr), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, pr);
	pr->report = dummy_report;
	err = page_reporting_register(pr);
	if (!err)
		page_reporting_unregister(pr);
	return err;
}

/* Wait until the driver counted every REPORT the device took. */
static bool reports_settled(struct fake_vdev *fd)
{
	struct virtio_balloon13 *vb = vb_of(fd);

	return READ_ONCE(vb->cnt.messages_report) ==
	       fake_vdev_count(fd, FAKE_VDEV_REPORT_MSGS) &&
	       READ_ONCE(vb->cnt.report_bytes) ==
	       fake_vdev_count(fd, FAKE_VDEV_REPORT_BYTES);
}

/*
 * VIRTIO_BALLOON13_F_REPORTING: free memory goes to the device in REPORT
 * messages of whole pageblocks (the fake checks each range and that its
 * pages stay isolated); none of it enters the balloon or leaves MemTotal.
 */
static void report_free_pages(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	u64 bytes;

	fd = bind_feat(test, 12, true, BIT_ULL(FAKE_VDEV_F_REPORTING));
	vb = vb_of(fd);
	KUNIT_ASSERT_TRUE(test, virtio_has_feature(&fd->vdev,
						   VIRTIO_BALLOON13_F_REPORTING));
	KUNIT_ASSERT_TRUE(test, READ_ONCE(vb->reporting));
	KUNIT_EXPECT_EQ(test, vb->pr_dev_info.order, (unsigned int)pageblock_order);
	/* The core's first pass starts 2 s after registering. */
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_REPORT_MSGS,
						     1, TO));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, reports_settled(fd), TO));
	bytes = fake_vdev_count(fd, FAKE_VDEV_REPORT_BYTES);
	kunit_info(test, "%llu REPORT messages, %llu MiB",
		   fake_vdev_count(fd, FAKE_VDEV_REPORT_MSGS), bytes >> 20);
	KUNIT_EXPECT_GE(test, bytes, (u64)PAGE_SIZE << pageblock_order);
	KUNIT_EXPECT_EQ(test, bytes % (PAGE_SIZE << pageblock_order), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_IN_USE), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.report_aborted), 0ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 0UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_STREQ(test, sysfs_show(test, fd, "size_bytes"), "0\n");
}

/*
 * The reported pages stay off the free lists until the device returns the
 * message: held for a while, they are still isolated and the driver still
 * waits; returned, they go back.
 */
static void report_waits_for_device(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev_msg *msg;
	struct fake_vdev *fd;
	unsigned int i, n;
	u64 first;

	fd = bind_feat(test, 12, false, BIT_ULL(FAKE_VDEV_F_REPORTING));
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_msg_type(msg), (u32)FAKE_VDEV_MSG_REPORT);
	n = fake_vdev_msg_ranges(msg);
	KUNIT_ASSERT_GE(test, n, 1U);
	KUNIT_EXPECT_LE(test, n, (unsigned int)VB13_REPORT_RANGES);
	KUNIT_EXPECT_EQ(test, msg->len, (size_t)8 + 16 * n);
	first = fake_vdev_msg_u64(msg, 0);
	msleep(QUIET_MS);
	for (i = 0; i < n; i++)
		KUNIT_EXPECT_TRUE(test, isolated(fake_vdev_msg_u64(msg, 2 * i)));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_report), 0ULL);

	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	KUNIT_EXPECT_TRUE(test, wait_cnt(fd, &vb->cnt.messages_report, 1));
	/* Back on the free lists (or handed out again) once we returned. */
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, !isolated(first), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_IN_USE), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);
	fake_vdev_set_auto(fd, true);
}

static void unregister_other(void *pr)
{
	page_reporting_unregister(pr);
}

/* A page as the reporting core hands it over: isolated, unreferenced. */
static struct page *fake_free_page(struct kunit *test, unsigned int order)
{
	struct page *page = alloc_pages(GFP_KERNEL | __GFP_NOWARN, order);

	KUNIT_ASSERT_NOT_NULL(test, page);
	KUNIT_ASSERT_TRUE(test, page_ref_freeze(page, 1));
	return page;
}

static void fake_free_page_put(struct page *page, unsigned int order)
{
	page_ref_unfreeze(page, 1);
	__free_pages(page, order);
}

/*
 * The callback itself, called with a batch the way the core calls it:
 * pages smaller than a block are left out (the core's order is one
 * global, which an admin or an earlier device may have set lower), and a
 * batch larger than a message goes in several.  Another device holds the
 * registration meanwhile, so the core never calls this driver on its own.
 */
static void report_batches(struct kunit *test)
{
	const unsigned int b = pageblock_order, n = VB13_REPORT_RANGES + 1;
	struct page_reporting_dev_info *other;
	struct page *big, *small, **pages;
	struct scatterlist *sg;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned int i;

	other = kunit_kzalloc(test, sizeof(*other), GFP_KERNEL);
	pages = kunit_kcalloc(test, n, sizeof(*pages), GFP_KERNEL);
	sg = kunit_kcalloc(test, n, sizeof(*sg), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, other);
	KUNIT_ASSERT_NOT_NULL(test, pages);
	KUNIT_ASSERT_NOT_NULL(test, sg);
	other->report = dummy_report;
	KUNIT_ASSERT_EQ(test, page_reporting_register(other), 0);
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, unregister_other,
							other), 0);

	/* Blocks of a pageblock: one of order b is a block, b - 1 is not. */
	fd = bind_feat(test, PAGE_SHIFT + b, true, BIT_ULL(FAKE_VDEV_F_REPORTING));
	vb = vb_of(fd);
	KUNIT_EXPECT_FALSE(test, READ_ONCE(vb->reporting));
	big = fake_free_page(test, b);
	small = fake_free_page(test, b - 1);
	sg_init_table(sg, 2);
	sg_set_page(&sg[0], small, PAGE_SIZE << (b - 1), 0);
	sg_set_page(&sg[1], big, PAGE_SIZE << b, 0);
	KUNIT_EXPECT_EQ(test, vb->pr_dev_info.report(&vb->pr_dev_info, sg, 2), 0);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.report_skipped), 1ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_report), 1ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.report_bytes),
			(u64)PAGE_SIZE << b);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_MSGS), 1ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_BYTES),
			(u64)PAGE_SIZE << b);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_IN_USE), 0ULL);
	fake_free_page_put(big, b);
	fake_free_page_put(small, b - 1);
	fake_vdev_unregister(fd);

	/* 4 KiB blocks, one page more than a message holds: two messages. */
	fd = bind_feat(test, 12, true, BIT_ULL(FAKE_VDEV_F_REPORTING));
	vb = vb_of(fd);
	sg_init_table(sg, n);
	for (i = 0; i < n; i++) {
		pages[i] = fake_free_page(test, 0);
		sg_set_page(&sg[i], pages[i], PAGE_SIZE, 0);
	}
	KUNIT_EXPECT_EQ(test, vb->pr_dev_info.report(&vb->pr_dev_info, sg, n), 0);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_report), 2ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.report_skipped), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_MSGS), 2ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_BYTES),
			(u64)n * PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSG_BYTES),
			(u64)8 + 16 * VB13_REPORT_RANGES + 8 + 16);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_IN_USE), 0ULL);
	for (i = 0; i < n; i++)
		fake_free_page_put(pages[i], 0);
}

/*
 * Not offered: the driver does not register (another device could) and
 * sends no REPORT (the fake would count it bad).  Offered: it registers,
 * and remove unregisters it again.
 */
static void report_registration(struct kunit *test)
{
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	KUNIT_EXPECT_FALSE(test, READ_ONCE(vb_of(fd)->reporting));
	KUNIT_EXPECT_EQ(test, try_register_reporting(test), 0);
	fake_vdev_unregister(fd);

	fd = bind_feat(test, 12, true, BIT_ULL(FAKE_VDEV_F_REPORTING));
	KUNIT_EXPECT_TRUE(test, READ_ONCE(vb_of(fd)->reporting));
	KUNIT_EXPECT_EQ(test, try_register_reporting(test), -EBUSY);
	fake_vdev_unregister(fd);
	KUNIT_EXPECT_EQ(test, try_register_reporting(test), 0);
}

#ifdef CONFIG_PM_SLEEP
/* Freeze unregisters reporting, restore registers it again. */
static void report_freeze_restore(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind_feat(test, 12, true, BIT_ULL(FAKE_VDEV_F_REPORTING));
	vb = vb_of(fd);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_REPORT_MSGS,
						     1, TO));
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&fd->vdev), 0);
	KUNIT_EXPECT_FALSE(test, READ_ONCE(vb->reporting));
	KUNIT_EXPECT_EQ(test, try_register_reporting(test), 0);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&fd->vdev), 0);
	KUNIT_EXPECT_TRUE(test, READ_ONCE(vb->reporting));
	KUNIT_EXPECT_EQ(test, try_register_reporting(test), -EBUSY);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_IN_USE), 0ULL);
}
#endif

/*
 * Remove while the device holds a REPORT it never returns: remove waits
 * its drain time, resets the device, and the report comes back with its
 * pages unreported; nothing hangs.
 */
static void report_remove_while_held(struct kunit *test)
{
	struct fake_vdev_msg *msg;
	struct fake_vdev *fd;
	unsigned long t0;
	u64 first;

	fd = bind_feat(test, 12, false, BIT_ULL(FAKE_VDEV_F_REPORTING));
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_msg_type(msg), (u32)FAKE_VDEV_MSG_REPORT);
	first = fake_vdev_msg_u64(msg, 0);
	KUNIT_EXPECT_TRUE(test, isolated(first));
	t0 = jiffies;
	fake_vdev_unregister(fd);
	kunit_info(test, "remove took %u ms", jiffies_to_msecs(jiffies - t0));
	KUNIT_EXPECT_FALSE(test, fake_vdev_bound(fd));
	KUNIT_EXPECT_FALSE(test, isolated(first));
	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msg), -ESTALE);
	KUNIT_EXPECT_EQ(test, try_register_reporting(test), 0);
}

/* Reporting while the balloon inflates and deflates: neither disturbs the other. */
static void report_with_inflate(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind_feat(test, 12, true, BIT_ULL(FAKE_VDEV_F_REPORTING));
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_64M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 16384), TO));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_count(fd, FAKE_VDEV_REPORT_MSGS,
						     1, TO));
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 16384UL);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 4096), TO));
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 4096UL);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, reports_settled(fd), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_REPORT_IN_USE), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_MSGS), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 16384ULL);
}

/*
 * The exact split of an unsent chunk: a deflate that ends inside the
 * newest chunk of the message being filled frees exactly its first blocks
 * and names the rest again, in the same message, as naturally aligned
 * runs; the device then gets exactly those, and never the freed ones.
 */
static void unsent_exact_split(struct kunit *test)
{
	unsigned long ram = totalram_pages(), base, i, named = 0, bad = 0;
	struct fake_vdev_msg *stats, *msg;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	struct page *page;

	save_params(test);
	fd = bind_q(test, 12, false, 1);
	vb = vb_of(fd);
	/* The ring's one entry is held: the page list stays unsent. */
	KUNIT_ASSERT_EQ(test, ask_stats(fd), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &stats, TO), 0);
	/* 64 blocks: one chunk of order 6 (a target is never overshot). */
	KUNIT_ASSERT_EQ(test, resize_wait(fd, 64 * 4096), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->nr_blocks) ==
					       64, TO));
	mutex_lock(&vb->lock);
	KUNIT_ASSERT_TRUE(test, vb->fill && list_is_singular(&vb->fill->chunks));
	page = list_first_entry(&vb->fill->chunks, struct page, lru);
	KUNIT_ASSERT_EQ(test, vb13_chunk_order(page), 6U);
	base = page_to_pfn(page);
	mutex_unlock(&vb->lock);

	/* 59 blocks: the first 5 of the chunk go, unsent. */
	KUNIT_ASSERT_EQ(test, resize_wait(fd, 59 * 4096), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, READ_ONCE(vb->nr_blocks) ==
					       59, TO));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_unsent_freed), 5ULL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->in_flight_blocks), 59UL);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 59UL);
	mutex_lock(&vb->lock);
	KUNIT_ASSERT_NOT_NULL(test, vb->fill);
	KUNIT_EXPECT_EQ(test, vb->fill->nr, 59U);
	KUNIT_EXPECT_EQ(test, vb->fill->pages, 59UL);
	/* Runs of 1, 2, 8, 16 and 32 pages, each aligned to its size. */
	KUNIT_EXPECT_EQ(test, list_count_nodes(&vb->fill->chunks), 5UL);
	list_for_each_entry(page, &vb->fill->chunks, lru) {
		unsigned long off = page_to_pfn(page) - base;

		bad += off & ((1UL << vb13_chunk_order(page)) - 1);
	}
	/* The addresses are the chunk's pages 5 to 63, each once. */
	for (i = 0; i < vb->fill->nr; i++) {
		u64 pfn = PHYS_PFN(le64_to_cpu(vb->fill->buf->page[i]));

		named += pfn >= base + 5 && pfn < base + 64;
	}
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, bad, 0UL);
	KUNIT_EXPECT_EQ(test, named, 59UL);
	for (i = 0; i < 64; i++)
		KUNIT_EXPECT_EQ(test, !!PageOffline(pfn_to_page(base + i)),
				i >= 5);

	/* Room on the ring: exactly those go out, and come back. */
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, stats), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_EXPECT_EQ(test, msg_blocks(msg), 59UL);
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	fake_vdev_set_auto(fd, true);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 59), TO));
	for (i = 0; i < 5; i++)
		KUNIT_EXPECT_EQ(test, fake_vdev_page_seen(fd, PFN_PHYS(base + i)),
				0U);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 59ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 59UL);
}

/*
 * The request budget: a run of the request worker handles at most
 * vb13_req_budget requests, then queues itself again for the rest, so a
 * device refilling buffers as fast as they come can't hold it, and no
 * request waits for another interrupt.
 */
static void request_budget(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long flags;
	unsigned int i;

	save_params(test);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	WRITE_ONCE(vb13_req_budget, 3);
	/*
	 * Fill every posted buffer before the worker runs: the driver's
	 * stop flag keeps the interrupts from queueing it meanwhile.
	 */
	spin_lock_irqsave(&vb->out_lock, flags);
	vb->stop = true;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	flush_work(&vb->req_work);
	for (i = 1; i <= VB13_NR_REQS; i++)
		KUNIT_ASSERT_EQ(test, resize(fd, i * SZ_64K), 0);
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd), 0U);
	spin_lock_irqsave(&vb->out_lock, flags);
	vb->stop = false;
	spin_unlock_irqrestore(&vb->out_lock, flags);
	KUNIT_ASSERT_EQ(test, fake_vdev_interrupt(fd, FAKE_VDEV_INPUTQ), 0);

	/* 8 requests, 3 a run: two requeues, and all of them handled. */
	KUNIT_EXPECT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_resize,
					 VB13_NR_REQS));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.requests_resize),
			(u64)VB13_NR_REQS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.request_budget_hits), 2ULL);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
	/* The last one is the target. */
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->target_bytes),
			(u64)VB13_NR_REQS * SZ_64K);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, VB13_NR_REQS *
							     16), TO));
}

#ifdef CONFIG_BALLOON_MIGRATION
/* --- balloon migration (4 KiB blocks on the kernel's balloon list) --------- */

/* Every acknowledged block is on the kernel's balloon list. */
static bool all_listed(struct virtio_balloon13 *vb)
{
	bool listed = true;
	int order;

	mutex_lock(&vb->lock);
	for (order = 0; order <= MAX_PAGE_ORDER; order++)
		listed &= list_empty(&vb->acked[order]);
	mutex_unlock(&vb->lock);
	return listed;
}

/* A page on the balloon's list (or isolated from it by compaction). */
static bool is_listed(struct virtio_balloon13 *vb, unsigned long pfn)
{
	struct page *page = pfn_to_page(pfn);

	return PageOffline(page) &&
	       page_private(page) == (unsigned long)&vb->bdev;
}

/*
 * The first pageblock the device got whole (512 blocks in a row) and
 * whose every page is on the balloon's list, or 0.
 */
static unsigned long a_listed_pageblock(struct fake_vdev *fd,
					struct virtio_balloon13 *vb)
{
	unsigned long index, start = 0, run = 0, prev = 0;
	void *entry;

	/* 4 KiB blocks: a block's index is its pfn. */
	xa_for_each(&fd->pages, index, entry) {
		if (!is_listed(vb, index))
			run = 0;
		else if (run && index == prev + 1)
			run++;
		else if (IS_ALIGNED(index, pageblock_nr_pages))
			run = 1, start = index;
		else
			run = 0;
		prev = index;
		if (run == pageblock_nr_pages)
			return start;
	}
	return 0;
}

static const bool withdraw_modes[] = { false, true };

static void withdraw_mode_desc(const bool *w, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "%s",
		 *w ? "withdraw" : "by_access");
}

KUNIT_ARRAY_PARAM(withdraw_modes, withdraw_modes, withdraw_mode_desc);

/*
 * The balloon takes whole free pageblocks (no holes first): the cases
 * migrate whole pageblocks of ballooned pages, which only movable
 * pageblocks let alloc_contig_range() isolate.
 */
static void whole_pageblocks(struct kunit *test)
{
	save_params(test);
	WRITE_ONCE(vb13_fill_holes, false);
}

static struct fake_vdev *bind_mode(struct kunit *test, bool withdraw)
{
	whole_pageblocks(test);
	return withdraw ? bind_withdraw(test, true) : bind(test, 12, true);
}

static unsigned long balloon_migrations(void)
{
	unsigned long ev[NR_VM_EVENT_ITEMS];

	all_vm_events(ev);
	return ev[BALLOON_MIGRATE];
}

/*
 * Balloon migration, through the kernel's own path (alloc_contig_range()
 * isolates and migrates, as compaction and memory offlining do): every
 * page of a pageblock full of ballooned pages moves.  The device gets
 * each new page before the old one leaves (named in a WITHDRAW when that
 * is negotiated), the balloon keeps its size, and its count on the device
 * stays exact.
 */
static void migrate_listed(struct kunit *test)
{
	const bool withdraw = *(const bool *)test->param_value;
	unsigned long ram = totalram_pages(), pfn, mig, pages, i, left = 0;
	const unsigned long nr = pageblock_nr_pages;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	u64 inflated, withdrawn;

	fd = bind_mode(test, withdraw);
	vb = vb_of(fd);
	KUNIT_ASSERT_TRUE(test, vb->migratable);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 2048) &&
					       all_listed(vb), TO));
	pfn = a_listed_pageblock(fd, vb);
	KUNIT_ASSERT_NE(test, pfn, 0UL);
	mig = balloon_migrations();
	pages = fake_vdev_count(fd, FAKE_VDEV_PAGES);
	inflated = READ_ONCE(vb->cnt.blocks_inflated);
	withdrawn = READ_ONCE(vb->cnt.blocks_withdrawn);

	KUNIT_ASSERT_EQ(test, alloc_contig_range(pfn, pfn + nr, ACR_FLAGS_NONE,
						 GFP_KERNEL | __GFP_NOWARN), 0);
	/* Ours now: nothing of the balloon is left in it. */
	for (i = 0; i < nr; i++)
		left += PageOffline(pfn_to_page(pfn + i));
	free_contig_range(pfn, nr);
	KUNIT_EXPECT_EQ(test, left, 0UL);

	KUNIT_EXPECT_EQ(test, balloon_migrations() - mig, nr);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_migrated), (u64)nr);
	/* A migration is neither an inflation nor a withdrawal. */
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_inflated), inflated);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_withdrawn), withdrawn);
	KUNIT_EXPECT_TRUE(test, withdrawn_at(vb, 2048));
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 2048UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES) - pages,
			(u64)nr);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_PAGES), 0ULL);
	if (withdraw) {
		KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAWN),
				(u64)nr);
		KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 2048UL);
	}
	/* Each held block was named once; the new ones are listed too. */
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 2048UL);
	KUNIT_EXPECT_TRUE(test, all_listed(vb));

	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	if (withdraw)
		KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 0UL);
}

/*
 * Only acknowledged blocks can move: a chunk the device still holds is
 * neither listed nor movable, and migrating its memory fails; once the
 * device returned it, its pages are on the balloon list.
 */
static void migrate_only_acked(struct kunit *test)
{
	struct fake_vdev_msg *msg;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long pfn, mig, i, n = 1, listed = 0;

	whole_pageblocks(test);
	fd = bind(test, 12, false);
	vb = vb_of(fd);
	/* 1 MiB: one message; the run of pages its first chunk starts. */
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_1M), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_ASSERT_EQ(test, msg_blocks(msg), 256UL);
	pfn = PHYS_PFN(fake_vdev_msg_u64(msg, 0));
	while (n < 256 && PHYS_PFN(fake_vdev_msg_u64(msg, n)) == pfn + n)
		n++;
	for (i = 0; i < n; i++)
		listed += is_listed(vb, pfn + i);
	KUNIT_EXPECT_EQ(test, listed, 0UL);
	mig = balloon_migrations();
	KUNIT_EXPECT_NE(test, alloc_contig_range(pfn, pfn + n, ACR_FLAGS_NONE,
						 GFP_KERNEL | __GFP_NOWARN), 0);
	KUNIT_EXPECT_EQ(test, balloon_migrations(), mig);
	/* Nothing new was sent (the device counts a message it completes). */
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_pages), 1ULL);

	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	fake_vdev_set_auto(fd, true);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 256) &&
					       all_listed(vb), TO));
	/*
	 * Now each is on the balloon list, i.e. movable (migrate_listed
	 * migrates such pages).
	 */
	for (i = 0, listed = 0; i < n; i++)
		listed += is_listed(vb, pfn + i);
	KUNIT_EXPECT_EQ(test, listed, n);
	KUNIT_EXPECT_EQ(test, balloon_migrations(), mig);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 256ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 256UL);
}

/*
 * Memory going offline: listed pages the offlining migrates leave the
 * balloon instead of moving (the device told first, with WITHDRAW); once
 * the offline is over, the balloon goes back to its target.
 */
static void migrate_offlining(struct kunit *test)
{
	const bool withdraw = *(const bool *)test->param_value;
	const unsigned long nr = pageblock_nr_pages;
	unsigned long ram = totalram_pages(), pfn, mig, pages, start;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind_mode(test, withdraw);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 2048) &&
					       all_listed(vb), TO));
	pfn = a_listed_pageblock(fd, vb);
	KUNIT_ASSERT_NE(test, pfn, 0UL);
	start = round_down(pfn, MEMBLOCK_PAGES);
	mig = balloon_migrations();
	pages = fake_vdev_count(fd, FAKE_VDEV_PAGES);
	hold_inflation(vb);
	KUNIT_ASSERT_EQ(test, mem_notify(vb, MEM_GOING_OFFLINE, start),
			NOTIFY_OK);
	KUNIT_ASSERT_EQ(test, alloc_contig_range(pfn, pfn + nr, ACR_FLAGS_NONE,
						 GFP_KERNEL | __GFP_NOWARN), 0);
	free_contig_range(pfn, nr);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 2048 - nr);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 2048 - nr);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.hotplug_blocks), (u64)nr);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_migrated), 0ULL);
	KUNIT_EXPECT_EQ(test, balloon_migrations(), mig);
	/* Nothing new went to the device. */
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), (u64)pages);
	if (withdraw) {
		KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_WITHDRAWN),
				(u64)nr);
		KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 2048 - nr);
	}
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 2048 - nr);

	WRITE_ONCE(vb->hold_until, 0);
	KUNIT_EXPECT_EQ(test, mem_notify(vb, MEM_CANCEL_OFFLINE, start),
			NOTIFY_OK);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 2048UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	if (withdraw)
		KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 2048UL);
}

/*
 * A device that keeps the new page's message too long: the migration
 * fails, the new page stays in the balloon as a block in flight beside
 * the old one, and once the device answers the worker gives the extra
 * back: no page lost or freed early, the device's count exact.
 */
static void migrate_device_slow(struct kunit *test)
{
	struct fake_vdev_msg *msg, *held[VB13_NR_MSGS];
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;
	unsigned long pfn, mig, extra = 0, i;

	whole_pageblocks(test);
	fd = bind_withdraw(test, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 2048) &&
					       all_listed(vb), TO));
	pfn = a_listed_pageblock(fd, vb);
	KUNIT_ASSERT_NE(test, pfn, 0UL);
	mig = balloon_migrations();
	fake_vdev_set_auto(fd, false);
	KUNIT_EXPECT_NE(test, alloc_contig_range(pfn, pfn + 1, ACR_FLAGS_NONE,
						 GFP_KERNEL | __GFP_NOWARN), 0);
	KUNIT_EXPECT_EQ(test, balloon_migrations(), mig);
	KUNIT_EXPECT_TRUE(test, is_listed(vb, pfn));
	/*
	 * Every try sent a new page, which the device holds, and nothing
	 * else: the worker gives the extra back only once the device has
	 * answered.  (All popped before any is returned: a return wakes it.)
	 */
	while (extra < ARRAY_SIZE(held) && !fake_vdev_pop_output(fd, &msg)) {
		KUNIT_EXPECT_EQ(test, fake_vdev_msg_type(msg), 0U);
		KUNIT_EXPECT_EQ(test, msg_blocks(msg), 1UL);
		held[extra++] = msg;
	}
	KUNIT_EXPECT_EQ(test, fake_vdev_pop_output(fd, &msg), -EAGAIN);
	KUNIT_EXPECT_GE(test, extra, 1UL);
	KUNIT_EXPECT_LE(test, extra, (unsigned long)vb->nr_msgs);
	for (i = 0; i < extra; i++)
		KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, held[i]), 0);
	fake_vdev_set_auto(fd, true);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, withdrawn_at(vb, 2048), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_ballooned(fd), 2048UL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_BAD_WITHDRAWN), 0ULL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 2048UL);
}

/*
 * A migratable balloon's pages count in the vm events once each, when the
 * kernel's balloon list takes them (or when they leave never listed).
 */
static void vmstat_counts_listed(struct kunit *test)
{
	unsigned long ev[NR_VM_EVENT_ITEMS], in, out;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	all_vm_events(ev);
	in = ev[BALLOON_INFLATE];
	out = ev[BALLOON_DEFLATE];
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_16M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 4096) &&
					       all_listed(vb), TO));
	all_vm_events(ev);
	KUNIT_EXPECT_EQ(test, ev[BALLOON_INFLATE] - in, 4096UL);
	KUNIT_EXPECT_EQ(test, ev[BALLOON_DEFLATE] - out, 0UL);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1024), TO));
	all_vm_events(ev);
	KUNIT_EXPECT_EQ(test, ev[BALLOON_INFLATE] - in, 4096UL);
	KUNIT_EXPECT_EQ(test, ev[BALLOON_DEFLATE] - out, 3072UL);
	fake_vdev_unregister(fd);
	all_vm_events(ev);
	KUNIT_EXPECT_EQ(test, ev[BALLOON_DEFLATE] - out, 4096UL);
}
#endif

static struct kunit_case vb13_driver_cases[] = {
	KUNIT_CASE(probe_posts_buffers),
	KUNIT_CASE_PARAM(probe_rejects_page_bits, hostile_bits_gen_params),
	KUNIT_CASE_PARAM(small_rings, ring_sizes_gen_params),
	KUNIT_CASE_PARAM(inflate_exact, inflate_bits_gen_params),
#ifdef CONFIG_BALLOON
	KUNIT_CASE(vmstat_counts_pages),
#endif
	KUNIT_CASE(deflate_to_target),
	KUNIT_CASE(deflate_waits_for_in_flight),
	KUNIT_CASE(in_flight_bound),
	KUNIT_CASE_PARAM(msg_byte_cap, cap_bits_gen_params),
	KUNIT_CASE(msg_len_max),
	KUNIT_CASE(out_of_order_completion),
	KUNIT_CASE(resize_redirects),
	KUNIT_CASE(resize_storm),
	KUNIT_CASE(enomem_backoff),
	KUNIT_CASE(floor_holds),
	KUNIT_CASE(floor_auto),
	KUNIT_CASE(stats_round_trip),
	KUNIT_CASE(stats_while_in_flight),
	KUNIT_CASE(sysfs_debugfs_output),
	KUNIT_CASE(remove_returns_memory),
	KUNIT_CASE_SLOW(remove_with_message_held),
	KUNIT_CASE(remove_with_partial_message),
#ifdef CONFIG_PM_SLEEP
	KUNIT_CASE(freeze_restore),
	KUNIT_CASE(restore_page_bits_changed),
	KUNIT_CASE(freeze_with_held_message),
	KUNIT_CASE_PARAM(restore_fails, restore_faults_gen_params),
#endif
	KUNIT_CASE(hostile_request_length),
	KUNIT_CASE(hostile_unknown_type),
	KUNIT_CASE(hostile_request_reserved),
	KUNIT_CASE_PARAM(hostile_huge_target, hostile_targets_gen_params),
	KUNIT_CASE(hostile_spurious_interrupts),
	KUNIT_CASE(oom_batches_grow),
	KUNIT_CASE(shrinker_episode),
	KUNIT_CASE(oom_unsent_first),
	KUNIT_CASE(deflate_unsent_first),
	KUNIT_CASE(oom_release_off),
	KUNIT_CASE(pressure_release_not_offered),
	KUNIT_CASE(shrinker_batch_decays),
	KUNIT_CASE(shrinker_episode_ends),
	KUNIT_CASE(shrinker_counts_unsent),
	KUNIT_CASE(requests_dma_safe),
	KUNIT_CASE(broken_outputq_gives_back),
	KUNIT_CASE(backoff_alternating_targets),
	KUNIT_CASE(withdraw_deflate),
	KUNIT_CASE(withdraw_waits_for_device),
	KUNIT_CASE(withdraw_oom),
	KUNIT_CASE(withdraw_oom_waves),
	KUNIT_CASE(withdraw_not_offered),
	KUNIT_CASE(memory_offline_frees),
	KUNIT_CASE(memory_offline_withdraws),
	KUNIT_CASE(memory_offline_in_flight),
	KUNIT_CASE(floor_write_requeues),
	KUNIT_CASE(oom_with_messages_held),
	KUNIT_CASE(oom_racing_allocation),
	KUNIT_CASE(two_balloons_one_floor),
#ifdef CONFIG_PM_SLEEP
	KUNIT_CASE(oom_across_freeze),
#endif
	KUNIT_CASE(full_stats_tags),
	KUNIT_CASE(stats_interval_pushes),
	KUNIT_CASE(stats_interval_not_negotiated),
#ifdef CONFIG_PM_SLEEP
	KUNIT_CASE(stats_interval_freeze),
#endif
	KUNIT_CASE(report_free_pages),
	KUNIT_CASE(report_waits_for_device),
	KUNIT_CASE(report_batches),
	KUNIT_CASE(report_registration),
#ifdef CONFIG_PM_SLEEP
	KUNIT_CASE(report_freeze_restore),
#endif
	KUNIT_CASE_SLOW(report_remove_while_held),
	KUNIT_CASE(report_with_inflate),
	KUNIT_CASE(unsent_exact_split),
	KUNIT_CASE(request_budget),
#ifdef CONFIG_BALLOON_MIGRATION
	KUNIT_CASE_PARAM(migrate_listed, withdraw_modes_gen_params),
	KUNIT_CASE(migrate_only_acked),
	KUNIT_CASE_PARAM(migrate_offlining, withdraw_modes_gen_params),
	KUNIT_CASE_SLOW(migrate_device_slow),
	KUNIT_CASE(vmstat_counts_listed),
#endif
	{}
};

static struct kunit_suite vb13_driver_suite = {
	.name = "virtio_balloon13_driver",
	.test_cases = vb13_driver_cases,
};

kunit_test_suite(vb13_driver_suite);
