/*
 * QTest cases for virtio-balloon13, the virtio memory balloon (device ID 13)
 *
 * The test is the driver: it negotiates features, posts request buffers on
 * inputq and sends messages on outputq by hand, and checks what the device
 * counts, reports over QMP, and does to guest RAM.
 *
 * Copyright (c) 2026 The virtio_balloon13 authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/units.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "libqos/libqos-pc.h"
#include "libqos/virtio-pci.h"
#include "libqos/virtio.h"
#include "standard-headers/linux/virtio_balloon13.h"
#include "standard-headers/linux/virtio_config.h"

#define TIMEOUT_US  (30 * 1000 * 1000)
#define BS          4096                /* page-bits=12 */
#define RAM_MB      128
#define SLOT        4
#define ALL_FEATURES \
    ((1ULL << VIRTIO_BALLOON13_F_WITHDRAW) | \
     (1ULL << VIRTIO_BALLOON13_F_REPORTING) | \
     (1ULL << VIRTIO_BALLOON13_F_FULL_STATS) | \
     (1ULL << VIRTIO_BALLOON13_F_PRESSURE_RELEASE))

typedef struct B13 {
    QOSState *qs;
    QTestState *qts;
    QVirtioPCIDevice *dev;
    QVirtQueue *inq, *outq;
    uint64_t offered;
    uint64_t ram;               /* bytes */
    int64_t last_kick_us;       /* how long the last outputq kick took */
} B13;

/*
 * Boot a q35 machine with the device at SLOT and negotiate VERSION_1 plus
 * features (of those offered).  extra: more -device properties and QEMU
 * options, e.g. ",withdraw=off -object ...".
 */
static void b13_start_full(B13 *b, int ram_mb, int page_bits,
                           uint64_t features, const char *extra)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(SLOT, 0) };
    QVirtioDevice *vdev;

    b->ram = (uint64_t)ram_mb * MiB;
    b->qs = qtest_pc_boot("-machine q35 -m %dM -nodefaults "
                          "-device virtio-balloon13-pci,id=b13,"
                          "addr=%d.0,page-bits=%d%s",
                          ram_mb, SLOT, page_bits, extra ? extra : "");
    b->qts = b->qs->qts;
    b->dev = virtio_pci_new(b->qs->pcibus, &addr);
    g_assert(b->dev);
    g_assert_cmphex(b->dev->vdev.device_type, ==, 13);
    qvirtio_pci_device_enable(b->dev);
    vdev = &b->dev->vdev;
    qvirtio_start_device(vdev);
    b->offered = qvirtio_get_features(vdev);
    qvirtio_set_features(vdev, (b->offered & features) |
                         (1ULL << VIRTIO_F_VERSION_1));
    b->inq = qvirtqueue_setup(vdev, &b->qs->alloc, 0);
    b->outq = qvirtqueue_setup(vdev, &b->qs->alloc, 1);
    qvirtio_set_driver_ok(vdev);
}

static void b13_start_ram(B13 *b, int ram_mb, uint64_t features,
                          const char *extra)
{
    b13_start_full(b, ram_mb, 12, features, extra);
}

static void b13_start(B13 *b, uint64_t features, const char *extra)
{
    b13_start_ram(b, RAM_MB, features, extra);
}

static void b13_stop(B13 *b)
{
    qvirtqueue_cleanup(b->dev->vdev.bus, b->inq, &b->qs->alloc);
    qvirtqueue_cleanup(b->dev->vdev.bus, b->outq, &b->qs->alloc);
    qos_object_destroy(&b->dev->obj);
    qtest_shutdown(b->qs);
}

/* Wait until vq returns the buffer at head; returns its used length. */
static uint32_t b13_wait(B13 *b, QVirtQueue *vq, uint32_t head)
{
    gint64 start = g_get_monotonic_time();
    uint32_t idx, len;

    while (!qvirtqueue_get_buf(b->qts, vq, &idx, &len)) {
        g_assert(g_get_monotonic_time() - start <= TIMEOUT_US);
        qtest_clock_step(b->qts, 100);
    }
    g_assert_cmpuint(idx, ==, head);
    return len;
}

/* Send one message (header and body) on outputq and wait for it back. */
static void b13_send(B13 *b, uint32_t type, const void *body, size_t len)
{
    struct virtio_balloon13_resp_hdr hdr = { .type = cpu_to_le32(type) };
    uint64_t gpa = guest_alloc(&b->qs->alloc, sizeof(hdr) + len);
    uint32_t head;

    qtest_memwrite(b->qts, gpa, &hdr, sizeof(hdr));
    qtest_memwrite(b->qts, gpa + sizeof(hdr), body, len);
    head = qvirtqueue_add(b->qts, b->outq, gpa, sizeof(hdr) + len, false,
                          false);
    /* The notification is handled at once, in the main loop (the BQL). */
    b->last_kick_us = g_get_monotonic_time();
    qvirtqueue_kick(b->qts, &b->dev->vdev, b->outq, head);
    b->last_kick_us = g_get_monotonic_time() - b->last_kick_us;
    g_assert_cmpuint(b13_wait(b, b->outq, head), ==, 0);
    guest_free(&b->qs->alloc, gpa);
}

/* A PAGES or WITHDRAW message naming n blocks from addrs. */
static void b13_send_blocks(B13 *b, uint32_t type, const uint64_t *addrs,
                            int n)
{
    g_autofree uint64_t *le = g_new(uint64_t, n);

    for (int i = 0; i < n; i++) {
        le[i] = cpu_to_le64(addrs[i]);
    }
    b13_send(b, type, le, n * sizeof(*le));
}

/* Post one request buffer and wait for the request the device writes. */
static struct virtio_balloon13_req b13_request(B13 *b)
{
    struct virtio_balloon13_req req;
    uint64_t gpa = guest_alloc(&b->qs->alloc, sizeof(req));
    uint32_t head;

    head = qvirtqueue_add(b->qts, b->inq, gpa, sizeof(req), true, false);
    qvirtqueue_kick(b->qts, &b->dev->vdev, b->inq, head);
    g_assert_cmpuint(b13_wait(b, b->inq, head), ==, sizeof(req));
    qtest_memread(b->qts, gpa, &req, sizeof(req));
    guest_free(&b->qs->alloc, gpa);
    req.type = le32_to_cpu(req.type);
    req.value = le64_to_cpu(req.value);
    return req;
}

static QDict *b13_get(B13 *b, const char *prop)
{
    QDict *rsp = qtest_qmp(b->qts, "{ 'execute': 'qom-get', 'arguments': "
                           "{ 'path': '/machine/peripheral/b13', "
                           "'property': %s } }", prop);

    g_assert(qdict_haskey(rsp, "return"));
    return rsp;
}

static uint64_t b13_get_u64(B13 *b, const char *prop)
{
    QDict *rsp = b13_get(b, prop);
    uint64_t v = qdict_get_uint(rsp, "return");

    qobject_unref(rsp);
    return v;
}

