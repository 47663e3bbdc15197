/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A fake virtio memory balloon (device 13) for KUnit tests.
 *
 * See fake_vdev.c for how it works.  Tests create one with
 * fake_vdev_create(), register it so that the driver matching its device
 * ID binds, and then play the device: send requests on inputq, take
 * messages from outputq (by hand, holding them as long as they like, or
 * automatically), and inspect what the driver sent.  For example:
 *
 *	struct fake_vdev *fd = fake_vdev_create(test, 12);
 *	struct fake_vdev_msg *msg;
 *
 *	KUNIT_ASSERT_EQ(test, fake_vdev_register(fd), 0);
 *	KUNIT_ASSERT_TRUE(test, fake_vdev_bound(fd));
 *	KUNIT_ASSERT_EQ(test, fake_vdev_send_request_wait(fd,
 *			FAKE_VDEV_REQ_RESIZE, 16 << 12, FAKE_VDEV_TIMEOUT_MS), 0);
 *	KUNIT_ASSERT_EQ(test, fake_vdev_wait_output(fd, &msg,
 *			FAKE_VDEV_TIMEOUT_MS), 0);
 *	... the driver holds blocks it must not free while msg is out ...
 *	KUNIT_EXPECT_EQ(test, fake_vdev_complete_output(fd, msg), 0);
 *
 * or fake_vdev_set_auto(fd, true) and then fake_vdev_wait_count(fd,
 * FAKE_VDEV_PAGES, 16, ...).  The test's end tears everything down.
 */
#ifndef _VIRTIO_BALLOON13_FAKE_VDEV_H
#define _VIRTIO_BALLOON13_FAKE_VDEV_H

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/irq_work.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/vhost_iotlb.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/vringh.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "../virtio_balloon13_compat.h"

struct kunit;

/* The device ID the balloon driver binds to. */
#define FAKE_VDEV_ID_BALLOON13		13
/* A device ID no real virtio driver binds to, for tests of the fake itself. */
#define FAKE_VDEV_ID_SELFTEST		0xb13b13

/* Device 13 feature bits the fake offers when asked to. */
#define FAKE_VDEV_F_WITHDRAW		0
#define FAKE_VDEV_F_REPORTING		1
#define FAKE_VDEV_F_FULL_STATS		2
#define FAKE_VDEV_F_PRESSURE_RELEASE	3

/* Request types (inputq) and message types (outputq) on the wire. */
#define FAKE_VDEV_REQ_RESIZE		0
#define FAKE_VDEV_REQ_STATS		1
#define FAKE_VDEV_REQ_STATS_INTERVAL	2	/* FAKE_VDEV_F_FULL_STATS */
#define FAKE_VDEV_MSG_PAGES		0
#define FAKE_VDEV_MSG_STATS		1
#define FAKE_VDEV_MSG_WITHDRAW		2
#define FAKE_VDEV_MSG_REPORT		3	/* FAKE_VDEV_F_REPORTING */

/* Size of a request, and of the header in front of every message. */
#define FAKE_VDEV_REQ_LEN		16
#define FAKE_VDEV_MSG_HDR_LEN		8

/* Queue size offered unless the test sets fake_vdev::queue_size. */
#define FAKE_VDEV_QUEUE_SIZE		64
/* Longest outputq message read; longer ones are counted bad, not read. */
#define FAKE_VDEV_MAX_MSG_LEN		(256 * 1024)
/* Stats entries kept from the last stats message. */
#define FAKE_VDEV_MAX_STATS		32
/* A sensible default for the wait helpers, in milliseconds. */
#define FAKE_VDEV_TIMEOUT_MS		10000
/* The wait helpers re-check their condition at least this often (ms). */
#define FAKE_VDEV_POLL_MS		10

/* Virtqueue indices. */
enum fake_vdev_vq {
	FAKE_VDEV_INPUTQ,
	FAKE_VDEV_OUTPUTQ,
	FAKE_VDEV_NUM_VQS,
};

