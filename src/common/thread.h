/* The one place that starts the VMM's threads. */
#ifndef COMMON_THREAD_H
#define COMMON_THREAD_H

#include <pthread.h>
#include <stddef.h>

/* What a thread does, which decides its seccomp filter (common/sandbox.h).
 * The console, the control socket and signals are served by the main
 * thread's own loop, which has a filter of its own. */
enum thread_class {
    THREAD_VCPU,      /* runs KVM_RUN and the device emulation it exits to */
    THREAD_DEVICE_IO, /* an I/O loop of a device: virtio queues, NVMe, TAP, vsock */
    THREAD_BLOCK,     /* a block back end's worker: thread pool or io_uring ring owner */
    THREAD_NET_BLOCK, /* a network disk's connection: NBD over TCP, UNIX or vsock, TLS */
    THREAD_CLASS_COUNT
};

/* Starts fn(arg) on a new thread named name (cut to 15 bytes) of class
 * cls, with every signal blocked but SIGSYS: process-directed signals
 * belong to the main thread's signalfd, and a thread that takes one (a
 * vCPU's kick) unblocks it itself. With the sandbox on, the thread enters
 * its class's seccomp filter before fn runs; it is created by the sandbox's
 * spawner thread, so that a thread started from a filtered thread (a
 * queue's I/O loop started by a vCPU) does not inherit its creator's
 * filter. stack_size 0 keeps the default. Returns once the thread is named
 * and filtered: 0, or -errno (nothing started). */
int thread_start(pthread_t *thread, const char *name, enum thread_class cls, size_t stack_size,
                 void *(*fn)(void *), void *arg);

/* Starts the spawner thread: from then on thread_start creates threads
 * through it. enter runs first on the spawner (its filter); 0 or -errno. */
int thread_spawner_start(int (*enter)(void));

#endif
