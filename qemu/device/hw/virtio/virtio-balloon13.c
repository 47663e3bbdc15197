/*
 * Virtio memory balloon, device ID 13 (OASIS VIRTIO-28 proposal)
 *
 * Copyright (c) 2025 The virtio_balloon13 authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/*
 * Theory of operation
 *
 * The guest driver keeps 16-byte request buffers posted on inputq.  The
 * host's wish (QMP "balloon", or the "target-size" property) becomes a
 * RESIZE request carrying the balloon size wanted in bytes; a STATS
 * request asks for the guest's memory statistics.  The driver answers on
 * outputq with page lists (guest-physical addresses of whole blocks of
 * 2^page_bits bytes it gave up) and stats messages.
 *
 * A page list is copied out of the guest, validated as a whole (length,
 * type, alignment, every block inside guest RAM), sorted and coalesced
 * into runs, and every run is discarded with ram_block_discard_range()
 * *before* the buffer goes back used: the driver frees (withdraws) a
 * block only after that, and reuses it without telling the device.  The
 * device learns of a withdrawal when the block is populated again (in
 * private RAM, with anything but zeros: the host fills holes there): a
 * residency scan (of the backing file, or of QEMU's mapping, see "residency"
 * below; batched on a timer, in full on query-balloon) clears the block
 * from the balloon bitmap.  Migration is kept away from the balloon
 * (below); what QEMU populates while the VM is stopped (saving a snapshot,
 * dump-guest-memory) is not a withdrawal, and goes back to the host before
 * the VM runs again (vb13_vm_state_change()).
 *
 * What the balloon holds is then the received blocks still unpopulated,
 * capped by the target: a deflate frees blocks without a word, and the
 * driver frees them as soon as the target falls.
 *
 * If discards are disabled (e.g. VFIO pins all guest RAM), the device says
 * so once and keeps accepting and counting page lists; it cannot see
 * withdrawals any more, and reports the smaller of what it received and
 * the target.
 *
 * Migration: the bitmap, target, pending requests, stats and counters go in
 * the vmstate; the queues migrate with the virtio core.  On the source,
 * after each dirty bitmap sync, ballooned blocks that are still unpopulated
 * are cleared from the migration bitmap (qemu_guest_free_page_hint(), as
 * free page hinting does), so precopy neither reads them (which would
 * populate shared memory) nor sends them; a block the guest writes after
 * that is dirty at the next sync, and checked for a withdrawal then.  The
 * vmstate is saved with the VM stopped, after a final residency scan or
 * (4 KiB blocks) a final sync that checks the blocks written, and the
 * destination discards every block in the balloon when it loads it, so
 * whatever an earlier iteration sent for a block that was ballooned later
 * is dropped too.  With postcopy all of this is skipped, as for free page
 * hinting: a ballooned page the destination faults on must come from the
 * source.
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/host-utils.h"
#include "qemu/iov.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qapi/qapi-events-machine.h"
#include "qapi/qapi-visit-virtio.h"
#include "qapi/visitor.h"
#include "hw/boards.h"
#include "hw/qdev-properties.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-balloon13.h"
#include "system/address-spaces.h"
#include "system/memory.h"
#include "system/ramblock.h"
#include "system/runstate.h"
#include "migration/misc.h"
#include "migration/vmstate.h"
#include "system/balloon.h"
#include "system/hostmem.h"
#include "exec/target_page.h"
#include "hw/virtio/virtio-pmem.h"
#include "trace.h"

/* Queue sizes: the driver posts 8 request buffers and 4 page lists. */
#define VB13_QUEUE_SIZE         128
/*
 * Limit: a message of at most 1 MiB of entries (a page list of 128 Ki
 * blocks, 512 MiB of 4 KiB blocks; the driver sends at most 8192 at once,
 * and the contract has every device accept up to 64 KiB).  Longer messages
 * are rejected unread, so one message costs the device at most a 1 MiB
 * copy.
 */
#define VB13_MAX_PAGES          (128 * KiB)
#define VB13_MAX_MSG_BYTES      (8 + 8 * VB13_MAX_PAGES)
/*
 * Work per dispatch: up to 16 messages or 1 MiB of them (16 of the driver's
 * 64 KiB page lists); the rest wait for a bottom half.
 */
#define VB13_MSGS_PER_DISPATCH  16
#define VB13_BYTES_PER_DISPATCH (1 * MiB)
/* Host pages per mincore() or pagemap read: 64 MiB of 4 KiB pages. */
#define VB13_WINDOW_PAGES       16384
/*
 * Target pages whose migration dirty bits are read at once: 1 GiB of 4 KiB
 * pages, 32 KiB of bitmap.
 */
#define VB13_DIRTY_WINDOW_PAGES (256 * KiB)
/* Delay before the next batch of an unfinished scan pass. */
#define VB13_SCAN_NEXT_BATCH_MS 10
#define VB13_SCAN_INTERVAL_MS   1000
/* Guest errors logged per kind and minute before the log goes quiet. */
#define VB13_LOG_BURST          10
#define VB13_LOG_WINDOW_NS      (60 * NANOSECONDS_PER_SECOND)
/*
 * Time one timer-driven scan batch may take before it yields the BQL (the
 * cost is syscalls, not blocks: a balloon of alternating blocks costs one
 * per block).
 */
#define VB13_SCAN_BUDGET_NS     (2 * SCALE_MS)
/*
 * Blocks looked at between two looks at the clock: 64 lseek() calls of a
 * fragmented balloon on shared memory are about 0.1 ms (1024 were 11 ms,
 * past the budget five times).
 */
#define VB13_SCAN_CLOCK_BLOCKS  64
/* Supported blocks: 4 KiB (one x86 page) to 1 GiB (a gigantic page). */
#define VB13_MIN_PAGE_BITS      12
#define VB13_MAX_PAGE_BITS      30

static const char *const vb13_counter_names[VB13_C_NR] = {
    [VB13_C_RESIZE_REQUESTS] = "resize-requests",
    [VB13_C_STATS_REQUESTS] = "stats-requests",
    [VB13_C_PAGE_LISTS] = "page-lists",
    [VB13_C_STATS_MESSAGES] = "stats-messages",
    [VB13_C_REJECTED] = "rejected-messages",
    [VB13_C_BLOCKS_RECEIVED] = "blocks-received",
    [VB13_C_BLOCKS_BALLOONED] = "blocks-ballooned",
    [VB13_C_BLOCKS_WITHDRAWN] = "blocks-withdrawn",
    [VB13_C_BLOCKS_REBALLOONED] = "blocks-reballooned",
    [VB13_C_DISCARDS] = "discards",
    [VB13_C_DISCARDED_BYTES] = "discarded-bytes",
    [VB13_C_DISCARD_ERRORS] = "discard-errors",
    [VB13_C_DISCARDS_SKIPPED] = "discards-skipped",
    [VB13_C_SCANS] = "scans",
    [VB13_C_MIGRATION_SKIPPED] = "migration-skipped-bytes",
    [VB13_C_DISCARDED_ON_LOAD] = "discarded-on-load-bytes",
    [VB13_C_WITHDRAW_MESSAGES] = "withdraw-messages",
    [VB13_C_REPORTS] = "reports",
    [VB13_C_REPORTED_BYTES] = "reported-bytes",
    [VB13_C_REPORT_DISCARDED] = "report-discarded-bytes",
    [VB13_C_INTERVAL_REQUESTS] = "interval-requests",
    [VB13_C_DISCARDS_REFUSED] = "discards-refused",
    [VB13_E_SHORT] = "short",
    [VB13_E_LENGTH] = "bad-length",
    [VB13_E_TYPE] = "unknown-type",
    [VB13_E_OVERSIZE] = "oversize",
    [VB13_E_WRITABLE] = "writable-descriptor",
    [VB13_E_OVERFLOW] = "overflow",
    [VB13_E_UNALIGNED] = "unaligned",
    [VB13_E_OUT_OF_RAM] = "out-of-ram",
    [VB13_E_RESERVED] = "reserved-nonzero",
    [VB13_E_DUPLICATE] = "duplicate-block",
    [VB13_E_REPEATED] = "repeated-in-message",
    [VB13_E_INPUT_BUFFER] = "bad-input-buffer",
    [VB13_E_NOT_IN_BALLOON] = "withdraw-not-in-balloon",
    [VB13_E_BAD_RANGE] = "bad-report-range",
};

/*
 * virtio-balloon's names for the same statistics, for "guest-stats" (so
 * that libvirt's dommemstat finds them), and two of our own for PSI.
 */
static const char *const vb13_stat_names[VIRTIO_BALLOON13_TAG_NR] = {
    [VIRTIO_BALLOON13_TAG_SWAP_IN] = "stat-swap-in",
    [VIRTIO_BALLOON13_TAG_SWAP_OUT] = "stat-swap-out",
    [VIRTIO_BALLOON13_TAG_MAJFLT] = "stat-major-faults",
    [VIRTIO_BALLOON13_TAG_MINFLT] = "stat-minor-faults",
    [VIRTIO_BALLOON13_TAG_MEMFREE] = "stat-free-memory",
    [VIRTIO_BALLOON13_TAG_MEMTOT] = "stat-total-memory",
    [VIRTIO_BALLOON13_TAG_AVAIL] = "stat-available-memory",
    [VIRTIO_BALLOON13_TAG_CACHES] = "stat-disk-caches",
    [VIRTIO_BALLOON13_TAG_HTLB_PGALLOC] = "stat-htlb-pgalloc",
    [VIRTIO_BALLOON13_TAG_HTLB_PGFAIL] = "stat-htlb-pgfail",
    [VIRTIO_BALLOON13_TAG_OOM_KILL] = "stat-oom-kills",
    [VIRTIO_BALLOON13_TAG_ALLOC_STALL] = "stat-alloc-stalls",
    [VIRTIO_BALLOON13_TAG_ASYNC_SCAN] = "stat-async-scans",
    [VIRTIO_BALLOON13_TAG_DIRECT_SCAN] = "stat-direct-scans",
    [VIRTIO_BALLOON13_TAG_ASYNC_RECLAIM] = "stat-async-reclaims",
    [VIRTIO_BALLOON13_TAG_DIRECT_RECLAIM] = "stat-direct-reclaims",
    [VIRTIO_BALLOON13_TAG_PSI_SOME_US] = "stat-psi-some-us",
    [VIRTIO_BALLOON13_TAG_PSI_FULL_US] = "stat-psi-full-us",
};

static bool vb13_has(VirtIOBalloon13 *s, unsigned int bit)
{
    return virtio_vdev_has_feature(VIRTIO_DEVICE(s), bit);
}

/* F_WITHDRAW negotiated: the balloon is counted from messages alone. */
static bool vb13_by_message(VirtIOBalloon13 *s)
{
    return vb13_has(s, VIRTIO_BALLOON13_F_WITHDRAW);
}

static uint64_t vb13_block_size(VirtIOBalloon13 *s)
{
    return 1ULL << s->page_bits;
}

static ram_addr_t vb13_ram_size(void)
{
    MachineState *ms = MACHINE(qdev_get_machine());

    if (ms->device_memory) {
        return ms->ram_size + ms->device_memory->dimm_size;
    }
    return ms->ram_size;
}

/* Count a guest mistake; log the first few of each kind. */
static void G_GNUC_PRINTF(3, 4)
vb13_guest_error(VirtIOBalloon13 *s, VirtIOBalloon13Counter kind,
                 const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    s->counters[kind]++;
    if (now - s->log_window[kind] >= VB13_LOG_WINDOW_NS) {
        s->log_window[kind] = now;
        s->logged[kind] = 0;
    }
    if (s->logged[kind] >= VB13_LOG_BURST) {
        return;
    }
    s->logged[kind]++;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    qemu_log_mask(LOG_GUEST_ERROR, "virtio-balloon13: %s: %s%s\n",
                  vb13_counter_names[kind], msg,
                  s->logged[kind] == VB13_LOG_BURST ?
                  " (further ones this minute are counted, not logged)" :
                  "");
}

/* ---- guest RAM ----------------------------------------------------------- */

/*
 * Guest RAM is the machine's RAM (or, with NUMA memdevs, the backends in
 * its container) and the DIMMs in device memory.  ROM, RAM devices (VFIO
 * BARs), ivshmem and video memory are not, nor is memory a RamDiscardManager
 * (virtio-mem) owns: discarding it is that device's business.
 */
static bool vb13_is_guest_ram(MemoryRegion *mr)
{
    MachineState *ms = MACHINE(qdev_get_machine());

    if (!memory_region_is_ram(mr) || memory_region_is_ram_device(mr) ||
        memory_region_is_rom(mr) || memory_region_is_romd(mr) ||
        mr->readonly || memory_region_has_ram_discard_manager(mr)) {
        return false;
    }
    if (mr == ms->ram || (ms->ram && mr->container == ms->ram)) {
        return true;
    }
    return ms->device_memory && mr->container == &ms->device_memory->mr;
}

