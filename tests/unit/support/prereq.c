/* Prerequisites of unit tests; see prereq.h. */
#include "support/prereq.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

bool running_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && *ci && strcmp(ci, "0") != 0 && strcmp(ci, "false") != 0;
}

void prerequisite_missing(const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (running_in_ci()) {
        fail_msg("prerequisite missing in CI (CI=%s): %s", getenv("CI"), what);
    } else {
        print_message("SKIPPED (not CI): %s\n", what);
        skip();
    }
    abort(); /* fail_msg and skip leave the test by longjmp */
}
