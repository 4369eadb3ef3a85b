#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/bytes.h"

enum log_level log_threshold = LOG_INFO;

static const char *const level_names[] = {"CRIT", "ERRO", "WARN", "INFO", "DEBG", "TRCE"};

bool log_parse_level(const char *name, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {
        {"critical", LOG_CRITICAL}, {"error", LOG_ERROR}, {"warning", LOG_WARNING},
        {"warn", LOG_WARNING},      {"info", LOG_INFO},   {"debug", LOG_DEBUG},
        {"trace", LOG_TRACE},
    };
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *out = names[i].level;
            return true;
        }
    }
    return false;
}

void log_set_level(enum log_level level)
{
    log_threshold = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per message so lines from different threads do not interleave. */
    size_t len = strlen(line);
    if (len >= sizeof(line) - 1)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

static pthread_mutex_t ratelimit_lock = PTHREAD_MUTEX_INITIALIZER;

bool log_ratelimit_allow(struct log_ratelimit *rl)
{
    bool allow;
    unsigned suppressed = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    pthread_mutex_lock(&ratelimit_lock);
    if (now - rl->window_start_ns >= 1000000000ull) {
        suppressed = rl->suppressed;
        rl->window_start_ns = now;
        rl->emitted = 0;
        rl->suppressed = 0;
    }
    allow = rl->emitted < 10;
    if (allow)
        rl->emitted++;
    else
        rl->suppressed++;
    pthread_mutex_unlock(&ratelimit_lock);
    if (suppressed)
        log_msg(LOG_WARNING, "(%u similar messages suppressed)", suppressed);
    return allow;
}