/* One of the device's counters; "guest-errors/NAME" for a guest error. */
static uint64_t b13_counter(B13 *b, const char *name)
{
    QDict *rsp = b13_get(b, "counters");
    QDict *c = qdict_get_qdict(rsp, "return");
    uint64_t v;

    if (g_str_has_prefix(name, "guest-errors/")) {
        c = qdict_get_qdict(c, "guest-errors");
        name += strlen("guest-errors/");
    }
    g_assert(qdict_haskey(c, name));
    v = qdict_get_uint(c, name);
    qobject_unref(rsp);
    return v;
}

static void b13_set_bool(B13 *b, const char *prop, bool value)
{
    qtest_qmp_assert_success(b->qts, "{ 'execute': 'qom-set', 'arguments': "
                             "{ 'path': '/machine/peripheral/b13', "
                             "'property': %s, 'value': %i } }", prop, value);
}

static void b13_set_int(B13 *b, const char *prop, int64_t value)
{
    qtest_qmp_assert_success(b->qts, "{ 'execute': 'qom-set', 'arguments': "
                             "{ 'path': '/machine/peripheral/b13', "
                             "'property': %s, 'value': %" PRId64 " } }",
                             prop, value);
}

static uint64_t b13_query_actual(B13 *b)
{
    QDict *rsp = qtest_qmp(b->qts, "{ 'execute': 'query-balloon' }");
    uint64_t v = qdict_get_uint(qdict_get_qdict(rsp, "return"), "actual");

    qobject_unref(rsp);
    return v;
}

/* QMP balloon: the guest memory wanted; then take the RESIZE it sends. */
static void b13_resize(B13 *b, uint64_t balloon_bytes)
{
    struct virtio_balloon13_req req;

    qtest_qmp_assert_success(b->qts, "{ 'execute': 'balloon', 'arguments': "
                             "{ 'value': %" PRIu64 " } }",
                             b->ram - balloon_bytes);
    req = b13_request(b);
    g_assert_cmpuint(req.type, ==, VIRTIO_BALLOON13_REQ_RESIZE);
    g_assert_cmpuint(req.value, ==, balloon_bytes);
}

/* Blocks at 64 MiB + 2i blocks, for i < n: every other block. */
static void b13_blocks(uint64_t *a, int n)
{
    for (int i = 0; i < n; i++) {
        a[i] = 64 * MiB + 2 * i * BS;
    }
}

/* Every feature bit is offered by default, and each property withholds it. */
static void test_features(void)
{
    static const struct {
        const char *prop;
        int bit;
    } props[] = {
        { "withdraw", VIRTIO_BALLOON13_F_WITHDRAW },
        { "free-page-reporting", VIRTIO_BALLOON13_F_REPORTING },
        { "full-stats", VIRTIO_BALLOON13_F_FULL_STATS },
        { "pressure-release", VIRTIO_BALLOON13_F_PRESSURE_RELEASE },
    };
    B13 b;

    b13_start(&b, 0, NULL);
    g_assert_cmphex(b.offered & ALL_FEATURES, ==, ALL_FEATURES);
    g_assert(b.offered & (1ULL << VIRTIO_F_VERSION_1));
    b13_stop(&b);
    for (int i = 0; i < ARRAY_SIZE(props); i++) {
        g_autofree char *extra = g_strdup_printf(",%s=off", props[i].prop);

        b13_start(&b, 0, extra);
        g_assert_cmphex(b.offered & ALL_FEATURES, ==,
                        ALL_FEATURES & ~(1ULL << props[i].bit));
        b13_stop(&b);
    }
}

/*
 * WITHDRAW: entries leave the balloon; a bad entry or one not in the
 * balloon is counted and never stops the others.
 */
static void test_withdraw(void)
{
    uint64_t a[8], w[4];
    B13 b;

    b13_start(&b, ALL_FEATURES, NULL);
    b13_resize(&b, 8 * BS);
    b13_blocks(a, 8);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 8);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 8 * BS);
    w[0] = a[1];
    w[1] = a[0] + BS;           /* never ballooned */
    w[2] = a[2] + 1;            /* unaligned */
    w[3] = a[3];
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_WITHDRAW, w, 4);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 6 * BS);
    g_assert_cmpuint(b13_counter(&b, "blocks-withdrawn"), ==, 2);
    g_assert_cmpuint(b13_counter(&b, "withdraw-messages"), ==, 1);
    g_assert_cmpuint(b13_counter(&b, "guest-errors/withdraw-not-in-balloon"),
                     ==, 2);
    g_assert_cmpuint(b13_counter(&b, "rejected-messages"), ==, 0);
    /* Withdrawn blocks can be ballooned again; the others can't. */
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, &a[1], 1);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, &a[4], 1);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 7 * BS);
    g_assert_cmpuint(b13_counter(&b, "guest-errors/duplicate-block"), ==, 1);
    b13_stop(&b);

    /* Not negotiated: an unknown message type, rejected whole. */
    b13_start(&b, 0, NULL);
    b13_resize(&b, 8 * BS);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 8);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_WITHDRAW, a, 1);
    g_assert_cmpuint(b13_counter(&b, "guest-errors/unknown-type"), ==, 1);
    g_assert_cmpuint(b13_counter(&b, "rejected-messages"), ==, 1);
    b13_stop(&b);
}

/*
 * A WITHDRAW whose length is not 8 + 8n: its complete entries are still
 * withdrawn (the guest uses them once the buffer is back), and the length
 * is a guest error.  Without a complete entry the message is rejected.
 */
static void test_withdraw_bad_length(void)
{
    uint64_t a[4], w[3];
    B13 b;

    b13_start(&b, ALL_FEATURES, NULL);
    b13_resize(&b, 4 * BS);
    b13_blocks(a, 4);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 4);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 4 * BS);
    w[0] = cpu_to_le64(a[0]);
    w[1] = cpu_to_le64(a[2]);
    w[2] = cpu_to_le64(a[3]);   /* only 4 of its 8 bytes are sent */
    b13_send(&b, VIRTIO_BALLOON13_RESP_WITHDRAW, w, 2 * 8 + 4);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 2 * BS);
    g_assert_cmpuint(b13_counter(&b, "blocks-withdrawn"), ==, 2);
    g_assert_cmpuint(b13_counter(&b, "withdraw-messages"), ==, 1);
    g_assert_cmpuint(b13_counter(&b, "guest-errors/bad-length"), ==, 1);
    g_assert_cmpuint(b13_counter(&b, "rejected-messages"), ==, 0);
    /* a[3] stays: a withdrawal of it now is whole. */
    b13_send(&b, VIRTIO_BALLOON13_RESP_WITHDRAW, &w[2], 4);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 2 * BS);
    g_assert_cmpuint(b13_counter(&b, "guest-errors/bad-length"), ==, 2);
    g_assert_cmpuint(b13_counter(&b, "rejected-messages"), ==, 1);
    b13_send(&b, VIRTIO_BALLOON13_RESP_WITHDRAW, &w[2], 8);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, BS);
    g_assert_cmpuint(b13_counter(&b, "blocks-withdrawn"), ==, 3);
    b13_stop(&b);
}

