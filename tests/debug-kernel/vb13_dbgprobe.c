// SPDX-License-Identifier: GPL-2.0
/*
 * vb13_dbgprobe - positive controls for the 6.12-debug test guest.
 *
 * tests/debug-kernel/check.py builds this module out of tree, the way
 * virtio_balloon13 is built, and loads it next to the driver.  Writing a
 * name to /sys/kernel/debug/vb13_dbgprobe/trigger commits that one bug on
 * purpose, so the script can see the kernel report it; "status" reports
 * which checks this kernel has on.  If a report does not come, a bug of
 * the driver's would not have been reported either, and the script fails.
 *
 * Only for the debug test guest: never load it anywhere else.
 */

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/kfence.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/preempt.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define PROBE_OBJ_SIZE 24
#define PROBE_LEAK_SIZE 192	/* check.py looks for this size */
#define PROBE_LEAKS 4

static DEFINE_MUTEX(probe_lock_a);
static DEFINE_MUTEX(probe_lock_b);
static struct dentry *probe_dir;

/*
 * A slab object KASAN watches: KFENCE serves an allocation now and then
 * (one per sample interval), and then KFENCE, not KASAN, reports the bug.
 * Those are set aside and freed.
 */
static void *probe_kasan_alloc(void)
{
	void *kf[8];
	void *p;
	int n = 0;

	for (;;) {
		p = kmalloc(PROBE_OBJ_SIZE, GFP_KERNEL);
		if (!p || !is_kfence_address(p) || n == ARRAY_SIZE(kf))
			break;
		kf[n++] = p;
	}
	while (n)
		kfree(kf[--n]);
	if (p && is_kfence_address(p)) {
		kfree(p);
		return NULL;
	}
	return p;
}

/* Read one byte past the end of a slab object. */
static noinline void probe_kasan_oob(void)
{
	char *p = probe_kasan_alloc();
	size_t i = PROBE_OBJ_SIZE;

	if (!p)
		return;
	OPTIMIZER_HIDE_VAR(i);
	pr_info("vb13_dbgprobe: kasan_oob read %d\n", READ_ONCE(p[i]));
	kfree(p);
}

/* Read a slab object after freeing it. */
static noinline void probe_kasan_uaf(void)
{
	char *p = probe_kasan_alloc();

	if (!p)
		return;
	kfree(p);
	OPTIMIZER_HIDE_VAR(p);
	pr_info("vb13_dbgprobe: kasan_uaf read %d\n", READ_ONCE(p[0]));
}

/* Take two locks in both orders (one thread, so no deadlock). */
static noinline void probe_lockdep(void)
{
	mutex_lock(&probe_lock_a);
	mutex_lock(&probe_lock_b);
	mutex_unlock(&probe_lock_b);
	mutex_unlock(&probe_lock_a);

	mutex_lock(&probe_lock_b);
	mutex_lock(&probe_lock_a);
	mutex_unlock(&probe_lock_a);
	mutex_unlock(&probe_lock_b);
}

/* A function that may sleep, called with preemption off. */
static noinline void probe_atomic_sleep(void)
{
	preempt_disable();
	might_sleep();
	preempt_enable();
}

/* Add the same entry to a list twice (DEBUG_LIST skips the second add). */
static noinline void probe_list(void)
{
	LIST_HEAD(head);
	struct list_head entry;

	list_add(&entry, &head);
	list_add(&entry, &head);
	list_del(&entry);
}

/*
 * Allocate objects and lose the only pointers to them.  The last pointer
 * may live on in a stale stack slot that kmemleak scans, so there are
 * several: the check wants at least one of them reported.
 */
static noinline void probe_kmemleak(void)
{
	int i;

	for (i = 0; i < PROBE_LEAKS; i++) {
		char *p = kmalloc(PROBE_LEAK_SIZE, GFP_KERNEL);

		if (!p)
			return;
		memset(p, 0x5a, PROBE_LEAK_SIZE);
		OPTIMIZER_HIDE_VAR(p);
	}
	pr_info("vb13_dbgprobe: leaked %d objects of %d bytes\n", PROBE_LEAKS,
		PROBE_LEAK_SIZE);
}

static const struct {
	const char *name;
	void (*fn)(void);
} probe_triggers[] = {
	{ "kasan_oob", probe_kasan_oob },
	{ "kasan_uaf", probe_kasan_uaf },
	{ "lockdep", probe_lockdep },
	{ "atomic_sleep", probe_atomic_sleep },
	{ "list", probe_list },
	{ "kmemleak", probe_kmemleak },
};

static ssize_t probe_trigger_write(struct file *file, const char __user *ubuf,
				   size_t len, loff_t *ppos)
{
	char buf[32];
	size_t i;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	strim(buf);
	for (i = 0; i < ARRAY_SIZE(probe_triggers); i++) {
		if (!strcmp(buf, probe_triggers[i].name)) {
			pr_info("vb13_dbgprobe: trigger %s\n", buf);
			probe_triggers[i].fn();
			return len;
		}
	}
	return -EINVAL;
}

static const struct file_operations probe_trigger_fops = {
	.owner = THIS_MODULE,
	.write = probe_trigger_write,
	.llseek = noop_llseek,
};

static int probe_status_show(struct seq_file *m, void *v)
{
	seq_printf(m, "kasan %d\n", IS_ENABLED(CONFIG_KASAN));
	seq_printf(m, "prove_locking %d\n", IS_ENABLED(CONFIG_PROVE_LOCKING));
	seq_printf(m, "debug_list %d\n", IS_ENABLED(CONFIG_DEBUG_LIST));
	seq_printf(m, "debug_atomic_sleep %d\n",
		   IS_ENABLED(CONFIG_DEBUG_ATOMIC_SLEEP));
	seq_printf(m, "kfence %d\n", IS_ENABLED(CONFIG_KFENCE));
	seq_printf(m, "kmemleak %d\n", IS_ENABLED(CONFIG_DEBUG_KMEMLEAK));
	seq_printf(m, "debug_pagealloc_enabled %d\n", debug_pagealloc_enabled());
	seq_printf(m, "debug_locks %d\n", debug_locks);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(probe_status);

static int __init probe_init(void)
{
	probe_dir = debugfs_create_dir("vb13_dbgprobe", NULL);
	debugfs_create_file("trigger", 0200, probe_dir, NULL, &probe_trigger_fops);
	debugfs_create_file("status", 0444, probe_dir, NULL, &probe_status_fops);
	return 0;
}

static void __exit probe_exit(void)
{
	debugfs_remove(probe_dir);
}

module_init(probe_init);
module_exit(probe_exit);
MODULE_DESCRIPTION("Deliberate bugs that the 6.12-debug test guest must report");
MODULE_LICENSE("GPL");
