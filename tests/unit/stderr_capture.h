/* For unit tests: collects what is written to stderr between
 * capture_stderr() and captured_stderr() (which also passes it on to the
 * real stderr, so failing tests still show it). Include after <cmocka.h>. */
#ifndef TESTS_STDERR_CAPTURE_H
#define TESTS_STDERR_CAPTURE_H

#include <stdio.h>
#include <unistd.h>

static int saved_stderr = -1;
static FILE *capture_file;

static void capture_stderr(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

static char *captured_stderr(void)
{
    static char buf[16384];
    fflush(stderr);
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    rewind(capture_file);
    size_t n = fread(buf, 1, sizeof(buf) - 1, capture_file);
    buf[n] = '\0';
    fclose(capture_file);
    fputs(buf, stderr);
    return buf;
}

#endif
