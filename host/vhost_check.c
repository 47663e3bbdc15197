// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * balloon13d: checks on what the vhost-user front end sends (see
 * vhost_check.h).  Each request gets a rule: its payload size, how many
 * fds it may carry, its queue index, and what its fields may hold.  A
 * request without a rule is one balloon13d neither offers nor needs, and
 * is refused.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "vhost_check.h"

/* Sizes of the payloads balloon13d accepts. */
#define SZ_U64		sizeof(uint64_t)
#define SZ_STATE	sizeof(struct vhost_vring_state)
#define SZ_ADDR		sizeof(struct vhost_vring_addr)
#define SZ_MEMREG	sizeof(VhostUserMemRegMsg)
#define SZ_MEM(n)	(offsetof(VhostUserMemory, regions) + \
			 (n) * sizeof(VhostUserMemoryRegion))

const char *b13_vu_request_name(int request)
{
	/* The library's table has holes (34, 39, 40): NULL there. */
	const char *s = request >= 0 ? vu_request_to_string(request) : NULL;

	return s ? s : "unknown";
}

static const char *why(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static const char *why(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return buf;
}

/* [a, a + len) without wrapping past 2^64 (len > 0). */
static bool span_ok(uint64_t a, uint64_t len)
{
	return len && len - 1 <= UINT64_MAX - a;
}

/*
 * The region libvhost-user's qva_to_va() would pick for qva (the first
 * one containing it): does [qva, qva + len) stay inside it, and is the
 * address the library will use (our mapping of it) aligned to align?
 * The front end's addresses can be aligned while ours are not, if a
 * region's qva is not congruent with where we mapped it.
 */
static bool qva_fits(const VuDev *dev, uint64_t qva, uint64_t len,
		     uint64_t align)
{
	uint32_t i;

	if (!span_ok(qva, len))
		return false;
	for (i = 0; i < dev->nregions; i++) {
		const VuDevRegion *r = &dev->regions[i];

		if (qva >= r->qva && qva - r->qva < r->size)
			return len <= r->size - (qva - r->qva) &&
			       !((qva - r->qva + r->mmap_addr + r->mmap_offset) %
				 align);
	}
	return false;
}

/* Split ring layout (virtio 1.x 2.7): descriptors, driver and device areas. */
static bool ring_fits(const VuDev *dev, const struct vhost_vring_addr *a,
		      uint64_t num)
{
	return num && !(a->desc_user_addr % 16) && !(a->avail_user_addr % 2) &&
	       !(a->used_user_addr % 4) &&
	       qva_fits(dev, a->desc_user_addr, 16 * num, 16) &&
	       qva_fits(dev, a->avail_user_addr, 6 + 2 * num, 2) &&
	       qva_fits(dev, a->used_user_addr, 6 + 8 * num, 4);
}

bool b13_vu_rings_fit(const VuDev *dev, unsigned int q)
{
	const VuVirtq *vq;

	if (!dev->vq || q >= dev->max_queues)
		return false;
	vq = &dev->vq[q];
	return vq->vring.desc && vq->vring.avail && vq->vring.used &&
	       ring_fits(dev, &vq->vra, vq->vring.num);
}

/*
 * File systems whose files may be guest RAM: their pages are the kernel's
 * own (shmem, hugetlbfs) or a local disk's, faults on them end, and a
 * hole punched in them gives memory back.  A file on FUSE, NFS and the
 * like is refused: a third party decides what its pages hold and when
 * (or whether) a fault on them returns.
 */
static const struct {
	uint32_t magic;
	const char *name;
	bool trusted;
} file_systems[] = {
	{ 0x01021994, "tmpfs/shmem", true },	/* TMPFS_MAGIC, memfd too */
	{ 0x958458f6, "hugetlbfs", true },	/* HUGETLBFS_MAGIC */
	{ 0x0000ef53, "ext2/3/4", true },	/* EXT4_SUPER_MAGIC */
	{ 0x58465342, "xfs", true },		/* XFS_SUPER_MAGIC */
	{ 0x9123683e, "btrfs", true },		/* BTRFS_SUPER_MAGIC */
	{ 0x858458f6, "ramfs", false },		/* cannot punch holes */
	{ 0x65735546, "fuse", false },
	{ 0x00006969, "nfs", false },
	{ 0x01021997, "9p", false },
	{ 0xfe534d42, "smb2", false },
	{ 0xff534d42, "cifs", false },
	{ 0x794c7630, "overlayfs", false },
	{ 0x73717368, "squashfs", false },
};

const char *b13_vu_fs_name(uint32_t magic)
{
	size_t i;

	for (i = 0; i < sizeof(file_systems) / sizeof(file_systems[0]); i++)
		if (file_systems[i].magic == magic)
			return file_systems[i].name;
	return NULL;
}

bool b13_vu_fs_trusted(uint32_t magic)
{
	size_t i;

	for (i = 0; i < sizeof(file_systems) / sizeof(file_systems[0]); i++)
		if (file_systems[i].magic == magic)
			return file_systems[i].trusted;
	return false;
}

/*
 * libvhost-user adds to region addresses without checking for overflow
 * (a descriptor's 32-bit length to a guest address, to clip it; a
 * region's size to its front-end address, to find it).  Regions that
 * end below 2^63, in both address spaces, keep every such sum exact.
 */
#define ADDR_LIMIT	(1ull << 63)

/*
 * A memory region of the table: sizes that neither wrap nor are empty,
 * addresses far from 2^64, a regular file long enough on a file system
 * fit for guest RAM.  *f gets what identifies its bytes.
 */
static const char *check_region(const VhostUserMemoryRegion *r, int fd,
				struct b13_vu_file *f, char *buf, size_t len)
{
	struct statfs sfs;
	struct stat st;
	const char *fs;

	if (!span_ok(r->guest_phys_addr, r->memory_size) ||
	    !span_ok(r->userspace_addr, r->memory_size) ||
	    !span_ok(r->mmap_offset, r->memory_size))
		return why(buf, len, "memory region empty or wrapping past "
			   "2^64");
	if (r->memory_size > ADDR_LIMIT ||
	    r->guest_phys_addr > ADDR_LIMIT - r->memory_size ||
	    r->userspace_addr > ADDR_LIMIT - r->memory_size)
		return why(buf, len, "memory region at gpa 0x%" PRIx64
			   " (front end 0x%" PRIx64 ") of %" PRIu64 " bytes "
			   "reaches past 2^63", (uint64_t)r->guest_phys_addr,
			   (uint64_t)r->userspace_addr,
			   (uint64_t)r->memory_size);
	if (r->mmap_offset + r->memory_size > INT64_MAX)
		return why(buf, len, "memory region beyond any file size");
	/*
	 * A region longer than its file would fault (SIGBUS) when the guest
	 * names a page past the end.
	 */
	if (fstat(fd, &st) || fstatfs(fd, &sfs))
		return why(buf, len, "memory region fd: %m");
	if (!S_ISREG(st.st_mode))
		return why(buf, len, "memory region fd is not a regular file "
			   "(memfd, tmpfs, hugetlbfs or a local disk file)");
	if (!b13_vu_fs_trusted((uint32_t)sfs.f_type)) {
		fs = b13_vu_fs_name((uint32_t)sfs.f_type);
		if (fs)
			return why(buf, len, "memory region in a file on %s: "
				   "not a file system for guest RAM (memfd, "
				   "tmpfs, hugetlbfs, ext4, xfs, btrfs)", fs);
		return why(buf, len, "memory region in a file on file system "
			   "0x%lx: not one for guest RAM (memfd, tmpfs, "
			   "hugetlbfs, ext4, xfs, btrfs)",
			   (unsigned long)sfs.f_type);
	}
	if ((uint64_t)st.st_size < r->mmap_offset + r->memory_size)
		return why(buf, len, "memory region of %" PRIu64 " bytes at "
			   "offset %" PRIu64 " in a file of %lld bytes",
			   (uint64_t)r->memory_size, (uint64_t)r->mmap_offset,
			   (long long)st.st_size);
	*f = (struct b13_vu_file){
		.gpa = r->guest_phys_addr, .size = r->memory_size,
		.qva = r->userspace_addr, .offset = r->mmap_offset,
		.dev = st.st_dev, .ino = st.st_ino,
		.fs = (uint32_t)sfs.f_type,
		.page = sfs.f_bsize > 0 ? (uint64_t)sfs.f_bsize : 4096,
	};
	return NULL;
}

/* Do two regions map some of the same bytes of one file? */
static bool aliased(const struct b13_vu_file *a, const struct b13_vu_file *b)
{
	return a->dev == b->dev && a->ino == b->ino &&
	       a->offset < b->offset + b->size &&
	       b->offset < a->offset + a->size;
}

static bool gpa_overlap(const VhostUserMemoryRegion *a, uint64_t gpa,
			uint64_t size)
{
	uint64_t a_last = a->guest_phys_addr + (a->memory_size - 1);
	uint64_t b_last = gpa + (size - 1);

	return a->guest_phys_addr <= b_last && gpa <= a_last;
}

static const char *check_mem_table(const VhostUserMsg *msg,
				   const VhostUserMemory *mem, char *buf,
				   size_t len)
{
	struct b13_vu_file f[VHOST_MEMORY_BASELINE_NREGIONS];
	uint32_t i, j;
	const char *e;

	if (mem->nregions > VHOST_MEMORY_BASELINE_NREGIONS)
		return why(buf, len, "memory table of %u regions (at most %d)",
			   mem->nregions, VHOST_MEMORY_BASELINE_NREGIONS);
	if (msg->size != SZ_MEM(mem->nregions))
		return why(buf, len, "memory table of %u regions in %u bytes",
			   mem->nregions, msg->size);
	if (msg->fd_num != (int)mem->nregions)
		return why(buf, len, "memory table of %u regions with %d fds",
			   mem->nregions, msg->fd_num);
	for (i = 0; i < mem->nregions; i++) {
		e = check_region(&mem->regions[i], msg->fds[i], &f[i], buf,
				 len);
		if (e)
			return e;
		for (j = 0; j < i; j++) {
			if (gpa_overlap(&mem->regions[j],
					mem->regions[i].guest_phys_addr,
					mem->regions[i].memory_size))
				return why(buf, len, "memory regions %u and %u "
					   "overlap", j, i);
			/* Ballooning one would discard the other's data. */
			if (aliased(&f[j], &f[i]))
				return why(buf, len, "memory regions %u and %u "
					   "map the same file bytes", j, i);
		}
	}
	return NULL;
}

static const char *check_add_region(const VuDev *dev, const VhostUserMsg *msg,
				    const VhostUserMemoryRegion *r,
				    const struct b13_vu_files *files,
				    char *buf, size_t len)
{
	struct b13_vu_file f;
	const char *e;
	uint32_t i;

	if (msg->fd_num != 1)
		return why(buf, len, "ADD_MEM_REG with %d fds", msg->fd_num);
	if (dev->nregions >= VHOST_USER_MAX_RAM_SLOTS)
		return why(buf, len, "ADD_MEM_REG: all %d slots used",
			   VHOST_USER_MAX_RAM_SLOTS);
	e = check_region(r, msg->fds[0], &f, buf, len);
	if (e)
		return e;
	for (i = 0; i < dev->nregions; i++) {
		VhostUserMemoryRegion o = {
			.guest_phys_addr = dev->regions[i].gpa,
			.memory_size = dev->regions[i].size,
		};

		if (gpa_overlap(&o, r->guest_phys_addr, r->memory_size))
			return why(buf, len, "ADD_MEM_REG overlaps region %u",
				   i);
	}
	for (i = 0; files && i < files->n; i++)
		if (aliased(&files->r[i], &f))
			return why(buf, len, "ADD_MEM_REG maps the same file "
				   "bytes as the region at gpa 0x%" PRIx64,
				   files->r[i].gpa);
	return NULL;
}

void b13_vu_files_note(struct b13_vu_files *files, const VhostUserMsg *msg)
{
	__typeof__(((VhostUserMsg *)NULL)->payload) pl;
	struct b13_vu_file f;
	char buf[200];
	uint32_t i, k;

	memcpy(&pl, &msg->payload, sizeof(pl));
	switch (msg->request) {
	case VHOST_USER_SET_MEM_TABLE:
		files->n = 0;
		for (i = 0; i < pl.memory.nregions &&
		     i < VHOST_MEMORY_BASELINE_NREGIONS; i++)
			if (!check_region(&pl.memory.regions[i], msg->fds[i],
					  &f, buf, sizeof(buf)))
				files->r[files->n++] = f;
		break;
	case VHOST_USER_ADD_MEM_REG:
		if (files->n < VHOST_USER_MAX_RAM_SLOTS && msg->fd_num == 1 &&
		    !check_region(&pl.memreg.region, msg->fds[0], &f, buf,
				  sizeof(buf)))
			files->r[files->n++] = f;
		break;
	case VHOST_USER_REM_MEM_REG:
		for (i = 0; i < files->n; i++) {
			const struct b13_vu_file *o = &files->r[i];

			if (o->gpa != pl.memreg.region.guest_phys_addr ||
			    o->qva != pl.memreg.region.userspace_addr ||
			    o->size != pl.memreg.region.memory_size)
				continue;
			for (k = i + 1; k < files->n; k++)
				files->r[k - 1] = files->r[k];
			files->n--;
			break;
		}
		break;
	default:
		break;
	}
}

uint64_t b13_vu_files_page(const struct b13_vu_files *files, uint64_t gpa,
			   uint64_t size)
{
	uint32_t i;

	for (i = 0; files && i < files->n; i++)
		if (files->r[i].gpa == gpa && files->r[i].size == size)
			return files->r[i].page;
	return 0;
}

/*
 * Kick, call and error notifiers: an eventfd (or at least an anonymous
 * inode, where /proc is missing), switched to non-blocking so that
 * libvhost-user's eventfd_write()/read() never waits on a front end that
 * filled the counter or raced us to it.
 */
static const char *check_notifier(int fd, char *buf, size_t len)
{
	char path[64], target[64];
	struct stat st;
	ssize_t n;
	int fl;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n >= 0) {
		target[n] = 0;
		if (strcmp(target, "anon_inode:[eventfd]"))
			return why(buf, len, "notifier fd is not an eventfd");
	} else if (fstat(fd, &st) || (st.st_mode & S_IFMT)) {
		return why(buf, len, "notifier fd is not an eventfd");
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK))
		return why(buf, len, "notifier fd: %m");
	return NULL;
}