/* Where a stretch of guest-physical memory lives on the host. */
typedef struct VB13Span {
    uint64_t gpa;
    uint64_t len;               /* bytes, whole blocks */
    MemoryRegion *mr;
    hwaddr mr_offset;
    RAMBlock *rb;
    uint8_t *host;
} VB13Span;

/*
 * The guest RAM holding [gpa, gpa + len), or as much of its start as one
 * memory region holds, rounded down to whole blocks.  Returns false if gpa
 * is not in guest RAM or less than a block of it is.  Called with the BQL
 * held; the span stays valid until the memory map next changes.
 */
static bool vb13_span(VirtIOBalloon13 *s, uint64_t gpa, uint64_t len,
                      VB13Span *sp)
{
    MemoryRegionSection sec;
    uint64_t got;
    bool ok;

    sec = memory_region_find(get_system_memory(), gpa, len);
    if (!sec.mr) {
        return false;
    }
    got = QEMU_ALIGN_DOWN(int128_get64(sec.size), vb13_block_size(s));
    /* A read-only view of RAM (e.g. shadowed BIOS) is not for ballooning. */
    ok = sec.offset_within_address_space == gpa && got && !sec.readonly &&
         vb13_is_guest_ram(sec.mr);
    if (ok) {
        sp->gpa = gpa;
        sp->len = got;
        sp->mr = sec.mr;
        sp->mr_offset = sec.offset_within_region;
        sp->rb = sec.mr->ram_block;
        sp->host = (uint8_t *)memory_region_get_ram_ptr(sec.mr) +
                   sec.offset_within_region;
    }
    memory_region_unref(sec.mr);
    return ok;
}

typedef struct VB13RamLayout {
    uint64_t end;               /* first byte after the last guest RAM */
    uint64_t page_size;         /* largest page size backing it */
} VB13RamLayout;

static bool vb13_layout_cb(Int128 start, Int128 len, const MemoryRegion *mr,
                           hwaddr offset_in_region, void *opaque)
{
    VB13RamLayout *l = opaque;
    /* The memory API's predicates take no const, they don't write. */
    MemoryRegion *m = (MemoryRegion *)mr;

    if (vb13_is_guest_ram(m)) {
        l->end = MAX(l->end, int128_get64(int128_add(start, len)));
        l->page_size = MAX(l->page_size, qemu_ram_pagesize(m->ram_block));
    }
    return false;
}

static void vb13_ram_layout(VB13RamLayout *l)
{
    MachineState *ms = MACHINE(qdev_get_machine());

    l->end = 0;
    l->page_size = qemu_real_host_page_size();
    WITH_RCU_READ_LOCK_GUARD() {
        flatview_for_each_range(address_space_to_flatview(
                                    &address_space_memory),
                                vb13_layout_cb, l);
    }
    /* DIMMs plugged later land in device memory. */
    if (ms->device_memory) {
        l->end = MAX(l->end, ms->device_memory->base +
                     memory_region_size(&ms->device_memory->mr));
    }
}

/* ---- what the device may do with a stretch of guest RAM ----------------- */

static int vb13_find_pmem(Object *obj, void *opaque)
{
    VirtIOPMEM *pmem = (VirtIOPMEM *)object_dynamic_cast(obj,
                                                         TYPE_VIRTIO_PMEM);
    MemoryRegion *mr = opaque;

    return pmem && pmem->memdev &&
           host_memory_backend_get_memory(pmem->memdev) == mr;
}

/*
 * May the device discard (give back to the host) a span's memory?  Not
 * persistent memory (an NVDIMM, a virtio-pmem device's backing file, a
 * backend with pmem=on), nor a file QEMU maps read-only, nor a named file
 * it maps privately (a template: punching a hole would change the file
 * under its other users; -mem-path's unlinked temporary file is fine), nor
 * pages larger than a block (a DIMM plugged later with bigger pages).
 * Blocks there still count as ballooned; they just stay populated.
 */
static bool vb13_may_discard(VirtIOBalloon13 *s, const VB13Span *sp)
{
    MachineState *ms = MACHINE(qdev_get_machine());
    RAMBlock *rb = sp->rb;
    struct stat st;

    if (memory_region_is_nonvolatile(sp->mr) || (rb->flags & RAM_PMEM) ||
        (rb->flags & RAM_READONLY_FD) ||
        qemu_ram_pagesize(rb) > vb13_block_size(s)) {
        return false;
    }
    if (rb->fd >= 0 && !qemu_ram_is_shared(rb) &&
        (fstat(rb->fd, &st) || st.st_nlink)) {
        return false;
    }
    if (ms->device_memory && sp->mr->container == &ms->device_memory->mr &&
        object_child_foreach_recursive(object_get_root(), vb13_find_pmem,
                                       sp->mr)) {
        return false;
    }
    return true;
}

/*
 * Can residency tell, for this RAM block, that the guest withdrew a block
 * (without F_WITHDRAW)?  Not through mincore() where other processes map
 * the memory (shared hugetlbfs: it sees only QEMU's own page tables), nor
 * through mincore() instead of pagemap for private memory (it misses
 * swapped-out pages), nor for shared memory without a file to ask.
 */
static bool vb13_residency_trusted(VirtIOBalloon13 *s, RAMBlock *rb)
{
    bool huge = qemu_ram_pagesize(rb) > qemu_real_host_page_size();

    if (qemu_ram_is_shared(rb)) {
        return !huge && rb->fd >= 0;
    }
    return huge || s->pagemap_fd >= 0;
}

/*
 * May the blocks of this RAM block that are in the balloon be left out of
 * a migration (and discarded when it is loaded)?  Only where the device
 * knows for sure the guest is not using them: from WITHDRAW messages, or
 * from residency it can trust.  Never for RAM migration leaves alone
 * (x-ignore-shared, cpr-transfer): it has no dirty bitmap to clear, and
 * the destination maps the very same memory.
 */
static bool vb13_may_skip(VirtIOBalloon13 *s, RAMBlock *rb)
{
    if (migrate_ram_is_ignored(rb)) {
        return false;
    }
    if (vb13_by_message(s) || vb13_residency_trusted(s, rb)) {
        return true;
    }
    if (!s->unobservable_said) {
        warn_report("virtio-balloon13: RAM block '%s' can be written by "
                    "means the device can't see (%s): its ballooned blocks "
                    "are migrated as any other memory; the guest driver "
                    "can avoid this with explicit withdrawal", rb->idstr,
                    qemu_ram_is_shared(rb) ? "shared, and residency comes "
                    "from QEMU's own mapping only" : "no /proc/self/pagemap");
        s->unobservable_said = true;
    }
    return false;
}

/* ---- residency: withdraw by access --------------------------------------- */

static void vb13_drain(VirtIOBalloon13 *s);

/*
 * Whether a block is populated again (withdrawn), asked so that a page
 * swapped out or written through another mapping still counts: a block
 * wrongly taken as unpopulated would be left out of a migration and
 * discarded on the destination.  Each way answers "populated" when in
 * doubt.
 *
 * - Shared memory with a file (memfd, tmpfs, files): the file itself,
 *   lseek(SEEK_DATA) (swapped shmem pages and writes through other
 *   mappings, e.g. a vhost-user back end, are data).  One call skips a
 *   whole run of holes.
 * - hugetlbfs: mincore() on our mapping (huge pages are never swapped).
 * - Private memory (anonymous, MAP_PRIVATE files): /proc/self/pagemap,
 *   present or swapped.
 */
typedef enum VB13ResidencyWay {
    VB13_RES_FILE,
    VB13_RES_MINCORE,
    VB13_RES_PAGEMAP,
} VB13ResidencyWay;

typedef struct VB13Residency {
    VirtIOBalloon13 *s;
    VB13ResidencyWay way;
    uint8_t *base;              /* the span's first byte, page aligned */
    uint64_t npages;
    /* VB13_RES_FILE */
    int fd;
    off_t file_base;            /* file offset of base */
    off_t data_from, data;      /* lseek(data_from, SEEK_DATA); -1: none */
    bool data_known;
    /* VB13_RES_MINCORE, VB13_RES_PAGEMAP: a window of pages */
    uint64_t first, n;
    /* Private RAM: the host fills zeros in (vb13_scan_run()) */
    bool host_zeros;
} VB13Residency;

static void vb13_residency_init(VB13Residency *r, VirtIOBalloon13 *s,
                                const VB13Span *sp)
{
    uintptr_t pg = qemu_real_host_page_size();

    r->s = s;
    r->base = sp->host;         /* block aligned, so page aligned */
    r->npages = DIV_ROUND_UP(sp->len, pg);
    r->first = r->n = 0;
    r->data_known = false;
    r->fd = qemu_ram_get_fd(sp->rb);
    if (qemu_ram_pagesize(sp->rb) > pg) {
        r->way = VB13_RES_MINCORE;
    } else if (r->fd >= 0 && qemu_ram_is_shared(sp->rb)) {
        r->way = VB13_RES_FILE;
        r->file_base = sp->rb->fd_offset + sp->mr_offset;
    } else {
        r->way = s->pagemap_fd >= 0 ? VB13_RES_PAGEMAP : VB13_RES_MINCORE;
    }
    r->host_zeros = r->way == VB13_RES_PAGEMAP;
}

/* Load the window of pages from p on (mincore or pagemap). */
static void vb13_residency_window(VB13Residency *r, uint64_t p)
{
    uintptr_t pg = qemu_real_host_page_size();
    VirtIOBalloon13 *s = r->s;
    uint8_t *addr = r->base + p * pg;
    size_t bytes;

    r->first = p;
    r->n = MIN(r->npages - p, VB13_WINDOW_PAGES);
    if (r->way == VB13_RES_MINCORE) {
        if (mincore(addr, r->n * pg, s->res_vec)) {
            memset(s->res_vec, 1, r->n);        /* in doubt: populated */
        }
        return;
    }
    bytes = r->n * sizeof(uint64_t);
    if (pread(s->pagemap_fd, s->pagemap_buf, bytes,
              (uintptr_t)addr / pg * sizeof(uint64_t)) != (ssize_t)bytes) {
        memset(s->res_vec, 1, r->n);
        return;
    }
    for (uint64_t i = 0; i < r->n; i++) {
        /* bit 63: present, bit 62: swapped */
        s->res_vec[i] = (s->pagemap_buf[i] >> 62) != 0;
    }
}

/* Is any page of the block at host (inside r's span) populated? */
static bool vb13_block_resident(VB13Residency *r, uint8_t *host)
{
    uintptr_t pg = qemu_real_host_page_size();
    uint64_t bs = vb13_block_size(r->s);
    uint64_t p = (host - r->base) / pg;
    uint64_t end = p + bs / pg;

    if (r->way == VB13_RES_FILE) {
        off_t start = r->file_base + (host - r->base);

        if (!r->data_known || start < r->data_from ||
            (r->data >= 0 && r->data < start)) {
            r->data = lseek(r->fd, start, SEEK_DATA);
            if (r->data < 0 && errno != ENXIO) {
                r->data_known = false;
                return true;
            }
            r->data_from = start;
            r->data_known = true;   /* -1 (ENXIO): no data from here on */
        }
        return r->data >= 0 && r->data < start + bs;
    }
    for (; p < end; p++) {
        if (p < r->first || p >= r->first + r->n) {
            vb13_residency_window(r, p);
        }
        if (r->s->res_vec[p - r->first] & 1) {
            return true;
        }
    }
    return false;
}

/*
 * Take one block out of the balloon bitmap: the guest has it back.  While a
 * migration leaves ballooned blocks out, this one must be sent again.
 */
static void vb13_withdraw(VirtIOBalloon13 *s, uint64_t bit)
{
    VB13Span sp;

    clear_bit(bit, s->bitmap);
    s->nset--;
    s->counters[VB13_C_BLOCKS_WITHDRAWN]++;
    if (s->migration_hinting &&
        vb13_span(s, bit << s->page_bits, vb13_block_size(s), &sp)) {
        memory_region_set_dirty(sp.mr, sp.mr_offset, sp.len);
    }
}

static bool vb13_past(int64_t deadline)
{
    return deadline && qemu_clock_get_ns(QEMU_CLOCK_REALTIME) >= deadline;
}

/*
 * A scan's place: the guest RAM span it is in and that span's residency
 * state, kept from one run of set bits to the next, so that a fragmented
 * balloon costs a memory map lookup per span, not per run.
 */
typedef struct VB13Scan {
    VB13Span sp;                /* sp.len 0: none yet */
    VB13Residency r;
} VB13Scan;

