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

/* Loads the GDT copy with the CPL3 segments and the TSS, installs the #UD
 * gate that ends a CPL3 session and makes 0..4 GiB user-accessible (the
 * BAR window uncached), once; then user_enter() runs code at CPL3. Also
 * used by the network test (net_test.c). */
void cpl3_setup(void);
extern uint64_t user_enter(uint64_t (*fn)(void *), void *arg, uint64_t stack);

#endif