/**
 * enum fake_vdev_counter - what the device counts; see fake_vdev_count()
 * @FAKE_VDEV_KICKS_IN: driver notifications on inputq.
 * @FAKE_VDEV_KICKS_OUT: driver notifications on outputq.
 * @FAKE_VDEV_IRQS_IN: inputq interrupts delivered (including forced ones).
 * @FAKE_VDEV_IRQS_OUT: outputq interrupts delivered (including forced ones).
 * @FAKE_VDEV_REQUESTS: inputq buffers the device filled and returned.
 * @FAKE_VDEV_MSGS: outputq messages consumed (automatically or by
 *	fake_vdev_complete_output()), good or bad.
 * @FAKE_VDEV_MSG_BYTES: total length of the consumed messages.
 * @FAKE_VDEV_PAGE_MSGS: well-formed page-list messages.
 * @FAKE_VDEV_STATS_MSGS: well-formed stats messages.
 * @FAKE_VDEV_BAD_MSGS: messages rejected: a length that is not 8 + 8n
 *	(n >= 1) or 8 + 16n, an unknown type, a nonzero reserved field,
 *	device-writable descriptors, or longer than %FAKE_VDEV_MAX_MSG_LEN.
 * @FAKE_VDEV_PAGES: page-list entries accepted and recorded.
 * @FAKE_VDEV_BAD_PAGES: page-list entries rejected: not aligned to the
 *	block size, or not naming a whole block of RAM.
 * @FAKE_VDEV_FREED_PAGES: accepted entries whose block the guest had
 *	already freed (it sits in the buddy allocator) when the device
 *	discarded it, i.e. before the buffer naming it came back.  Always a
 *	driver bug.
 * @FAKE_VDEV_RECORD_ERRORS: accepted entries fake_vdev_page_seen() misses:
 *	recording them failed for lack of memory (the device never waits
 *	for memory the driver might be freeing for it).
 * @FAKE_VDEV_RING_ERRORS: malformed rings; the queue stops working.
 * @FAKE_VDEV_WITHDRAW_MSGS: well-formed WITHDRAW messages (only with
 *	%FAKE_VDEV_F_WITHDRAW negotiated; otherwise they are bad messages).
 * @FAKE_VDEV_WITHDRAWN: WITHDRAW entries naming a block in the balloon,
 *	which leaves it.
 * @FAKE_VDEV_BAD_WITHDRAWN: WITHDRAW entries naming a block not in the
 *	balloon (or unaligned): counted, the other entries still act.
 * @FAKE_VDEV_REPORT_MSGS: well-formed REPORT messages (free page
 *	reporting negotiated, length 8 + 16n with n >= 1, every range valid).
 * @FAKE_VDEV_REPORT_BYTES: free memory those messages named.
 * @FAKE_VDEV_BAD_RANGES: REPORT ranges that are empty, not multiples of
 *	the block size, wrapping or not RAM; the message is rejected whole
 *	(counted in @FAKE_VDEV_BAD_MSGS, no range of it acted on).
 * @FAKE_VDEV_REPORT_IN_USE: pages of accepted REPORT ranges that the guest
 *	was using (a reference held) or had put back on its free lists when
 *	the device discarded them, i.e. before the buffer came back.  Always
 *	a driver bug: the page reporting core keeps reported pages isolated,
 *	free and unreferenced until the driver returns.
 * @FAKE_VDEV_NR_COUNTERS: number of counters.
 */
enum fake_vdev_counter {
	FAKE_VDEV_KICKS_IN,
	FAKE_VDEV_KICKS_OUT,
	FAKE_VDEV_IRQS_IN,
	FAKE_VDEV_IRQS_OUT,
	FAKE_VDEV_REQUESTS,
	FAKE_VDEV_MSGS,
	FAKE_VDEV_MSG_BYTES,
	FAKE_VDEV_PAGE_MSGS,
	FAKE_VDEV_STATS_MSGS,
	FAKE_VDEV_BAD_MSGS,
	FAKE_VDEV_PAGES,
	FAKE_VDEV_BAD_PAGES,
	FAKE_VDEV_FREED_PAGES,
	FAKE_VDEV_RECORD_ERRORS,
	FAKE_VDEV_RING_ERRORS,
	FAKE_VDEV_WITHDRAW_MSGS,
	FAKE_VDEV_WITHDRAWN,
	FAKE_VDEV_BAD_WITHDRAWN,
	FAKE_VDEV_REPORT_MSGS,
	FAKE_VDEV_REPORT_BYTES,
	FAKE_VDEV_BAD_RANGES,
	FAKE_VDEV_REPORT_IN_USE,
	FAKE_VDEV_NR_COUNTERS
};

/**
 * struct fake_vdev_msg - an outputq message taken by fake_vdev_pop_output()
 * @node: in fake_vdev::held until completed.
 * @gen: queue generation it was taken in; stale once the queues go away.
 * @head: descriptor chain head, to return the buffer.
 * @ndesc: number of descriptors in the chain (readable and writable).
 * @wlen: bytes of device-writable descriptors (0 for a valid message).
 * @len: message length: the sum of the readable descriptors.
 * @data: copy of the message: @len bytes, at most %FAKE_VDEV_MAX_MSG_LEN.
 */