static const char *check_vring_file(const VuDev *dev, const VhostUserMsg *msg,
				    uint64_t v, char *buf, size_t len)
{
	unsigned int idx = v & VHOST_USER_VRING_IDX_MASK;
	bool nofd = v & VHOST_USER_VRING_NOFD_MASK;

	if (v & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK |
			    VHOST_USER_VRING_NOFD_MASK))
		return why(buf, len, "%s: unknown bits 0x%" PRIx64,
			   b13_vu_request_name(msg->request), v);
	if (idx >= dev->max_queues)
		return why(buf, len, "%s: queue index %u (device has %u)",
			   b13_vu_request_name(msg->request), idx,
			   dev->max_queues);
	if (msg->fd_num != (nofd ? 0 : 1))
		return why(buf, len, "%s with %d fds%s",
			   b13_vu_request_name(msg->request), msg->fd_num,
			   nofd ? " and the no-fd flag" : "");
	return nofd ? NULL : check_notifier(msg->fds[0], buf, len);
}

/* Payload size and fds every accepted request must have. */
static const char *check_shape(const VhostUserMsg *msg, uint32_t size,
			       int fds, char *buf, size_t len)
{
	if (msg->size != size)
		return why(buf, len, "%s with a %u-byte payload (want %u)",
			   b13_vu_request_name(msg->request), msg->size,
			   size);
	if (fds >= 0 && msg->fd_num != fds)
		return why(buf, len, "%s with %d fds (want %d)",
			   b13_vu_request_name(msg->request), msg->fd_num,
			   fds);
	return NULL;
}