/*
 * Scan the blocks [bit, bit + n) of the bitmap, all set, for withdrawals,
 * until the deadline (0: none).  Returns the first block not looked at.
 *
 * In private RAM (anonymous memory, with transparent huge pages) a block
 * is withdrawn once it is populated with something other than zeros.  The
 * host populates ballooned blocks there with zeros on its own while the
 * guest runs: khugepaged fills the holes of a 2 MiB range when it
 * collapses it into a huge page, and a fault in an emptied range may
 * allocate a whole huge page for one block.  Such a block is still the
 * balloon's.  A block the guest withdrew and left all zeros stays counted
 * until it writes something else; leaving it out of a migration (and
 * discarding it on the destination) loses nothing, since it reads zeros
 * there too, and a write after the dirty bitmap sync is sent anyway.
 */
static uint64_t vb13_scan_run(VirtIOBalloon13 *s, VB13Scan *c, uint64_t bit,
                              uint64_t n, int64_t deadline)
{
    uint64_t bs = vb13_block_size(s);
    uint64_t end = bit + n;

    while (bit < end) {
        uint64_t gpa = bit << s->page_bits;
        uint64_t k, nb, first;

        if (!c->sp.len || gpa < c->sp.gpa || gpa - c->sp.gpa >= c->sp.len) {
            uint64_t ram_end = (uint64_t)s->bitmap_nbits << s->page_bits;

            if (!vb13_span(s, gpa, ram_end - gpa, &c->sp)) {
                /* No longer guest RAM (a DIMM went away): not ballooned. */
                c->sp.len = 0;
                if (test_bit(bit, s->bitmap)) {
                    vb13_withdraw(s, bit);
                }
                bit++;
                continue;
            }
            vb13_residency_init(&c->r, s, &c->sp);
        }
        first = (gpa - c->sp.gpa) / bs;
        nb = MIN(end - bit, c->sp.len / bs - first);
        for (k = 0; k < nb; k++) {
            if (k % VB13_SCAN_CLOCK_BLOCKS == VB13_SCAN_CLOCK_BLOCKS - 1 &&
                vb13_past(deadline)) {
                return bit + k;
            }
            if (test_bit(bit + k, s->bitmap) &&
                vb13_block_resident(&c->r, c->sp.host + (first + k) * bs) &&
                !(c->r.host_zeros &&
                  buffer_is_zero(c->sp.host + (first + k) * bs, bs))) {
                vb13_withdraw(s, bit + k);
            }
        }
        bit += nb;
    }
    return bit;
}

/*
 * Whether residency tells withdrawals: not with F_WITHDRAW (the messages
 * do), not while discards are disabled (nothing is unpopulated), and not
 * while the VM is stopped (the guest can't withdraw; QEMU itself populates
 * guest RAM when it saves a snapshot or dumps it).
 */
static bool vb13_can_see_withdrawals(VirtIOBalloon13 *s)
{
    return !vb13_by_message(s) && !ram_block_discard_is_disabled() &&
           !s->stopped;
}

/*
 * Look for withdrawn blocks, from the scan cursor on, until the deadline
 * (0: none) or the bitmap ends.  Returns true if the pass is complete.
 * With F_WITHDRAW there is nothing to look for: the messages say it all.
 */
static bool vb13_scan(VirtIOBalloon13 *s, int64_t deadline)
{
    uint64_t nbits = s->bitmap_nbits;
    uint64_t i = s->scan_cursor;
    VB13Scan c = { .sp.len = 0 };

    if (!vb13_can_see_withdrawals(s)) {
        return true;
    }
    while ((i = find_next_bit(s->bitmap, nbits, i)) < nbits) {
        uint64_t e = find_next_zero_bit(s->bitmap, nbits, i);

        i = vb13_scan_run(s, &c, i, e - i, deadline);
        if (i < e || vb13_past(deadline)) {
            break;
        }
    }
    if (i >= nbits || find_next_bit(s->bitmap, nbits, i) >= nbits) {
        s->counters[VB13_C_SCANS]++;
        s->scan_cursor = 0;
        return true;
    }
    s->scan_cursor = i;
    return false;
}

/* A whole pass now (it also completes the timer's batched one). */
static void vb13_scan_all(VirtIOBalloon13 *s)
{
    vb13_drain(s);
    s->scan_cursor = 0;
    vb13_scan(s, 0);
}

/*
 * The scan a stop for migration left to the migration's last dirty bitmap
 * sync (vb13_vm_state_change()), if that sync did not look.  QEMU has not
 * read the balloon since the stop: what is populated now, the guest
 * withdrew.
 */
static void vb13_pay_scan(VirtIOBalloon13 *s)
{
    if (!s->scan_owed) {
        return;
    }
    s->scan_owed = false;
    s->stopped = false;
    vb13_scan_all(s);
    s->stopped = true;
}

/*
 * Bytes the balloon holds, as far as the device can tell: the blocks it
 * received that are still unpopulated, but no more than the target.  When
 * the target falls, the driver frees the excess at once and says nothing;
 * those blocks stay unpopulated until the guest uses them, so only the
 * target bounds them.  (A driver that kept more than its target would only
 * be shorting itself.)
 */
static uint64_t vb13_in_balloon(VirtIOBalloon13 *s)
{
    if (vb13_by_message(s)) {
        return s->nset << s->page_bits;
    }
    return MIN(s->nset, s->held_max) << s->page_bits;
}

/* Send BALLOON_CHANGE if the guest memory the balloon leaves moved. */
static void vb13_size_changed(VirtIOBalloon13 *s)
{
    ram_addr_t ram = vb13_ram_size();
    uint64_t in = MIN(vb13_in_balloon(s), ram);
    int64_t actual = ram - in;

    if (actual != s->reported) {
        s->reported = actual;
        trace_virtio_balloon13_size(in, actual);
        if (s->qmp_balloon) {
            qapi_event_send_balloon_change(actual);
        }
    }
}

static void vb13_arm_scan(VirtIOBalloon13 *s, int64_t ms)
{
    if (s->scan_interval_ms && s->nset && vb13_can_see_withdrawals(s) &&
        !timer_pending(s->scan_timer)) {
        timer_mod(s->scan_timer,
                  qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL) + ms);
    }
}

static void vb13_scan_timer_cb(void *opaque)
{
    VirtIOBalloon13 *s = opaque;
    int64_t t0;
    bool done;

    if (s->inflight) {
        /* Blocks queued for discard still look populated: later. */
        vb13_arm_scan(s, VB13_SCAN_NEXT_BATCH_MS);
        return;
    }
    t0 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    done = vb13_scan(s, t0 + VB13_SCAN_BUDGET_NS);
    vb13_size_changed(s);
    vb13_arm_scan(s, done ? s->scan_interval_ms : VB13_SCAN_NEXT_BATCH_MS);
    s->scan_batch_max_us = MAX(s->scan_batch_max_us,
                               (qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - t0) /
                               SCALE_US);
}

/* ---- inputq: requests to the guest --------------------------------------- */

static bool vb13_driver_ready(VirtIOBalloon13 *s)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);

    return vdev->vm_running && (vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
           virtio_queue_ready(s->inputq) && !vdev->broken;
}

/* Write pending requests into the buffers the driver posted. */
static void vb13_flush_requests(VirtIOBalloon13 *s)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    bool pushed = false;

    if (!vb13_driver_ready(s)) {
        return;
    }
    while (s->resize_pending || s->interval_pending || s->stats_pending) {
        struct virtio_balloon13_req req = {};
        VirtQueueElement *elem;

        elem = virtqueue_pop(s->inputq, sizeof(VirtQueueElement));
        if (!elem) {
            break;
        }
        if (elem->out_num ||
            iov_size(elem->in_sg, elem->in_num) < sizeof(req)) {
            vb13_guest_error(s, VB13_E_INPUT_BUFFER,
                             "inputq buffer with %zu writable and %zu "
                             "readable bytes, returned unused",
                             iov_size(elem->in_sg, elem->in_num),
                             iov_size(elem->out_sg, elem->out_num));
            virtqueue_push(s->inputq, elem, 0);
            g_free(elem);
            pushed = true;
            continue;
        }
        /* The target first: statistics can wait. */
        if (s->resize_pending) {
            req.type = cpu_to_le32(VIRTIO_BALLOON13_REQ_RESIZE);
            req.value = cpu_to_le64(s->target);
            s->resize_pending = false;
            s->counters[VB13_C_RESIZE_REQUESTS]++;
        } else if (s->interval_pending) {
            req.type = cpu_to_le32(VIRTIO_BALLOON13_REQ_STATS_INTERVAL);
            req.value = cpu_to_le64(s->stats_poll_interval * 1000);
            s->interval_pending = false;
            s->interval_sent = s->stats_poll_interval;
            s->counters[VB13_C_INTERVAL_REQUESTS]++;
        } else {
            req.type = cpu_to_le32(VIRTIO_BALLOON13_REQ_STATS);
            s->stats_pending = false;
            s->counters[VB13_C_STATS_REQUESTS]++;
        }
        trace_virtio_balloon13_request(le32_to_cpu(req.type),
                                       le64_to_cpu(req.value));
        iov_from_buf(elem->in_sg, elem->in_num, 0, &req, sizeof(req));
        virtqueue_push(s->inputq, elem, sizeof(req));
        g_free(elem);
        pushed = true;
    }
    if (pushed) {
        virtio_notify(vdev, s->inputq);
    }
}

static void vb13_handle_input(VirtIODevice *vdev, VirtQueue *vq)
{
    vb13_flush_requests(VIRTIO_BALLOON13(vdev));
}

static void vb13_set_target(VirtIOBalloon13 *s, uint64_t bytes)
{
    /* The driver frees what is over the new target, without a word. */
    s->held_max = MIN(s->held_max, bytes >> s->page_bits);
    s->target = bytes;
    s->target_set = true;
    s->resize_pending = true;
    trace_virtio_balloon13_target(bytes);
    vb13_flush_requests(s);
    /* Without discards, the reported size follows the target. */
    vb13_size_changed(s);
}

/* ---- outputq: page lists ------------------------------------------------- */

static int vb13_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* ---- discards, off the BQL ---------------------------------------------- */

/* One range to discard. */
typedef struct VB13Discard {
    MemoryRegion *mr;           /* referenced while queued */
    RAMBlock *rb;
    ram_addr_t start;           /* in rb */
    size_t len;
    uint8_t *host;
    bool hint;                  /* leave it out of the running migration */
    bool report;                /* a REPORT range, not ballooned */
} VB13Discard;

/* A message whose buffer goes back once its discards are done. */
typedef struct VB13Job {
    VirtQueueElement *elem;
    GArray *discards;           /* VB13Discard */
    uint32_t gen;
    /* results, written by the thread */
    uint64_t calls, bytes, errors, hinted, reported;
} VB13Job;

/*
 * Discard one span of guest RAM: whole host pages inside it, queued on the
 * message at hand.  With hint, a migration in progress leaves them out.
 */
static void vb13_discard(VirtIOBalloon13 *s, const VB13Span *sp, bool hint,
                         bool report)
{
    uint64_t ps = qemu_ram_pagesize(sp->rb);
    ram_addr_t off = sp->mr_offset;     /* a RAMBlock starts its region */
    ram_addr_t start = QEMU_ALIGN_UP(off, ps);
    ram_addr_t end = QEMU_ALIGN_DOWN(off + sp->len, ps);
    VB13Discard d;

    if (end <= start) {
        return;
    }
    d = (VB13Discard) {
        .mr = sp->mr, .rb = sp->rb, .start = start, .len = end - start,
        .host = sp->host + (start - off), .report = report,
        .hint = hint && s->migration_hinting && vb13_may_skip(s, sp->rb),
    };
    /* Runs in one region of one page list mostly follow each other. */
    if (s->job->len) {
        VB13Discard *last = &g_array_index(s->job, VB13Discard,
                                           s->job->len - 1);

        if (last->rb == d.rb && last->start + last->len == d.start &&
            last->hint == d.hint && last->report == d.report) {
            last->len += d.len;
            return;
        }
    }
    memory_region_ref(d.mr);
    g_array_append_val(s->job, d);
}

/* The discard thread: one job at a time, in order. */
static void vb13_run_job(VirtIOBalloon13 *s, VB13Job *job)
{
    for (guint i = 0; i < job->discards->len; i++) {
        VB13Discard *d = &g_array_index(job->discards, VB13Discard, i);

        /* A reset cancels what is left. */
        if (qatomic_read(&s->gen) != job->gen) {
            return;
        }
        job->calls++;
        if (ram_block_discard_range(d->rb, d->start, d->len)) {
            /* ram_block_discard_range() has reported it. */
            job->errors++;
            continue;
        }
        job->bytes += d->len;
        if (d->report) {
            job->reported += d->len;
        }
        if (d->hint) {
            /* Don't let this migration read the hole back in. */
            qemu_guest_free_page_hint(d->host, d->len);
            job->hinted += d->len;
        }
    }
}

