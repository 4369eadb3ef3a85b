/* Hostile-guest fuzzer for the storage devices: the `devfuzz` command (see
 * device_fuzz.c). */
#ifndef TESTGUEST_DEVICE_FUZZ_H
#define TESTGUEST_DEVICE_FUZZ_H

#include <stdint.h>

/* Runs `devfuzz ARGS` at CPL0 with interrupts disabled. Every output line
 * goes through say(), which adds the "testguest: " prefix. */
void device_fuzz(const char *args, void (*say)(const char *line));

#endif
