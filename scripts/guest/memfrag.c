// SPDX-License-Identifier: GPL-2.0
/*
 * memfrag - fragment a test guest's free memory with movable pages.
 *
 * Maps MIB mebibytes of anonymous memory in small pages (MADV_NOHUGEPAGE),
 * writes every page, then gives every other one back (MADV_DONTNEED): the
 * guest's free memory is then single-page holes between pages this
 * process holds, all in movable pageblocks, which compaction can move.
 * Prints "memfrag held N freed M" (pages) on stdout once done, then holds
 * the rest until SIGTERM/SIGINT, and exits, giving it all back.
 *
 * Built static (gcc -static) for the test initramfs.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	long pagesize = sysconf(_SC_PAGESIZE);
	unsigned long mib, npages, i, freed = 0;
	struct sigaction sa;
	char *end, *p;

	if (argc != 2) {
		fprintf(stderr, "usage: memfrag MIB\n");
		return 2;
	}
	errno = 0;
	mib = strtoul(argv[1], &end, 10);
	if (errno || end == argv[1] || *end || !mib) {
		fprintf(stderr, "memfrag: bad size '%s'\n", argv[1]);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	npages = (mib << 20) / pagesize;
	p = mmap(NULL, npages * pagesize, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("memfrag: mmap");
		return 1;
	}
	/* Small pages: a huge page would leave no hole behind. */
	if (madvise(p, npages * pagesize, MADV_NOHUGEPAGE))
		perror("memfrag: madvise(MADV_NOHUGEPAGE)");
	for (i = 0; i < npages; i++)
		p[i * pagesize] = 1;
	for (i = 1; i < npages; i += 2) {
		if (madvise(p + i * pagesize, pagesize, MADV_DONTNEED)) {
			perror("memfrag: madvise(MADV_DONTNEED)");
			return 1;
		}
		freed++;
	}
	printf("memfrag held %lu freed %lu\n", npages - freed, freed);
	fflush(stdout);
	while (!stop)
		sleep(1);
	return 0;
}
