/* Debug port 0x402 and POST port 0x80: output reaches the file, stops at
 * the size cap (a guest can write forever), reads back 0xE9; POST codes
 * are kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "devices/debug_port.h"

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

int main(void)
{
    log_set_level(getenv("TEST_LOG") ? LOG_DEBUG : LOG_CRITICAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_cap),
        cmocka_unit_test(test_post_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
