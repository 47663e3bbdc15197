// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests of the whole virtio_balloon13 driver bound to a fake device
 * 13 (fake_vdev.c): real virtqueues, the device side served with vringh.
 */
#include <kunit/test.h>
#include <linux/delay.h>
#include <linux/mm.h>
#include <linux/pfn.h>
#include <linux/sizes.h>
#include <linux/vmstat.h>

#include "../virtio_balloon13.h"
#include "fake_vdev.h"

#define TO	FAKE_VDEV_TIMEOUT_MS

/* How long to watch for something that must not happen. */
#define QUIET_MS	300

static struct virtio_balloon13 *vb_of(struct fake_vdev *fd)
{
	return fd->vdev.priv;
}

/* Create a fake device 13 and bind the driver to it. */
static struct fake_vdev *bind(struct kunit *test, u32 page_bits, bool auto_out)
{
	struct fake_vdev *fd = fake_vdev_create(test, page_bits);

	/*
	 * Like a real discard, overwrite each block when the device takes
	 * it: with KASAN, a block the driver freed too early is reported.
	 */
	fd->discard_fill = 0x5a;
	fake_vdev_set_auto(fd, auto_out);
	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_bound(fd));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
	KUNIT_ASSERT_NOT_NULL(test, vb_of(fd));
	return fd;
}

/* Module parameters changed by a test are put back when it ends. */
struct saved_params {
	unsigned int floor_mib, oom_release_mib, oom_hold_ms;
	bool oom_release;
};

static void restore_params(void *data)
{
	struct saved_params *p = data;

	WRITE_ONCE(vb13_floor_mib, p->floor_mib);
	WRITE_ONCE(vb13_oom_release, p->oom_release);
	WRITE_ONCE(vb13_oom_release_mib, p->oom_release_mib);
	WRITE_ONCE(vb13_oom_hold_ms, p->oom_hold_ms);
}

static void save_params(struct kunit *test)
{
	struct saved_params *p = kunit_kzalloc(test, sizeof(*p), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, p);
	p->floor_mib = vb13_floor_mib;
	p->oom_release = vb13_oom_release;
	p->oom_release_mib = vb13_oom_release_mib;
	p->oom_hold_ms = vb13_oom_hold_ms;
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
 * Every block the driver holds was received by the device exactly once.
 * Return: the number of blocks checked.
 */
static unsigned long check_owned(struct kunit *test, struct fake_vdev *fd)
{
	struct virtio_balloon13 *vb = vb_of(fd);
	unsigned long n = 0, unseen = 0, repeated = 0;
	struct page *page;
	int order;

	mutex_lock(&vb->lock);
	for (order = 0; order <= VB13_MAX_ORDER; order++) {
		list_for_each_entry(page, &vb->acked[order], lru) {
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
		}
	}
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, unseen, 0UL);
	KUNIT_EXPECT_EQ(test, repeated, 0UL);
	return n;
}

/* --- probe -------------------------------------------------------------- */

static void probe_posts_buffers(struct kunit *test)
{
	struct fake_vdev *fd = bind(test, 12, true);
	struct virtio_balloon13 *vb = vb_of(fd);

	KUNIT_EXPECT_TRUE(test, fake_vdev_status(fd) & VIRTIO_CONFIG_S_DRIVER_OK);
	KUNIT_EXPECT_EQ(test, fake_vdev_inputq_posted(fd),
			(unsigned int)VB13_NR_REQS);
	KUNIT_EXPECT_EQ(test, vb->geom.page_bits, 12U);
	KUNIT_EXPECT_EQ(test, vb->msg_max, (unsigned int)(VB13_MSG_BYTES_MAX / 8));
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

#ifdef CONFIG_MEMORY_BALLOON
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
 * the buffer naming it.  The device holds the message; a deflate must wait.
 */
static void deflate_waits_for_in_flight(struct kunit *test)
{
	unsigned long ram = totalram_pages();
	struct fake_vdev_msg *msg;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, false);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg, TO), 0);
	KUNIT_EXPECT_EQ(test, msg->len, (size_t)(8 + 8 * 2048));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 2048UL);

	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, wait_cnt(fd, &vb->cnt.requests_resize, 2));
	msleep(QUIET_MS);
	/* Still held: nothing freed, MemTotal still reduced. */
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 2048UL);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_withdrawn), 0ULL);

	/* The device discards (and checks nothing was freed), then returns. */
	KUNIT_ASSERT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_FREED_PAGES), 0ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGES), 2048ULL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}

/* Four messages in flight at most; each full one carries 8192 addresses. */
static void in_flight_limit(struct kunit *test)
{
	struct fake_vdev_msg *msgs[VB13_NR_MSGS], *extra;
	unsigned int i, total = 0, n = 0;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, false);
	vb = vb_of(fd);
	/* 160 MiB: five full messages. */
	KUNIT_ASSERT_EQ(test, resize(fd, 5ULL * SZ_32M), 0);
	for (i = 0; i < VB13_NR_MSGS; i++) {
		KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msgs[i], TO), 0);
		KUNIT_EXPECT_EQ(test, msgs[i]->len, (size_t)(8 + 8 * 8192));
		KUNIT_EXPECT_EQ(test, fake_vdev_msg_type(msgs[i]), 0U);
	}
	KUNIT_EXPECT_EQ(test, fake_vdev_wait_output(fd, &extra, QUIET_MS),
			-EAGAIN);
	/* Allocation stops while every message is on the device. */
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 4UL * 8192);

	for (i = 0; i < VB13_NR_MSGS; i++)
		KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msgs[i]), 0);
	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &extra, TO), 0);
	KUNIT_EXPECT_EQ(test, extra->len, (size_t)(8 + 8 * 8192));
	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, extra), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 5 * 8192), TO));
	total = fake_vdev_count(fd, FAKE_VDEV_PAGES);
	n = fake_vdev_count(fd, FAKE_VDEV_PAGE_MSGS);
	KUNIT_EXPECT_EQ(test, total, 5U * 8192);
	KUNIT_EXPECT_EQ(test, n, 5U);

	KUNIT_ASSERT_EQ(test, resize(fd, 0), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 0), TO));
}