static void *vb13_job_thread(void *opaque)
{
    VirtIOBalloon13 *s = opaque;

    qemu_mutex_lock(&s->job_lock);
    for (;;) {
        VB13Job *job;

        while (!s->job_quit && g_queue_is_empty(&s->jobs)) {
            qemu_cond_wait(&s->job_cond, &s->job_lock);
        }
        if (s->job_quit) {
            break;
        }
        job = g_queue_pop_head(&s->jobs);
        s->job_busy = true;
        qemu_mutex_unlock(&s->job_lock);
        vb13_run_job(s, job);
        qemu_mutex_lock(&s->job_lock);
        g_queue_push_tail(&s->done, job);
        s->job_busy = false;
        qemu_cond_broadcast(&s->job_idle);
        qemu_bh_schedule(s->done_bh);
    }
    qemu_mutex_unlock(&s->job_lock);
    return NULL;
}

/* Give a finished job's buffer back to the guest (BQL held). */
static void vb13_complete(VirtIOBalloon13 *s, VB13Job *job, bool push)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);

    s->counters[VB13_C_DISCARDS] += job->calls;
    s->counters[VB13_C_DISCARDED_BYTES] += job->bytes;
    s->counters[VB13_C_DISCARD_ERRORS] += job->errors;
    s->counters[VB13_C_MIGRATION_SKIPPED] += job->hinted;
    s->counters[VB13_C_REPORT_DISCARDED] += job->reported;
    for (guint i = 0; i < job->discards->len; i++) {
        memory_region_unref(g_array_index(job->discards, VB13Discard, i).mr);
    }
    g_array_free(job->discards, true);
    if (push && job->gen == s->gen) {
        virtqueue_push(s->outputq, job->elem, 0);
        virtio_notify(vdev, s->outputq);
    }
    g_free(job->elem);
    g_free(job);
    s->inflight--;
}

/* Complete the jobs the thread has finished (BQL held). */
static void vb13_complete_done(VirtIOBalloon13 *s)
{
    VB13Job *job;

    for (;;) {
        WITH_QEMU_LOCK_GUARD(&s->job_lock) {
            job = g_queue_pop_head(&s->done);
        }
        if (!job) {
            break;
        }
        vb13_complete(s, job, true);
    }
}

/*
 * Wait for every queued discard and give the buffers back (BQL held): the
 * thread never takes the BQL.  Before the balloon is looked at whole
 * (scans, migration) and before the VM stops, so that no buffer goes back
 * after guest RAM was saved.
 */
static void vb13_drain(VirtIOBalloon13 *s)
{
    if (!s->inflight) {
        return;
    }
    WITH_QEMU_LOCK_GUARD(&s->job_lock) {
        while (!g_queue_is_empty(&s->jobs) || s->job_busy) {
            qemu_cond_wait(&s->job_idle, &s->job_lock);
        }
    }
    vb13_complete_done(s);
    vb13_size_changed(s);
}

/*
 * Reset: cancel what is queued, wait for the discard in progress, and drop
 * the buffers (the rings are being reset).
 */
static void vb13_cancel_jobs(VirtIOBalloon13 *s)
{
    VB13Job *job;

    qatomic_inc(&s->gen);
    WITH_QEMU_LOCK_GUARD(&s->job_lock) {
        while (s->job_busy) {
            qemu_cond_wait(&s->job_idle, &s->job_lock);
        }
        while ((job = g_queue_pop_head(&s->jobs))) {
            g_queue_push_tail(&s->done, job);
        }
    }
    while (s->inflight) {
        WITH_QEMU_LOCK_GUARD(&s->job_lock) {
            job = g_queue_pop_head(&s->done);
        }
        assert(job);
        vb13_complete(s, job, false);
    }
}

static void vb13_done_bh(void *opaque)
{
    VirtIOBalloon13 *s = opaque;

    vb13_complete_done(s);
    vb13_size_changed(s);
    vb13_arm_scan(s, s->scan_interval_ms);
}

/* Why discards can't happen now; NULL if they can. */
static const char *vb13_discard_inhibited(void)
{
    if (ram_block_discard_is_disabled()) {
        return "disabled";
    }
    /* As virtio-balloon: postcopy can't take concurrent discards. */
    if (migration_in_incoming_postcopy() || migration_in_bg_snapshot()) {
        return "migration";
    }
    return NULL;
}

/*
 * Put the blocks of one span into the balloon and discard them.  A block
 * already there is either back after a withdrawal (populated again) or a
 * guest error (sent twice while in the balloon).
 */
static void vb13_balloon_span(VirtIOBalloon13 *s, const VB13Span *sp,
                              bool discard)
{
    uint64_t bs = vb13_block_size(s);
    uint64_t first = sp->gpa >> s->page_bits;
    uint64_t nb = sp->len / bs;
    VB13Residency r;
    bool scanning = false;

    for (uint64_t k = 0; k < nb; k++) {
        set_bit(first + k, s->fresh);
        if (!test_bit(first + k, s->bitmap)) {
            set_bit(first + k, s->bitmap);
            s->nset++;
            s->held_max++;
            s->counters[VB13_C_BLOCKS_BALLOONED]++;
            continue;
        }
        if (vb13_by_message(s)) {
            /* Not withdrawn since it was sent: the messages say so. */
            vb13_guest_error(s, VB13_E_DUPLICATE,
                             "block 0x%" PRIx64 " is already in the balloon",
                             sp->gpa + k * bs);
            continue;
        }
        if (!scanning) {
            vb13_residency_init(&r, s, sp);
            scanning = true;
        }
        /*
         * Sent again: withdrawn (populated since), or freed unused when
         * the target fell (while the device counts fewer blocks held than
         * it has in the bitmap, any of them may be).
         */
        if (!vb13_can_see_withdrawals(s) || s->held_max < s->nset ||
            vb13_block_resident(&r, sp->host + k * bs)) {
            s->held_max++;
            s->counters[VB13_C_BLOCKS_WITHDRAWN]++;
            s->counters[VB13_C_BLOCKS_BALLOONED]++;
            s->counters[VB13_C_BLOCKS_REBALLOONED]++;
        } else {
            vb13_guest_error(s, VB13_E_DUPLICATE,
                             "block 0x%" PRIx64 " is already in the balloon",
                             sp->gpa + k * bs);
        }
    }
    if (!discard) {
        s->counters[VB13_C_DISCARDS_SKIPPED] += nb;
    } else if (!vb13_may_discard(s, sp)) {
        s->counters[VB13_C_DISCARDS_REFUSED] += nb;
        if (!s->discard_refused_said) {
            warn_report("virtio-balloon13: RAM block '%s' must not be "
                        "discarded (persistent memory, a file mapped "
                        "privately or read-only, or pages larger than a "
                        "block): its ballooned blocks are counted and kept",
                        sp->rb->idstr);
            s->discard_refused_said = true;
        }
    } else {
        vb13_discard(s, sp, true, false);
    }
}

/*
 * The guest RAM span holding the start of [gpa, gpa + len), through a
 * one-entry cache of the last memory region found: a page list's runs
 * mostly fall into the same one.
 */
static bool vb13_map(VirtIOBalloon13 *s, VB13Span *cache, uint64_t gpa,
                     uint64_t len, VB13Span *sp)
{
    uint64_t off;

    if (!cache->len || gpa < cache->gpa || gpa - cache->gpa >= cache->len) {
        uint64_t end = (uint64_t)s->bitmap_nbits << s->page_bits;

        if (!vb13_span(s, gpa, end - gpa, cache)) {
            cache->len = 0;
            return false;
        }
    }
    off = gpa - cache->gpa;
    *sp = *cache;
    sp->gpa = gpa;
    sp->len = MIN(len, cache->len - off);
    sp->mr_offset += off;
    sp->host += off;
    return true;
}

/*
 * Walk the runs of contiguous blocks in the n sorted addresses a[], mapped
 * onto guest RAM spans: checking only (apply false; *bad names a block
 * outside guest RAM, *repeats counts addresses named again), or putting
 * them into the balloon.
 */
static bool vb13_walk_runs(VirtIOBalloon13 *s, const uint64_t *a, uint64_t n,
                           bool apply, bool discard, uint64_t *bad,
                           uint64_t *repeats)
{
    uint64_t bs = vb13_block_size(s);
    VB13Span cache = { .len = 0 }, sp;
    uint64_t i = 0;

    while (i < n) {
        uint64_t start = a[i], len = bs;

        for (i++; i < n && a[i] <= start + len; i++) {
            if (a[i] < start + len) {
                (*repeats)++;
            } else {
                len += bs;
            }
        }
        while (len) {
            if (!vb13_map(s, &cache, start, len, &sp)) {
                *bad = start;
                return false;
            }
            if (apply) {
                vb13_balloon_span(s, &sp, discard);
            }
            start += sp.len;
            len -= sp.len;
        }
    }
    return true;
}

/*
 * Validate a page list's n addresses (little-endian, at le) and apply them.
 * Returns a guest error kind if the message is rejected (nothing applied),
 * or VB13_C_NR; *bad is the offending address.
 */
static VirtIOBalloon13Counter vb13_handle_pages(VirtIOBalloon13 *s,
                                                const uint64_t *le,
                                                uint64_t n, uint64_t *bad)
{
    uint64_t bs = vb13_block_size(s);
    g_autofree uint64_t *a = g_new(uint64_t, n);
    uint64_t i, repeats = 0;
    const char *inhibited;

    for (i = 0; i < n; i++) {
        a[i] = le64_to_cpu(le[i]);
        *bad = a[i];
        if (a[i] > UINT64_MAX - bs) {
            return VB13_E_OVERFLOW;
        }
        if (a[i] & (bs - 1)) {
            return VB13_E_UNALIGNED;
        }
        if ((a[i] >> s->page_bits) >= s->bitmap_nbits) {
            return VB13_E_OUT_OF_RAM;
        }
    }
    qsort(a, n, sizeof(*a), vb13_cmp_u64);
    if (!vb13_walk_runs(s, a, n, false, false, bad, &repeats)) {
        return VB13_E_OUT_OF_RAM;
    }

    if (repeats) {
        vb13_guest_error(s, VB13_E_REPEATED, "%" PRIu64 " of %" PRIu64
                         " addresses repeat within one page list",
                         repeats, n);
        s->counters[VB13_E_REPEATED] += repeats - 1;
    }
    inhibited = vb13_discard_inhibited();
    if (inhibited && !strcmp(inhibited, "disabled") &&
        !s->discard_disabled_said) {
        warn_report("virtio-balloon13: RAM discards are disabled (e.g. by "
                    "VFIO): ballooned memory is counted but not returned "
                    "to the host");
        s->discard_disabled_said = true;
    }
    /* Checked above, so this can't fail half way. */
    vb13_walk_runs(s, a, n, true, !inhibited, bad, &repeats);
    s->counters[VB13_C_PAGE_LISTS]++;
    s->counters[VB13_C_BLOCKS_RECEIVED] += n;
    trace_virtio_balloon13_page_list(n, s->nset);
    return VB13_C_NR;
}

/*
 * WITHDRAW: the driver takes back the n blocks named (little-endian, at le)
 * once this message is returned.  Each valid entry in the balloon leaves
 * it; an invalid one, or one not in the balloon, is a guest error that
 * never stops the others (dropping a whole WITHDRAW would leave guest data
 * out of a migration).
 */
static void vb13_handle_withdraw(VirtIOBalloon13 *s, const uint64_t *le,
                                 uint64_t n)
{
    uint64_t bs = vb13_block_size(s);

    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = le64_to_cpu(le[i]);

        if (a & (bs - 1) || (a >> s->page_bits) >= s->bitmap_nbits ||
            !test_bit(a >> s->page_bits, s->bitmap)) {
            vb13_guest_error(s, VB13_E_NOT_IN_BALLOON, "withdrawn block "
                             "0x%" PRIx64 " is not in the balloon", a);
            continue;
        }
        vb13_withdraw(s, a >> s->page_bits);
    }
    s->counters[VB13_C_WITHDRAW_MESSAGES]++;
    trace_virtio_balloon13_withdraw(n, s->nset);
}

/*
 * REPORT: n ranges of free guest memory (at le), which the device may
 * discard before it returns the message, and never after: the driver may
 * use the memory again at once, without a word.  So it is never ballooned
 * and never left out of a migration.  A bad range rejects the message
 * whole (nothing discarded); *bad is its address.
 */
