/* Storage benchmark of the test guest: the `bench` command (see
 * storage_bench.c for the protocol). */
#ifndef TESTGUEST_STORAGE_BENCH_H
#define TESTGUEST_STORAGE_BENCH_H

#include <stdint.h>

/* Runs `bench ARGS` (ARGS: the command line after "bench "). Called at CPL0
 * with interrupts disabled; masks the PICs and the UART interrupt (the
 * caller restores what it needs). Every output line goes through say(),
 * which adds the "testguest: " prefix and the line end. */
void storage_bench(const char *args, uint64_t tsc_khz, void (*say)(const char *line));

#endif
