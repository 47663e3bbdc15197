/*
 * Virtio memory balloon, device ID 13 (OASIS VIRTIO-28 proposal)
 *
 * Copyright (c) 2025 The virtio_balloon13 authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef QEMU_VIRTIO_BALLOON13_H
#define QEMU_VIRTIO_BALLOON13_H

#include "hw/virtio/virtio.h"
#include "qemu/notify.h"
#include "qemu/thread.h"
#include "qom/object.h"
#include "system/runstate.h"

#define TYPE_VIRTIO_BALLOON13 "virtio-balloon13-device"
OBJECT_DECLARE_SIMPLE_TYPE(VirtIOBalloon13, VIRTIO_BALLOON13)

#include "standard-headers/linux/virtio_balloon13.h"
#include "standard-headers/linux/virtio_ids.h"

enum {
    VIRTIO_BALLOON13_VQ_INPUT = 0,  /* device -> driver: requests */
    VIRTIO_BALLOON13_VQ_OUTPUT = 1, /* driver -> device: page lists, stats */
    VIRTIO_BALLOON13_NUM_VQS = 2,
};

/* The statistics of the base protocol: tags 0 to 5. */
#define VB13_NR_BASE_TAGS (VIRTIO_BALLOON13_TAG_MEMTOT + 1)

/* The feature bits the device offers (each a property, on by default). */
#define VB13_ALL_FEATURES \
    ((1ULL << VIRTIO_BALLOON13_F_WITHDRAW) | \
     (1ULL << VIRTIO_BALLOON13_F_REPORTING) | \
     (1ULL << VIRTIO_BALLOON13_F_FULL_STATS) | \
     (1ULL << VIRTIO_BALLOON13_F_PRESSURE_RELEASE))

/*
 * What the device counts, shown by the read-only "counters" property and
 * migrated with the device.  Parallel to the name table in
 * virtio-balloon13.c; the guest errors come last.
 */
typedef enum VirtIOBalloon13Counter {
    VB13_C_RESIZE_REQUESTS,     /* RESIZE requests written to inputq */
    VB13_C_STATS_REQUESTS,      /* STATS requests written to inputq */
    VB13_C_PAGE_LISTS,          /* page lists accepted */
    VB13_C_STATS_MESSAGES,      /* stats messages accepted */
    VB13_C_REJECTED,            /* outputq messages rejected whole */
    VB13_C_BLOCKS_RECEIVED,     /* addresses in accepted page lists */
    VB13_C_BLOCKS_BALLOONED,    /* blocks that entered the balloon */
    VB13_C_BLOCKS_WITHDRAWN,    /* blocks that left it (access, reset) */
    VB13_C_BLOCKS_REBALLOONED,  /* sent again after being withdrawn */
    VB13_C_DISCARDS,            /* ram_block_discard_range() calls */
    VB13_C_DISCARDED_BYTES,
    VB13_C_DISCARD_ERRORS,
    VB13_C_DISCARDS_SKIPPED,    /* blocks kept: discards disabled */
    VB13_C_SCANS,               /* residency passes over the balloon */
    VB13_C_MIGRATION_SKIPPED,   /* bytes left out of a migration */
    VB13_C_DISCARDED_ON_LOAD,   /* bytes discarded after an incoming one */
    VB13_C_WITHDRAW_MESSAGES,   /* WITHDRAW messages accepted */
    VB13_C_REPORTS,             /* REPORT messages accepted */
    VB13_C_REPORTED_BYTES,      /* bytes named by them */
    VB13_C_REPORT_DISCARDED,    /* of those, bytes discarded */
    VB13_C_INTERVAL_REQUESTS,   /* STATS_INTERVAL requests written */
    VB13_C_DISCARDS_REFUSED,    /* blocks kept: RAM that must not be punched */
    /* guest errors */
    VB13_E_SHORT,               /* message shorter than its header */
    VB13_E_LENGTH,              /* not 8 + 8n / 8 + 16n, n >= 1 */
    VB13_E_TYPE,                /* unknown message type */
    VB13_E_OVERSIZE,            /* over 128 Ki addresses or 64 stats */
    VB13_E_WRITABLE,            /* device-writable descriptor on outputq */
    VB13_E_OVERFLOW,            /* address + block size wraps */
    VB13_E_UNALIGNED,           /* address not a multiple of the block */
    VB13_E_OUT_OF_RAM,          /* block not wholly inside guest RAM */
    VB13_E_RESERVED,            /* reserved header field not zero */
    VB13_E_DUPLICATE,           /* block sent while still in the balloon */
    VB13_E_REPEATED,            /* block named twice in one message */
    VB13_E_INPUT_BUFFER,        /* inputq buffer unusable for a request */
    VB13_E_NOT_IN_BALLOON,      /* WITHDRAW entry not in the balloon */
    VB13_E_BAD_RANGE,           /* REPORT range empty, unaligned, wrapping */
    VB13_C_NR
} VirtIOBalloon13Counter;

