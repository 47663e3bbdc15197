// SPDX-License-Identifier: GPL-2.0
/*
 * allocbench - the guest allocator's own bound for the balloon benchmark.
 *
 * Test-only module, loaded in a benchmark guest.  It allocates a given
 * amount of memory the way virtio_balloon13 does (pagelist.c,
 * vb13_alloc_chunk(): the same gfp flags, the same orders from the largest
 * chunk down to the block order, a failed order not retried for the rest
 * of the run), keeps the chunks on a list, then frees them all, and
 * reports how long each half took.  No device is involved, so the numbers
 * are the fastest the driver could ever inflate and deflate.
 *
 * Interface (debugfs, root only):
 *   echo "MIB MAX_ORDER BLOCK_ORDER" > /sys/kernel/debug/allocbench/run
 *   cat /sys/kernel/debug/allocbench/run
 * The write runs the benchmark synchronously; the read shows the last
 * result as "key value" lines (times in ns).  The write fails with ENOMEM
 * if not even a block could be had (whatever was allocated is freed).
 *
 *   echo fill > /sys/kernel/debug/allocbench/run
 * takes every free page the allocator hands out without reclaim, zeroed,
 * and frees them again: afterwards every free page of the guest has been
 * written once, so its host memory is resident (the benchmark measures
 * reclaim from a guest that used its memory).  The read then shows
 * "filled_pages N".
 *
 *   echo "frag MIB" > /sys/kernel/debug/allocbench/run
 *   echo unfrag > /sys/kernel/debug/allocbench/run
 * fragments the guest's free memory the way long-lived kernel allocations
 * do: takes MIB of single pages and keeps every other one (odd page frame
 * numbers), unmovable, until unfrag; the half it gives back are free holes
 * of one page that never merge into huge pages.  The read shows
 * "frag_pages N" (pages held).
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/uaccess.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/list.h>
#include <linux/ktime.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/vmstat.h>

/* The largest buddy order, as virtio_balloon13.h computes it. */
#define AB_MAX_ORDER	const_ilog2(MAX_ORDER_NR_PAGES)

struct ab_result {
	unsigned long mib, max_order, block_order;
	unsigned long pages, chunks[AB_MAX_ORDER + 1];
	u64 alloc_ns, free_ns;
	int err;
	bool valid;
};

static DEFINE_MUTEX(ab_lock);
static unsigned long ab_filled;
static LIST_HEAD(ab_frag);		/* pages held by frag, under ab_lock */
static unsigned long ab_frag_pages;
static struct ab_result ab_last;
static struct dentry *ab_dir;

/* Exactly vb13_alloc_chunk()'s flags. */
static struct page *ab_alloc(unsigned int order, unsigned int block_order)
{
	gfp_t gfp = GFP_HIGHUSER | __GFP_NOWARN | __GFP_NOMEMALLOC |
		    __GFP_NORETRY;

	if (order > block_order)
		gfp &= ~__GFP_RECLAIM;
	return alloc_pages(gfp, order);
}

static int ab_run(struct ab_result *r)
{
	unsigned long want = r->mib << (20 - PAGE_SHIFT), got = 0;
	unsigned int order = r->max_order;
	struct page *page, *next;
	LIST_HEAD(chunks);
	ktime_t t0, t1, t2;

	t0 = ktime_get();
	while (got < want) {
		/* Never overshoot, as the driver does. */
		while (order > r->block_order && (1UL << order) > want - got)
			order--;
		for (;;) {
			page = ab_alloc(order, r->block_order);
			if (page || order == r->block_order)
				break;
			order--;
		}
		if (!page) {
			r->err = -ENOMEM;
			break;
		}
		set_page_private(page, order);
		list_add_tail(&page->lru, &chunks);
		r->chunks[order]++;
		got += 1UL << order;
		cond_resched();
	}
	t1 = ktime_get();
	list_for_each_entry_safe(page, next, &chunks, lru) {
		list_del(&page->lru);
		order = page_private(page);
		set_page_private(page, 0);
		__free_pages(page, order);
		cond_resched();
	}
	t2 = ktime_get();
	r->pages = got;
	r->alloc_ns = ktime_to_ns(ktime_sub(t1, t0));
	r->free_ns = ktime_to_ns(ktime_sub(t2, t1));
	r->valid = true;
	return r->err;
}

/* Pages the fill leaves free for everyone else (4 MiB). */
#define AB_FILL_SPARE	(4UL << (20 - PAGE_SHIFT))

/*
 * Touch every free page once; return the number of pages touched.  Large
 * chunks first, then single pages, without reclaim; then single pages
 * from the reserves below the watermarks (__GFP_MEMALLOC) until only
 * AB_FILL_SPARE pages are free.  The watermarks are high in these guests
 * (THP raises min_free_kbytes to 44 MiB and boosts can add more), and a
 * balloon takes pages from anywhere in the free lists, so touching only
 * what a normal allocation gets would leave tens of MiB untouched.
 * Movable, so that CMA pageblocks are reached too.  The pages are held
 * for a moment only.
 */