/*
 * With F_WITHDRAW the balloon is counted from messages alone: a ballooned
 * block written by something else (here the test, through the memory
 * API, as a vhost-user back end or the host would) stays in the balloon.
 * Without it, the device sees the write as the guest withdrawing the block
 * (and, where the host backs guest RAM with transparent huge pages, the
 * blocks around it that the fault populated too).
 */
static void test_withdraw_no_scan(void)
{
    uint64_t a[4];
    B13 b;

    for (int neg = 0; neg < 2; neg++) {
        b13_start(&b, neg ? ALL_FEATURES : 0, NULL);
        b13_resize(&b, 4 * BS);
        b13_blocks(a, 4);
        b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 4);
        qtest_writeq(b.qts, a[2], 0x1313131313131313ULL);
        b13_set_bool(&b, "x-scan-now", true);
        if (neg) {
            g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 4 * BS);
        } else {
            g_assert_cmpuint(b13_get_u64(&b, "size"), <=, 3 * BS);
        }
        g_assert_cmpuint(b13_counter(&b, "scans"), ==, neg ? 0 : 1);
        b13_stop(&b);
    }
}

/*
 * Finding: the host's own population of ballooned memory looked like the
 * guest withdrawing it.  QEMU reads guest RAM while the VM is stopped (a
 * snapshot, dump-guest-memory; here the test reads it), and the host
 * fills zeros in while it runs (khugepaged collapsing the 2 MiB range
 * around a ballooned 4 KiB block; here the test writes zeros).  Without
 * F_WITHDRAW those blocks stay in the balloon; a block written with data
 * is withdrawn.
 */
static void test_host_populated(void)
{
    uint64_t a[4];
    B13 b;

    b13_start(&b, 0, NULL);
    b13_resize(&b, 4 * BS);
    b13_blocks(a, 4);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 4);
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'stop' }");
    for (int i = 0; i < 4; i++) {
        g_assert_cmphex(qtest_readq(b.qts, a[i]), ==, 0);
    }
    b13_set_bool(&b, "x-scan-now", true);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 4 * BS);
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'cont' }");
    b13_set_bool(&b, "x-scan-now", true);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 4 * BS);
    qtest_writeq(b.qts, a[1], 0);
    b13_set_bool(&b, "x-scan-now", true);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 4 * BS);
    qtest_writeq(b.qts, a[3], 0x1313131313131313ULL);
    b13_set_bool(&b, "x-scan-now", true);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 3 * BS);
    g_assert_cmpuint(b13_counter(&b, "blocks-withdrawn"), ==, 1);
    b13_stop(&b);
}

/*
 * Finding: a re-inflation was reported as reached before the guest sent
 * anything.  The driver frees blocks over a lower target without a word,
 * and they stay unpopulated: they must not count again.
 */
static void test_reinflate_accounting(void)
{
    uint64_t a[8];
    B13 b;

    b13_start(&b, 0, NULL);
    b13_resize(&b, 8 * BS);
    b13_blocks(a, 8);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 8);
    g_assert_cmpuint(b13_query_actual(&b), ==, RAM_MB * MiB - 8 * BS);
    b13_resize(&b, 4 * BS);
    g_assert_cmpuint(b13_query_actual(&b), ==, RAM_MB * MiB - 4 * BS);
    b13_resize(&b, 8 * BS);
    /* Nothing sent since: still 4 blocks, after a scan too. */
    g_assert_cmpuint(b13_query_actual(&b), ==, RAM_MB * MiB - 4 * BS);
    b13_set_bool(&b, "x-scan-now", true);
    g_assert_cmpuint(b13_query_actual(&b), ==, RAM_MB * MiB - 4 * BS);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 4 * BS);
    /* The driver sends the 4 blocks it freed again (unpopulated). */
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, &a[4], 4);
    g_assert_cmpuint(b13_query_actual(&b), ==, RAM_MB * MiB - 8 * BS);
    b13_stop(&b);
}

/* Finding: query-balloon and "size" scanned the whole balloon each time. */
static void test_query_no_scan(void)
{
    uint64_t a[64];
    B13 b;

    b13_start(&b, 0, ",withdrawal-scan-ms=0");
    b13_resize(&b, 64 * BS);
    b13_blocks(a, 64);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 64);
    for (int i = 0; i < 5; i++) {
        g_assert_cmpuint(b13_query_actual(&b), ==, RAM_MB * MiB - 64 * BS);
        g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 64 * BS);
    }
    g_assert_cmpuint(b13_counter(&b, "scans"), ==, 0);
    b13_stop(&b);
}

/*
 * REPORT: ranges are discarded (written data reads back as zeros) and
 * never counted as ballooned; a bad range rejects the message.
 */
static void test_report(void)
{
    struct virtio_balloon13_range r[2];
    B13 b;

    b13_start(&b, ALL_FEATURES, NULL);
    qtest_writeq(b.qts, 96 * MiB, 0x1313131313131313ULL);
    r[0].addr = cpu_to_le64(96 * MiB);
    r[0].len = cpu_to_le64(2 * MiB);
    r[1].addr = cpu_to_le64(100 * MiB);
    r[1].len = cpu_to_le64(BS);
    b13_send(&b, VIRTIO_BALLOON13_RESP_REPORT, r, sizeof(r));
    g_assert_cmpuint(b13_counter(&b, "reports"), ==, 1);
    g_assert_cmpuint(b13_counter(&b, "reported-bytes"), ==, 2 * MiB + BS);
    g_assert_cmpuint(b13_counter(&b, "report-discarded-bytes"), ==,
                     2 * MiB + BS);
    g_assert_cmphex(qtest_readq(b.qts, 96 * MiB), ==, 0);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 0);
    g_assert_cmpuint(b13_counter(&b, "blocks-ballooned"), ==, 0);

    r[0].len = cpu_to_le64(BS + 1);
    b13_send(&b, VIRTIO_BALLOON13_RESP_REPORT, r, sizeof(r));
    r[0].len = 0;
    b13_send(&b, VIRTIO_BALLOON13_RESP_REPORT, r, sizeof(r[0]));
    r[0].addr = cpu_to_le64((uint64_t)RAM_MB * MiB);
    r[0].len = cpu_to_le64(BS);
    b13_send(&b, VIRTIO_BALLOON13_RESP_REPORT, r, sizeof(r[0]));
    g_assert_cmpuint(b13_counter(&b, "guest-errors/bad-report-range"), ==, 2);
    g_assert_cmpuint(b13_counter(&b, "guest-errors/out-of-ram"), ==, 1);
    g_assert_cmpuint(b13_counter(&b, "rejected-messages"), ==, 3);
    g_assert_cmpuint(b13_counter(&b, "reports"), ==, 1);
    b13_stop(&b);

    /* Not negotiated: rejected, nothing discarded. */
    b13_start(&b, 0, NULL);
    qtest_writeq(b.qts, 96 * MiB, 0x1313131313131313ULL);
    r[0].addr = cpu_to_le64(96 * MiB);
    r[0].len = cpu_to_le64(2 * MiB);
    b13_send(&b, VIRTIO_BALLOON13_RESP_REPORT, r, sizeof(r[0]));
    g_assert_cmpuint(b13_counter(&b, "guest-errors/unknown-type"), ==, 1);
    g_assert_cmphex(qtest_readq(b.qts, 96 * MiB), ==, 0x1313131313131313ULL);
    b13_stop(&b);
}

