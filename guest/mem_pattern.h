/* The `mem` command of the test guest (mem_pattern.c): fills RAM with a
 * pattern and checks it, so that a snapshot's memory is not mostly zero
 * pages and a restore is seen to bring every byte back. */
#ifndef TESTGUEST_MEM_PATTERN_H
#define TESTGUEST_MEM_PATTERN_H

#include <stdint.h>

/* The RAM the command covers, from the parameter line (MiB; mem_mib 0
 * when unknown): lowmem is min(mem, lowmem), highmem the rest at 4 GiB
 * (mapped by the memory self-test). */
void mem_pattern_layout(uint64_t mem_mib, uint64_t lowmem_mib);

/* Runs `mem ARGS` (after "mem "), at CPL0 with interrupts disabled; every
 * output line goes through say() ("testguest: " prefix added there). */
void mem_pattern_command(const char *args, uint64_t tsc_khz, void (*say)(const char *line));

#endif
