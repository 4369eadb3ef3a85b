/* The one place that starts the VMM's threads. */
#ifndef COMMON_THREAD_H
#define COMMON_THREAD_H

#include <pthread.h>
#include <stddef.h>

/* Starts fn(arg) on a new thread named name (cut to 15 bytes), with every
 * signal blocked: process-directed signals belong to the main thread's
 * signalfd, and a thread that takes one (a vCPU's kick) unblocks it itself.
 * stack_size 0 keeps the default. The place where a per-thread-class
 * seccomp filter will go. Returns 0, or -errno (nothing started). */
int thread_start(pthread_t *thread, const char *name, size_t stack_size, void *(*fn)(void *),
                 void *arg);

#endif
