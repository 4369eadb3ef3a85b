/* Polling for unit tests; see poll.h. */
#include "support/poll.h"

#include <time.h>

bool poll_until(bool (*done)(void *arg), void *arg)
{
    for (int i = 0; i < 8000; i++) {
        if (done(arg))
            return true;
        struct timespec ts = {0, 250000};
        nanosleep(&ts, NULL);
    }
    return done(arg);
}
