/* CPL3 sessions of the test guest's drivers (storage_bench.c, net_test.c).
 *
 * This host's KVM emulates CPL0 code (a few million instructions/s) but
 * runs CPL3 natively, so the drivers do only PCI enumeration (port I/O) at
 * CPL0 and their device set-up and I/O loops at CPL3, against
 * user-accessible RAM and BARs, polling (no interrupts). */
#ifndef TESTGUEST_CPL3_H
#define TESTGUEST_CPL3_H

#include <stdint.h>

#include "cpu.h"

/* Loads the GDT copy with the CPL3 segments and the TSS, installs the #UD
 * gate that ends a CPL3 session and makes 0..4 GiB user-accessible (the
 * BAR window uncached), once; then user_enter() runs code at CPL3. */
void cpl3_setup(void);

/* Masks the PICs and the UART interrupt (the drivers poll; the caller
 * restores what it needs), then cpl3_setup(). */
void cpl3_setup_polling(void);

/* Runs fn(arg) at CPL3 on stack (entry.S) and returns its result. */
extern uint64_t user_enter(uint64_t (*fn)(void *), void *arg, uint64_t stack);

/* What every driver's state (in user-accessible RAM) holds for its CPL3
 * code: set at CPL0, the TSC rate its deadlines need; set at CPL3, why a
 * session failed, for the FAIL line the CPL0 side prints. */
struct cpl3_session {
    uint64_t tsc_khz;
    char err[80];
};

/* Keeps why (truncated) as the session's failure. */
void u_fail(struct cpl3_session *u, const char *why);

/* The failure a session kept, or otherwise when it kept none. */
static inline const char *u_failure(const struct cpl3_session *u, const char *otherwise)
{
    return u->err[0] ? u->err : otherwise;
}

/* The TSC deadline ms milliseconds from now (tsc_passed() tells). */
static inline uint64_t u_deadline(const struct cpl3_session *u, uint64_t ms)
{
    return tsc_deadline(u->tsc_khz, ms);
}

#endif
