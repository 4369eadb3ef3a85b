/* Network test of the test guest: the `net` command (see net_test.c for
 * the protocol). */
#ifndef TESTGUEST_NET_TEST_H
#define TESTGUEST_NET_TEST_H

#include <stdint.h>

/* Runs `net ARGS` (ARGS: the command line after "net"). Called at CPL0
 * with interrupts disabled; masks the PICs and the UART interrupt (the
 * caller restores what it needs). Every output line goes through say(),
 * which adds the "testguest: " prefix and the line end. */
void net_test(const char *args, uint64_t tsc_khz, void (*say)(const char *line));

#endif
