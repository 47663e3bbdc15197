/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Virtio memory balloon (device 13): what the driver needs from kernels
 * older than the one it is written for.
 *
 * The driver is written against today's mainline API; this header, and
 * only this header, maps that API onto the older kernels the out-of-tree
 * module also builds for (Debian's 6.1 and 6.12).  On a current kernel it
 * defines nothing; in a kernel tree it would simply be deleted.
 */
#ifndef _VIRTIO_BALLOON13_COMPAT_H
#define _VIRTIO_BALLOON13_COMPAT_H

#include <linux/version.h>
#include <linux/module.h>
#include <linux/mmzone.h>
#include <linux/log2.h>
#include <linux/sched.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/swap.h>
#include <linux/virtio_config.h>
#include <linux/vmstat.h>

/* Typed allocation helpers (7.x); the driver uses the one-argument form. */
#ifndef kzalloc_obj
#define kzalloc_obj(P)		kzalloc(sizeof(P), GFP_KERNEL)
#endif

/* 6.8 renamed MAX_ORDER (the largest buddy order since 6.4) MAX_PAGE_ORDER. */
#ifndef MAX_PAGE_ORDER
#define MAX_PAGE_ORDER		const_ilog2(MAX_ORDER_NR_PAGES)
#endif

/*
 * 6.9: page types have folio accessors.  A balloon chunk's pages are each
 * their own (order-0, non-compound) folio as far as these go.  Clearing
 * a type a page doesn't have does nothing there (6.12's accessors check
 * first; 6.1's would trip a VM_BUG_ON).
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 9, 0)
static inline void vb13_compat_folio_clear_offline(struct folio *folio)
{
	if (PageOffline(&folio->page))
		__ClearPageOffline(&folio->page);
}

#define __folio_set_offline(folio)	__SetPageOffline(&(folio)->page)
#define __folio_clear_offline		vb13_compat_folio_clear_offline
#define folio_test_offline(folio)	PageOffline(&(folio)->page)
#endif

/* 6.13: MODULE_IMPORT_NS() takes a string literal. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 13, 0)
#undef MODULE_IMPORT_NS
#define MODULE_IMPORT_NS(ns)	MODULE_INFO(import_ns, ns)
#endif

/*
 * 6.11: virtio_find_vqs() takes one struct virtqueue_info per queue
 * instead of arrays of callbacks and names.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 11, 0)
#define VB13_COMPAT_MAX_VQS	2

struct virtqueue_info {
	const char *name;
	vq_callback_t *callback;
	bool ctx;
};

static inline int vb13_compat_find_vqs(struct virtio_device *vdev,
				       unsigned int nvqs,
				       struct virtqueue *vqs[],
				       struct virtqueue_info vqs_info[],
				       struct irq_affinity *desc)
{
	vq_callback_t *callbacks[VB13_COMPAT_MAX_VQS];
	const char *names[VB13_COMPAT_MAX_VQS];
	unsigned int i;

	if (nvqs > VB13_COMPAT_MAX_VQS)
		return -EINVAL;
	for (i = 0; i < nvqs; i++) {
		callbacks[i] = vqs_info[i].callback;
		names[i] = vqs_info[i].name;
	}
	return virtio_find_vqs(vdev, nvqs, vqs, callbacks, names, desc);
}

#undef virtio_find_vqs
#define virtio_find_vqs		vb13_compat_find_vqs
#endif

/*
 * 6.7: shrinkers are allocated with shrinker_alloc(), carry private data,
 * run without shrinker_rwsem and may sleep.  Before, a shrinker is embedded
 * by its owner, registered with register_shrinker(), and its callbacks run
 * under shrinker_rwsem: taking a sleeping lock there stalls every
 * (un)registration in the system, so the callbacks may only trylock.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 7, 0)
#define VB13_SHRINKER_MAY_SLEEP	false

struct vb13_compat_shrinker {
	struct shrinker s;
	void *private_data;
};

static inline struct shrinker *vb13_shrinker_alloc(const char *name)
{
	struct vb13_compat_shrinker *w = kzalloc(sizeof(*w), GFP_KERNEL);

	if (!w)
		return NULL;
	return &w->s;
}

static inline void vb13_shrinker_set_private(struct shrinker *s, void *p)
{
	container_of(s, struct vb13_compat_shrinker, s)->private_data = p;
}

static inline void *vb13_shrinker_private(struct shrinker *s)
{
	return container_of(s, struct vb13_compat_shrinker, s)->private_data;
}

static inline int vb13_shrinker_register(struct shrinker *s, const char *name)
{
	int err = register_shrinker(s, "%s", name);

	if (err)
		kfree(container_of(s, struct vb13_compat_shrinker, s));
	return err;
}

static inline void vb13_shrinker_free(struct shrinker *s)
{
	unregister_shrinker(s);
	kfree(container_of(s, struct vb13_compat_shrinker, s));
}
#else
#define VB13_SHRINKER_MAY_SLEEP	true

static inline struct shrinker *vb13_shrinker_alloc(const char *name)
{
	return shrinker_alloc(0, "%s", name);
}

static inline void vb13_shrinker_set_private(struct shrinker *s, void *p)
{
	s->private_data = p;
}

static inline void *vb13_shrinker_private(struct shrinker *s)
{
	return s->private_data;
}

static inline int vb13_shrinker_register(struct shrinker *s, const char *name)
{
	shrinker_register(s);
	return 0;
}

static inline void vb13_shrinker_free(struct shrinker *s)
{
	shrinker_free(s);
}
#endif

/*
 * The balloon core (include/linux/balloon.h) was CONFIG_MEMORY_BALLOON
 * until mainline reworked it in 2026; the vm events kept their names.
 */
#if defined(CONFIG_MEMORY_BALLOON) && !defined(CONFIG_BALLOON)
#define CONFIG_BALLOON		1
#endif

/*
 * 6.15: pages in balloons are counted per node (NR_BALLOON_PAGES, the
 * "Balloon:" line of /proc/meminfo).  Before, nothing counts them.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 15, 0)
#define NR_BALLOON_PAGES	NR_VM_NODE_STAT_ITEMS

static inline void vb13_compat_mod_node_page_state(struct pglist_data *pgdat,
						   enum node_stat_item item,
						   int delta)
{
	if (item != NR_BALLOON_PAGES)
		mod_node_page_state(pgdat, item, delta);
}

#define mod_node_page_state	vb13_compat_mod_node_page_state
#endif

/* 6.4: pages freed outside the LRU are reported with a helper. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 4, 0)
static inline void mm_account_reclaimed_pages(unsigned long pages)
{
	if (current->reclaim_state)
		current->reclaim_state->reclaimed_slab += pages;
}
#endif

/*
 * Reclaim's scan and steal counts (PGSCAN_KSWAPD, PGSCAN_DIRECT,
 * PGSTEAL_KSWAPD, PGSTEAL_DIRECT) are node statistics in today's kernel
 * (7.2; 6.12 still counts them as VM events).  The driver reads them with
 * vb13_reclaim_pages(events, item), @events being all_vm_events()'s array.
 * The version they moved in is taken to be 7.0: only 6.1, 6.12 and 7.2
 * are built.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(7, 0, 0)
#define vb13_reclaim_pages(events, item)	((events)[item])
#else
#define vb13_reclaim_pages(events, item)	\
	((void)(events), global_node_page_state(item))
#endif

/*
 * The reworked balloon core (<linux/balloon.h>, CONFIG_BALLOON and
 * CONFIG_BALLOON_MIGRATION; CONFIG_MEMORY_BALLOON is gone)
 * finishes a page migration itself once the driver's migratepage returned
 * 0: it takes a reference to the new page, puts it on the balloon list,
 * counts BALLOON_MIGRATE and lets go of the old page; -ENOENT there means
 * the old page left the balloon and the new one did not enter it.  It
 * counts NR_BALLOON_PAGES and BALLOON_INFLATE/DEFLATE for every page it
 * lists and unlists, and its unlisted pages stay PageOffline until freed.
 *
 * Before (<linux/balloon_compaction.h>, CONFIG_BALLOON_COMPACTION), the
 * driver's migratepage did all of that, under the page lock the migration
 * core holds, as virtio_balloon did; balloon_page_list_dequeue() cleared
 * PageOffline and counted only the vm event.  vb13_balloon_migrated() and
 * vb13_balloon_released() do the core's part there and nothing on a
 * current kernel.
 */
#ifndef CONFIG_MEMORY_BALLOON
#include <linux/balloon.h>

static inline void vb13_balloon_migrated(struct balloon_dev_info *b,
					 struct page *newpage,
					 struct page *page)
{
}

static inline int vb13_balloon_released(struct balloon_dev_info *b,
					struct page *page)
{
	return -ENOENT;
}
#else
#include <linux/balloon_compaction.h>

#if defined(CONFIG_BALLOON_COMPACTION) && !defined(CONFIG_BALLOON_MIGRATION)
#define CONFIG_BALLOON_MIGRATION	1
#endif

static inline size_t vb13_compat_list_enqueue(struct balloon_dev_info *b,
					      struct list_head *pages)
{
	struct page *page;

	list_for_each_entry(page, pages, lru)
		mod_node_page_state(page_pgdat(page), NR_BALLOON_PAGES, 1);
	return balloon_page_list_enqueue(b, pages);
}

static inline size_t vb13_compat_list_dequeue(struct balloon_dev_info *b,
					      struct list_head *pages,
					      size_t n_req_pages)
{
	struct page *page, *next;
	LIST_HEAD(got);
	size_t n;

	/* No /proc/kcore reader sees them online in between. */
	page_offline_begin();
	n = balloon_page_list_dequeue(b, &got, n_req_pages);
	list_for_each_entry_safe(page, next, &got, lru) {
		__SetPageOffline(page);
		mod_node_page_state(page_pgdat(page), NR_BALLOON_PAGES, -1);
		list_move(&page->lru, pages);
	}
	page_offline_end();
	return n;
}

#define balloon_page_list_enqueue	vb13_compat_list_enqueue
#define balloon_page_list_dequeue	vb13_compat_list_dequeue

#ifdef CONFIG_BALLOON_COMPACTION
static inline void vb13_balloon_migrated(struct balloon_dev_info *b,
					 struct page *newpage,
					 struct page *page)
{
	unsigned long flags;

	get_page(newpage);
	spin_lock_irqsave(&b->pages_lock, flags);
	balloon_page_insert(b, newpage);
	b->isolated_pages--;
	__count_vm_event(BALLOON_MIGRATE);
	spin_unlock_irqrestore(&b->pages_lock, flags);
	balloon_page_finalize(page);
	put_page(page);
}

static inline int vb13_balloon_released(struct balloon_dev_info *b,
					struct page *page)
{
	unsigned long flags;

	spin_lock_irqsave(&b->pages_lock, flags);
	b->isolated_pages--;
	__count_vm_event(BALLOON_DEFLATE);
	spin_unlock_irqrestore(&b->pages_lock, flags);
	balloon_page_finalize(page);
	put_page(page);
	return 0;
}
#endif
#endif

/*
 * 6.10: compaction gives the target page of a failed migration back to
 * its free list only when it holds the last reference.  Before, it took
 * it back whatever the count: a balloon's migratepage may keep the new
 * page it got (a reference of its own) when it fails only from 6.10.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 10, 0)
#define VB13_MIGRATE_KEEPS_NEWPAGE	0
#else
#define VB13_MIGRATE_KEEPS_NEWPAGE	1
#endif

/*
 * 6.16: alloc_contig_range() takes ACR flags where it took the range's
 * migratetype (MIGRATE_MOVABLE for an ordinary request).  KUnit only.
 */
#ifndef ACR_FLAGS_NONE
#define ACR_FLAGS_NONE		MIGRATE_MOVABLE
#endif

#endif /* _VIRTIO_BALLOON13_COMPAT_H */
