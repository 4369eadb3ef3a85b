/* Small locking helpers shared by the layers. */
#ifndef COMMON_SYNC_H
#define COMMON_SYNC_H

#include <pthread.h>
#include <stdbool.h>

/* Takes the mutex if it becomes free within ms milliseconds (for the state
 * dump, which must not hang on a lock a stuck thread holds). */
bool mutex_lock_within(pthread_mutex_t *mutex, unsigned ms);

#endif
