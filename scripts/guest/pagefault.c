// SPDX-License-Identifier: GPL-2.0
/*
 * pagefault - a page-fault-heavy workload for the test guests.
 *
 * Maps MIB mebibytes of anonymous memory, writes one byte in every page
 * (one page fault each: the mapping asks for no transparent huge pages),
 * unmaps it and starts again, for SECONDS.  Every round gives its memory
 * back to the page allocator, where free page reporting finds it: the
 * shape of will-it-scale's page_fault1, the workload free page reporting
 * was measured with when it was merged.  Prints
 *
 *	pagefault: rounds=R pages=P seconds=S rate=PAGES_PER_SECOND
 *
 * Built static (gcc -static) for the test initramfs.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return (errno || end == s || *end || s[0] == '-') ? -1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pagefault [--mib MIB] SECONDS\n"
		"  Fault in MIB MiB (default 128) of anonymous memory a page\n"
		"  at a time, unmap it, again, for SECONDS; print pages/s.\n");
}

int main(int argc, char **argv)
{
	unsigned long mib = 128, seconds = 0, rounds = 0, pages = 0, i, n;
	long pagesize = sysconf(_SC_PAGESIZE);
	double t0, t;
	int a;

	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--mib") && a + 1 < argc) {
			if (parse_ulong(argv[++a], &mib) || !mib) {
				usage(stderr);
				return 2;
			}
		} else if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) {
			usage(stdout);
			return 0;
		} else if (!seconds && !parse_ulong(argv[a], &seconds) && seconds) {
			continue;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!seconds) {
		usage(stderr);
		return 2;
	}
	n = (mib << 20) / pagesize;
	t0 = now();
	do {
		volatile uint8_t *p = mmap(NULL, n * pagesize,
					   PROT_READ | PROT_WRITE,
					   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED) {
			perror("pagefault: mmap");
			return 1;
		}
		if (madvise((void *)p, n * pagesize, MADV_NOHUGEPAGE) &&
		    errno != EINVAL) {
			perror("pagefault: madvise");
			return 1;
		}
		for (i = 0; i < n; i++)
			p[i * pagesize] = (uint8_t)i;
		if (munmap((void *)p, n * pagesize)) {
			perror("pagefault: munmap");
			return 1;
		}
		rounds++;
		pages += n;
		t = now() - t0;
	} while (t < seconds);
	printf("pagefault: rounds=%lu pages=%lu seconds=%.3f rate=%.0f\n",
	       rounds, pages, t, pages / t);
	return 0;
}
