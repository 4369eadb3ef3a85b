/* `mem fill SEED` / `mem check SEED`: every 8-byte word of RAM from 64 MiB
 * to the end of lowmem, and all of highmem, gets (fill) or must hold
 * (check) a value derived from its address and SEED, so every 4 KiB page
 * differs from every other and none is zero (save and restore cannot skip
 * it, nor dedupe it).
 *
 *   mem fill SEED  -> "mem fill done bytes=N us=T"
 *   mem check SEED -> "mem check ok bytes=N us=T", or
 *                     "mem check FAIL bad=N first=0xA got=0xG want=0xW"
 *   anything else  -> "mem FAIL usage: mem fill|check SEED"
 *
 * The loops run at CPL3 (cpl3.h): this host emulates CPL0 code far too
 * slowly for gigabytes. Below 64 MiB lie the guest's own tables, stacks
 * and the drivers' buffers, which the command leaves alone. */
#include "mem_pattern.h"

#include <stdbool.h>
#include <stddef.h>

#include "cpl3.h"
#include "cpu.h"
#include "layout.h"
#include "text.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)
#define PATTERN_START (64 * MIB)
#define HIGHMEM_START (4 * GIB)

static uint64_t low_end, high_bytes;

void mem_pattern_layout(uint64_t mem_mib, uint64_t lowmem_mib)
{
    uint64_t low_mib = mem_mib < lowmem_mib ? mem_mib : lowmem_mib;
    low_end = low_mib * MIB;
    high_bytes = mem_mib > lowmem_mib ? (mem_mib - lowmem_mib) * MIB : 0;
}

/* Never zero for the addresses used (an odd multiplier of a non-zero
 * value, then a shift-xor that keeps it non-zero). */
static inline uint64_t word_at(uint64_t addr, uint64_t seed)
{
    uint64_t x = (addr | 1) * 0xBF58476D1CE4E5B9ULL + seed * 0x9E3779B97F4A7C15ULL;
    x ^= x >> 29;
    return x ? x : 0x5EED;
}

struct pattern_session {
    struct cpl3_session u;
    uint64_t seed;
    bool check;
    uint64_t ranges[2][2]; /* [start, end) */
    uint64_t bytes, bad, first_bad, got, want;
};

static uint64_t u_pattern(void *arg)
{
    struct pattern_session *s = arg;
    for (unsigned r = 0; r < 2; r++) {
        volatile uint64_t *w = (volatile uint64_t *)(uintptr_t)s->ranges[r][0];
        volatile uint64_t *end = (volatile uint64_t *)(uintptr_t)s->ranges[r][1];
        for (; w < end; w++) {
            uint64_t a = (uint64_t)(uintptr_t)w, want = word_at(a, s->seed);
            if (!s->check) {
                *w = want;
                continue;
            }
            uint64_t got = *w;
            if (got != want && s->bad++ == 0) {
                s->first_bad = a;
                s->got = got;
                s->want = want;
            }
        }
        s->bytes += s->ranges[r][1] - s->ranges[r][0];
    }
    return 0;
}

/* Makes highmem (mapped by the memory self-test with 2 MiB pages)
 * reachable at CPL3, as cpl3_setup() does for 0..4 GiB. */
static bool highmem_user(void)
{
    volatile uint64_t *pdpt = (volatile uint64_t *)(uintptr_t)PDPT_ADDR;
    uint64_t first = HIGHMEM_START / GIB, last = (HIGHMEM_START + high_bytes - 1) / GIB;
    if (last - first + 1 > PD_HIGH_MAX)
        return false; /* the self-test mapped only its two ends */
    for (uint64_t g = first; g <= last; g++) {
        if (!(pdpt[g] & 1))
            return false;
        pdpt[g] |= 4;
        volatile uint64_t *pd = (volatile uint64_t *)(uintptr_t)(pdpt[g] & ~0xFFFULL);
        for (unsigned i = 0; i < 512; i++)
            if (pd[i] & 1)
                pd[i] |= 4;
    }
    __asm__ volatile("mov %0, %%cr3" : : "r"((uint64_t)PML4_ADDR) : "memory");
    return true;
}

static struct pattern_session session __attribute__((aligned(64)));

void mem_pattern_command(const char *args, uint64_t tsc_khz, void (*say)(const char *line))
{
    struct pattern_session *s = &session;
    const char *p;
    uint64_t seed;
    bool check;
    if (word_is(args, "fill ", &p))
        check = false;
    else if (word_is(args, "check ", &p))
        check = true;
    else
        p = NULL;
    if (!p || !parse_decimal(&p, ARG_NUMBER_MAX, &seed) || *p) {
        say("mem FAIL usage: mem fill|check SEED");
        return;
    }
    if (low_end <= PATTERN_START) {
        say("mem FAIL needs more than 64 MiB of RAM (and the mem= parameter)");
        return;
    }
    cpl3_setup();
    if (high_bytes && !highmem_user()) {
        say("mem FAIL highmem not mapped");
        return;
    }
    *s = (struct pattern_session){.seed = seed, .check = check};
    s->ranges[0][0] = PATTERN_START;
    s->ranges[0][1] = low_end;
    s->ranges[1][0] = HIGHMEM_START;
    s->ranges[1][1] = HIGHMEM_START + high_bytes;
    uint64_t t0 = rdtsc();
    user_enter(u_pattern, s, USER_STACK_TOP);
    uint64_t us = tsc_khz ? (rdtsc() - t0) * 1000 / tsc_khz : 0;
    struct out_line l = {.n = 0};
    if (check && s->bad) {
        ln_str(&l, "mem check FAIL");
        ln_kv(&l, "bad", s->bad);
        ln_str(&l, " first=0x");
        ln_hex(&l, s->first_bad, 1);
        ln_str(&l, " got=0x");
        ln_hex(&l, s->got, 16);
        ln_str(&l, " want=0x");
        ln_hex(&l, s->want, 16);
    } else {
        ln_str(&l, check ? "mem check ok" : "mem fill done");
        ln_kv(&l, "bytes", s->bytes);
        ln_kv(&l, "us", us);
    }
    say(l.buf);
}
