// SPDX-License-Identifier: GPL-2.0
/*
 * vb13_fault - a hostile driver for the virtio memory balloon (device ID 13),
 * for tests only.
 *
 * It binds device 13 in place of virtio_balloon13 and sends what a broken or
 * malicious guest could: short, oversized and mistyped messages, unaligned,
 * wrapping and out-of-RAM addresses, blocks named twice, device-writable
 * descriptors on outputq, unusable buffers on inputq.  A device must count
 * each of them and carry on.  Only pages this module allocated are ever
 * named in a page list that could be accepted, so the guest itself stays
 * intact.
 *
 * Write one command to /sys/kernel/debug/vb13_fault/cmd:
 *   short header badlen type stats-len unaligned overflow beyond hole
 *   writable oversize	one rejected message each
 *   good reserved repeat duplicate	page lists of our own pages (accepted)
 *   stats			a stats message (MEMFREE 123456789, an unknown tag)
 *   flood N			N unaligned page lists
 *   random N SEED		N messages of random bytes
 *   input-small input-readable input-ok	post one inputq buffer
 * Every outputq message is waited for (5 s); the write fails with -ETIMEDOUT
 * if the device doesn't return it.  /sys/kernel/debug/vb13_fault/status
 * shows what was sent and returned and the last request the device wrote.
 */
#include <linux/debugfs.h>
#include <linux/gfp.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/prandom.h>
#include <linux/random.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/wait.h>

#define VB13F_ID		13
#define VB13F_WAIT		(5 * HZ)
#define VB13F_MAX_FLOOD		10000
/* A length no device reads: 18 MiB of our own memory, in 512 KiB pieces. */
#define VB13F_BIG_ORDER		7
#define VB13F_BIG_PIECES	36

enum { VQ_IN, VQ_OUT, NR_VQS };

struct vb13f {
	struct virtio_device *vdev;
	struct virtqueue *vqs[NR_VQS];
	struct dentry *dir;
	struct mutex lock;		/* one command at a time */
	wait_queue_head_t wq;
	unsigned int page_bits;
	u64 sent, returned, timeouts, inputs_posted, inputs_returned;
	u32 last_req_type, last_input_len;
	u64 last_req_value;
	u8 inbuf[4][16];		/* inputq buffers, by slot */
	unsigned int next_in;
};

static void vb13f_out_done(struct virtqueue *vq)
{
	struct vb13f *f = vq->vdev->priv;

	wake_up(&f->wq);
}

static void vb13f_in_done(struct virtqueue *vq)
{
	struct vb13f *f = vq->vdev->priv;
	unsigned int len;
	u8 *buf;

	while ((buf = virtqueue_get_buf(vq, &len))) {
		f->inputs_returned++;
		f->last_input_len = len;
		if (len >= 16) {
			f->last_req_type = le32_to_cpu(*(__le32 *)buf);
			f->last_req_value = le64_to_cpu(*(__le64 *)(buf + 8));
		}
	}
}

/* Send one message made of out (readable) and in (writable) pieces. */
static int vb13f_send(struct vb13f *f, struct scatterlist *sgs[],
		      unsigned int nout, unsigned int nin)
{
	struct virtqueue *vq = f->vqs[VQ_OUT];
	unsigned int len;
	void *tok = f;
	int err;

	err = virtqueue_add_sgs(vq, sgs, nout, nin, tok, GFP_KERNEL);
	if (err)
		return err;
	f->sent++;
	virtqueue_kick(vq);
	if (!wait_event_timeout(f->wq, virtqueue_get_buf(vq, &len), VB13F_WAIT)) {
		/* The buffers stay with the device: never free them. */
		f->timeouts++;
		return -ETIMEDOUT;
	}
	f->returned++;
	return 0;
}

/* A message of hdr (type, reserved) and n 64-bit little-endian words. */
static int vb13f_msg(struct vb13f *f, u32 type, u32 reserved, const u64 *w,
		     unsigned int n)
{
	struct scatterlist sg, *sgs[1] = { &sg };
	__le32 *buf = kzalloc(8 + 8 * n, GFP_KERNEL);
	unsigned int i;
	int err;

	if (!buf)
		return -ENOMEM;
	buf[0] = cpu_to_le32(type);
	buf[1] = cpu_to_le32(reserved);
	for (i = 0; i < n; i++)
		((__le64 *)(buf + 2))[i] = cpu_to_le64(w[i]);
	sg_init_one(&sg, buf, 8 + 8 * n);
	err = vb13f_send(f, sgs, 1, 0);
	if (err != -ETIMEDOUT)
		kfree(buf);
	return err;
}

