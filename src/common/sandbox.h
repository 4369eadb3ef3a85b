/* The seccomp sandbox: one allow-list per thread class (common/thread.h),
 * one for the main thread and one for the spawner thread that creates
 * threads once the sandbox is on. A system call outside its thread's list
 * traps (SIGSYS): one log line names the call and the thread, and the
 * process ends with SANDBOX_EXIT_CODE. io_uring submissions are not seen by
 * seccomp; the block back end restricts its rings' opcodes itself. */
#ifndef COMMON_SANDBOX_H
#define COMMON_SANDBOX_H

#include "common/thread.h"

#define SANDBOX_EXIT_CODE 159 /* 128 + SIGSYS, as a shell reports the signal */

/* Compiles every filter, installs the SIGSYS handler and starts the
 * spawner (already filtered). From then on each thread_start enters its
 * class's filter. Call before any thread is started. 0, or -1 (logged). */
int sandbox_init(void);

/* Puts the calling (main) thread under the main filter, once the machine is
 * built and listening; logs that the sandbox is on. 0, or -1 (logged). */
int sandbox_enter_main(void);

/* Called on each new thread by thread_start before its function runs:
 * unblocks SIGSYS, remembers the name for the violation report and, with
 * the sandbox on, enters the class's filter. 0 or -errno. */
int sandbox_enter_thread(enum thread_class cls, const char *name);

#endif
