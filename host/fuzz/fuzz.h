/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared by balloon13d's libFuzzer harnesses: reading typed values off the
 * fuzzer's input, a check that aborts (so libFuzzer keeps the input), and
 * fake guest RAM that costs no memory.
 */
#ifndef BALLOON13_FUZZ_H
#define BALLOON13_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The fuzzer's bytes, consumed front to back; zeros once they run out. */
struct in {
	const uint8_t *p;
	size_t left;
};

static inline uint64_t in_bytes(struct in *in, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n && in->left; i++, in->left--)
		v |= (uint64_t)*in->p++ << (8 * i);
	return v;
}

#define in_u8(in)	((uint8_t)in_bytes(in, 1))
#define in_u16(in)	((uint16_t)in_bytes(in, 2))
#define in_u32(in)	((uint32_t)in_bytes(in, 4))
#define in_u64(in)	in_bytes(in, 8)

/* A broken invariant: say which, and abort so the input is kept. */
#define FUZZ_CHECK(cond)						\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "%s:%d: check failed: %s\n",	\
				__FILE__, __LINE__, #cond);		\
			abort();					\
		}							\
	} while (0)

/*
 * Fake guest RAM: FUZZ_SLOTS slots of FUZZ_SLOT bytes of address space,
 * PROT_NONE and never backed, so a region's "host mapping" can be
 * gigabytes.  mincore() says nothing there is resident, every time.
 * A discard hook stands in for madvise().
 */
#define FUZZ_SLOTS	4
#define FUZZ_SLOT	((4ull << 30) + (1ull << 20))

static inline uint8_t *fuzz_fake_ram(void)
{
	static uint8_t *base;

	if (!base) {
		base = mmap(NULL, FUZZ_SLOTS * FUZZ_SLOT, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (base == MAP_FAILED) {
			perror("fuzz: reserving fake guest RAM");
			abort();
		}
	}
	return base;
}

#endif /* BALLOON13_FUZZ_H */