struct fake_vdev_msg {
	struct list_head node;
	u64 gen;
	u16 head;
	unsigned int ndesc;
	size_t wlen;
	size_t len;
	u8 data[] __aligned(8);
};

/**
 * struct fake_vdev_stats - the last stats message the device consumed
 * @n: entries in it (may exceed %FAKE_VDEV_MAX_STATS; only that many kept).
 * @s: the entries, in order, as sent.
 * @s.tag: the entry's tag.
 * @s.val: the entry's value.
 */
struct fake_vdev_stats {
	unsigned int n;
	struct {
		u64 tag;
		u64 val;
	} s[FAKE_VDEV_MAX_STATS];
};

/**
 * struct fake_vdev_queue - device side of one virtqueue
 * @fd: the device.
 * @index: queue index.
 * @vq: the driver's virtqueue; NULL while none is set up.
 * @vrh: device-side view of the same split ring.
 * @riov: device-readable part of the chain being read.
 * @wiov: device-writable part of the chain being read.
 * @lock: serialises all device-side use of @vrh, @riov and @wiov, and
 *	changes of @ready and @vq.  A mutex: the vringh helpers allocate.
 * @ready: the device serves the queue (between find_vqs and reset).
 *	Written under @lock, read with READ_ONCE() by the interrupt path.
 * @broken: the ring was malformed; the device stopped using it.
 * @gen: bumped whenever the queue is set up; see fake_vdev_msg::gen.
 * @work: processes outputq automatically (fake_vdev_set_auto()).
 * @irq: delivers interrupts from hard interrupt context.
 * @irq_pending: FAKE_VDEV_IRQ_* bits for @irq.
 */
struct fake_vdev_queue {
	struct fake_vdev *fd;
	unsigned int index;
	struct virtqueue *vq;
	struct vringh vrh;
	struct vringh_kiov riov;
	struct vringh_kiov wiov;
	struct mutex lock;		/* device side of the queue */
	bool ready;
	bool broken;
	u64 gen;
	struct work_struct work;
	struct irq_work irq;
	unsigned long irq_pending;
};

/**
 * struct fake_vdev - a fake virtio device 13
 * @vdev: the virtio device the driver binds to.
 * @test: the test that owns it.
 * @parent: parent device, a kunit device freed with the test.
 * @device_id: virtio device ID.
 * @device_features: features offered; VIRTIO_F_VERSION_1, and
 *	VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC and the device
 *	13 bits %FAKE_VDEV_F_WITHDRAW, %FAKE_VDEV_F_REPORTING,
 *	%FAKE_VDEV_F_FULL_STATS and %FAKE_VDEV_F_PRESSURE_RELEASE may be added.
 *	Set before fake_vdev_register().
 * @queue_size: ring size offered, a power of two.  Set before registering.
 * @discard_fill: -1 (default) to leave discarded blocks alone, or a byte
 *	(0 to 255) the device writes over every block it discards, as a
 *	real device's discard makes them read back as zeroes.
 * @fail_find_vqs: fault injection: while non-zero, find_vqs fails with
 *	this (negative) errno and sets up no queue.
 * @break_vqs: fault injection: while set, queues come up broken, so the
 *	driver's first virtqueue_add_*() fails (-EIO).
 * @priv: for the test's own use.
 * @config_lock: protects @config and @config_gen.
 * @config: the config space: __le32 page_bits.
 * @config.page_bits: block size as a power of two.
 * @config_gen: config generation.
 * @status: device status, written by the driver.
 * @posted_at_ready: inputq buffers the driver had made available when it
 *	set DRIVER_OK (the latest time it did).
 * @registered: between fake_vdev_register() and fake_vdev_unregister().
 * @leaked: the device outlived unregistering; the fake is never freed.
 * @released: completed by the device's release callback.
 * @iotlb: identity map of all memory: the driver, not using the DMA API,
 *	puts guest-physical addresses in its descriptors.
 * @iotlb_lock: for @iotlb, taken by the vringh helpers.
 * @q: the queues.
 * @auto_output: outputq messages are consumed as soon as they arrive.
 * @held: messages taken by fake_vdev_pop_output() and not yet completed,
 *	under q[FAKE_VDEV_OUTPUTQ].lock.
 * @scratch: %FAKE_VDEV_MAX_MSG_LEN bytes for the auto mode's messages,
 *	under q[FAKE_VDEV_OUTPUTQ].lock.
 * @count: the counters.
 * @events: bumped on every device event; wakes @wq.
 * @wq: the wait helpers sleep here.
 * @inb: the blocks in the balloon as the device counts them from messages
 *	alone (PAGES adds, WITHDRAW removes): index address >> page_bits.
 * @pages: every accepted page-list entry: index address >> page_bits,
 *	value xa_mk_value(times seen).
 * @stats_lock: protects @stats.
 * @stats: the last stats message.
 */
