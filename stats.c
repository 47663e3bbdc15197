// SPDX-License-Identifier: GPL-2.0
/*
 * Virtio memory balloon (device 13): guest statistics for STATS requests.
 *
 * Each value is what the proposal's tag asks for, in its unit.  A value
 * the guest cannot determine is left out rather than sent as zero: without
 * CONFIG_VM_EVENT_COUNTERS the swap and fault counts are unknown.
 */
#include <linux/mm.h>
#include <linux/vmstat.h>
#include <linux/export.h>
#include <kunit/visibility.h>

#include "virtio_balloon13.h"

static void vb13_put_stat(struct virtio_balloon13_stats *st, unsigned int *n,
			  u64 tag, u64 value)
{
	st->s[*n].tag = cpu_to_le64(tag);
	st->s[*n].value = cpu_to_le64(value);
	(*n)++;
}

/**
 * vb13_fill_stats() - fill a STATS response with the guest's current values
 * @st: the response buffer
 *
 * Context: process context; may sleep (all_vm_events() takes the CPU
 * hotplug lock).
 * Return: the number of statistics written; the message length is
 * sizeof(header) + n * sizeof(struct virtio_balloon13_stat).
 */
unsigned int vb13_fill_stats(struct virtio_balloon13_stats *st)
{
	unsigned int n = 0;
	struct sysinfo i;
#ifdef CONFIG_VM_EVENT_COUNTERS
	unsigned long events[NR_VM_EVENT_ITEMS];

	all_vm_events(events);
#endif
	si_meminfo(&i);

	st->hdr.type = cpu_to_le32(VIRTIO_BALLOON13_RESP_STATS);
	st->hdr.reserved = 0;
#ifdef CONFIG_VM_EVENT_COUNTERS
	vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_SWAP_IN,
		      (u64)events[PSWPIN] << PAGE_SHIFT);
	vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_SWAP_OUT,
		      (u64)events[PSWPOUT] << PAGE_SHIFT);
	vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_MAJFLT, events[PGMAJFAULT]);
	/* PGFAULT counts every fault, major ones included. */
	vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_MINFLT,
		      events[PGFAULT] - events[PGMAJFAULT]);
#endif
	vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_MEMFREE,
		      (u64)i.freeram * i.mem_unit);
	vb13_put_stat(st, &n, VIRTIO_BALLOON13_TAG_MEMTOT,
		      (u64)i.totalram * i.mem_unit);
	return n;
}
EXPORT_SYMBOL_IF_KUNIT(vb13_fill_stats);