/* A guest statistic; UINT64_MAX: not known. */
static uint64_t b13_stat(B13 *b, const char *name)
{
    QDict *rsp = b13_get(b, "guest-stats");
    QDict *stats = qdict_get_qdict(qdict_get_qdict(rsp, "return"), "stats");
    uint64_t v;

    g_assert(qdict_haskey(stats, name));
    v = qdict_get_uint(stats, name);
    qobject_unref(rsp);
    return v;
}

/*
 * FULL_STATS: tags 6-17 land in guest-stats under virtio-balloon's names
 * (and ours for PSI); guest-stats-polling-interval becomes a push
 * interval.  Without it, those tags are ignored and the device polls.
 */
static void test_full_stats(void)
{
    static const uint64_t tags[][2] = {
        { VIRTIO_BALLOON13_TAG_MEMTOT, 1000 },
        { VIRTIO_BALLOON13_TAG_AVAIL, 600 },
        { VIRTIO_BALLOON13_TAG_CACHES, 300 },
        { VIRTIO_BALLOON13_TAG_OOM_KILL, 2 },
        { VIRTIO_BALLOON13_TAG_PSI_SOME_US, 12345 },
    };
    struct virtio_balloon13_stat st[ARRAY_SIZE(tags)];
    struct virtio_balloon13_req req;
    B13 b;

    for (int i = 0; i < ARRAY_SIZE(tags); i++) {
        st[i].tag = cpu_to_le64(tags[i][0]);
        st[i].value = cpu_to_le64(tags[i][1]);
    }
    for (int neg = 0; neg < 2; neg++) {
        b13_start(&b, neg ? ALL_FEATURES : 0, NULL);
        b13_send(&b, VIRTIO_BALLOON13_RESP_STATS, st, sizeof(st));
        g_assert_cmpuint(b13_stat(&b, "stat-total-memory"), ==, 1000);
        g_assert_cmpuint(b13_stat(&b, "stat-available-memory"), ==,
                         neg ? 600 : UINT64_MAX);
        g_assert_cmpuint(b13_stat(&b, "stat-disk-caches"), ==,
                         neg ? 300 : UINT64_MAX);
        g_assert_cmpuint(b13_stat(&b, "stat-oom-kills"), ==,
                         neg ? 2 : UINT64_MAX);
        g_assert_cmpuint(b13_stat(&b, "stat-psi-some-us"), ==,
                         neg ? 12345 : UINT64_MAX);
        g_assert_cmpuint(b13_stat(&b, "stat-htlb-pgalloc"), ==, UINT64_MAX);

        b13_set_int(&b, "guest-stats-polling-interval", 5);
        req = b13_request(&b);
        if (neg) {
            g_assert_cmpuint(req.type, ==,
                             VIRTIO_BALLOON13_REQ_STATS_INTERVAL);
            g_assert_cmpuint(req.value, ==, 5000);
            /* And fresh statistics at once. */
            req = b13_request(&b);
            g_assert_cmpuint(req.type, ==, VIRTIO_BALLOON13_REQ_STATS);
            b13_set_int(&b, "guest-stats-polling-interval", 0);
            req = b13_request(&b);
            g_assert_cmpuint(req.type, ==,
                             VIRTIO_BALLOON13_REQ_STATS_INTERVAL);
            g_assert_cmpuint(req.value, ==, 0);
            g_assert_cmpuint(b13_counter(&b, "interval-requests"), ==, 2);
        } else {
            g_assert_cmpuint(req.type, ==, VIRTIO_BALLOON13_REQ_STATS);
            g_assert_cmpuint(b13_counter(&b, "interval-requests"), ==, 0);
        }
        b13_stop(&b);
    }
}

/*
 * A STATS message of 64 KiB (4095 entries, most of them tags a newer
 * driver might send) is accepted: the contract's limit is the message
 * size, not a count of statistics.
 */
static void test_stats_big(void)
{
    size_t n = (VIRTIO_BALLOON13_MSG_MAX_LEN - 8) /
               sizeof(struct virtio_balloon13_stat);
    g_autofree struct virtio_balloon13_stat *st =
        g_new0(struct virtio_balloon13_stat, n);
    B13 b;

    g_assert_cmpuint(n, ==, 4095);
    for (size_t i = 0; i < n - 1; i++) {
        st[i].tag = cpu_to_le64(1000 + i);
        st[i].value = cpu_to_le64(i);
    }
    st[n - 1].tag = cpu_to_le64(VIRTIO_BALLOON13_TAG_MEMTOT);
    st[n - 1].value = cpu_to_le64(777);
    b13_start(&b, 0, NULL);
    b13_send(&b, VIRTIO_BALLOON13_RESP_STATS, st, n * sizeof(*st));
    g_assert_cmpuint(b13_counter(&b, "rejected-messages"), ==, 0);
    g_assert_cmpuint(b13_counter(&b, "stats-messages"), ==, 1);
    g_assert_cmpuint(b13_stat(&b, "stat-total-memory"), ==, 777);
    b13_stop(&b);
}

/*
 * Finding: a page list punched holes in a file mapped share=off (a
 * template other guests may use).  The block still counts as ballooned.
 */
static void test_template_file_kept(void)
{
    g_autofree char *path = NULL;
    g_autofree char *extra = NULL;
    g_autofree uint8_t *buf = g_malloc(BS);
    uint64_t a = 64 * MiB;
    int fd;
    B13 b;

    fd = g_file_open_tmp("vb13-template-XXXXXX", &path, NULL);
    g_assert(fd >= 0);
    memset(buf, 0x5a, BS);
    g_assert(!ftruncate(fd, RAM_MB * MiB));
    g_assert_cmpint(pwrite(fd, buf, BS, a), ==, BS);
    close(fd);
    extra = g_strdup_printf(" -object memory-backend-file,id=mem,size=%dM,"
                            "mem-path=%s,share=off -machine memory-backend=mem",
                            RAM_MB, path);
    b13_start(&b, 0, extra);
    b13_resize(&b, BS);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, &a, 1);
    fd = open(path, O_RDONLY);
    g_assert_cmpint(pread(fd, buf, BS, a), ==, BS);
    close(fd);
    unlink(path);
    for (int i = 0; i < BS; i++) {
        g_assert_cmphex(buf[i], ==, 0x5a);
    }
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, BS);
    g_assert_cmpuint(b13_counter(&b, "discards-refused"), ==, 1);
    b13_stop(&b);
}

