/* Polling for unit tests: devices complete on their own threads, so tests
 * wait for a condition with a bound instead of sleeping a fixed time. */
#ifndef TESTS_SUPPORT_POLL_H
#define TESTS_SUPPORT_POLL_H

#include <stdbool.h>

/* Calls done(arg) every 250 us for up to 2 s; its last answer. */
bool poll_until(bool (*done)(void *arg), void *arg);

#endif
