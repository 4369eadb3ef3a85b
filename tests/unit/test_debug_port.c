/* Debug port 0x402 and POST port 0x80: output reaches the file, stops at
 * the size cap (a guest can write forever), reads back 0xE9; POST codes
 * are kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "devices/debug_port.h"
#include "stderr_capture.h"
#include "support/state.h"

static char path[64];

static off_t file_size(void)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_output_and_cap(void **state)
{
    snprintf(path, sizeof(path), "/tmp/pst-debug-%d.out", (int)getpid());
    struct debug_port dp;
    assert_int_equal(debug_port_init(&dp, path), 0);
    dp.max_bytes = 100;
    const char *msg = "hello\n";
    for (const char *p = msg; *p; p++)
        debug_port_io_ops.write(&dp, 0, 1, (uint8_t)*p);
    assert_int_equal(debug_port_io_ops.read(&dp, 0, 1), 0xe9);
    assert_int_equal(file_size(), 6);
    for (unsigned i = 0; i < 1000; i++)
        debug_port_io_ops.write(&dp, 0, 1, 'x');
    assert_int_equal(file_size(), 100);
    dp.dev.ops->destroy(&dp.dev);
    unlink(path);
}

static void test_post_codes(void **state)
{
    struct post_port pp;
    memset(&pp, 0, sizeof(pp));
    post_port_init(&pp);
    for (unsigned i = 0; i < 100000; i++) /* a delay loop: no log storm */
        post_port_io_ops.write(&pp, 0, 1, i & 0xff);
    post_port_io_ops.write(&pp, 0, 1, 0x5a);
    assert_int_equal(post_port_io_ops.read(&pp, 0, 1), 0x5a);
    pp.dev.ops->reset(&pp.dev);
    assert_int_equal(post_port_io_ops.read(&pp, 0, 1), 0);
}

static off_t size_of(const char *file)
{
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    return st.st_size;
}

/* The output cap counts the VM's whole run: a restored debug port (its own
 * new file) writes only what the saved one had left. */
static void test_debug_state_roundtrip_and_refusals(void **state)
{
    char path_a[64], path_b[64];
    snprintf(path_a, sizeof(path_a), "/tmp/pst-debug-a-%d.out", (int)getpid());
    snprintf(path_b, sizeof(path_b), "/tmp/pst-debug-b-%d.out", (int)getpid());
    struct debug_port a, b;
    assert_int_equal(debug_port_init(&a, path_a), 0);
    assert_int_equal(debug_port_init(&b, path_b), 0);
    a.max_bytes = b.max_bytes = 100;
    for (unsigned i = 0; i < 60; i++)
        debug_port_io_ops.write(&a, 0, 1, 'a');
    assert_state_roundtrip(&a.dev, &b.dev);
    for (unsigned i = 0; i < 100; i++)
        debug_port_io_ops.write(&b, 0, 1, 'b');
    assert_int_equal(size_of(path_b), 40);
    assert_int_equal(debug_port_io_ops.read(&b, 0, 1), 0xe9);
    assert_state_refusals(&a.dev, &b.dev);
    const uint64_t beyond = 102;
    assert_state_field_refused(&a.dev, &b.dev, "written", &beyond, 8);
    a.dev.ops->destroy(&a.dev);
    b.dev.ops->destroy(&b.dev);
    unlink(path_a);
    unlink(path_b);
}

static char *read_file(const char *file)
{
    static char buf[64];
    int fd = open(file, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

/* ./debug.out as a symlink (someone else's file, or a missing one) is
 * refused with an error saying so; the target is neither truncated,
 * written nor created. A regular file is emptied as before. */
static void test_symlink_refused_regular_file_emptied(void **state)
{
    char dir[] = "/tmp/pst-debug-XXXXXX", victim[64], missing[64], out[64];
    assert_non_null(mkdtemp(dir));
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(missing, sizeof(missing), "%s/missing", dir);
    snprintf(out, sizeof(out), "%s/debug.out", dir);
    int fd = open(victim, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "precious", 8), 8);
    close(fd);
    enum log_level saved = log_threshold;
    log_set_level(LOG_ERROR);
    struct debug_port dp;
    const char *targets[] = {victim, missing};
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(symlink(targets[i], out), 0);
        capture_stderr();
        int r = debug_port_init(&dp, out);
        char *err = captured_stderr();
        assert_int_equal(r, -1);
        assert_non_null(strstr(err, out));
        assert_non_null(strstr(err, "is a symbolic link; refusing to write through it"));
        assert_int_equal(dp.fd, -1);
        unlink(out);
    }
    log_set_level(saved);
    assert_string_equal(read_file(victim), "precious");
    struct stat st;
    assert_int_equal(lstat(missing, &st), -1);

    /* A regular file left by an earlier run starts empty. */
    assert_int_equal(rename(victim, out), 0);
    assert_int_equal(debug_port_init(&dp, out), 0);
    debug_port_io_ops.write(&dp, 0, 1, 'x');
    assert_string_equal(read_file(out), "x");
    dp.dev.ops->destroy(&dp.dev);
    unlink(out);
    rmdir(dir);
}

/* The last POST code reads back after a restore. Any code is valid, so
 * there is no field to corrupt. */
static void test_post_state_roundtrip_and_refusals(void **state)
{
    struct post_port a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    post_port_init(&a);
    post_port_init(&b);
    post_port_io_ops.write(&a, 0, 1, 0x5a);
    assert_state_roundtrip(&a.dev, &b.dev);
    assert_int_equal(post_port_io_ops.read(&b, 0, 1), 0x5a);
    assert_state_refusals(&a.dev, &b.dev);
}

int main(void)
{
    log_set_level(getenv("TEST_LOG") ? LOG_DEBUG : LOG_CRITICAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_cap),
        cmocka_unit_test(test_post_codes),
        cmocka_unit_test(test_debug_state_roundtrip_and_refusals),
        cmocka_unit_test(test_post_state_roundtrip_and_refusals),
        cmocka_unit_test(test_symlink_refused_regular_file_emptied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
