/* Shared pieces of the libFuzzer targets: the input read as a stream of
 * little-endian values (reads past the end give zeroes, so every input is
 * a complete program), and the fuzzers' guest memory (three regions in
 * tests/unit/support/fake_mem: RAM at 0, a small region right after it, a
 * read-only page higher up), wiped before each input; the block targets'
 * disk and the corrupted saved state several targets load back. */
#ifndef TESTS_FUZZ_FUZZ_SUPPORT_H
#define TESTS_FUZZ_FUZZ_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/fake_block.h"
#include "support/fake_mem.h"

struct device;

struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline bool fi_more(const struct fuzz_in *in)
{
    return in->n > 0;
}

uint8_t fi_u8(struct fuzz_in *in);
uint16_t fi_u16(struct fuzz_in *in);
uint32_t fi_u32(struct fuzz_in *in);
uint64_t fi_u64(struct fuzz_in *in);
/* Up to len bytes into out (the rest zero); returns how many came from in. */
size_t fi_bytes(struct fuzz_in *in, void *out, size_t len);
/* An access size: 1, 2, 4 or 8. */
unsigned fi_size(struct fuzz_in *in);

/* Guest memory layout (see above). */
#define FUZZ_RAM_GPA 0x0ull
#define FUZZ_RAM_SIZE 0x10000ull
#define FUZZ_TAIL_GPA 0x10000ull /* adjacent: chains spanning both are refused */
#define FUZZ_TAIL_SIZE 0x1000ull
#define FUZZ_ROM_GPA 0x100000ull
#define FUZZ_ROM_SIZE 0x1000ull

/* Sets the regions up once; later calls zero them. */
void fuzz_mem_reset(void);
/* A guest address: mostly inside the regions (so rings and buffers are
 * usable), sometimes any 64-bit value (so the checks get exercised). */
uint64_t fi_gpa(struct fuzz_in *in);
/* Copies up to a few hundred input bytes into guest memory at a fi_gpa()
 * address (clipped to RAM; addresses outside are skipped). */
void fi_mem_write(struct fuzz_in *in);

/* Every log level on, so messages built from guest values get formatted
 * (tests/fuzz/run.sh closes the targets' stderr); FUZZ_LOG=0 in the
 * environment turns them off. */
void fuzz_logs_init(void);

/* The block targets' disk: 64 KiB in a fake block back end (one worker)
 * shaped by the input's next byte, which it returns: bit 0 read-only,
 * bit 1 4 KiB blocks (else 512 B), bits 2 and 3 discard and write-zeroes
 * (when writable), bit 4 a volatile cache. The other bits are the
 * caller's. */
#define FUZZ_DISK_SIZE (64u * 1024)
uint8_t fuzz_disk_init(struct fake_block *fb, struct fuzz_in *in);

/* Pauses dev, saves its state, overwrites up to three bytes of it (input:
 * a count, then an offset and a value each) and loads it back, refused or
 * taken (never a crash), then resumes it. Nothing when the pause fails. */
void fuzz_corrupt_state(struct device *dev, struct fuzz_in *in);

#endif
