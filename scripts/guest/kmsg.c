// SPDX-License-Identifier: GPL-2.0
/*
 * kmsg - the kernel log since a sequence number, and whether any of it was
 * lost.
 *
 *   kmsg [SEQ]
 *
 * Prints the records of /dev/kmsg whose sequence number is SEQ or later
 * (default 0) as "SEQ MESSAGE" lines, framed by
 *
 *   @boot BOOT_ID     /proc/sys/kernel/random/boot_id
 *   @first N          the oldest record the ring buffer still holds
 *   @next N           the sequence number the next record will get
 *   @lost N           records from SEQ on that were overwritten before this
 *                     read them (the ring buffer wrapped)
 *
 * Sequence numbers count every record since boot and never wrap, so a
 * window "since SEQ" cannot silently slide the way a line count of dmesg
 * does once old lines fall out of the buffer: what is gone is counted.
 * Messages keep the kernel's escapes (\xNN for control characters); the
 * key=value dictionary lines of a record are left out.
 *
 * Built static (gcc -static) for the test initramfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REC_MAX 8192	/* one record; the kernel's is at most 1024 + dict */

int main(int argc, char **argv)
{
	unsigned long long from = 0, seq, first = 0, next = 0, lost = 0;
	char rec[REC_MAX + 1], boot[64] = "unknown";
	int fd, have_first = 0;
	ssize_t n;
	FILE *f;

	if (argc > 2 || (argc == 2 && !argv[1][0])) {
		fprintf(stderr, "usage: kmsg [SEQ]\n");
		return 2;
	}
	if (argc == 2) {
		char *end;

		errno = 0;
		from = strtoull(argv[1], &end, 10);
		if (errno || *end) {
			fprintf(stderr, "kmsg: bad sequence number '%s'\n", argv[1]);
			return 2;
		}
	}
	f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (f) {
		if (fgets(boot, sizeof(boot), f))
			boot[strcspn(boot, "\n")] = 0;
		fclose(f);
	}
	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (fd < 0) {
		perror("kmsg: /dev/kmsg");
		return 1;
	}
	printf("@boot %s\n", boot);
	for (;;) {
		char *semi, *text, *nl;

		n = read(fd, rec, REC_MAX);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EPIPE) {
			/* Overwritten under us: the next read goes on after it. */
			continue;
		}
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			perror("kmsg: read");
			return 1;
		}
		rec[n] = 0;
		/* "prio,seq,usec,flags[,...];message\n[ KEY=value\n...]" */
		if (sscanf(rec, "%*u,%llu,", &seq) != 1)
			continue;
		if (!have_first) {
			first = seq;
			have_first = 1;
			if (seq > from)
				lost += seq - from;
		} else if (seq > next) {
			/* Records skipped after an EPIPE: count those from on. */
			unsigned long long lo = next > from ? next : from;

			if (seq > lo)
				lost += seq - lo;
		}
		next = seq + 1;
		if (seq < from)
			continue;
		semi = strchr(rec, ';');
		if (!semi)
			continue;
		text = semi + 1;
		nl = strchr(text, '\n');
		if (nl)
			*nl = 0;
		printf("%llu %s\n", seq, text);
	}
	if (!have_first)
		first = next = from;
	printf("@first %llu\n@next %llu\n@lost %llu\n", first, next, lost);
	return 0;
}
