/* The hostile-guest matrix behind the `hostile` command (see hostile.c). */
#ifndef TESTGUEST_HOSTILE_H
#define TESTGUEST_HOSTILE_H

#include <stdint.h>

/* Runs `hostile ARGS` (ARGS: the command line after "hostile "), at CPL0
 * with interrupts disabled; every output line goes through say(), which
 * adds the "testguest: " prefix and the line end. The caller restores the
 * UART receive interrupt afterwards. */
void hostile(const char *args, uint64_t tsc_khz, void (*say)(const char *line));

#endif
