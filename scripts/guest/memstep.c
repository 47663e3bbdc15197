// SPDX-License-Identifier: GPL-2.0
/*
 * memstep - a workload that needs memory in steps, for pressure tests.
 *
 * Runs STEPS steps one after another; each step is a child process that
 * allocates STEP_MIB mebibytes of anonymous memory, writes every page and
 * then keeps it until the end.  The next step starts when the previous
 * one has touched all its memory, so the workload's demand grows step by
 * step, as a service starting workers would.  A step whose child dies
 * (the OOM killer, say) counts as killed; so does an earlier step killed
 * while a later one ran.
 *
 * At the end it prints one line of key=value pairs:
 *
 *   memstep: steps=12 step_mib=50 done=12 killed=0 seconds=1.532
 *     max_step_s=0.214 first_step_s=0.121
 *
 * (one line), keeps the memory --hold seconds longer if asked, then ends
 * the children.  Exit status 0 if every step completed and none was
 * killed, 1 otherwise, 2 for a bad command line.
 *
 * Built static (gcc -static) for the test initramfs, like memtouch.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_STEPS	1024

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
	fprintf(f,
		"usage: memstep [--hold SECONDS] STEP_MIB STEPS\n"
		"  STEPS children one after another, each touching STEP_MIB MiB\n"
		"  and keeping it; prints one summary line.\n");
}

/* The child of one step: touch, report on @fd, then wait to be ended. */
static void step_child(size_t len, int fd)
{
	long pagesize = sysconf(_SC_PAGESIZE);
	unsigned char *mem;
	size_t off;
	char ok = 1;

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "memstep: mmap: %s\n", strerror(errno));
		_exit(1);
	}
	for (off = 0; off < len; off += pagesize)
		mem[off] = 1;
	if (write(fd, &ok, 1) != 1)
		_exit(1);
	close(fd);
	for (;;)
		pause();
}

/* Did child @pid die?  Reaps it if so. */
static int dead(pid_t pid)
{
	int status;

	return waitpid(pid, &status, WNOHANG) == pid;
}

int main(int argc, char **argv)
{
	unsigned long step_mib = 0, steps = 0, hold = 0, i;
	double t0, t, max_step = 0, first_step = 0;
	unsigned long done = 0, killed = 0;
	static pid_t pids[MAX_STEPS];
	int a, npos = 0;

	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--hold") && a + 1 < argc) {
			if (parse_ulong(argv[++a], &hold)) {
				fprintf(stderr, "memstep: bad --hold '%s'\n", argv[a]);
				return 2;
			}
		} else if (!strcmp(argv[a], "--help")) {
			usage(stdout);
			return 0;
		} else if (argv[a][0] != '-' && npos < 2) {
			unsigned long *v = npos ? &steps : &step_mib;

			if (parse_ulong(argv[a], v) || !*v) {
				fprintf(stderr, "memstep: bad number '%s'\n", argv[a]);
				return 2;
			}
			npos++;
		} else {
			fprintf(stderr, "memstep: unexpected argument '%s'\n", argv[a]);
			usage(stderr);
			return 2;
		}
	}
	if (npos != 2 || steps > MAX_STEPS) {
		usage(stderr);
		return 2;
	}

	t0 = now();
	for (i = 0; i < steps; i++) {
		int p[2];
		char c;
		ssize_t n;

		if (pipe(p)) {
			perror("memstep: pipe");
			break;
		}
		t = now();
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("memstep: fork");
			close(p[0]);
			close(p[1]);
			break;
		}
		if (!pids[i]) {
			close(p[0]);
			step_child(step_mib << 20, p[1]);
		}
		close(p[1]);
		do {
			n = read(p[0], &c, 1);
		} while (n < 0 && errno == EINTR);
		close(p[0]);
		if (n != 1) {
			/* It died before touching everything. */
			killed++;
			waitpid(pids[i], NULL, 0);
			pids[i] = 0;
			continue;
		}
		done++;
		t = now() - t;
		if (!i)
			first_step = t;
		if (t > max_step)
			max_step = t;
	}
	t = now() - t0;
	/* Earlier steps killed while later ones ran. */
	for (i = 0; i < steps; i++) {
		if (pids[i] > 0 && dead(pids[i])) {
			killed++;
			pids[i] = 0;
		}
	}
	printf("memstep: steps=%lu step_mib=%lu done=%lu killed=%lu seconds=%.3f max_step_s=%.3f first_step_s=%.3f\n",
	       steps, step_mib, done, killed, t, max_step, first_step);
	fflush(stdout);
	if (hold)
		sleep(hold);
	for (i = 0; i < steps; i++) {
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
	}
	return done == steps && !killed ? 0 : 1;
}