static int vb13f_raw(struct vb13f *f, const void *data, size_t len)
{
	struct scatterlist sg, *sgs[1] = { &sg };
	void *buf = kmemdup(data, len, GFP_KERNEL);
	int err;

	if (!buf)
		return -ENOMEM;
	sg_init_one(&sg, buf, len);
	err = vb13f_send(f, sgs, 1, 0);
	if (err != -ETIMEDOUT)
		kfree(buf);
	return err;
}

/* Page lists naming one block of our own, once or more. */
static int vb13f_own(struct vb13f *f, u32 reserved, unsigned int copies,
		     unsigned int msgs)
{
	unsigned int order = f->page_bits > PAGE_SHIFT ?
			     f->page_bits - PAGE_SHIFT : 0;
	struct page *p;
	u64 w[2];
	int err = 0;
	unsigned int i;

	if ((1UL << order) > MAX_ORDER_NR_PAGES)
		return -EINVAL;
	p = alloc_pages(GFP_KERNEL | __GFP_NOWARN, order);
	if (!p)
		return -ENOMEM;
	w[0] = page_to_phys(p);
	w[1] = w[0];
	for (i = 0; i < msgs && !err; i++)
		err = vb13f_msg(f, 0, reserved, w, copies);
	/* Returned used: the device discarded it; it is ours to free. */
	if (err != -ETIMEDOUT)
		__free_pages(p, order);
	return err;
}

static int vb13f_oversize(struct vb13f *f)
{
	struct scatterlist *sg, *sgs[1];
	struct page **pg;
	int i, err = -ENOMEM;

	/* Small pieces: no compaction stall in a fragmented guest. */
	sg = kcalloc(VB13F_BIG_PIECES, sizeof(*sg), GFP_KERNEL);
	pg = kcalloc(VB13F_BIG_PIECES, sizeof(*pg), GFP_KERNEL);
	if (!sg || !pg)
		goto out;
	sg_init_table(sg, VB13F_BIG_PIECES);
	for (i = 0; i < VB13F_BIG_PIECES; i++) {
		pg[i] = alloc_pages(GFP_KERNEL | __GFP_NOWARN, VB13F_BIG_ORDER);
		if (!pg[i])
			goto out;
		sg_set_page(&sg[i], pg[i], PAGE_SIZE << VB13F_BIG_ORDER, 0);
	}
	sgs[0] = sg;
	err = vb13f_send(f, sgs, 1, 0);
out:
	if (err == -ETIMEDOUT)
		return err;	/* the device still has them */
	for (i = 0; pg && i < VB13F_BIG_PIECES; i++)
		if (pg[i])
			__free_pages(pg[i], VB13F_BIG_ORDER);
	kfree(pg);
	kfree(sg);
	return err;
}

static int vb13f_post_input(struct vb13f *f, unsigned int len, bool readable)
{
	struct scatterlist sg, *sgs[1] = { &sg };
	u8 *buf = f->inbuf[f->next_in++ % ARRAY_SIZE(f->inbuf)];
	int err;

	sg_init_one(&sg, buf, len);
	err = virtqueue_add_sgs(f->vqs[VQ_IN], sgs, readable, !readable, buf,
				GFP_KERNEL);
	if (err)
		return err;
	f->inputs_posted++;
	virtqueue_kick(f->vqs[VQ_IN]);
	return 0;
}

static int vb13f_random(struct vb13f *f, unsigned int n, u32 seed)
{
	struct rnd_state rs;
	u8 *buf = kmalloc(4096, GFP_KERNEL);
	unsigned int i;
	int err = 0;

	if (!buf)
		return -ENOMEM;
	prandom_seed_state(&rs, seed);
	for (i = 0; i < n && !err; i++) {
		size_t len = 1 + prandom_u32_state(&rs) % 4096;

		prandom_bytes_state(&rs, buf, len);
		/* Mostly a known type, so the device looks past the header. */
		if (len >= 4 && prandom_u32_state(&rs) % 4)
			*(__le32 *)buf = cpu_to_le32(prandom_u32_state(&rs) % 2);
		err = vb13f_raw(f, buf, len);
	}
	kfree(buf);
	return err;
}

