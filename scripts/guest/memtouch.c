// SPDX-License-Identifier: GPL-2.0
/*
 * memtouch - make a test guest use its RAM.
 *
 * Allocates MIB mebibytes of anonymous memory and writes every page, so the
 * guest really backs it.  Then it exits, or with --hold keeps the memory
 * until SIGTERM/SIGINT or until --seconds have passed.  With --verify every
 * page gets a value derived from its index, and all of them are read back
 * at the end: a page that lost its contents (say, discarded by the host
 * while the guest still used it) is reported and makes the exit status 1.
 *
 * Built static (gcc -static) for the test initramfs.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
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

static void usage(FILE *f)
{
	fprintf(f,
		"usage: memtouch [--hold] [--seconds N] [--verify] MIB\n"
		"  Allocate MIB MiB and write every page, then exit.\n"
		"  --hold       keep the memory until SIGTERM/SIGINT (or --seconds)\n"
		"  --seconds N  with --hold: release after N seconds\n"
		"  --verify     fill pages with a pattern and check it at the end\n");
}

static uint64_t pattern(uint64_t page)
{
	return (page + 1) * 0x9e3779b97f4a7c15ULL;
}

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return (errno || end == s || *end || s[0] == '-') ? -1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long mib = 0, seconds = 0, npages, i, bad = 0;
	int hold = 0, verify = 0, have_mib = 0;
	long pagesize = sysconf(_SC_PAGESIZE);
	struct sigaction sa;
	unsigned char *mem;
	size_t len;
	int a;

	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--hold")) {
			hold = 1;
		} else if (!strcmp(argv[a], "--verify")) {
			verify = 1;
		} else if (!strcmp(argv[a], "--seconds") && a + 1 < argc) {
			if (parse_ulong(argv[++a], &seconds)) {
				fprintf(stderr, "memtouch: bad --seconds '%s'\n", argv[a]);
				return 2;
			}
		} else if (!strcmp(argv[a], "--help")) {
			usage(stdout);
			return 0;
		} else if (argv[a][0] != '-' && !have_mib) {
			if (parse_ulong(argv[a], &mib) || mib == 0) {
				fprintf(stderr, "memtouch: bad size '%s' (MiB, > 0)\n", argv[a]);
				return 2;
			}
			have_mib = 1;
		} else {
			fprintf(stderr, "memtouch: unexpected argument '%s'\n", argv[a]);
			usage(stderr);
			return 2;
		}
	}
	if (!have_mib) {
		fprintf(stderr, "memtouch: missing size in MiB\n");
		usage(stderr);
		return 2;
	}
	if (seconds && !hold) {
		fprintf(stderr, "memtouch: --seconds needs --hold\n");
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);

	len = (size_t)mib << 20;
	npages = len / pagesize;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "memtouch: mmap %lu MiB: %s\n", mib, strerror(errno));
		return 1;
	}
	for (i = 0; i < npages; i++) {
		uint64_t *p = (uint64_t *)(mem + i * pagesize);

		p[0] = verify ? pattern(i) : 1;
	}
	printf("memtouch: touched %lu MiB\n", mib);
	fflush(stdout);

	if (hold) {
		sigset_t none;

		sigemptyset(&none);
		if (seconds)
			alarm(seconds);
		while (!stop)
			sigsuspend(&none);
	}

	if (verify) {
		for (i = 0; i < npages; i++) {
			uint64_t *p = (uint64_t *)(mem + i * pagesize);

			if (p[0] != pattern(i))
				bad++;
		}
		printf("memtouch: verify %lu of %lu pages bad\n", bad, npages);
	}
	munmap(mem, len);
	return bad ? 1 : 0;
}