static bool b13_migration_done(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-migrate' }");
    const char *status = qdict_get_try_str(qdict_get_qdict(rsp, "return"),
                                           "status");
    bool done;

    g_assert(status);
    g_assert_cmpstr(status, !=, "failed");
    done = !strcmp(status, "completed");
    qobject_unref(rsp);
    return done;
}

/*
 * Finding: with x-ignore-shared, migration leaves shared file RAM alone
 * and has no dirty bitmap for it; the device hinted it anyway and QEMU
 * dereferenced NULL.  Ballooned blocks there must not be left out.
 */
static void test_ignore_shared(void)
{
    g_autofree char *dir = g_dir_make_tmp("vb13-mig-XXXXXX", NULL);
    g_autofree char *file = g_strdup_printf("%s/state", dir);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    g_autofree char *ram = g_strdup_printf("%s/ram", dir);
    g_autofree char *extra = g_strdup_printf(
        " -object memory-backend-file,id=mem,size=%dM,mem-path=%s,share=on"
        " -machine memory-backend=mem", RAM_MB, ram);
    uint64_t a[16];
    B13 b;

    b13_start(&b, 0, extra);
    b13_resize(&b, 16 * BS);
    b13_blocks(a, 16);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 16);
    qtest_qmp_assert_success(b.qts, "{ 'execute': "
                             "'migrate-set-capabilities', 'arguments': "
                             "{ 'capabilities': [ { 'capability': "
                             "'x-ignore-shared', 'state': true } ] } }");
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate', 'arguments': "
                             "{ 'uri': %s } }", uri);
    while (!b13_migration_done(b.qts)) {
        g_usleep(10 * 1000);
    }
    g_assert_cmpuint(b13_counter(&b, "migration-skipped-bytes"), ==, 0);
    b13_stop(&b);
    unlink(file);
    unlink(ram);
    rmdir(dir);
}

/* Is an incoming migration still loading? */
static bool b13_in_migration(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-status' }");
    const char *status = qdict_get_str(qdict_get_qdict(rsp, "return"),
                                       "status");
    bool busy = !strcmp(status, "inmigrate");

    g_assert_cmpstr(status, !=, "internal-error");
    qobject_unref(rsp);
    return busy;
}

/*
 * Finding: on shared hugetlbfs, residency comes from mincore(), which sees
 * only QEMU's own page tables.  A block the guest took back that another
 * process (a vhost-user back end) then wrote through its own mapping was
 * left out of the migration and discarded on the destination, and the
 * guest read zeros.  Here the test is that process; the RAM is a shared
 * file in the directory data names: a hugetlbfs of 2 MiB pages
 * (VB13_HUGETLBFS, skipped without), or tmpfs (/dev/shm).
 */
static void test_external_writer(const void *data)
{
    const char *dir = strcmp(data, "hugetlb") ? "/dev/shm" :
                      g_getenv("VB13_HUGETLBFS");
    g_autofree char *tmp = NULL, *ram = NULL, *ram2 = NULL, *file = NULL;
    g_autofree char *uri = NULL;
    g_autofree char *extra = NULL;
    const uint64_t blk = 2 * MiB, a = 64 * MiB, pattern = 0x1313abcd5a5a0001;
    QTestState *dst;
    uint64_t *p;
    int fd;
    B13 b;

    if (!dir || access(dir, W_OK)) {
        g_test_skip("no hugetlbfs (set VB13_HUGETLBFS to a writable mount "
                    "of 2 MiB pages with 128 of them free)");
        return;
    }
    tmp = g_dir_make_tmp("vb13-ext-XXXXXX", NULL);
    file = g_strdup_printf("%s/state", tmp);
    uri = g_strdup_printf("file:%s", file);
    ram = g_strdup_printf("%s/vb13-ext-ram-%d", dir, getpid());
    ram2 = g_strdup_printf("%s/vb13-ext-ram2-%d", dir, getpid());
    extra = g_strdup_printf(" -object memory-backend-file,id=mem,size=%dM,"
                            "mem-path=%s,share=on -machine memory-backend=mem",
                            RAM_MB, ram);
    b13_start_full(&b, RAM_MB, 21, 0, extra);
    b13_resize(&b, blk);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, &a, 1);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, blk);
    /* The driver frees the block (target 0) and hands it to a device... */
    b13_resize(&b, 0);
    /* ... whose back end writes it through its own mapping. */
    fd = open(ram, O_RDWR);
    g_assert(fd >= 0);
    p = mmap(NULL, blk, PROT_READ | PROT_WRITE, MAP_SHARED, fd, a);
    g_assert(p != MAP_FAILED);
    p[0] = pattern;
    munmap(p, blk);
    close(fd);
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate', 'arguments': "
                             "{ 'uri': %s } }", uri);
    while (!b13_migration_done(b.qts)) {
        g_usleep(10 * 1000);
    }
    b13_stop(&b);
    unlink(ram);

    dst = qtest_initf("-machine q35 -m %dM -nodefaults -object "
                      "memory-backend-file,id=mem,size=%dM,mem-path=%s,"
                      "share=on -machine memory-backend=mem -device "
                      "virtio-balloon13-pci,id=b13,addr=%d.0,page-bits=21 "
                      "-incoming file:%s", RAM_MB, RAM_MB, ram2, SLOT, file);
    while (b13_in_migration(dst)) {
        g_usleep(10 * 1000);
    }
    g_assert_cmphex(qtest_readq(dst, a), ==, pattern);
    qtest_quit(dst);
    unlink(ram2);
    unlink(file);
    rmdir(tmp);
}

/* Write a distinct pattern into each of n blocks at a. */
static void b13_fill(B13 *b, const uint64_t *a, int n)
{
    for (int i = 0; i < n; i++) {
        qtest_writeq(b->qts, a[i], 0x1313000000000000ULL | a[i]);
    }
}

/* Each block holds its pattern (kept), or zeros (discarded). */
static void b13_check_blocks(B13 *b, const uint64_t *a, int n, bool kept)
{
    for (int i = 0; i < n; i++) {
        g_assert_cmphex(qtest_readq(b->qts, a[i]), ==,
                        kept ? 0x1313000000000000ULL | a[i] : 0);
    }
}

/*
 * B13-DEV-DISCARD-01: memory pinned for an assigned device is not
 * discarded.  QEMU disables discards for VFIO and the like, none of which
 * a TCG-only build can run; x-pin-ram disables them the same way.  The
 * blocks still count as ballooned.
 */
