// SPDX-License-Identifier: GPL-2.0
/*
 * stressor - CPU, I/O and memory stress for the test guests, checking its
 * own data as it goes.
 *
 * Like stress(1) --cpu/--io/--vm, in one small static binary:
 *
 *   --cpu N   N processes spinning on integer arithmetic
 *   --io N    N processes writing a file of --io-mib MiB (in --dir, a
 *             tmpfs in the test guests), fsync()ing it, reading it back
 *             and checking every byte, deleting it and calling sync()
 *   --vm N    N processes mapping --vm-mib MiB of anonymous memory,
 *             writing every page with a value derived from the round and
 *             the page, reading all of it back and unmapping it
 *
 * Every round writes different values (seeded with --seed), so a page that
 * lost its contents or came back holding an older round's data is caught:
 * the count of bad pages and bad I/O bytes is printed and makes the exit
 * status 1.  The run ends after --seconds, or on SIGTERM/SIGINT; the
 * parent then prints one summary line
 *
 *   stressor: cpu_loops N io_rounds N io_mib N vm_rounds N vm_mib N
 *             bad_pages N bad_io_bytes N workers_lost N
 *
 * (one line).  workers_lost counts workers that died of a signal (say, an
 * OOM kill): status 3 if any and nothing was corrupted.  Status 2: bad
 * usage.  Built static (gcc -static) for the test initramfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS	64
/* I/O is written and checked in pieces of this size. */
#define IO_CHUNK	(64 << 10)

enum kind { CPU, IO, VM, NKINDS };

/* What a worker reports to the parent through its pipe at exit. */
struct report {
	uint64_t rounds;	/* cpu: loops of 2^20 steps */
	uint64_t mib;		/* MiB written and checked */
	uint64_t bad;		/* bad pages (vm) or bad bytes (io) */
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: stressor [--cpu N] [--io N] [--vm N] [--vm-mib MIB] [--io-mib MIB]\n"
		"                [--dir DIR] [--seconds S] [--seed X]\n"
		"  CPU, I/O and memory stress; every byte written is checked.\n"
		"  --cpu N      N processes spinning on arithmetic\n"
		"  --io N       N processes writing, fsync()ing, checking and deleting\n"
		"               a file of --io-mib MiB (default 8) in --dir (default /tmp)\n"
		"  --vm N       N processes mapping, writing and checking --vm-mib MiB\n"
		"               (default 64) of anonymous memory, round after round\n"
		"  --seconds S  stop after S seconds (default: at SIGTERM/SIGINT)\n"
		"  --seed X     seed of the values written (default 1)\n"
		"Exit status: 0 all data intact, 1 data lost or changed, 2 usage,\n"
		"3 a worker was killed (e.g. by the OOM killer).\n");
}

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return (errno || end == s || *end || s[0] == '-') ? -1 : 0;
}

/* splitmix64: a cheap, well-mixed value for (seed, round, index). */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t value(uint64_t seed, uint64_t round, uint64_t i)
{
	return mix(seed ^ mix(round << 32 ^ i));
}

static struct report cpu_worker(void)
{
	struct report r = { 0 };
	volatile uint64_t sink = 0;
	uint64_t x = 1, i;

	while (!stop) {
		for (i = 0; i < (1 << 20); i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		sink += x;
		r.rounds++;
	}
	(void)sink;
	return r;
}

static void fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t round,
		 uint64_t off)
{
	size_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t v = value(seed, round, (off + i) / 8);

		memcpy(buf + i, &v, 8);
	}
}

static uint64_t count_bad(const unsigned char *got, unsigned char *want,
			  size_t len, uint64_t seed, uint64_t round,
			  uint64_t off)
{
	uint64_t bad = 0;
	size_t i;

	fill(want, len, seed, round, off);
	if (!memcmp(got, want, len))
		return 0;
	for (i = 0; i < len; i++)
		bad += got[i] != want[i];
	return bad;
}

static struct report io_worker(int id, const char *dir, unsigned long mib,
			       uint64_t seed)
{
	static unsigned char buf[IO_CHUNK], want[IO_CHUNK];
	struct report r = { 0 };
	size_t size = (size_t)mib << 20, off;
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/.stressor.%d.%d", dir, (int)getpid(),
		 id);
	while (!stop) {
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0) {
			fprintf(stderr, "stressor: %s: %s\n", path,
				strerror(errno));
			break;
		}
		for (off = 0; off < size && !stop; off += IO_CHUNK) {
			fill(buf, IO_CHUNK, seed + id, r.rounds, off);
			if (pwrite(fd, buf, IO_CHUNK, off) != IO_CHUNK)
				break;	/* full: try again next round */
		}
		fsync(fd);
		for (size_t done = 0; done < off; done += IO_CHUNK) {
			if (pread(fd, buf, IO_CHUNK, done) != IO_CHUNK) {
				r.bad += IO_CHUNK;
				continue;
			}
			r.bad += count_bad(buf, want, IO_CHUNK, seed + id,
					   r.rounds, done);
		}
		close(fd);
		unlink(path);
		sync();
		r.mib += off >> 20;
		r.rounds++;
	}
	unlink(path);
	return r;
}