static const char *check_queue(const VuDev *dev, const VhostUserMsg *msg,
			       unsigned int idx, char *buf, size_t len)
{
	if (idx >= dev->max_queues)
		return why(buf, len, "%s: queue index %u (device has %u)",
			   b13_vu_request_name(msg->request), idx,
			   dev->max_queues);
	return NULL;
}

const char *b13_vu_check_msg(const VuDev *dev, const VhostUserMsg *msg,
			     const struct b13_vu_offer *offer,
			     const struct b13_vu_files *files, char *buf,
			     size_t len)
{
	/* The message is packed: look at an aligned copy of its payload. */
	__typeof__(((VhostUserMsg *)NULL)->payload) pl;
	const struct vhost_vring_state *s = &pl.state;
	const struct vhost_vring_addr *a = &pl.addr;
	const VhostUserConfig *cfg = &pl.config;
	const char *e;

	memcpy(&pl, &msg->payload, sizeof(pl));
	if ((msg->flags & VHOST_USER_VERSION_MASK) != 1 ||
	    (msg->flags & VHOST_USER_REPLY_MASK))
		return why(buf, len, "%s: bad flags 0x%x",
			   b13_vu_request_name(msg->request), msg->flags);
	if (msg->fd_num < 0 || msg->fd_num > VHOST_MEMORY_BASELINE_NREGIONS)
		return why(buf, len, "%d fds", msg->fd_num);

	switch (msg->request) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_SET_OWNER:
	case VHOST_USER_RESET_OWNER:
		return check_shape(msg, 0, 0, buf, len);

	case VHOST_USER_SET_FEATURES:
		e = check_shape(msg, SZ_U64, 0, buf, len);
		if (!e && (pl.u64 & ~offer->features))
			e = why(buf, len, "SET_FEATURES 0x%" PRIx64 ": not offered "
				"0x%" PRIx64, pl.u64,
				pl.u64 & ~offer->features);
		return e;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		e = check_shape(msg, SZ_U64, 0, buf, len);
		if (!e && (pl.u64 & ~offer->protocol_features))
			e = why(buf, len, "SET_PROTOCOL_FEATURES 0x%" PRIx64
				": not offered 0x%" PRIx64, pl.u64,
				pl.u64 & ~offer->protocol_features);
		return e;

	case VHOST_USER_SET_MEM_TABLE:
		return check_mem_table(msg, &pl.memory, buf, len);
	case VHOST_USER_ADD_MEM_REG:
		e = check_shape(msg, SZ_MEMREG, -1, buf, len);
		return e ? e : check_add_region(dev, msg, &pl.memreg.region,
						 files, buf, len);
	case VHOST_USER_REM_MEM_REG:
		e = check_shape(msg, SZ_MEMREG, -1, buf, len);
		if (!e && msg->fd_num > 1)
			e = why(buf, len, "REM_MEM_REG with %d fds",
				msg->fd_num);
		return e;

	case VHOST_USER_SET_VRING_NUM:
		e = check_shape(msg, SZ_STATE, 0, buf, len);
		if (!e)
			e = check_queue(dev, msg, s->index, buf, len);
		if (e)
			return e;
		if (!s->num || s->num > VIRTQUEUE_MAX_SIZE ||
		    (s->num & (s->num - 1)))
			return why(buf, len, "SET_VRING_NUM: queue %u size %u "
				   "(a power of two, 1..%d)", s->index, s->num,
				   VIRTQUEUE_MAX_SIZE);
		/* Rings already placed must still fit at the new size. */
		if (dev->vq[s->index].vring.desc &&
		    !ring_fits(dev, &dev->vq[s->index].vra, s->num))
			return why(buf, len, "SET_VRING_NUM: queue %u rings "
				   "do not fit at size %u", s->index, s->num);
		return NULL;
	case VHOST_USER_SET_VRING_ADDR:
		e = check_shape(msg, SZ_ADDR, 0, buf, len);
		if (!e)
			e = check_queue(dev, msg, a->index, buf, len);
		if (e)
			return e;
		if (!dev->vq[a->index].vring.num)
			return why(buf, len, "SET_VRING_ADDR: queue %u has no "
				   "size yet", a->index);
		if (!ring_fits(dev, a, dev->vq[a->index].vring.num))
			return why(buf, len, "SET_VRING_ADDR: queue %u rings "
				   "not wholly inside guest memory, or "
				   "misaligned", a->index);
		return NULL;
	case VHOST_USER_SET_VRING_BASE:
		e = check_shape(msg, SZ_STATE, 0, buf, len);
		if (!e)
			e = check_queue(dev, msg, s->index, buf, len);
		if (!e && s->num > 0xffff)
			e = why(buf, len, "SET_VRING_BASE: queue %u base %u "
				"(16 bits)", s->index, s->num);
		return e;
	case VHOST_USER_GET_VRING_BASE:
		e = check_shape(msg, SZ_STATE, 0, buf, len);
		return e ? e : check_queue(dev, msg, s->index, buf, len);
	case VHOST_USER_SET_VRING_ENABLE:
		e = check_shape(msg, SZ_STATE, 0, buf, len);
		if (!e)
			e = check_queue(dev, msg, s->index, buf, len);
		if (!e && s->num > 1)
			e = why(buf, len, "SET_VRING_ENABLE: queue %u state %u",
				s->index, s->num);
		return e;
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		e = check_shape(msg, SZ_U64, -1, buf, len);
		return e ? e : check_vring_file(dev, msg, pl.u64, buf, len);

	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_SET_CONFIG:
		if (msg->size < VHOST_USER_CONFIG_HDR_SIZE ||
		    cfg->size > VHOST_USER_MAX_CONFIG_SIZE ||
		    cfg->offset > VHOST_USER_MAX_CONFIG_SIZE - cfg->size)
			return why(buf, len, "%s: %u bytes at offset %u",
				   b13_vu_request_name(msg->request),
				   cfg->size, cfg->offset);
		return check_shape(msg, VHOST_USER_CONFIG_HDR_SIZE + cfg->size,
				   0, buf, len);

	default:
		return why(buf, len, "request %d (%s) is not supported",
			   msg->request, b13_vu_request_name(msg->request));
	}
}