static void test_pinned_kept(void)
{
    uint64_t a[8];
    B13 b;

    b13_blocks(a, 8);
    for (int pin = 0; pin < 2; pin++) {
        b13_start(&b, 0, pin ? ",x-pin-ram=on" : NULL);
        b13_fill(&b, a, 8);
        b13_resize(&b, 8 * BS);
        b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 8);
        b13_check_blocks(&b, a, 8, pin);
        g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 8 * BS);
        g_assert_cmpuint(b13_counter(&b, "blocks-ballooned"), ==, 8);
        g_assert_cmpuint(b13_counter(&b, "discards-skipped"), ==,
                         pin ? 8 : 0);
        g_assert_cmpuint(b13_counter(&b, "discarded-bytes"), ==,
                         pin ? 0 : 8 * BS);
        b13_stop(&b);
    }
}

static const char *b13_migration_status(QTestState *qts, QDict **rsp)
{
    const char *status;

    *rsp = qtest_qmp(qts, "{ 'execute': 'query-migrate' }");
    status = qdict_get_try_str(qdict_get_qdict(*rsp, "return"), "status");
    g_assert(status);
    return status;
}

static bool b13_vm_running(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-status' }");
    bool running = qdict_get_bool(qdict_get_qdict(rsp, "return"),
                                  "running");

    qobject_unref(rsp);
    return running;
}

/*
 * B13-DEV-DISCARD-02: no discard while a background snapshot runs (it
 * write-protects guest RAM with userfaultfd and saves each page as the
 * guest first writes it: a discard would zero the guest's data).  The
 * blocks of a page list sent meanwhile are counted and kept; once the
 * snapshot is done, page lists discard again.
 */
static void test_bg_snapshot_kept(void)
{
    g_autofree char *dir = g_dir_make_tmp("vb13-snap-XXXXXX", NULL);
    g_autofree char *file = g_strdup_printf("%s/state", dir);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    uint64_t a[16];
    const char *status;
    QDict *rsp;
    B13 b;

    b13_blocks(a, 16);
    b13_start(&b, 0, NULL);
    b13_fill(&b, a, 16);
    b13_resize(&b, 16 * BS);
    rsp = qtest_qmp(b.qts, "{ 'execute': 'migrate-set-capabilities', "
                    "'arguments': { 'capabilities': [ { 'capability': "
                    "'background-snapshot', 'state': true } ] } }");
    if (qdict_haskey(rsp, "error")) {
        /* QEMU refuses it where the kernel has no userfaultfd-wp. */
        g_test_skip(qdict_get_str(qdict_get_qdict(rsp, "error"), "desc"));
        qobject_unref(rsp);
        b13_stop(&b);
        rmdir(dir);
        return;
    }
    qobject_unref(rsp);
    /* Slow enough (about 1 KB/s) to be still running after the list. */
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate-set-parameters', "
                             "'arguments': { 'max-bandwidth': 1024 } }");
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate', 'arguments': "
                             "{ 'uri': %s } }", uri);
    /* The snapshot stops the VM to save devices, then lets it run. */
    for (;;) {
        status = b13_migration_status(b.qts, &rsp);
        g_assert_cmpstr(status, !=, "failed");
        g_assert_cmpstr(status, !=, "completed");
        if (!strcmp(status, "active") && b13_vm_running(b.qts)) {
            qobject_unref(rsp);
            break;
        }
        qobject_unref(rsp);
        g_usleep(10 * 1000);
    }
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 8);
    status = b13_migration_status(b.qts, &rsp);
    g_assert_cmpstr(status, ==, "active");
    qobject_unref(rsp);
    b13_check_blocks(&b, a, 8, true);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 8 * BS);
    g_assert_cmpuint(b13_counter(&b, "discards-skipped"), ==, 8);
    g_assert_cmpuint(b13_counter(&b, "discards"), ==, 0);
    g_assert_cmpuint(b13_counter(&b, "discarded-bytes"), ==, 0);

    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate-set-parameters', "
                             "'arguments': { 'max-bandwidth': %" PRIu64
                             " } }", (uint64_t)1 * GiB);
    while (!b13_migration_done(b.qts)) {
        g_usleep(10 * 1000);
    }
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, &a[8], 8);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 16 * BS);
    g_assert_cmpuint(b13_counter(&b, "discards-skipped"), ==, 8);
    g_assert_cmpuint(b13_counter(&b, "discards"), >, 0);
    g_assert_cmpuint(b13_counter(&b, "discarded-bytes"), ==, 8 * BS);
    b13_check_blocks(&b, &a[8], 8, false);
    b13_check_blocks(&b, a, 8, true);
    b13_stop(&b);
    unlink(file);
    rmdir(dir);
}

/* Wait until the migration status of qts is want (never failed). */
static void b13_wait_migration(QTestState *qts, const char *want)
{
    gint64 start = g_get_monotonic_time();
    const char *status;
    QDict *rsp;

    for (;;) {
        status = b13_migration_status(qts, &rsp);
        g_assert_cmpstr(status, !=, "failed");
        if (!strcmp(status, want)) {
            qobject_unref(rsp);
            return;
        }
        qobject_unref(rsp);
        g_assert(g_get_monotonic_time() - start <= 4 * TIMEOUT_US);
        g_usleep(10 * 1000);
    }
}

/*
 * B13-DEV-DISCARD-02, the other half: no discard on the destination of a
 * postcopy migration while pages still come from the source (a discarded
 * page that had arrived would be gone: the source never sends it again).
 * The test drives the destination's device through the source's rings,
 * which migrated with guest RAM.  The blocks of a page list sent there
 * during postcopy are counted and kept: read after the migration, when a
 * missing page is no longer fetched from the source, they still hold
 * their data.  Then page lists discard again.
 */
