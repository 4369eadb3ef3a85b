/* A test whose prerequisite (a tmpfs mount, a loop device, seccomp, iasl,
 * IPv6 loopback) is missing skips where that is expected (a developer's
 * machine) but fails in CI (CI=true), which runs as root with every
 * package: there a skip would hide a test that never ran. */
#ifndef TESTS_SUPPORT_PREREQ_H
#define TESTS_SUPPORT_PREREQ_H

#include <stdbool.h>

/* True when the environment says this is CI (CI set to anything but "",
 * "0" or "false"). */
bool running_in_ci(void);

/* Reports the missing prerequisite, then fails the test under CI or skips
 * it elsewhere. Does not return. */
_Noreturn void prerequisite_missing(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Moves the calling thread into a new network namespace with its loopback
 * up (tests' sockets never touch the host's); false if it cannot (not
 * root). */
bool enter_loopback_netns(void);
/* For a test that needs that namespace: reports it missing (entered is
 * false) as prerequisite_missing does. */
void need_loopback_netns(bool entered);

#endif
