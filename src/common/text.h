/* A bounded text builder for messages: appends with printf formats and
 * truncates silently at the buffer's end (always NUL-terminated). */
#ifndef COMMON_TEXT_H
#define COMMON_TEXT_H

#include <stddef.h>

struct text {
    char *buf;
    size_t cap, len;
};

void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
