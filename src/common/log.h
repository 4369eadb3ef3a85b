/* Leveled logging to stderr, shared by every layer. */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
    LOG_CRITICAL,
    LOG_ERROR,
    LOG_WARNING,
    LOG_INFO,
    LOG_DEBUG,
    LOG_TRACE,
};

extern enum log_level log_threshold;

/* Accepts critical, error, warning (or warn), info, debug, trace. */
bool log_parse_level(const char *name, enum log_level *out);
void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_enabled(lvl) ((lvl) <= log_threshold)
#define LOG(lvl, ...)                                                                              \
    do {                                                                                           \
        if (log_enabled(lvl))                                                                      \
            log_msg(lvl, __VA_ARGS__);                                                             \
    } while (0)
#define log_crit(...) LOG(LOG_CRITICAL, __VA_ARGS__)
#define log_error(...) LOG(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) LOG(LOG_WARNING, __VA_ARGS__)
#define log_info(...) LOG(LOG_INFO, __VA_ARGS__)
#define log_debug(...) LOG(LOG_DEBUG, __VA_ARGS__)
#define log_trace(...) LOG(LOG_TRACE, __VA_ARGS__)

/* Token bucket for messages a guest can trigger at will. */
struct log_ratelimit {
    uint64_t window_start_ns;
    unsigned emitted;
    unsigned suppressed;
};

/* True if a message may be logged now: at most 10 per second per limiter;
 * reports how many were suppressed when a new window opens. */
bool log_ratelimit_allow(struct log_ratelimit *rl);

#define log_limited(rl, lvl, ...)                                                                  \
    do {                                                                                           \
        if (log_enabled(lvl) && log_ratelimit_allow(rl))                                           \
            log_msg(lvl, __VA_ARGS__);                                                             \
    } while (0)

#endif