static VirtIOBalloon13Counter vb13_handle_report(VirtIOBalloon13 *s,
                                                 const uint8_t *buf,
                                                 uint64_t n, uint64_t *bad)
{
    uint64_t bs = vb13_block_size(s);
    uint64_t ram_end = (uint64_t)s->bitmap_nbits << s->page_bits;
    g_autofree struct virtio_balloon13_range *r =
        g_new(struct virtio_balloon13_range, n);
    bool inhibited = vb13_discard_inhibited() != NULL;
    VB13Span sp;

    for (uint64_t i = 0; i < n; i++) {
        memcpy(&r[i], buf + i * sizeof(r[i]), sizeof(r[i]));
        r[i].addr = le64_to_cpu(r[i].addr);
        r[i].len = le64_to_cpu(r[i].len);
        *bad = r[i].addr;
        if (!r[i].len || (r[i].addr | r[i].len) & (bs - 1) ||
            r[i].addr > UINT64_MAX - r[i].len) {
            return VB13_E_BAD_RANGE;
        }
        if (r[i].addr + r[i].len > ram_end) {
            return VB13_E_OUT_OF_RAM;
        }
        for (uint64_t a = r[i].addr; a < r[i].addr + r[i].len;
             a += sp.len) {
            if (!vb13_span(s, a, r[i].addr + r[i].len - a, &sp)) {
                *bad = a;
                return VB13_E_OUT_OF_RAM;
            }
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        s->counters[VB13_C_REPORTED_BYTES] += r[i].len;
        for (uint64_t a = r[i].addr; !inhibited && a < r[i].addr + r[i].len;
             a += sp.len) {
            /* Checked above: each piece is guest RAM. */
            vb13_span(s, a, r[i].addr + r[i].len - a, &sp);
            if (vb13_may_discard(s, &sp)) {
                vb13_discard(s, &sp, false, true);
            }
        }
    }
    s->counters[VB13_C_REPORTS]++;
    trace_virtio_balloon13_report(n, s->counters[VB13_C_REPORTED_BYTES]);
    return VB13_C_NR;
}

/* ---- outputq: stats ------------------------------------------------------ */

static void vb13_stats_reset(VirtIOBalloon13 *s)
{
    for (int i = 0; i < VIRTIO_BALLOON13_TAG_NR; i++) {
        s->stats[i] = -1;
    }
}

static void vb13_handle_stats(VirtIOBalloon13 *s, const uint8_t *buf,
                              uint64_t n)
{
    uint64_t known = vb13_has(s, VIRTIO_BALLOON13_F_FULL_STATS) ?
                     VIRTIO_BALLOON13_TAG_NR : VB13_NR_BASE_TAGS;

    /* A tag left out is one the guest can't determine: -1, as before. */
    vb13_stats_reset(s);
    for (uint64_t i = 0; i < n; i++) {
        struct virtio_balloon13_stat st;

        memcpy(&st, buf + i * sizeof(st), sizeof(st));
        /* Tags this device doesn't know may come from a newer driver. */
        if (le64_to_cpu(st.tag) < known) {
            s->stats[le64_to_cpu(st.tag)] = le64_to_cpu(st.value);
        }
    }
    s->stats_last_update = g_get_real_time() / G_USEC_PER_SEC;
    s->counters[VB13_C_STATS_MESSAGES]++;
    trace_virtio_balloon13_stats(n);
}

/* ---- outputq: messages --------------------------------------------------- */

static void vb13_handle_message(VirtIOBalloon13 *s, VirtQueueElement *elem)
{
    struct virtio_balloon13_resp_hdr hdr;
    VirtIOBalloon13Counter why = VB13_C_NR;
    size_t len = iov_size(elem->out_sg, elem->out_num);
    g_autofree uint8_t *buf = NULL;
    uint64_t n = 0, bad = 0;
    uint32_t type = 0;

    if (elem->in_num) {
        why = VB13_E_WRITABLE;
    } else if (len > VB13_MAX_MSG_BYTES) {
        why = VB13_E_OVERSIZE;
    } else if (len < sizeof(hdr)) {
        why = VB13_E_SHORT;
    } else {
        /* Copy first: the guest may change the buffer under us. */
        buf = g_malloc(len);
        iov_to_buf(elem->out_sg, elem->out_num, 0, buf, len);
        memcpy(&hdr, buf, sizeof(hdr));
        type = le32_to_cpu(hdr.type);
        if (type == VIRTIO_BALLOON13_RESP_PAGES) {
            n = (len - sizeof(hdr)) / sizeof(uint64_t);
            if (!n || (len - sizeof(hdr)) % sizeof(uint64_t)) {
                why = VB13_E_LENGTH;
            }
        } else if (type == VIRTIO_BALLOON13_RESP_WITHDRAW &&
                   vb13_has(s, VIRTIO_BALLOON13_F_WITHDRAW)) {
            n = (len - sizeof(hdr)) / sizeof(uint64_t);
            if (!n) {
                why = VB13_E_LENGTH;
            } else if ((len - sizeof(hdr)) % sizeof(uint64_t)) {
                /*
                 * The complete entries are still withdrawn: the guest uses
                 * those blocks once the buffer is back.
                 */
                vb13_guest_error(s, VB13_E_LENGTH, "WITHDRAW of %zu bytes: "
                                 "the %" PRIu64 " complete entries taken",
                                 len, n);
            }
        } else if (type == VIRTIO_BALLOON13_RESP_REPORT &&
                   vb13_has(s, VIRTIO_BALLOON13_F_REPORTING)) {
            n = (len - sizeof(hdr)) / sizeof(struct virtio_balloon13_range);
            if (!n || (len - sizeof(hdr)) %
                sizeof(struct virtio_balloon13_range)) {
                why = VB13_E_LENGTH;
            }
        } else if (type == VIRTIO_BALLOON13_RESP_STATS) {
            n = (len - sizeof(hdr)) / sizeof(struct virtio_balloon13_stat);
            if (!n || (len - sizeof(hdr)) %
                sizeof(struct virtio_balloon13_stat)) {
                why = VB13_E_LENGTH;
            }
        } else {
            why = VB13_E_TYPE;
        }
    }
    if (why == VB13_C_NR && hdr.reserved) {
        /* Counted; the message itself is still good. */
        vb13_guest_error(s, VB13_E_RESERVED, "reserved field 0x%x in a "
                         "type %u message", le32_to_cpu(hdr.reserved), type);
    }
    if (why != VB13_C_NR) {
        /* Rejected below. */
    } else if (type == VIRTIO_BALLOON13_RESP_PAGES) {
        why = vb13_handle_pages(s, (const uint64_t *)(buf + sizeof(hdr)),
                                n, &bad);
    } else if (type == VIRTIO_BALLOON13_RESP_WITHDRAW) {
        vb13_handle_withdraw(s, (const uint64_t *)(buf + sizeof(hdr)), n);
    } else if (type == VIRTIO_BALLOON13_RESP_REPORT) {
        why = vb13_handle_report(s, buf + sizeof(hdr), n, &bad);
    } else {
        vb13_handle_stats(s, buf + sizeof(hdr), n);
    }
    if (why != VB13_C_NR) {
        s->counters[VB13_C_REJECTED]++;
        trace_virtio_balloon13_reject(vb13_counter_names[why], len, bad);
        if ((why >= VB13_E_OVERFLOW && why <= VB13_E_OUT_OF_RAM) ||
            why == VB13_E_BAD_RANGE) {
            vb13_guest_error(s, why, "page list of %zu bytes rejected at "
                             "address 0x%" PRIx64, len, bad);
        } else if (why == VB13_E_LENGTH || why == VB13_E_TYPE) {
            vb13_guest_error(s, why, "message of %zu bytes, type %u, "
                             "rejected", len, type);
        } else {
            vb13_guest_error(s, why, "message of %zu bytes rejected", len);
        }
    }
}

/*
 * Handle a dispatch's worth of messages; returns true if there may be more.
 * Each buffer goes back as soon as it is done, so the driver can refill it
 * while the next one is being discarded.
 */
static bool vb13_process_output(VirtIOBalloon13 *s)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    int64_t t0 = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    size_t bytes = 0;
    int msgs = 0;
    bool more = false;

    if (!vdev->vm_running || vdev->broken || s->hold_output) {
        return false;
    }
    while (!more) {
        VirtQueueElement *elem;

        elem = virtqueue_pop(s->outputq, sizeof(VirtQueueElement));
        if (!elem) {
            break;
        }
        bytes += iov_size(elem->out_sg, elem->out_num);
        s->job = g_array_new(false, false, sizeof(VB13Discard));
        vb13_handle_message(s, elem);
        if (s->job->len) {
            VB13Job *job = g_new0(VB13Job, 1);

            job->elem = elem;
            job->discards = s->job;
            job->gen = s->gen;
            s->inflight++;
            WITH_QEMU_LOCK_GUARD(&s->job_lock) {
                g_queue_push_tail(&s->jobs, job);
                qemu_cond_signal(&s->job_cond);
            }
        } else {
            g_array_free(s->job, true);
            virtqueue_push(s->outputq, elem, 0);
            virtio_notify(vdev, s->outputq);
            g_free(elem);
        }
        s->job = NULL;
        more = ++msgs == VB13_MSGS_PER_DISPATCH ||
               bytes >= VB13_BYTES_PER_DISPATCH;
    }
    if (msgs) {
        vb13_size_changed(s);
        vb13_arm_scan(s, s->scan_interval_ms);
    }
    s->output_max_us = MAX(s->output_max_us,
                           qemu_clock_get_us(QEMU_CLOCK_REALTIME) - t0);
    return more;
}

static void vb13_handle_output(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(vdev);

    if (vb13_process_output(s)) {
        qemu_bh_schedule(s->bh);
    }
}

static void vb13_bh(void *opaque)
{
    VirtIOBalloon13 *s = opaque;

    vb13_flush_requests(s);
    if (vb13_process_output(s)) {
        qemu_bh_schedule(s->bh);
    }
}

/* ---- QEMU's balloon API -------------------------------------------------- */

/* QMP balloon: target is the guest memory wanted. */
static void vb13_to_target(void *opaque, ram_addr_t target)
{
    VirtIOBalloon13 *s = opaque;
    ram_addr_t ram = vb13_ram_size();

    vb13_set_target(s, target < ram ? ram - target : 0);
}

/*
 * query-balloon, info balloon: the guest memory the balloon leaves, as of
 * the last message or batch of the withdrawal scan.  Management polls it:
 * it must not scan.
 */
static void vb13_stat(void *opaque, BalloonInfo *info)
{
    VirtIOBalloon13 *s = opaque;
    ram_addr_t ram = vb13_ram_size();

    info->actual = ram - MIN(vb13_in_balloon(s), ram);
}

/* ---- QOM properties ------------------------------------------------------ */

static void vb13_get_target(Object *obj, Visitor *v, const char *name,
                            void *opaque, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);

    visit_type_size(v, name, &s->target, errp);
}

static void vb13_set_target_prop(Object *obj, Visitor *v, const char *name,
                                 void *opaque, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);
    uint64_t value;

    if (!visit_type_size(v, name, &value, errp)) {
        return;
    }
    if (value > vb13_ram_size()) {
        error_setg(errp, "'%s' of %" PRIu64 " bytes exceeds the %" PRIu64
                   " bytes of guest RAM", name, value,
                   (uint64_t)vb13_ram_size());
        return;
    }
    if (!DEVICE(s)->realized) {
        /* From -device: the driver gets it once it is there. */
        s->target = value;
        s->target_set = s->resize_pending = true;
        return;
    }
    vb13_set_target(s, value);
}

static void vb13_get_size(Object *obj, Visitor *v, const char *name,
                          void *opaque, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);
    uint64_t value = s->bitmap ? vb13_in_balloon(s) : 0;

    visit_type_size(v, name, &value, errp);
}

/* Testing: a whole withdrawal scan now (it holds the BQL meanwhile). */
static void vb13_set_scan_now(Object *obj, bool value, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);

    if (value && s->bitmap) {
        vb13_scan_all(s);
        vb13_size_changed(s);
    }
}