static int vb13f_cmd(struct vb13f *f, char *line)
{
	u64 bs = 1ULL << f->page_bits, w[4];
	char *argv[3] = { NULL }, *p = strim(line);
	unsigned int argc = 0, n = 0, seed = 0;
	u8 small[4] = { 0 };

	while (argc < ARRAY_SIZE(argv) && (argv[argc] = strsep(&p, " ")))
		if (*argv[argc])
			argc++;
	if (!argc)
		return -EINVAL;
	if (argc > 1 && kstrtouint(argv[1], 0, &n))
		return -EINVAL;
	if (argc > 2 && kstrtouint(argv[2], 0, &seed))
		return -EINVAL;

	if (!strcmp(argv[0], "short"))
		return vb13f_raw(f, small, sizeof(small));
	if (!strcmp(argv[0], "header"))
		return vb13f_msg(f, 0, 0, w, 0);
	if (!strcmp(argv[0], "badlen")) {
		u8 buf[20] = { 0 };

		return vb13f_raw(f, buf, sizeof(buf));
	}
	if (!strcmp(argv[0], "type")) {
		w[0] = 0;
		return vb13f_msg(f, 7, 0, w, 1);
	}
	if (!strcmp(argv[0], "stats-len")) {
		w[0] = 4;
		return vb13f_msg(f, 1, 0, w, 1);
	}
	if (!strcmp(argv[0], "stats")) {
		w[0] = 4;		/* MEMFREE */
		w[1] = 123456789;
		w[2] = 99;		/* a tag from the future: ignored */
		w[3] = 1;
		return vb13f_msg(f, 1, 0, w, 4);
	}
	if (!strcmp(argv[0], "unaligned")) {
		w[0] = bs + bs / 2;
		return vb13f_msg(f, 0, 0, w, 1);
	}
	if (!strcmp(argv[0], "overflow")) {
		w[0] = ~0ULL & ~(bs - 1);
		return vb13f_msg(f, 0, 0, w, 1);
	}
	if (!strcmp(argv[0], "beyond")) {
		w[0] = 1ULL << 40;	/* 1 TiB: far above a test guest's RAM */
		return vb13f_msg(f, 0, 0, w, 1);
	}
	if (!strcmp(argv[0], "hole")) {
		w[0] = 0xfec00000ULL & ~(bs - 1);	/* the IOAPIC */
		return vb13f_msg(f, 0, 0, w, 1);
	}
	if (!strcmp(argv[0], "writable")) {
		struct scatterlist so, si, *sgs[2] = { &so, &si };
		__le32 *buf = kzalloc(24, GFP_KERNEL);
		int err;

		if (!buf)
			return -ENOMEM;
		sg_init_one(&so, buf, 8);
		sg_init_one(&si, buf + 2, 16);
		err = vb13f_send(f, sgs, 1, 1);
		if (err != -ETIMEDOUT)
			kfree(buf);
		return err;
	}
	if (!strcmp(argv[0], "oversize"))
		return vb13f_oversize(f);
	if (!strcmp(argv[0], "good"))
		return vb13f_own(f, 0, 1, 1);
	if (!strcmp(argv[0], "reserved"))
		return vb13f_own(f, 0x5a5a, 1, 1);
	if (!strcmp(argv[0], "repeat"))
		return vb13f_own(f, 0, 2, 1);
	if (!strcmp(argv[0], "duplicate"))
		return vb13f_own(f, 0, 1, 2);
	if (!strcmp(argv[0], "flood")) {
		int err = 0;

		if (n > VB13F_MAX_FLOOD)
			return -EINVAL;
		w[0] = bs / 2;
		while (n-- && !err)
			err = vb13f_msg(f, 0, 0, w, 1);
		return err;
	}
	if (!strcmp(argv[0], "random"))
		return n > VB13F_MAX_FLOOD ? -EINVAL : vb13f_random(f, n, seed);
	if (!strcmp(argv[0], "input-small"))
		return vb13f_post_input(f, 8, false);
	if (!strcmp(argv[0], "input-readable"))
		return vb13f_post_input(f, 16, true);
	if (!strcmp(argv[0], "input-ok"))
		return vb13f_post_input(f, 16, false);
	return -EINVAL;
}