struct fake_vdev {
	struct virtio_device vdev;
	struct kunit *test;
	struct device *parent;
	u32 device_id;
	u64 device_features;
	unsigned int queue_size;
	int discard_fill;
	int fail_find_vqs;
	bool break_vqs;
	void *priv;

	spinlock_t config_lock;		/* config, config_gen */
	struct {
		__le32 page_bits;
	} config;
	u32 config_gen;
	u8 status;
	unsigned int posted_at_ready;
	bool registered;
	bool leaked;
	struct completion released;

	struct vhost_iotlb iotlb;
	spinlock_t iotlb_lock;		/* iotlb, for vringh */
	struct fake_vdev_queue q[FAKE_VDEV_NUM_VQS];
	bool auto_output;
	struct list_head held;
	u8 *scratch;

	atomic64_t count[FAKE_VDEV_NR_COUNTERS];
	atomic_long_t events;
	wait_queue_head_t wq;
	struct xarray pages;
	struct xarray inb;
	spinlock_t stats_lock;		/* stats */
	struct fake_vdev_stats stats;
};

struct fake_vdev *fake_vdev_create_id(struct kunit *test, u32 device_id,
				      u32 page_bits);
struct fake_vdev *fake_vdev_create(struct kunit *test, u32 page_bits);
int fake_vdev_register(struct fake_vdev *fd);
void fake_vdev_unregister(struct fake_vdev *fd);
bool fake_vdev_bound(struct fake_vdev *fd);
struct fake_vdev *fake_vdev_of(struct virtio_device *vdev);

u8 fake_vdev_status(struct fake_vdev *fd);
void fake_vdev_set_page_bits(struct fake_vdev *fd, u32 page_bits);

int fake_vdev_send_raw(struct fake_vdev *fd, const void *buf, size_t len,
		       u32 used_len);
int fake_vdev_send_request(struct fake_vdev *fd, u32 type, u64 value);
int fake_vdev_send_request_wait(struct fake_vdev *fd, u32 type, u64 value,
				unsigned int timeout_ms);
unsigned int fake_vdev_inputq_posted(struct fake_vdev *fd);

int fake_vdev_pop_output(struct fake_vdev *fd, struct fake_vdev_msg **msgp);
int fake_vdev_wait_output(struct fake_vdev *fd, struct fake_vdev_msg **msgp,
			  unsigned int timeout_ms);
int fake_vdev_complete_output(struct fake_vdev *fd, struct fake_vdev_msg *msg);
unsigned int fake_vdev_held(struct fake_vdev *fd);
void fake_vdev_set_auto(struct fake_vdev *fd, bool on);
void fake_vdev_flush(struct fake_vdev *fd);

int fake_vdev_interrupt(struct fake_vdev *fd, unsigned int vq);

unsigned int fake_vdev_page_seen(struct fake_vdev *fd, u64 addr);
unsigned long fake_vdev_ballooned(struct fake_vdev *fd);
void fake_vdev_get_stats(struct fake_vdev *fd, struct fake_vdev_stats *stats);
void fake_vdev_clear_records(struct fake_vdev *fd);

/**
 * fake_vdev_count() - read one of the device's counters
 * @fd: the device.
 * @c: which counter.
 *
 * Return: its value.
 */
static inline u64 fake_vdev_count(struct fake_vdev *fd,
				  enum fake_vdev_counter c)
{
	return atomic64_read(&fd->count[c]);
}

/**
 * fake_vdev_msg_type() - type field of an outputq message
 * @msg: the message.
 *
 * Return: the type, or U32_MAX if the message is shorter than its header.
 */
static inline u32 fake_vdev_msg_type(const struct fake_vdev_msg *msg)
{
	if (min_t(size_t, msg->len, FAKE_VDEV_MAX_MSG_LEN) <
	    FAKE_VDEV_MSG_HDR_LEN)
		return U32_MAX;
	return le32_to_cpup((const __le32 *)msg->data);
}

/**
 * fake_vdev_msg_u64() - one little-endian u64 after the message header
 * @msg: the message.
 * @i: index of the u64: page-list entry @i, or word @i of the stats array
 *	(tag of entry n at 2n, value at 2n + 1).
 *
 * Return: the value, or U64_MAX if the message is too short to hold it.
 */