/* The counters as QAPI's VirtioBalloon13Counters. */
static VirtioBalloon13Counters *vb13_counters(VirtIOBalloon13 *s)
{
    VirtioBalloon13Counters *c = g_new0(VirtioBalloon13Counters, 1);
    VirtioBalloon13GuestErrors *e = g_new0(VirtioBalloon13GuestErrors, 1);
    const uint64_t *n = s->counters;

    c->block_size = s->page_bits ? vb13_block_size(s) : 0;
    c->target = s->target;
    c->blocks_in_balloon = c->block_size ?
                           vb13_in_balloon(s) / c->block_size : 0;
    c->blocks_unpopulated = s->nset;
    c->resize_requests = n[VB13_C_RESIZE_REQUESTS];
    c->stats_requests = n[VB13_C_STATS_REQUESTS];
    c->page_lists = n[VB13_C_PAGE_LISTS];
    c->stats_messages = n[VB13_C_STATS_MESSAGES];
    c->rejected_messages = n[VB13_C_REJECTED];
    c->blocks_received = n[VB13_C_BLOCKS_RECEIVED];
    c->blocks_ballooned = n[VB13_C_BLOCKS_BALLOONED];
    c->blocks_withdrawn = n[VB13_C_BLOCKS_WITHDRAWN];
    c->blocks_reballooned = n[VB13_C_BLOCKS_REBALLOONED];
    c->discards = n[VB13_C_DISCARDS];
    c->discarded_bytes = n[VB13_C_DISCARDED_BYTES];
    c->discard_errors = n[VB13_C_DISCARD_ERRORS];
    c->discards_skipped = n[VB13_C_DISCARDS_SKIPPED];
    c->scans = n[VB13_C_SCANS];
    c->migration_skipped_bytes = n[VB13_C_MIGRATION_SKIPPED];
    c->discarded_on_load_bytes = n[VB13_C_DISCARDED_ON_LOAD];
    c->withdraw_messages = n[VB13_C_WITHDRAW_MESSAGES];
    c->reports = n[VB13_C_REPORTS];
    c->reported_bytes = n[VB13_C_REPORTED_BYTES];
    c->report_discarded_bytes = n[VB13_C_REPORT_DISCARDED];
    c->interval_requests = n[VB13_C_INTERVAL_REQUESTS];
    c->discards_refused = n[VB13_C_DISCARDS_REFUSED];
    e->q_short = n[VB13_E_SHORT];
    e->bad_length = n[VB13_E_LENGTH];
    e->unknown_type = n[VB13_E_TYPE];
    e->oversize = n[VB13_E_OVERSIZE];
    e->writable_descriptor = n[VB13_E_WRITABLE];
    e->overflow = n[VB13_E_OVERFLOW];
    e->unaligned = n[VB13_E_UNALIGNED];
    e->out_of_ram = n[VB13_E_OUT_OF_RAM];
    e->reserved_nonzero = n[VB13_E_RESERVED];
    e->duplicate_block = n[VB13_E_DUPLICATE];
    e->repeated_in_message = n[VB13_E_REPEATED];
    e->bad_input_buffer = n[VB13_E_INPUT_BUFFER];
    e->withdraw_not_in_balloon = n[VB13_E_NOT_IN_BALLOON];
    e->bad_report_range = n[VB13_E_BAD_RANGE];
    c->guest_errors = e;
    return c;
}

/*
 * The counters as they stand, without a scan: "blocks-in-balloon" is as of
 * the last one.
 */
static void vb13_get_counters(Object *obj, Visitor *v, const char *name,
                              void *opaque, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);
    VirtioBalloon13Counters *c = vb13_counters(s);

    visit_type_VirtioBalloon13Counters(v, name, &c, errp);
    qapi_free_VirtioBalloon13Counters(c);
}

static void vb13_get_guest_stats(Object *obj, Visitor *v, const char *name,
                                 void *opaque, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);
    bool ok = false;

    if (!visit_start_struct(v, name, NULL, 0, errp)) {
        return;
    }
    if (!visit_type_int(v, "last-update", &s->stats_last_update, errp)) {
        goto out_end;
    }
    if (!visit_start_struct(v, "stats", NULL, 0, errp)) {
        goto out_end;
    }
    for (int i = 0; i < VIRTIO_BALLOON13_TAG_NR; i++) {
        if (!visit_type_uint64(v, vb13_stat_names[i], &s->stats[i], errp)) {
            goto out_nested;
        }
    }
    ok = visit_check_struct(v, errp);
out_nested:
    visit_end_struct(v, NULL);
    if (ok) {
        visit_check_struct(v, errp);
    }
out_end:
    visit_end_struct(v, NULL);
}

static void vb13_stats_arm(VirtIOBalloon13 *s, int64_t secs)
{
    timer_mod(s->stats_timer,
              qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL) + secs * 1000);
}

/*
 * With F_FULL_STATS the driver pushes statistics at the interval the
 * device sets (STATS_INTERVAL); queue that request if the driver does not
 * have the current interval yet.  Returns true if the driver pushes.
 */
static bool vb13_push_interval(VirtIOBalloon13 *s)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);

    if (!(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) ||
        !vb13_has(s, VIRTIO_BALLOON13_F_FULL_STATS)) {
        return false;
    }
    if (s->interval_sent != s->stats_poll_interval) {
        s->interval_pending = true;
    }
    return true;
}

/* Every interval: ask the guest for fresh statistics. */
static void vb13_stats_timer_cb(void *opaque)
{
    VirtIOBalloon13 *s = opaque;

    if (!DEVICE(s)->realized) {
        return;
    }
    if (vb13_push_interval(s)) {
        /* The driver pushes them; the timer stops here. */
        vb13_flush_requests(s);
        return;
    }
    s->stats_pending = true;
    vb13_flush_requests(s);
    if (s->stats_poll_interval > 0) {
        vb13_stats_arm(s, s->stats_poll_interval);
    }
}

static void vb13_get_poll_interval(Object *obj, Visitor *v, const char *name,
                                   void *opaque, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);

    visit_type_int(v, name, &s->stats_poll_interval, errp);
}

static void vb13_set_poll_interval(Object *obj, Visitor *v, const char *name,
                                   void *opaque, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);
    int64_t value;

    if (!visit_type_int(v, name, &value, errp)) {
        return;
    }
    if (value < 0) {
        error_setg(errp, "timer value must be greater than zero");
        return;
    }
    if (value > UINT32_MAX) {
        error_setg(errp, "timer value is too big");
        return;
    }
    if (value == s->stats_poll_interval) {
        return;
    }
    s->stats_poll_interval = value;
    if (DEVICE(s)->realized && vb13_push_interval(s)) {
        /* A new interval, or 0 to stop: the driver pushes. */
        if (s->stats_timer) {
            timer_del(s->stats_timer);
        }
        if (value) {
            /* Fresh statistics now, as virtio-balloon gives. */
            s->stats_pending = true;
        }
        vb13_flush_requests(s);
        return;
    }
    if (!value) {
        if (s->stats_timer) {
            timer_del(s->stats_timer);
        }
        return;
    }
    if (!s->stats_timer) {
        s->stats_timer = timer_new_ms(QEMU_CLOCK_VIRTUAL,
                                      vb13_stats_timer_cb, s);
    }
    /* Started, or a new interval: ask now, then every interval. */
    vb13_stats_arm(s, 0);
}

/* ---- migration ----------------------------------------------------------- */

/* Leave the blocks [i, e) of the bitmap, all set, out of the migration. */
static void vb13_hint_run(VirtIOBalloon13 *s, uint64_t i, uint64_t e)
{
    uint64_t bs = vb13_block_size(s);
    VB13Span sp;

    while (i < e) {
        if (!vb13_span(s, i << s->page_bits, (e - i) * bs, &sp)) {
            i++;
            continue;
        }
        if (vb13_may_skip(s, sp.rb)) {
            qemu_guest_free_page_hint(sp.host, sp.len);
            s->counters[VB13_C_MIGRATION_SKIPPED] += sp.len;
        }
        i += sp.len / bs;
    }
}

/*
 * Whether the last dirty bitmap sync of a migration can stand in for the
 * scan at the stop (vb13_find_written()): when a block is one target page.
 * A larger block withdrawn and written in part must be sent whole, as the
 * scan's vb13_withdraw() has it, and its other pages are clean after that
 * sync.  (Larger blocks also cost the scan fewer syscalls.)
 */
static bool vb13_written_known(VirtIOBalloon13 *s)
{
    return s->page_bits == qemu_target_page_bits();
}

/*
 * At a migration dirty bitmap sync: s->written gets the blocks of the
 * balloon that are dirty in the migration bitmap.  A block that was left
 * out (vb13_hint_run()) is dirty only if it was written since: the dirty
 * log sees the guest's writes, and vhost back ends log theirs during a
 * migration.  Blocks that are never left out (vb13_may_skip()) are
 * ignored: they are sent as they are.
 */
static void vb13_find_written(VirtIOBalloon13 *s)
{
    uint64_t nbits = s->bitmap_nbits, bs = vb13_block_size(s);
    uint64_t words = BITS_TO_LONGS(VB13_DIRTY_WINDOW_PAGES);
    unsigned long *blocks = s->dirty_pages + words;
    uint64_t i = 0;

    bitmap_zero(s->written, nbits);
    while ((i = find_next_bit(s->bitmap, nbits, i)) < nbits) {
        uint64_t n, k;
        VB13Span sp;

        if (!vb13_span(s, i << s->page_bits, (nbits - i) << s->page_bits,
                       &sp)) {
            i++;
            continue;
        }
        /* A block is a target page (vb13_written_known()). */
        n = MIN(sp.len / bs, VB13_DIRTY_WINDOW_PAGES);
        if (!vb13_may_skip(s, sp.rb) ||
            !qemu_guest_page_dirty_bits(sp.host, n * bs, s->dirty_pages)) {
            i += n;
            continue;
        }
        /* A word at a time: a fragmented balloon has many runs. */
        bitmap_copy_with_src_offset(blocks, s->bitmap, i, n);
        bitmap_and(blocks, blocks, s->dirty_pages, n);
        for (k = find_first_bit(blocks, n); k < n;
             k = find_next_bit(blocks, n, k + 1)) {
            set_bit(i + k, s->written);
        }
        i += n;
    }
}

/* Hint the blocks of [i, e) still in the balloon. */
static void vb13_hint_set(VirtIOBalloon13 *s, uint64_t i, uint64_t e)
{
    while ((i = find_next_bit(s->bitmap, e, i)) < e) {
        uint64_t j = find_next_zero_bit(s->bitmap, e, i);

        vb13_hint_run(s, i, j);
        i = j;
    }
}

/*
 * After a dirty bitmap sync: leave the blocks in the balloon out of the
 * migration, where the device is sure the guest does not use them
 * (vb13_may_skip()).  At the first sync every page is dirty: the whole
 * balloon.  Later, the blocks ballooned since the last sync, and those
 * written since they were left out (vb13_find_written()); the others stay
 * clean unless the guest writes them, and then the next sync sends them.
 *
 * Without F_WITHDRAW, those blocks are also checked for withdrawals:
 * - While the VM runs, after they are left out: a block the guest
 *   populates (withdraws) before that is found populated, one it writes
 *   after is dirty at the next sync (leaving a page out clears its dirty
 *   log too).  A withdrawn block is marked dirty (vb13_withdraw()).
 * - With the VM stopped, nothing is written meanwhile, so only the blocks
 *   written are checked, before the others are left out.  A populated
 *   block that nobody wrote holds zeros: it stays in the balloon, and the
 *   destination discarding it reads zeros too.  This is how migration's
 *   last sync finds what the guest withdrew since the last scan, without
 *   a scan of the whole balloon while the VM is stopped
 *   (vb13_vm_state_change()).
 */
static void vb13_skip_ballooned(VirtIOBalloon13 *s)
{
    uint64_t nbits = s->bitmap_nbits;
    bool look = !vb13_by_message(s) && vb13_written_known(s);
    unsigned long *which = s->fresh;
    VB13Scan c = { .sp.len = 0 };
    uint64_t i, e;

    vb13_drain(s);
    if (!s->migration_hinting) {
        s->migration_hinting = true;
        which = s->bitmap;
    } else {
        bitmap_and(s->fresh, s->fresh, s->bitmap, nbits);
        if (look) {
            vb13_find_written(s);
            bitmap_or(s->fresh, s->fresh, s->written, nbits);
        }
    }
    if (s->stopped && look && which != s->bitmap) {
        for (i = 0; (i = find_next_bit(s->written, nbits, i)) < nbits;
             i = e) {
            e = find_next_zero_bit(s->written, nbits, i);
            vb13_scan_run(s, &c, i, e - i, 0);
        }
        s->scan_owed = false;
    }
    for (i = 0; (i = find_next_bit(which, nbits, i)) < nbits; i = e) {
        e = find_next_zero_bit(which, nbits, i);
        vb13_hint_set(s, i, e);
    }
    if (vb13_can_see_withdrawals(s)) {
        for (i = 0; (i = find_next_bit(which, nbits, i)) < nbits; i = e) {
            e = find_next_zero_bit(which, nbits, i);
            vb13_scan_run(s, &c, i, e - i, 0);
        }
    }
    bitmap_zero(s->fresh, nbits);
    vb13_size_changed(s);
}

static int vb13_precopy_notify(NotifierWithReturn *n, void *data,
                               Error **errp)
{
    VirtIOBalloon13 *s = container_of(n, VirtIOBalloon13, precopy_notifier);
    PrecopyNotifyData *pnd = data;

    switch (pnd->reason) {
    case PRECOPY_NOTIFY_AFTER_BITMAP_SYNC:
        /*
         * As free page hinting: pages left out can't be fetched on demand
         * by a postcopy destination.  Without discards, ballooned memory
         * is populated anyway.
         */
        if (migrate_postcopy_ram() || ram_block_discard_is_disabled()) {
            break;
        }
        vb13_skip_ballooned(s);
        break;
    case PRECOPY_NOTIFY_CLEANUP:
        s->migration_hinting = false;
        break;
    default:
        break;
    }
    return 0;
}

