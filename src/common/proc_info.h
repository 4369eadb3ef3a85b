/* What /proc tells about another process, for error messages that name it
 * (the VM holding a console socket or an instance record). */
#ifndef COMMON_PROC_INFO_H
#define COMMON_PROC_INFO_H

#include <stddef.h>
#include <sys/types.h>

/* "pid N: its command line" (arguments joined by spaces, bytes that are not
 * printable ASCII as '?', cut to fit), or "pid N" when the command line
 * cannot be read. Always NUL-terminated. */
void proc_describe(pid_t pid, char *buf, size_t len);

/* Replaces bytes that are not printable ASCII with '?', in place: text
 * another process controls (its command line, its executable's path) must
 * not forge log lines. */
void proc_sanitize(char *text);

#endif