static struct report vm_worker(int id, unsigned long mib, uint64_t seed)
{
	long pagesize = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)mib << 20, npages = len / pagesize, i;
	struct report r = { 0 };
	size_t last = pagesize / 8 - 1;

	while (!stop) {
		uint64_t *p, *mem;

		mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED) {
			usleep(100000);
			continue;
		}
		/* First and last word of every page: a page lost is caught. */
		for (i = 0; i < npages && !stop; i++) {
			p = mem + i * (pagesize / 8);
			p[0] = value(seed + id, r.rounds, 2 * i);
			p[last] = value(seed + id, r.rounds, 2 * i + 1);
		}
		npages = i;
		for (i = 0; i < npages; i++) {
			p = mem + i * (pagesize / 8);
			if (p[0] != value(seed + id, r.rounds, 2 * i) ||
			    p[last] != value(seed + id, r.rounds, 2 * i + 1))
				r.bad++;
		}
		munmap(mem, len);
		npages = len / pagesize;
		r.mib += mib;
		r.rounds++;
	}
	return r;
}

int main(int argc, char **argv)
{
	unsigned long n[NKINDS] = { 0 }, vm_mib = 64, io_mib = 8, seconds = 0;
	unsigned long seed = 1;
	const char *dir = "/tmp";
	struct report total[NKINDS] = { { 0 } };
	pid_t pids[MAX_WORKERS];
	int fds[MAX_WORKERS];
	enum kind kinds[MAX_WORKERS];
	int nw = 0, lost = 0, a, w;
	struct sigaction sa;
	uint64_t bad;

	for (a = 1; a < argc; a++) {
		static const char *const names[] = {
			"--cpu", "--io", "--vm", "--vm-mib", "--io-mib",
			"--seconds", "--seed",
		};
		unsigned long *dest[] = {
			&n[CPU], &n[IO], &n[VM], &vm_mib, &io_mib, &seconds,
			&seed,
		};
		size_t k;

		if (!strcmp(argv[a], "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[a], "--dir") && a + 1 < argc) {
			dir = argv[++a];
			continue;
		}
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (!strcmp(argv[a], names[k]))
				break;
		if (k == sizeof(names) / sizeof(names[0]) || a + 1 >= argc) {
			fprintf(stderr, "stressor: unexpected argument '%s'\n",
				argv[a]);
			usage(stderr);
			return 2;
		}
		if (parse_ulong(argv[++a], dest[k])) {
			fprintf(stderr, "stressor: bad %s '%s'\n", names[k],
				argv[a]);
			return 2;
		}
	}
	if (n[CPU] + n[IO] + n[VM] == 0 || n[CPU] + n[IO] + n[VM] > MAX_WORKERS) {
		fprintf(stderr, "stressor: want 1 to %d workers in all\n",
			MAX_WORKERS);
		return 2;
	}
	if (!vm_mib || !io_mib || vm_mib > (1UL << 20) || io_mib > (1UL << 20)) {
		fprintf(stderr, "stressor: --vm-mib and --io-mib must be 1 to 1048576\n");
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);

	for (enum kind k = CPU; k < NKINDS && !stop; k++) {
		for (unsigned long i = 0; i < n[k] && !stop; i++) {
			struct report r;
			int p[2];

			if (pipe(p)) {
				perror("stressor: pipe");
				stop = 1;
				break;
			}
			pids[nw] = fork();
			if (pids[nw] < 0) {
				perror("stressor: fork");
				close(p[0]);
				close(p[1]);
				stop = 1;
				break;
			}
			if (pids[nw] == 0) {
				close(p[0]);
				r = k == CPU ? cpu_worker() :
				    k == IO ? io_worker(nw, dir, io_mib, seed) :
				    vm_worker(nw, vm_mib, seed);
				if (write(p[1], &r, sizeof(r)) != sizeof(r))
					_exit(4);
				_exit(0);
			}
			close(p[1]);
			fds[nw] = p[0];
			kinds[nw] = k;
			nw++;
		}
	}
	if (seconds && !stop)
		alarm(seconds);
	while (!stop)
		pause();
	for (w = 0; w < nw; w++)
		kill(pids[w], SIGTERM);
	for (w = 0; w < nw; w++) {
		struct report r;
		int status;

		if (read(fds[w], &r, sizeof(r)) == sizeof(r)) {
			total[kinds[w]].rounds += r.rounds;
			total[kinds[w]].mib += r.mib;
			total[kinds[w]].bad += r.bad;
		}
		close(fds[w]);
		while (waitpid(pids[w], &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status) || (WIFEXITED(status) &&
					    WEXITSTATUS(status))) {
			fprintf(stderr, "stressor: worker %d (pid %d) %s %d\n",
				w, (int)pids[w], WIFSIGNALED(status) ?
				"killed by signal" : "exited with status",
				WIFSIGNALED(status) ? WTERMSIG(status) :
				WEXITSTATUS(status));
			lost++;
		}
	}
	bad = total[VM].bad + total[IO].bad;
	printf("stressor: cpu_loops %llu io_rounds %llu io_mib %llu "
	       "vm_rounds %llu vm_mib %llu bad_pages %llu bad_io_bytes %llu "
	       "workers_lost %d\n",
	       (unsigned long long)total[CPU].rounds,
	       (unsigned long long)total[IO].rounds,
	       (unsigned long long)total[IO].mib,
	       (unsigned long long)total[VM].rounds,
	       (unsigned long long)total[VM].mib,
	       (unsigned long long)total[VM].bad,
	       (unsigned long long)total[IO].bad, lost);
	return bad ? 1 : lost ? 3 : 0;
}