static int vb13_pre_save(void *opaque)
{
    VirtIOBalloon13 *s = opaque;

    /* The VM is stopped: the bitmap sent holds exactly the balloon. */
    vb13_drain(s);
    vb13_pay_scan(s);
    s->counters_nr = VB13_C_NR;
    return 0;
}

static int vb13_pre_load(void *opaque)
{
    VirtIOBalloon13 *s = opaque;

    /* Counters the source does not know stay 0. */
    memset(s->counters, 0, sizeof(s->counters));
    return 0;
}

static int vb13_post_load(void *opaque, int version_id)
{
    VirtIOBalloon13 *s = opaque;
    uint64_t nbits = s->bitmap_nbits, bs = vb13_block_size(s);
    uint64_t i = 0;

    if (s->target > vb13_ram_size()) {
        error_report("virtio-balloon13: incoming target of %" PRIu64
                     " bytes exceeds the %" PRIu64 " bytes of guest RAM",
                     s->target, (uint64_t)vb13_ram_size());
        return -EINVAL;
    }
    if (nbits % BITS_PER_LONG &&
        s->bitmap[nbits / BITS_PER_LONG] & ~BITMAP_LAST_WORD_MASK(nbits)) {
        error_report("virtio-balloon13: incoming balloon bitmap has bits "
                     "past the end of guest RAM");
        return -EINVAL;
    }
    s->nset = bitmap_count_one(s->bitmap, nbits);
    s->scan_cursor = 0;
    s->migration_hinting = false;
    /* The balloon as of the source's stop, discarded below. */
    s->stopped = true;
    s->rediscard = false;
    s->scan_owed = false;
    /*
     * Whatever an earlier iteration sent for a block ballooned later
     * populated it here: discard the balloon again, where the source may
     * have left it out (the same test as the source's).
     */
    while (!vb13_discard_inhibited() &&
           (i = find_next_bit(s->bitmap, nbits, i)) < nbits) {
        uint64_t e = find_next_zero_bit(s->bitmap, nbits, i);
        VB13Span sp;

        if (!vb13_span(s, i << s->page_bits, (e - i) * bs, &sp)) {
            i++;
            continue;
        }
        if (vb13_may_skip(s, sp.rb) && vb13_may_discard(s, &sp) &&
            !ram_block_discard_range(sp.rb, sp.mr_offset, sp.len)) {
            s->counters[VB13_C_DISCARDED_ON_LOAD] += sp.len;
        }
        i += sp.len / bs;
    }
    s->reported = vb13_ram_size() - MIN(vb13_in_balloon(s), vb13_ram_size());
    if (s->stats_timer && s->stats_poll_interval > 0) {
        vb13_stats_arm(s, s->stats_poll_interval);
    }
    vb13_arm_scan(s, s->scan_interval_ms);
    return 0;
}

/* Before the counters are read into an array of VB13_C_NR. */
static bool vb13_counters_fit(void *opaque, int version_id)
{
    VirtIOBalloon13 *s = opaque;

    if (s->counters_nr > VB13_C_NR) {
        error_report("virtio-balloon13: %u counters incoming, this device "
                     "knows %d", s->counters_nr, VB13_C_NR);
        return false;
    }
    return true;
}

static int vb13_counters_post_load(void *opaque, int version_id)
{
    VIRTIO_BALLOON13(opaque)->counters_nr = VB13_C_NR;
    return 0;
}

/*
 * The counters, as many as the source knows: a newer device appends its
 * new ones, and they start at 0 here.
 */
static const VMStateDescription vmstate_vb13_counters = {
    .name = "virtio-balloon13-device/counters",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = vb13_counters_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(counters_nr, VirtIOBalloon13),
        VMSTATE_VALIDATE("counters fit", vb13_counters_fit),
        {
            /* An array of counters_nr, in place (no VMSTATE_ macro). */
            .name = "counters",
            .num_offset = vmstate_offset_value(VirtIOBalloon13, counters_nr,
                                               uint32_t),
            .info = &vmstate_info_uint64,
            .size = sizeof(uint64_t),
            .flags = VMS_VARRAY_UINT32,
            .offset = offsetof(VirtIOBalloon13, counters),
        },
        VMSTATE_END_OF_LIST()
    },
};

static bool vb13_full_stats_needed(void *opaque)
{
    VirtIOBalloon13 *s = opaque;

    return s->stats_poll_interval || s->interval_sent >= 0 ||
           vb13_has(s, VIRTIO_BALLOON13_F_FULL_STATS);
}

/* F_FULL_STATS: the statistics past the base six, and the push interval. */
static const VMStateDescription vmstate_vb13_full_stats = {
    .name = "virtio-balloon13-device/full-stats",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = vb13_full_stats_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT64_SUB_ARRAY(stats, VirtIOBalloon13, VB13_NR_BASE_TAGS,
                                 VIRTIO_BALLOON13_TAG_NR -
                                 VB13_NR_BASE_TAGS),
        VMSTATE_BOOL(interval_pending, VirtIOBalloon13),
        VMSTATE_INT64(interval_sent, VirtIOBalloon13),
        VMSTATE_END_OF_LIST()
    },
};

/*
 * Checked before any RAM moves (early_setup), so that a destination with
 * another block size or RAM layout fails at once.
 */
static const VMStateDescription vmstate_virtio_balloon13_early = {
    .name = "virtio-balloon13-device-early",
    .version_id = 1,
    .minimum_version_id = 1,
    .early_setup = true,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32_EQUAL(page_bits, VirtIOBalloon13,
                             "page-bits must be the same on both sides"),
        VMSTATE_INT32_EQUAL(bitmap_nbits, VirtIOBalloon13,
                            "guest RAM must end at the same address"),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_virtio_balloon13_device = {
    .name = "virtio-balloon13-device",
    /* Loaded with the outer vmstate_virtio_balloon13's version. */
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = vb13_pre_save,
    .pre_load = vb13_pre_load,
    .post_load = vb13_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32_EQUAL(page_bits, VirtIOBalloon13,
                             "page-bits must be the same on both sides"),
        VMSTATE_UINT64(target, VirtIOBalloon13),
        VMSTATE_BOOL(target_set, VirtIOBalloon13),
        VMSTATE_BOOL(resize_pending, VirtIOBalloon13),
        VMSTATE_BOOL(stats_pending, VirtIOBalloon13),
        VMSTATE_UINT64_SUB_ARRAY(stats, VirtIOBalloon13, 0,
                                 VB13_NR_BASE_TAGS),
        VMSTATE_INT64(stats_last_update, VirtIOBalloon13),
        VMSTATE_UINT64(held_max, VirtIOBalloon13),
        VMSTATE_INT32_EQUAL(bitmap_nbits, VirtIOBalloon13,
                            "guest RAM must end at the same address"),
        VMSTATE_BITMAP(bitmap, VirtIOBalloon13, 0, bitmap_nbits),
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription * const []) {
        &vmstate_vb13_counters,
        &vmstate_vb13_full_stats,
        NULL
    },
};

static const VMStateDescription vmstate_virtio_balloon13 = {
    .name = "virtio-balloon13",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_VIRTIO_DEVICE,
        VMSTATE_END_OF_LIST()
    },
};

/* ---- the device ---------------------------------------------------------- */

static void vb13_get_config(VirtIODevice *vdev, uint8_t *config_data)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(vdev);
    struct virtio_balloon13_config config = {
        .page_bits = cpu_to_le32(s->page_bits),
    };

    memcpy(config_data, &config, sizeof(config));
}

static uint64_t vb13_get_features(VirtIODevice *vdev, uint64_t f,
                                  Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(vdev);

    /* VERSION_1 comes from the transport. */
    return f | s->host_features;
}

static int vb13_set_status(VirtIODevice *vdev, uint8_t status)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(vdev);

    if ((status & VIRTIO_CONFIG_S_DRIVER_OK) && s->stats_poll_interval > 0) {
        /* The driver's features are known: who sends statistics when. */
        if (vb13_push_interval(s)) {
            if (s->stats_timer) {
                timer_del(s->stats_timer);
            }
        } else if (s->stats_timer && !timer_pending(s->stats_timer)) {
            vb13_stats_arm(s, s->stats_poll_interval);
        }
    }
    /* Driver ready or VM running again: serve what waited meanwhile. */
    if (vdev->vm_running && (status & VIRTIO_CONFIG_S_DRIVER_OK)) {
        qemu_bh_schedule(s->bh);
    }
    return 0;
}

static void vb13_reset(VirtIODevice *vdev)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(vdev);

    /* No discard after the reset: cancel or finish what is queued. */
    vb13_cancel_jobs(s);
    /*
     * The driver is gone (or starts over) and owns all memory again: the
     * balloon is empty.  A target set before is sent to the next driver.
     */
    if (s->migration_hinting) {
        /* Each block must be migrated again. */
        for (uint64_t i = find_first_bit(s->bitmap, s->bitmap_nbits);
             i < s->bitmap_nbits;
             i = find_next_bit(s->bitmap, s->bitmap_nbits, i + 1)) {
            vb13_withdraw(s, i);
        }
    }
    s->counters[VB13_C_BLOCKS_WITHDRAWN] += s->nset;
    bitmap_zero(s->bitmap, s->bitmap_nbits);
    s->nset = 0;
    s->held_max = 0;
    s->scan_cursor = 0;
    s->resize_pending = s->target_set;
    s->stats_pending = false;
    s->interval_pending = false;
    s->interval_sent = -1;
    timer_del(s->scan_timer);
    vb13_size_changed(s);
}

/*
 * The VM runs again after a stop.  The guest did not run meanwhile, so a
 * block of the balloon populated since was populated by QEMU: saving a
 * snapshot, dump-guest-memory, a migration that read it (postcopy enabled)
 * or failed.  Give those blocks back to the host again where the device
 * may discard the balloon (the test of an incoming migration); the vCPUs
 * are not running yet.
 */
static void vb13_rediscard(VirtIOBalloon13 *s)
{
    uint64_t nbits = s->bitmap_nbits, bs = vb13_block_size(s);
    uint64_t i = 0, bytes = 0;

    if (vb13_discard_inhibited()) {
        return;
    }
    while ((i = find_next_bit(s->bitmap, nbits, i)) < nbits) {
        uint64_t e = find_next_zero_bit(s->bitmap, nbits, i);
        uint64_t k = 0, j, nb;
        VB13Residency r;
        VB13Span sp;

        if (!vb13_span(s, i << s->page_bits, (e - i) * bs, &sp)) {
            i++;
            continue;
        }
        nb = sp.len / bs;
        if (vb13_may_skip(s, sp.rb) && vb13_may_discard(s, &sp)) {
            vb13_residency_init(&r, s, &sp);
            while (k < nb) {
                if (!vb13_block_resident(&r, sp.host + k * bs)) {
                    k++;
                    continue;
                }
                for (j = k + 1; j < nb &&
                     vb13_block_resident(&r, sp.host + j * bs); j++) {
                    continue;
                }
                if (ram_block_discard_range(sp.rb, sp.mr_offset + k * bs,
                                            (j - k) * bs)) {
                    s->counters[VB13_C_DISCARD_ERRORS]++;
                } else {
                    bytes += (j - k) * bs;
                }
                k = j;
            }
        }
        i += nb;
    }
    trace_virtio_balloon13_rediscard(bytes);
}

/*
 * Before the VM stops: no buffer may go back once RAM is saved, and the
 * last look at what the guest withdrew (below, nothing it populates is a
 * withdrawal: vb13_can_see_withdrawals()).  A migration that leaves the
 * balloon out looks at its last dirty bitmap sync instead, at the blocks
 * written (vb13_skip_ballooned()): a scan of a fragmented balloon costs a
 * syscall per run, and this one would lengthen the downtime.  When the VM
 * runs again, what QEMU populated meanwhile goes back to the host.
 */
static void vb13_vm_state_change(void *opaque, bool running, RunState state)
{
    VirtIOBalloon13 *s = opaque;

    if (!running) {
        vb13_drain(s);
        if (!s->stopped) {
            if (state == RUN_STATE_FINISH_MIGRATE && s->migration_hinting &&
                vb13_written_known(s)) {
                s->scan_owed = vb13_can_see_withdrawals(s);
            } else {
                vb13_scan_all(s);
            }
            s->stopped = true;
            s->rediscard = true;
        }
        return;
    }
    /* A migration that failed before its last sync. */
    vb13_pay_scan(s);
    if (s->rediscard) {
        vb13_rediscard(s);
    }
    s->stopped = s->rediscard = false;
    vb13_arm_scan(s, s->scan_interval_ms);
}

static void vb13_unpin(VirtIOBalloon13 *s)
{
    if (s->pinned) {
        ram_block_discard_disable(false);
        s->pinned = false;
    }
}

