/* The test guest's pseudo-random numbers: one xorshift64 generator for
 * every user (benchmark offsets, device fuzzer, port sweep), so that a
 * seed gives the same sequence wherever it is used. */
#ifndef TESTGUEST_RAND_H
#define TESTGUEST_RAND_H

#include <stdint.h>

/* Advances *state (never 0) and returns the new value. */
static inline uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

#endif