static void test_postcopy_kept(void)
{
    g_autofree char *dir = g_dir_make_tmp("vb13-pc-XXXXXX", NULL);
    g_autofree char *sock = g_strdup_printf("%s/sock", dir);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    QPCIAddress addr = { .devfn = QPCI_DEVFN(SLOT, 0) };
    uint64_t a[16];
    QOSState *dqs;
    QDict *rsp;
    B13 b, d;

    b13_blocks(a, 16);
    b13_start(&b, 0, NULL);
    b13_fill(&b, a, 16);
    b13_resize(&b, 16 * BS);
    dqs = qtest_pc_boot("-machine q35 -m %dM -nodefaults "
                        "-device virtio-balloon13-pci,id=b13,addr=%d.0,"
                        "page-bits=12 -incoming defer", RAM_MB, SLOT);
    rsp = qtest_qmp(dqs->qts, "{ 'execute': 'migrate-set-capabilities', "
                    "'arguments': { 'capabilities': [ { 'capability': "
                    "'postcopy-ram', 'state': true } ] } }");
    if (qdict_haskey(rsp, "error")) {
        /* QEMU refuses it where the kernel has no userfaultfd. */
        g_test_skip(qdict_get_str(qdict_get_qdict(rsp, "error"), "desc"));
        qobject_unref(rsp);
        qtest_shutdown(dqs);
        b13_stop(&b);
        rmdir(dir);
        return;
    }
    qobject_unref(rsp);
    qtest_qmp_assert_success(dqs->qts, "{ 'execute': 'migrate-incoming', "
                             "'arguments': { 'uri': %s } }", uri);
    qtest_qmp_assert_success(b.qts, "{ 'execute': "
                             "'migrate-set-capabilities', 'arguments': "
                             "{ 'capabilities': [ { 'capability': "
                             "'postcopy-ram', 'state': true } ] } }");
    /* About 1 KB/s before and after the switch: postcopy lasts. */
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate-set-parameters', "
                             "'arguments': { 'max-bandwidth': 1024, "
                             "'max-postcopy-bandwidth': 1024 } }");
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate', 'arguments': "
                             "{ 'uri': %s } }", uri);
    b13_wait_migration(b.qts, "active");
    qtest_qmp_assert_success(b.qts, "{ 'execute': "
                             "'migrate-start-postcopy' }");
    b13_wait_migration(dqs->qts, "postcopy-active");
    while (!b13_vm_running(dqs->qts)) {
        g_usleep(10 * 1000);
    }

    /* The destination's device, driven with the source's rings. */
    d = b;                      /* with the guest allocator's state */
    d.qts = dqs->qts;
    d.dev = virtio_pci_new(dqs->pcibus, &addr);
    g_assert(d.dev);
    qvirtio_pci_device_enable(d.dev);
    /* Each block arrives from the source (it asks for a missing page). */
    b13_check_blocks(&d, a, 16, true);
    b13_send_blocks(&d, VIRTIO_BALLOON13_RESP_PAGES, a, 8);
    b13_wait_migration(dqs->qts, "postcopy-active");

    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate-set-parameters', "
                             "'arguments': { 'max-postcopy-bandwidth': %"
                             PRIu64 " } }", (uint64_t)1 * GiB);
    b13_wait_migration(b.qts, "completed");
    b13_wait_migration(dqs->qts, "completed");
    /* A page discarded after it arrived would read zeros now. */
    b13_check_blocks(&d, a, 8, true);
    g_assert_cmpuint(b13_get_u64(&d, "size"), ==, 8 * BS);
    g_assert_cmpuint(b13_counter(&d, "discards-skipped"), ==, 8);
    g_assert_cmpuint(b13_counter(&d, "discards"), ==, 0);
    g_assert_cmpuint(b13_counter(&d, "discarded-bytes"), ==, 0);
    b13_send_blocks(&d, VIRTIO_BALLOON13_RESP_PAGES, &a[8], 8);
    g_assert_cmpuint(b13_get_u64(&d, "size"), ==, 16 * BS);
    g_assert_cmpuint(b13_counter(&d, "discards-skipped"), ==, 8);
    g_assert_cmpuint(b13_counter(&d, "discarded-bytes"), ==, 8 * BS);
    b13_check_blocks(&d, &a[8], 8, false);

    qos_object_destroy(&d.dev->obj);
    qtest_shutdown(dqs);
    b13_stop(&b);
    unlink(sock);
    rmdir(dir);
}

/*
 * B13-DEV-MIGR-01: blocks the guest withdraws during a migration, after
 * the device last looked (no timer scan runs here: the virtual clock
 * stands still), reach the destination with their data and leave the
 * balloon; the rest of the balloon reads zeros there and stays counted.
 * With 4 KiB blocks (one target page each) the device finds them at the
 * migration's dirty bitmap syncs, without a scan while the VM is stopped,
 * and a block that was only read (populated with zeros, not written) stays
 * in the balloon.  With 2 MiB blocks the stop scans, and counts that block
 * as withdrawn.  data: page-bits.
 */
static void test_withdrawn_in_migration(const void *data)
{
    int bits = GPOINTER_TO_INT(data);
    uint64_t bs = 1ULL << bits;
    g_autofree char *dir = g_dir_make_tmp("vb13-mig-XXXXXX", NULL);
    g_autofree char *file = g_strdup_printf("%s/state", dir);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    const char *mem = " -object memory-backend-memfd,id=mem,size=128M,"
                      "share=on -machine memory-backend=mem";
    const uint64_t mark = 0x5a5a131300000000ULL;
    uint64_t a[16];
    QTestState *dst;
    QDict *rsp;
    B13 b;

    for (int i = 0; i < 16; i++) {
        a[i] = 64 * MiB + 2 * i * bs;
    }
    b13_start_full(&b, RAM_MB, bits, 0, mem);
    b13_fill(&b, a, 16);
    b13_resize(&b, 16 * bs);
    b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, a, 16);
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==, 16 * bs);
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate-set-parameters', "
                             "'arguments': { 'max-bandwidth': 1024 } }");
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate', 'arguments': "
                             "{ 'uri': %s } }", uri);
    /* Past the first sync, which scans the whole balloon. */
    b13_wait_migration(b.qts, "active");
    /* The guest takes back four blocks and writes them, and reads one. */
    for (int i = 0; i < 4; i++) {
        qtest_writeq(b.qts, a[i] + bs - 8, mark | i);
    }
    g_assert_cmphex(qtest_readq(b.qts, a[4]), ==, 0);
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate-set-parameters', "
                             "'arguments': { 'max-bandwidth': %" PRIu64
                             " } }", (uint64_t)1 * GiB);
    while (!b13_migration_done(b.qts)) {
        g_usleep(10 * 1000);
    }
    g_assert_cmpuint(b13_counter(&b, "scans"), ==, bits == 12 ? 0 : 1);
    b13_stop(&b);

    dst = qtest_initf("-machine q35 -m %dM -nodefaults%s -device "
                      "virtio-balloon13-pci,id=b13,addr=%d.0,page-bits=%d "
                      "-incoming %s", RAM_MB, mem, SLOT, bits, uri);
    while (b13_in_migration(dst)) {
        g_usleep(10 * 1000);
    }
    for (int i = 0; i < 16; i++) {
        uint64_t want = i < 4 ? mark | i : 0;

        g_assert_cmphex(qtest_readq(dst, a[i] + bs - 8), ==, want);
        g_assert_cmphex(qtest_readq(dst, a[i]), ==, 0);
    }
    rsp = qtest_qmp(dst, "{ 'execute': 'qom-get', 'arguments': "
                    "{ 'path': '/machine/peripheral/b13', "
                    "'property': 'size' } }");
    g_assert_cmpuint(qdict_get_uint(rsp, "return"), ==,
                     (bits == 12 ? 12 : 11) * bs);
    qobject_unref(rsp);
    qtest_quit(dst);
    unlink(file);
    rmdir(dir);
}

/* ---- bench: a fragmented balloon (issue 16 item 3) ---------------------- */

#define BENCH_RAM_MB    2560
#define BENCH_BLOCKS    (256 * 1024)    /* 1 GiB of 4 KiB blocks */
#define BENCH_PER_MSG   8192
#define BENCH_GOAL_US   5000            /* the longest BQL hold wanted */

static int64_t b13_now(void)
{
    return g_get_monotonic_time();
}

static uint64_t b13_query_downtime(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-migrate' }");
    uint64_t v = qdict_get_try_int(qdict_get_qdict(rsp, "return"),
                                   "downtime", 0);

    qobject_unref(rsp);
    return v;
}