static void vb13_realize(DeviceState *dev, Error **errp)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(dev);
    VB13RamLayout l;
    unsigned int min_bits;
    uint64_t nbits;

    vb13_ram_layout(&l);
    if (!l.end) {
        error_setg(errp, "virtio-balloon13: the machine has no guest RAM");
        return;
    }
    min_bits = ctz64(l.page_size);
    if (!s->page_bits) {
        s->page_bits = MAX(min_bits, VB13_MIN_PAGE_BITS);
    }
    if (s->page_bits < VB13_MIN_PAGE_BITS ||
        s->page_bits > VB13_MAX_PAGE_BITS) {
        error_setg(errp, "page-bits=%u out of range: a block is 2^page-bits "
                   "bytes, from 4 KiB (%d) to 1 GiB (%d)", s->page_bits,
                   VB13_MIN_PAGE_BITS, VB13_MAX_PAGE_BITS);
        return;
    }
    if (s->page_bits < min_bits) {
        error_setg(errp, "page-bits=%u: a block of %" PRIu64 " KiB is "
                   "smaller than the %" PRIu64 " KiB pages backing guest "
                   "RAM, which can only be discarded whole", s->page_bits,
                   vb13_block_size(s) >> 10, l.page_size >> 10);
        error_append_hint(errp, "Use page-bits=%u or more, or leave it out "
                          "for the default.\n", min_bits);
        return;
    }
    nbits = DIV_ROUND_UP(l.end, vb13_block_size(s));
    if (nbits > INT32_MAX) {
        error_setg(errp, "page-bits=%u: guest RAM up to 0x%" PRIx64 " has "
                   "more than 2^31 blocks", s->page_bits, l.end);
        error_append_hint(errp, "Use a larger page-bits.\n");
        return;
    }
    /*
     * Testing: hold RAM discards off as an assigned (VFIO) device pinning
     * guest RAM does, which no device of a TCG-only build can.
     */
    if (s->pin_ram) {
        if (ram_block_discard_disable(true)) {
            error_setg(errp, "x-pin-ram: RAM discards can't be disabled: "
                       "another device (e.g. virtio-mem) requires them");
            return;
        }
        s->pinned = true;
    }
    if (s->qmp_balloon &&
        qemu_add_balloon_handler(vb13_to_target, vb13_stat, s) < 0) {
        error_setg(errp, "Only one balloon device is supported");
        error_append_hint(errp, "Set qmp-balloon=off on all but one "
                          "virtio-balloon13 device, and drive those with "
                          "qom-set target-size.\n");
        vb13_unpin(s);
        return;
    }

    virtio_init(vdev, VIRTIO_ID_MEMORY_BALLOON,
                sizeof(struct virtio_balloon13_config));
    s->inputq = virtio_add_queue(vdev, VB13_QUEUE_SIZE, vb13_handle_input);
    s->outputq = virtio_add_queue(vdev, VB13_QUEUE_SIZE, vb13_handle_output);
    s->bitmap_nbits = nbits;
    s->bitmap = bitmap_new(nbits);
    s->fresh = bitmap_new(nbits);
    s->written = bitmap_new(nbits);
    s->dirty_pages = bitmap_new(2 * BITS_PER_LONG *
                                BITS_TO_LONGS(VB13_DIRTY_WINDOW_PAGES));
    s->res_vec = g_malloc(VB13_WINDOW_PAGES);
    s->pagemap_buf = g_new(uint64_t, VB13_WINDOW_PAGES);
    s->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (s->pagemap_fd < 0) {
        warn_report("virtio-balloon13: no /proc/self/pagemap (%s): swapped "
                    "out pages of private guest RAM will look unpopulated",
                    strerror(errno));
    }
    s->reported = vb13_ram_size();
    s->scan_timer = timer_new_ms(QEMU_CLOCK_VIRTUAL, vb13_scan_timer_cb, s);
    s->bh = virtio_bh_new_guarded(dev, vb13_bh, s);
    vb13_stats_reset(s);
    s->interval_sent = -1;
    s->counters_nr = VB13_C_NR;
    s->precopy_notifier.notify = vb13_precopy_notify;
    precopy_add_notifier(&s->precopy_notifier);
    vmstate_register_any(VMSTATE_IF(s), &vmstate_virtio_balloon13_early, s);
    qemu_mutex_init(&s->job_lock);
    qemu_cond_init(&s->job_cond);
    qemu_cond_init(&s->job_idle);
    g_queue_init(&s->jobs);
    g_queue_init(&s->done);
    s->done_bh = virtio_bh_new_guarded(dev, vb13_done_bh, s);
    s->vmstate_entry = qdev_add_vm_change_state_handler(
        dev, vb13_vm_state_change, NULL, s);
    /* Not running yet (or hot-plugged into a stopped VM): an empty balloon. */
    s->stopped = !runstate_is_running();
    qemu_thread_create(&s->job_thread, "vb13-discard", vb13_job_thread, s,
                       QEMU_THREAD_JOINABLE);
}

static void vb13_unrealize(DeviceState *dev)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(dev);

    vb13_cancel_jobs(s);
    WITH_QEMU_LOCK_GUARD(&s->job_lock) {
        s->job_quit = true;
        qemu_cond_signal(&s->job_cond);
    }
    qemu_thread_join(&s->job_thread);
    qemu_del_vm_change_state_handler(s->vmstate_entry);
    qemu_bh_delete(s->done_bh);
    qemu_cond_destroy(&s->job_cond);
    qemu_cond_destroy(&s->job_idle);
    qemu_mutex_destroy(&s->job_lock);
    vmstate_unregister(VMSTATE_IF(s), &vmstate_virtio_balloon13_early, s);
    precopy_remove_notifier(&s->precopy_notifier);
    qemu_bh_delete(s->bh);
    timer_free(s->scan_timer);
    if (s->stats_timer) {
        /* Freed with the object; it must not fire on a dead device. */
        timer_del(s->stats_timer);
    }
    if (s->qmp_balloon) {
        qemu_remove_balloon_handler(s);
    }
    vb13_unpin(s);
    g_free(s->res_vec);
    g_free(s->pagemap_buf);
    if (s->pagemap_fd >= 0) {
        close(s->pagemap_fd);
    }
    g_free(s->bitmap);
    g_free(s->fresh);
    g_free(s->written);
    g_free(s->dirty_pages);
    s->bitmap = s->fresh = s->written = s->dirty_pages = NULL;
    s->bitmap_nbits = 0;
    s->res_vec = NULL;
    s->pagemap_buf = NULL;
    virtio_delete_queue(s->inputq);
    virtio_delete_queue(s->outputq);
    virtio_cleanup(vdev);
}

static bool vb13_get_hold_output(Object *obj, Error **errp)
{
    return VIRTIO_BALLOON13(obj)->hold_output;
}

static void vb13_set_hold_output(Object *obj, bool value, Error **errp)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);

    s->hold_output = value;
    if (!value && DEVICE(s)->realized) {
        qemu_bh_schedule(s->bh);
    }
}

static void vb13_instance_finalize(Object *obj)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);

    /* Made by the first guest-stats-polling-interval, maybe unrealized. */
    timer_free(s->stats_timer);
}

static void vb13_instance_init(Object *obj)
{
    VirtIOBalloon13 *s = VIRTIO_BALLOON13(obj);

    object_property_add(obj, "guest-stats", "guest statistics",
                        vb13_get_guest_stats, NULL, NULL, NULL);
    object_property_add(obj, "guest-stats-polling-interval", "int",
                        vb13_get_poll_interval, vb13_set_poll_interval,
                        NULL, NULL);
    object_property_add(obj, "target-size", "size", vb13_get_target,
                        vb13_set_target_prop, NULL, NULL);
    object_property_set_description(obj, "target-size",
                                    "Balloon size wanted, in bytes");
    object_property_add(obj, "size", "size", vb13_get_size, NULL, NULL,
                        NULL);
    object_property_set_description(obj, "size",
                                    "Bytes in the balloon (scans now)");
    object_property_add(obj, "counters", "VirtioBalloon13Counters",
                        vb13_get_counters, NULL, NULL, NULL);
    object_property_set_description(obj, "counters",
                                    "Requests, messages, blocks and guest "
                                    "errors seen");
    object_property_add_bool(obj, "x-hold-output", vb13_get_hold_output,
                             vb13_set_hold_output);
    object_property_add_bool(obj, "x-scan-now", NULL, vb13_set_scan_now);
    object_property_set_description(obj, "x-scan-now",
                                    "Testing: look for withdrawn blocks "
                                    "now, all of them");
    object_property_set_description(obj, "x-hold-output",
                                    "Testing: leave outputq messages "
                                    "unanswered while on");
    object_property_add_uint64_ptr(obj, "x-output-max-us", &s->output_max_us,
                                   OBJ_PROP_FLAG_READ);
    object_property_set_description(obj, "x-output-max-us",
                                    "Testing: the longest outputq dispatch "
                                    "(main loop), in microseconds");
    object_property_add_uint64_ptr(obj, "x-scan-batch-max-us",
                                   &s->scan_batch_max_us, OBJ_PROP_FLAG_READ);
    object_property_set_description(obj, "x-scan-batch-max-us",
                                    "Testing: the longest withdrawal scan "
                                    "batch on the timer, in microseconds");
}

static const Property vb13_properties[] = {
    DEFINE_PROP_UINT32("page-bits", VirtIOBalloon13, page_bits, 0),
    DEFINE_PROP_BOOL("qmp-balloon", VirtIOBalloon13, qmp_balloon, true),
    DEFINE_PROP_UINT32("withdrawal-scan-ms", VirtIOBalloon13,
                       scan_interval_ms, VB13_SCAN_INTERVAL_MS),
    DEFINE_PROP_BIT64("withdraw", VirtIOBalloon13, host_features,
                      VIRTIO_BALLOON13_F_WITHDRAW, true),
    DEFINE_PROP_BIT64("free-page-reporting", VirtIOBalloon13, host_features,
                      VIRTIO_BALLOON13_F_REPORTING, true),
    DEFINE_PROP_BIT64("full-stats", VirtIOBalloon13, host_features,
                      VIRTIO_BALLOON13_F_FULL_STATS, true),
    DEFINE_PROP_BIT64("pressure-release", VirtIOBalloon13, host_features,
                      VIRTIO_BALLOON13_F_PRESSURE_RELEASE, true),
    DEFINE_PROP_BOOL("x-pin-ram", VirtIOBalloon13, pin_ram, false),
};

static void vb13_class_init(ObjectClass *klass, const void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioDeviceClass *vdc = VIRTIO_DEVICE_CLASS(klass);

    device_class_set_props(dc, vb13_properties);
    object_class_property_set_description(klass, "page-bits",
        "Block size is 2^page-bits bytes (default: the page size "
        "backing guest RAM)");
    object_class_property_set_description(klass, "qmp-balloon",
        "Serve QMP balloon and query-balloon (one balloon device can)");
    object_class_property_set_description(klass, "withdrawal-scan-ms",
        "How often to look for withdrawn blocks (0: never)");
    object_class_property_set_description(klass, "withdraw",
        "Offer explicit withdrawal (VIRTIO_BALLOON13_F_WITHDRAW)");
    object_class_property_set_description(klass, "free-page-reporting",
        "Offer free page reporting (VIRTIO_BALLOON13_F_REPORTING)");
    object_class_property_set_description(klass, "full-stats",
        "Offer the full statistics and a push interval "
        "(VIRTIO_BALLOON13_F_FULL_STATS)");
    object_class_property_set_description(klass, "pressure-release",
        "Let the guest give memory back under pressure "
        "(VIRTIO_BALLOON13_F_PRESSURE_RELEASE)");
    object_class_property_set_description(klass, "x-pin-ram",
        "Testing: simulate an assigned device pinning guest RAM "
        "(disables RAM discards while the device exists)");
    dc->vmsd = &vmstate_virtio_balloon13;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    vdc->realize = vb13_realize;
    vdc->unrealize = vb13_unrealize;
    vdc->reset = vb13_reset;
    vdc->get_config = vb13_get_config;
    vdc->get_features = vb13_get_features;
    vdc->set_status = vb13_set_status;
    vdc->vmsd = &vmstate_virtio_balloon13_device;
}

static const TypeInfo virtio_balloon13_info = {
    .name = TYPE_VIRTIO_BALLOON13,
    .parent = TYPE_VIRTIO_DEVICE,
    .instance_size = sizeof(VirtIOBalloon13),
    .instance_init = vb13_instance_init,
    .instance_finalize = vb13_instance_finalize,
    .class_init = vb13_class_init,
};

static void virtio_balloon13_register_types(void)
{
    type_register_static(&virtio_balloon13_info);
}

type_init(virtio_balloon13_register_types)