#define VB13_E_FIRST VB13_E_SHORT

struct VirtIOBalloon13 {
    VirtIODevice parent_obj;

    VirtQueue *inputq;
    VirtQueue *outputq;

    /* properties */
    uint32_t page_bits;         /* 0 until realize: from the RAM backing */
    bool qmp_balloon;           /* owns QMP balloon / query-balloon */
    uint32_t scan_interval_ms;  /* withdrawal scans; 0: only on query */
    uint64_t host_features;     /* VIRTIO_BALLOON13_F_* offered */

    /* what the host asked for */
    uint64_t target;            /* balloon size wanted, bytes */
    bool target_set;            /* a target was ever given */
    bool resize_pending;        /* RESIZE(target) not yet written */
    bool stats_pending;         /* STATS not yet written */
    bool interval_pending;      /* STATS_INTERVAL not yet written */
    int64_t interval_sent;      /* seconds last sent in one; -1: none */

    /*
     * The balloon: one bit per block of guest-physical address space up to
     * the end of guest RAM (device memory included), set while the block
     * is believed to be in the balloon.  A withdrawn block is cleared when
     * a residency scan sees it populated again.
     */
    unsigned long *bitmap;
    int32_t bitmap_nbits;
    uint64_t nset;              /* bits set in bitmap */
    /* Blocks ballooned since the last migration bitmap sync. */
    unsigned long *fresh;
    /*
     * At a migration bitmap sync: blocks of the balloon written since
     * they were left out, and the dirty bits of a window of target pages.
     */
    unsigned long *written;
    unsigned long *dirty_pages;
    /*
     * Without F_WITHDRAW: at most this many blocks can be in the balloon.
     * When the target falls, the driver frees blocks over it without a
     * word and they stay unpopulated; they must not count again when the
     * target rises, until the driver sends them again.
     */
    uint64_t held_max;
    uint64_t scan_cursor;       /* next block of the batched scan */
    QEMUTimer *scan_timer;
    uint8_t *res_vec;           /* residency of a window of pages */
    uint64_t *pagemap_buf;
    int pagemap_fd;
    int64_t reported;           /* guest memory last sent in an event */
    bool discard_disabled_said;
    bool discard_refused_said;
    bool unobservable_said;
    bool migration_hinting;     /* precopy bitmaps exist: hint discards */
    /*
     * The VM is stopped (or has not run since its state was loaded): the
     * bitmap is the balloon as the guest left it, and a block populated
     * meanwhile was populated by QEMU, not withdrawn.
     */
    bool stopped;
    bool rediscard;             /* on resume, discard what was populated */
    /*
     * A migration stopped the VM without a residency scan: its last dirty
     * bitmap sync looks at the blocks written instead.  Until it has, the
     * scan is owed.
     */
    bool scan_owed;
    /* The longest output dispatch and scan batch, timed (x- properties). */
    uint64_t output_max_us;
    uint64_t scan_batch_max_us;
    NotifierWithReturn precopy_notifier;

    /* guest statistics (virtio-balloon's "guest-stats" semantics) */
    uint64_t stats[VIRTIO_BALLOON13_TAG_NR];
    int64_t stats_last_update;
    int64_t stats_poll_interval;
    QEMUTimer *stats_timer;

    bool hold_output;           /* testing: leave outputq alone */
    bool pin_ram;               /* testing: disable discards as VFIO */
    bool pinned;                /* ram_block_discard_disable() held */

    uint64_t counters[VB13_C_NR];
    int64_t log_window[VB13_C_NR];  /* when each kind's window started */
    uint32_t logged[VB13_C_NR];     /* lines logged in it, per kind */
    uint32_t counters_nr;           /* VB13_C_NR, for the vmstate */
    QEMUBH *bh;                 /* queue work left for later */

    /*
     * Discards run on a thread of their own, off the BQL: a page list's
     * buffer goes back (done_bh) once its discards are done.  jobs and
     * done hold VB13Job, guarded by job_lock; gen changes on reset,
     * cancelling what is left of older jobs.
     */
    QemuThread job_thread;
    QemuMutex job_lock;
    QemuCond job_cond;          /* a job queued, or quit */
    QemuCond job_idle;          /* a job done */
    GQueue jobs;
    GQueue done;
    bool job_busy;
    bool job_quit;
    uint32_t gen;
    unsigned int inflight;      /* jobs queued or done, not completed */
    GArray *job;                /* the discards of the message at hand */
    QEMUBH *done_bh;
    VMChangeStateEntry *vmstate_entry;
};

#endif