/* A partial last message goes out once the target is reached. */
static void message_boundaries(struct kunit *test)
{
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_32M + SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 10240), TO));
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_PAGE_MSGS), 2ULL);
	KUNIT_EXPECT_EQ(test, fake_vdev_count(fd, FAKE_VDEV_MSG_BYTES),
			(u64)(8 + 8 * 8192) + (8 + 8 * 2048));
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_pages), 2ULL);
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
	KUNIT_EXPECT_GE(test, totalram_pages(), vb13_floor_pages());
	msgs = READ_ONCE(vb->cnt.messages_pages);
	inflated = READ_ONCE(vb->cnt.blocks_inflated);
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.messages_pages), msgs);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.blocks_inflated), inflated);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.alloc_failures), 0ULL);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->resize_work));
}

/* --- statistics --------------------------------------------------------- */

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

/* --- remove --------------------------------------------------------------- */

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
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 1024UL);
	fake_vdev_unregister(fd);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	/* The queue is gone: the held message is stale now. */
	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msg), -ESTALE);
}

#ifdef CONFIG_PM_SLEEP
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

	/* The same pages may come back into the balloon: count afresh. */
	fake_vdev_clear_records(fd);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&fd->vdev), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait_posted(fd, VB13_NR_REQS, TO));
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 4096), TO));
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 4096UL);
	KUNIT_EXPECT_EQ(test, check_owned(test, fd), 4096UL);
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
	/* Our own callback run with nothing to do counts as spurious. */
	vb->vqs[VB13_VQ_INPUT]->callback(vb->vqs[VB13_VQ_INPUT]);
	KUNIT_EXPECT_TRUE(test, wait_cnt(fd, &vb->cnt.spurious_callbacks, 1));
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_4M), 0);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 1024), TO));
}

/* --- memory pressure ------------------------------------------------------ */

static void oom_releases_batch(struct kunit *test)
{
	unsigned long freed = 0, ram;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_oom_release_mib, 8);
	WRITE_ONCE(vb13_oom_hold_ms, 1000);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_32M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 8192), TO));
	ram = totalram_pages();

	KUNIT_EXPECT_EQ(test, vb->oom_nb.notifier_call(&vb->oom_nb, 0, &freed),
			NOTIFY_OK);
	KUNIT_EXPECT_EQ(test, freed, 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 8192UL - 2048);
	KUNIT_EXPECT_EQ(test, totalram_pages() - ram, 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_releases), 1ULL);

	/* Inflation holds off for a while, then goes back to the target. */
	msleep(QUIET_MS);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 8192UL - 2048);
	KUNIT_EXPECT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 8192), TO));
}

static void oom_release_off(struct kunit *test)
{
	unsigned long freed = 0;
	struct virtio_balloon13 *vb;
	struct fake_vdev *fd;

	save_params(test);
	WRITE_ONCE(vb13_oom_release, false);
	fd = bind(test, 12, true);
	vb = vb_of(fd);
	KUNIT_ASSERT_EQ(test, resize(fd, SZ_8M), 0);
	KUNIT_ASSERT_TRUE(test, fake_vdev_wait(fd, settled_at(vb, 2048), TO));
	vb->oom_nb.notifier_call(&vb->oom_nb, 0, &freed);
	KUNIT_EXPECT_EQ(test, freed, 0UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->nr_blocks), 2048UL);
	KUNIT_EXPECT_EQ(test, READ_ONCE(vb->cnt.pressure_releases), 0ULL);
}

static struct kunit_case vb13_driver_cases[] = {
	KUNIT_CASE(probe_posts_buffers),
	KUNIT_CASE_PARAM(probe_rejects_page_bits, hostile_bits_gen_params),
	KUNIT_CASE_PARAM(inflate_exact, inflate_bits_gen_params),
#ifdef CONFIG_MEMORY_BALLOON
	KUNIT_CASE(vmstat_counts_pages),
#endif
	KUNIT_CASE(deflate_to_target),
	KUNIT_CASE(deflate_waits_for_in_flight),
	KUNIT_CASE(in_flight_limit),
	KUNIT_CASE(message_boundaries),
	KUNIT_CASE(resize_redirects),
	KUNIT_CASE(floor_holds),
	KUNIT_CASE(stats_round_trip),
	KUNIT_CASE(stats_while_in_flight),
	KUNIT_CASE(remove_returns_memory),
	KUNIT_CASE_SLOW(remove_with_message_held),
#ifdef CONFIG_PM_SLEEP
	KUNIT_CASE(freeze_restore),
#endif
	KUNIT_CASE(hostile_request_length),
	KUNIT_CASE(hostile_unknown_type),
	KUNIT_CASE_PARAM(hostile_huge_target, hostile_targets_gen_params),
	KUNIT_CASE(hostile_spurious_interrupts),
	KUNIT_CASE(oom_releases_batch),
	KUNIT_CASE(oom_release_off),
	{}
};

static struct kunit_suite vb13_driver_suite = {
	.name = "virtio_balloon13_driver",
	.test_cases = vb13_driver_cases,
};

kunit_test_suite(vb13_driver_suite);
