// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A guest that gives every buffer back to the device the moment the
 * device returns it, at CPU speed: what a vCPU in a loop can do, and a
 * Python guest cannot.  For abuse.py's inputq_budget.
 *
 *   guest_spin FD KICK AVAIL USED QSIZE SECONDS
 *
 * FD is guest RAM and KICK the queue's kick eventfd (both inherited),
 * AVAIL/USED the rings' offsets in guest RAM (decimal or 0x hex), QSIZE
 * the ring size.  The buffers must already be posted.  Until SECONDS
 * have passed: every used element's head goes straight back into the
 * avail ring, and the queue is kicked.  Prints how many buffers it
 * recycled.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	volatile uint16_t *avail, *used;
	unsigned long long recycled = 0;
	uint16_t last_used, avail_idx;
	unsigned int qsize;
	struct stat st;
	double end;
	uint8_t *mem;
	int fd, kick;

	if (argc != 7) {
		fprintf(stderr, "usage: guest_spin FD KICK AVAIL USED QSIZE "
			"SECONDS\n");
		return 2;
	}
	fd = atoi(argv[1]);
	kick = atoi(argv[2]);
	qsize = strtoul(argv[5], NULL, 0);
	if (fstat(fd, &st) || !qsize || qsize > 32768) {
		perror("guest_spin");
		return 1;
	}
	mem = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		perror("guest_spin: mmap");
		return 1;
	}
	avail = (uint16_t *)(mem + strtoull(argv[3], NULL, 0));
	used = (uint16_t *)(mem + strtoull(argv[4], NULL, 0));
	end = now() + atof(argv[6]);
	last_used = __atomic_load_n(&used[1], __ATOMIC_ACQUIRE);
	avail_idx = avail[1];
	while (now() < end) {
		uint16_t u = __atomic_load_n(&used[1], __ATOMIC_ACQUIRE);
		bool any = last_used != u;

		while (last_used != u) {
			/* used ring: flags, idx, then {u32 id, u32 len}[] */
			uint32_t head = *(volatile uint32_t *)
				((uint8_t *)used + 4 + 8 * (last_used % qsize));

			avail[2 + avail_idx % qsize] = (uint16_t)head;
			avail_idx++;
			__atomic_store_n(&avail[1], avail_idx, __ATOMIC_RELEASE);
			last_used++;
			recycled++;
		}
		if (any && eventfd_write(kick, 1))
			perror("guest_spin: kick");
	}
	printf("%llu\n", recycled);
	return 0;
}