static unsigned long ab_fill(void)
{
	gfp_t gfp = (GFP_HIGHUSER_MOVABLE | __GFP_ZERO | __GFP_NOWARN |
		     __GFP_NORETRY) & ~__GFP_RECLAIM;
	int order = AB_MAX_ORDER;
	unsigned long pages = 0;
	struct page *page, *next;
	LIST_HEAD(chunks);

	while (order >= 0) {
		page = alloc_pages(gfp | __GFP_NOMEMALLOC, order);
		if (!page) {
			order--;
			continue;
		}
		set_page_private(page, order);
		list_add_tail(&page->lru, &chunks);
		pages += 1UL << order;
		cond_resched();
	}
	while (global_zone_page_state(NR_FREE_PAGES) > AB_FILL_SPARE) {
		page = alloc_pages(gfp | __GFP_MEMALLOC, 0);
		if (!page)
			break;
		set_page_private(page, 0);
		list_add_tail(&page->lru, &chunks);
		pages++;
	}
	list_for_each_entry_safe(page, next, &chunks, lru) {
		list_del(&page->lru);
		order = page_private(page);
		set_page_private(page, 0);
		__free_pages(page, order);
		cond_resched();
	}
	return pages;
}

static void ab_unfrag(void)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, &ab_frag, lru) {
		list_del(&page->lru);
		__free_page(page);
		cond_resched();
	}
	ab_frag_pages = 0;
}

/* Take @mib of single pages, keep those at odd frames, free the rest. */
static void ab_fragment(unsigned long mib)
{
	gfp_t gfp = (GFP_HIGHUSER | __GFP_NOWARN | __GFP_NORETRY) &
		    ~__GFP_RECLAIM;
	unsigned long i, n = mib << (20 - PAGE_SHIFT);
	struct page *page, *next;
	LIST_HEAD(all);

	for (i = 0; i < n; i++) {
		page = alloc_page(gfp);
		if (!page)
			break;
		list_add(&page->lru, &all);
		cond_resched();
	}
	list_for_each_entry_safe(page, next, &all, lru) {
		if (page_to_pfn(page) & 1) {
			list_move(&page->lru, &ab_frag);
			ab_frag_pages++;
		} else {
			list_del(&page->lru);
			__free_page(page);
		}
		cond_resched();
	}
}

static ssize_t ab_write(struct file *file, const char __user *ubuf,
			size_t len, loff_t *ppos)
{
	struct ab_result r = {};
	char buf[64];
	int err;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	if (sysfs_streq(buf, "unfrag")) {
		mutex_lock(&ab_lock);
		ab_unfrag();
		mutex_unlock(&ab_lock);
		return len;
	}
	if (sscanf(buf, "frag %lu", &r.mib) == 1) {
		mutex_lock(&ab_lock);
		ab_fragment(r.mib);
		mutex_unlock(&ab_lock);
		return len;
	}
	if (sysfs_streq(buf, "fill")) {
		mutex_lock(&ab_lock);
		ab_filled = ab_fill();
		mutex_unlock(&ab_lock);
		return len;
	}
	if (sscanf(buf, "%lu %lu %lu", &r.mib, &r.max_order,
		   &r.block_order) != 3)
		return -EINVAL;
	if (!r.mib || r.block_order > r.max_order ||
	    r.max_order > AB_MAX_ORDER)
		return -EINVAL;

	mutex_lock(&ab_lock);
	err = ab_run(&r);
	ab_last = r;
	mutex_unlock(&ab_lock);
	pr_info("allocbench: %lu MiB orders %lu..%lu: alloc %llu ns, free %llu ns%s\n",
		r.mib, r.max_order, r.block_order, r.alloc_ns, r.free_ns,
		err ? " (short)" : "");
	return err ? err : len;
}

static int ab_show(struct seq_file *m, void *v)
{
	int i;

	mutex_lock(&ab_lock);
	seq_printf(m, "filled_pages %lu\n", ab_filled);
	seq_printf(m, "frag_pages %lu\n", ab_frag_pages);
	if (ab_last.valid) {
		seq_printf(m, "mib %lu\nmax_order %lu\nblock_order %lu\n",
			   ab_last.mib, ab_last.max_order, ab_last.block_order);
		seq_printf(m, "pages %lu\nalloc_ns %llu\nfree_ns %llu\nerr %d\n",
			   ab_last.pages, ab_last.alloc_ns, ab_last.free_ns,
			   ab_last.err);
		for (i = 0; i <= AB_MAX_ORDER; i++)
			if (ab_last.chunks[i])
				seq_printf(m, "chunks_order_%d %lu\n", i,
					   ab_last.chunks[i]);
	}
	mutex_unlock(&ab_lock);
	return 0;
}

static int ab_open(struct inode *inode, struct file *file)
{
	return single_open(file, ab_show, NULL);
}

static const struct file_operations ab_fops = {
	.owner = THIS_MODULE,
	.open = ab_open,
	.read = seq_read,
	.write = ab_write,
	.llseek = seq_lseek,
	.release = single_release,
};

static int __init ab_init(void)
{
	ab_dir = debugfs_create_dir("allocbench", NULL);
	debugfs_create_file("run", 0600, ab_dir, NULL, &ab_fops);
	return 0;
}

static void __exit ab_exit(void)
{
	debugfs_remove(ab_dir);
	ab_unfrag();
}

module_init(ab_init);
module_exit(ab_exit);
MODULE_DESCRIPTION("Allocator bound for the virtio_balloon13 benchmark (test only)");
MODULE_LICENSE("GPL");