static ssize_t vb13f_cmd_write(struct file *file, const char __user *ubuf,
			       size_t len, loff_t *ppos)
{
	struct vb13f *f = file->private_data;
	char line[64];
	int err;

	if (len >= sizeof(line))
		return -EINVAL;
	if (copy_from_user(line, ubuf, len))
		return -EFAULT;
	line[len] = '\0';
	mutex_lock(&f->lock);
	err = vb13f_cmd(f, line);
	mutex_unlock(&f->lock);
	return err ? err : len;
}

static const struct file_operations vb13f_cmd_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = vb13f_cmd_write,
	.llseek = noop_llseek,
};

static int vb13f_status_show(struct seq_file *m, void *v)
{
	struct vb13f *f = m->private;

	seq_printf(m, "page_bits %u\nsent %llu\nreturned %llu\ntimeouts %llu\n"
		   "inputs_posted %llu\ninputs_returned %llu\n"
		   "last_input_len %u\nlast_req_type %u\nlast_req_value %llu\n",
		   f->page_bits, f->sent, f->returned, f->timeouts,
		   f->inputs_posted, f->inputs_returned, f->last_input_len,
		   f->last_req_type, f->last_req_value);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vb13f_status);

static int vb13f_probe(struct virtio_device *vdev)
{
#ifndef VB13F_COMPAT_VQ_CALLBACKS
	struct virtqueue_info info[NR_VQS] = {
		[VQ_IN] = { "inputq", vb13f_in_done },
		[VQ_OUT] = { "outputq", vb13f_out_done },
	};
#else
	vq_callback_t *cbs[NR_VQS] = { vb13f_in_done, vb13f_out_done };
	static const char * const names[NR_VQS] = { "inputq", "outputq" };
#endif
	struct vb13f *f;
	int err;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	init_waitqueue_head(&f->wq);
	f->vdev = vdev;
	vdev->priv = f;
	f->page_bits = virtio_cread32(vdev, 0);
	if (f->page_bits < PAGE_SHIFT || f->page_bits > 30) {
		dev_err(&vdev->dev, "page_bits %u not served\n", f->page_bits);
		err = -EINVAL;
		goto out_free;
	}
#ifndef VB13F_COMPAT_VQ_CALLBACKS
	err = virtio_find_vqs(vdev, NR_VQS, f->vqs, info, NULL);
#else
	err = virtio_find_vqs(vdev, NR_VQS, f->vqs, cbs, names, NULL);
#endif
	if (err)
		goto out_free;
	virtio_device_ready(vdev);
	f->dir = debugfs_create_dir("vb13_fault", NULL);
	debugfs_create_file("cmd", 0200, f->dir, f, &vb13f_cmd_fops);
	debugfs_create_file("status", 0444, f->dir, f, &vb13f_status_fops);
	dev_info(&vdev->dev, "vb13_fault bound, page_bits %u\n", f->page_bits);
	return 0;
out_free:
	kfree(f);
	return err;
}

static void vb13f_remove(struct virtio_device *vdev)
{
	struct vb13f *f = vdev->priv;

	debugfs_remove_recursive(f->dir);
	virtio_reset_device(vdev);
	vdev->config->del_vqs(vdev);
	/* Buffers a timed-out command left with the device are leaked. */
	kfree(f);
}

static const struct virtio_device_id vb13f_ids[] = {
	{ VB13F_ID, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static unsigned int vb13f_features[] = { };

static struct virtio_driver vb13f_driver = {
	.feature_table = vb13f_features,
	.feature_table_size = 0,
	.driver.name = "vb13_fault",
	.id_table = vb13f_ids,
	.probe = vb13f_probe,
	.remove = vb13f_remove,
};
module_virtio_driver(vb13f_driver);

MODULE_DESCRIPTION("Hostile test driver for virtio device 13 (tests only)");
MODULE_LICENSE("GPL");