static inline u64 fake_vdev_msg_u64(const struct fake_vdev_msg *msg,
				    unsigned int i)
{
	size_t off = FAKE_VDEV_MSG_HDR_LEN + (size_t)i * 8;

	if (off + 8 > min_t(size_t, msg->len, FAKE_VDEV_MAX_MSG_LEN))
		return U64_MAX;
	return le64_to_cpup((const __le64 *)(msg->data + off));
}

/**
 * fake_vdev_msg_ranges() - ranges in a REPORT message
 * @msg: the message.
 *
 * Range i is fake_vdev_msg_u64(@msg, 2i) (address) and 2i + 1 (length).
 *
 * Return: the number of whole 16-byte ranges after the header.
 */
static inline unsigned int fake_vdev_msg_ranges(const struct fake_vdev_msg *msg)
{
	size_t len = min_t(size_t, msg->len, FAKE_VDEV_MAX_MSG_LEN);

	return len < FAKE_VDEV_MSG_HDR_LEN ? 0 :
	       (len - FAKE_VDEV_MSG_HDR_LEN) / 16;
}

/**
 * fake_vdev_events() - number of device events so far
 * @fd: the device.
 *
 * Used by fake_vdev_wait() to sleep until something happened.
 *
 * Return: the event count.
 */
static inline unsigned long fake_vdev_events(struct fake_vdev *fd)
{
	return atomic_long_read(&fd->events);
}

/**
 * fake_vdev_wait() - wait until a condition holds, or time out
 * @fd: the device whose events wake the waiter.
 * @cond: the condition, an expression evaluated in process context, once
 *	after every device event and at least every %FAKE_VDEV_POLL_MS.
 *	It may have side effects: once it is true it is not evaluated again.
 * @timeout_ms: how long to wait at most, in milliseconds.
 *
 * The driver works asynchronously (callbacks queue work), so tests wait
 * for the state they expect rather than for a fixed time.  Conditions on
 * the driver's own state are fine too: they are polled.
 *
 * Context: process context; sleeps.
 * Return: true if @cond became true, false on timeout.
 */
#define fake_vdev_wait(fd, cond, timeout_ms)				\
({									\
	struct fake_vdev *__fd = (fd);					\
	unsigned long __end = jiffies + msecs_to_jiffies(timeout_ms);	\
	unsigned long __ev;						\
	bool __done;							\
									\
	for (;;) {							\
		__ev = fake_vdev_events(__fd);				\
		__done = (cond);					\
		if (__done || time_after(jiffies, __end))		\
			break;						\
		cond_resched();						\
		wait_event_timeout(__fd->wq,				\
				   fake_vdev_events(__fd) != __ev,	\
				   msecs_to_jiffies(FAKE_VDEV_POLL_MS));	\
	}								\
	__done;								\
})

/**
 * fake_vdev_wait_posted() - wait until the driver has posted inputq buffers
 * @fd: the device.
 * @n: how many buffers must be posted and not yet used.
 * @timeout_ms: how long to wait at most, in milliseconds.
 *
 * Context: process context; sleeps.
 * Return: true if at least @n are posted, false on timeout.
 */
static inline bool fake_vdev_wait_posted(struct fake_vdev *fd, unsigned int n,
					 unsigned int timeout_ms)
{
	return fake_vdev_wait(fd, fake_vdev_inputq_posted(fd) >= n, timeout_ms);
}

/**
 * fake_vdev_wait_count() - wait until a counter reaches a value
 * @fd: the device.
 * @c: the counter.
 * @min_value: the value it must reach.
 * @timeout_ms: how long to wait at most, in milliseconds.
 *
 * Context: process context; sleeps.
 * Return: true if the counter reached @min_value, false on timeout.
 */
static inline bool fake_vdev_wait_count(struct fake_vdev *fd,
					enum fake_vdev_counter c, u64 min_value,
					unsigned int timeout_ms)
{
	return fake_vdev_wait(fd, fake_vdev_count(fd, c) >= min_value,
			      timeout_ms);
}

/**
 * fake_vdev_wait_driver_ok() - wait until the driver set DRIVER_OK
 * @fd: the device.
 * @timeout_ms: how long to wait at most, in milliseconds.
 *
 * Context: process context; sleeps.
 * Return: true if DRIVER_OK is set, false on timeout.
 */
static inline bool fake_vdev_wait_driver_ok(struct fake_vdev *fd,
					    unsigned int timeout_ms)
{
	return fake_vdev_wait(fd, fake_vdev_status(fd) &
			      VIRTIO_CONFIG_S_DRIVER_OK, timeout_ms);
}

#endif /* _VIRTIO_BALLOON13_FAKE_VDEV_H */