/*
 * Inflate 1 GiB in alternating (fragmented) or contiguous 4 KiB blocks of
 * a memfd-backed 2.5 GiB guest whose RAM is all populated, then measure
 * what holds the main loop (and so the BQL): each page list (the kick is
 * handled synchronously under qtest), query-balloon, each batch of the
 * withdrawal scan (a virtual clock step runs the timer), a full scan, and
 * the downtime of a migration to a file.  Prints TAP comments; asserts
 * nothing about time (the host may be loaded).
 */
static void bench_one(bool fragmented, bool withdraw)
{
    g_autofree char *dir = g_dir_make_tmp("vb13-bench-XXXXXX", NULL);
    g_autofree char *file = g_strdup_printf("%s/state", dir);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    g_autofree uint64_t *a = g_new(uint64_t, BENCH_BLOCKS);
    int64_t t, msg_max = 0, msg_total = 0, q_max = 0, step_max = 0;
    int64_t kick_max = 0;
    int64_t scan_full;
    uint64_t scans0;
    int batches = 0, kicks_over = 0, batches_over = 0;
    uint64_t out_max_us, batch_max_us;
    B13 b;

    b13_start_ram(&b, BENCH_RAM_MB,
                  withdraw ? (1ULL << VIRTIO_BALLOON13_F_WITHDRAW) : 0,
                  " -object memory-backend-memfd,id=mem,size=2560M,share=on"
                  " -machine memory-backend=mem");
    qtest_memset(b.qts, 256 * MiB, 0x55, 2048 * MiB);
    b13_resize(&b, (uint64_t)BENCH_BLOCKS * BS);
    for (int i = 0; i < BENCH_BLOCKS; i++) {
        a[i] = 256 * MiB + (uint64_t)(fragmented ? 2 * i : i) * BS;
    }
    for (int i = 0; i < BENCH_BLOCKS; i += BENCH_PER_MSG) {
        t = b13_now();
        b13_send_blocks(&b, VIRTIO_BALLOON13_RESP_PAGES, &a[i],
                        BENCH_PER_MSG);
        t = b13_now() - t;
        msg_max = MAX(msg_max, t);
        msg_total += t;
        kick_max = MAX(kick_max, b.last_kick_us);
        kicks_over += b.last_kick_us > BENCH_GOAL_US;
    }
    g_assert_cmpuint(b13_get_u64(&b, "size"), ==,
                     (uint64_t)BENCH_BLOCKS * BS);
    for (int i = 0; i < 20; i++) {
        t = b13_now();
        b13_query_actual(&b);
        q_max = MAX(q_max, b13_now() - t);
    }
    /* The guest takes back every 4th block by writing it. */
    for (int i = 0; i < BENCH_BLOCKS; i += 4) {
        qtest_writeb(b.qts, a[i], 1);
    }
    scans0 = b13_counter(&b, "scans");
    while (!withdraw && b13_counter(&b, "scans") == scans0 && batches < 5000) {
        t = b13_now();
        qtest_clock_step(b.qts, 10 * 1000 * 1000);
        t = b13_now() - t;
        step_max = MAX(step_max, t);
        batches_over += t > BENCH_GOAL_US;
        batches++;
    }
    out_max_us = b13_get_u64(&b, "x-output-max-us");
    batch_max_us = b13_get_u64(&b, "x-scan-batch-max-us");
    t = b13_now();
    b13_set_bool(&b, "x-scan-now", true);
    scan_full = b13_now() - t;
    qtest_qmp_assert_success(b.qts, "{ 'execute': 'migrate', 'arguments': "
                             "{ 'uri': %s } }", uri);
    while (!b13_migration_done(b.qts)) {
        g_usleep(10 * 1000);
    }
    printf("# bench %s%s: page lists of %d blocks: main loop max %.2f ms, "
           "back used max %.1f ms, all %.2f s; query-balloon max %.2f ms; "
           "scan batches %d, max %.2f ms; over 5 ms: %d page lists, %d "
           "batches; timed by the device: output dispatch max %.2f ms, "
           "scan batch max %.2f ms; full scan %.1f ms; size after 1/4 "
           "withdrawn %" PRIu64 " MiB; migration downtime %" PRIu64 " ms\n",
           fragmented ? "fragmented" : "contiguous",
           withdraw ? "+withdraw" : "", BENCH_PER_MSG, kick_max / 1000.0,
           msg_max / 1000.0, msg_total / 1e6, q_max / 1000.0, batches,
           step_max / 1000.0, kicks_over, batches_over,
           out_max_us / 1000.0, batch_max_us / 1000.0,
           scan_full / 1000.0, b13_get_u64(&b, "size") / MiB,
           b13_query_downtime(b.qts));
    b13_stop(&b);
    unlink(file);
    rmdir(dir);
}

static void bench_fragmented(void)
{
    bench_one(false, false);
    bench_one(true, false);
    bench_one(false, true);
    bench_one(true, true);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("virtio-balloon13/features", test_features);
    qtest_add_func("virtio-balloon13/withdraw", test_withdraw);
    qtest_add_func("virtio-balloon13/withdraw-bad-length",
                   test_withdraw_bad_length);
    qtest_add_func("virtio-balloon13/stats-big", test_stats_big);
    qtest_add_func("virtio-balloon13/withdraw-no-scan",
                   test_withdraw_no_scan);
    qtest_add_func("virtio-balloon13/host-populated", test_host_populated);
    qtest_add_func("virtio-balloon13/reinflate-accounting",
                   test_reinflate_accounting);
    qtest_add_func("virtio-balloon13/query-no-scan", test_query_no_scan);
    qtest_add_func("virtio-balloon13/report", test_report);
    qtest_add_func("virtio-balloon13/full-stats", test_full_stats);
    qtest_add_func("virtio-balloon13/template-file-kept",
                   test_template_file_kept);
    qtest_add_func("virtio-balloon13/ignore-shared", test_ignore_shared);
    qtest_add_func("virtio-balloon13/pinned-kept", test_pinned_kept);
    qtest_add_func("virtio-balloon13/bg-snapshot-kept",
                   test_bg_snapshot_kept);
    qtest_add_func("virtio-balloon13/postcopy-kept", test_postcopy_kept);
    qtest_add_data_func("virtio-balloon13/external-writer/hugetlb",
                        "hugetlb", test_external_writer);
    qtest_add_data_func("virtio-balloon13/external-writer/tmpfs", "tmpfs",
                        test_external_writer);
    qtest_add_data_func("virtio-balloon13/withdrawn-in-migration/4k",
                        GINT_TO_POINTER(12), test_withdrawn_in_migration);
    qtest_add_data_func("virtio-balloon13/withdrawn-in-migration/2m",
                        GINT_TO_POINTER(21), test_withdrawn_in_migration);
    if (g_test_slow()) {
        qtest_add_func("virtio-balloon13/bench/fragmented", bench_fragmented);
    }

    return g_test_run();
}
