#include "common/thread.h"

#include <signal.h>
#include <stdio.h>

int thread_start(pthread_t *thread, const char *name, size_t stack_size, void *(*fn)(void *),
                 void *arg)
{
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return -rc;
    if (stack_size)
        rc = pthread_attr_setstacksize(&attr, stack_size);
    /* The new thread inherits the mask in force at pthread_create. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (rc == 0)
        rc = pthread_create(thread, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -rc;
    char comm[16];
    snprintf(comm, sizeof(comm), "%s", name);
    pthread_setname_np(*thread, comm);
    return 0;
}
