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

/* An error message into buf (cap bytes, 0: nothing written). */
void text_error(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The value of hexadecimal digit c, or -1. */
static inline int hex_digit_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
