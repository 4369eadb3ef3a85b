#include "common/thread.h"

#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/sandbox.h"

/* What a new thread needs until it has started: lives on the stack of
 * thread_start, which waits for ready. */
struct thread_launch {
    void *(*fn)(void *);
    void *arg;
    enum thread_class cls;
    char name[16];
    sem_t ready;
    int rc; /* the thread's own set-up: 0 or -errno */
};

static void *thread_trampoline(void *p)
{
    struct thread_launch *launch = p;
    void *(*fn)(void *) = launch->fn;
    void *arg = launch->arg;
    pthread_setname_np(pthread_self(), launch->name);
    int rc = sandbox_enter_thread(launch->cls, launch->name);
    launch->rc = rc;
    sem_post(&launch->ready); /* launch is gone after this */
    return rc == 0 ? fn(arg) : NULL;
}

/* The spawner: one thread that creates every other thread once the sandbox
 * is on, under a filter that is the union of the classes' filters. One
 * request at a time. */
struct spawn_request {
    pthread_t *thread;
    pthread_attr_t *attr;
    struct thread_launch *launch;
    int rc;
    bool done;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct spawn_request *pending;
    bool running;
    int (*enter)(void);
    sem_t entered;
    int enter_rc;
} spawner = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void *spawner_main(void *unused)
{
    pthread_setname_np(pthread_self(), "spawner");
    spawner.enter_rc = spawner.enter();
    sem_post(&spawner.entered);
    if (spawner.enter_rc < 0)
        return NULL;
    pthread_mutex_lock(&spawner.lock);
    for (;;) {
        while (!spawner.pending)
            pthread_cond_wait(&spawner.cond, &spawner.lock);
        struct spawn_request *req = spawner.pending;
        pthread_mutex_unlock(&spawner.lock);
        req->rc = pthread_create(req->thread, req->attr, thread_trampoline, req->launch);
        pthread_mutex_lock(&spawner.lock);
        req->done = true;
        spawner.pending = NULL;
        pthread_cond_broadcast(&spawner.cond);
    }
    return NULL;
}

/* pthread_create with every signal blocked (the new thread inherits the
 * mask in force at pthread_create), directly or through the spawner. */
static int create_blocked(pthread_t *thread, pthread_attr_t *attr, struct thread_launch *launch)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc;
    pthread_mutex_lock(&spawner.lock);
    if (!spawner.running) {
        pthread_mutex_unlock(&spawner.lock);
        rc = pthread_create(thread, attr, thread_trampoline, launch);
    } else {
        struct spawn_request req = {.thread = thread, .attr = attr, .launch = launch};
        while (spawner.pending)
            pthread_cond_wait(&spawner.cond, &spawner.lock);
        spawner.pending = &req;
        pthread_cond_broadcast(&spawner.cond);
        while (!req.done)
            pthread_cond_wait(&spawner.cond, &spawner.lock);
        pthread_mutex_unlock(&spawner.lock);
        rc = req.rc;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int thread_start(pthread_t *thread, const char *name, enum thread_class cls, size_t stack_size,
                 void *(*fn)(void *), void *arg)
{
    if ((unsigned)cls >= THREAD_CLASS_COUNT)
        return -EINVAL;
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return -rc;
    if (stack_size)
        rc = pthread_attr_setstacksize(&attr, stack_size);
    struct thread_launch launch = {.fn = fn, .arg = arg, .cls = cls};
    snprintf(launch.name, sizeof(launch.name), "%s", name);
    sem_init(&launch.ready, 0, 0);
    if (rc == 0)
        rc = create_blocked(thread, &attr, &launch);
    pthread_attr_destroy(&attr);
    if (rc == 0) {
        while (sem_wait(&launch.ready) != 0)
            ;
        if (launch.rc < 0) {
            pthread_join(*thread, NULL);
            rc = -launch.rc;
        }
    }
    sem_destroy(&launch.ready);
    return -rc;
}

int thread_spawner_start(int (*enter)(void))
{
    pthread_mutex_lock(&spawner.lock);
    bool running = spawner.running;
    pthread_mutex_unlock(&spawner.lock);
    if (running)
        return 0;
    spawner.enter = enter;
    sem_init(&spawner.entered, 0, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, spawner_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        sem_destroy(&spawner.entered);
        return -rc;
    }
    while (sem_wait(&spawner.entered) != 0)
        ;
    sem_destroy(&spawner.entered);
    if (spawner.enter_rc < 0)
        return spawner.enter_rc;
    pthread_mutex_lock(&spawner.lock);
    spawner.running = true;
    pthread_mutex_unlock(&spawner.lock);
    return 0;
}
