/* pvpanic: supported events, panic reports counted and logged (rate-limited),
 * bad accesses ignored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/pvpanic.h"
#include "support/state.h"

static struct pvpanic pv;
static uint8_t events_seen;
static int event_calls;

static void on_event(void *opaque, uint8_t events)
{
    events_seen |= events;
    event_calls++;
}

static int setup(void **state)
{
    pvpanic_init(&pv, "pvpanic");
    pv.on_event = on_event;
    events_seen = 0;
    event_calls = 0;
    return 0;
}

static int teardown(void **state)
{
    pv.dev.ops->destroy(&pv.dev);
    return 0;
}

static void test_supported_events(void **state)
{
    assert_int_equal(pvpanic_io_ops.read(&pv, 0, 1), PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
    assert_int_equal(pvpanic_io_ops.read(&pv, 0, 2), ~0ull);
}

static void test_panic_and_crash_loaded(void **state)
{
    pvpanic_io_ops.write(&pv, 0, 1, PVPANIC_PANICKED);
    assert_int_equal(pvpanic_panic_count(&pv), 1);
    assert_int_equal(pvpanic_crash_loaded_count(&pv), 0);
    assert_int_equal(events_seen, PVPANIC_PANICKED);
    pvpanic_io_ops.write(&pv, 0, 1, PVPANIC_CRASH_LOADED);
    assert_int_equal(pvpanic_crash_loaded_count(&pv), 1);
    pvpanic_io_ops.write(&pv, 0, 1, PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
    assert_int_equal(pvpanic_panic_count(&pv), 2);
    assert_int_equal(pvpanic_crash_loaded_count(&pv), 2);
    assert_int_equal(event_calls, 3);
    /* Reset keeps the record of this run. */
    pv.dev.ops->reset(&pv.dev);
    assert_int_equal(pvpanic_panic_count(&pv), 2);
}

static void test_ignored_writes(void **state)
{
    pvpanic_io_ops.write(&pv, 0, 1, 0);
    pvpanic_io_ops.write(&pv, 0, 1, 0xfc); /* unknown bits only */
    pvpanic_io_ops.write(&pv, 0, 2, PVPANIC_PANICKED);
    pvpanic_io_ops.write(&pv, 0, 4, PVPANIC_PANICKED);
    pvpanic_io_ops.write(&pv, 0, 8, ~0ull);
    assert_int_equal(pvpanic_panic_count(&pv), 0);
    assert_int_equal(pvpanic_crash_loaded_count(&pv), 0);
    assert_int_equal(event_calls, 0);
}

/* A guest panicking in a loop fills no disk: messages are rate-limited. */
static void test_panic_storm_is_rate_limited(void **state)
{
    FILE *capture = tmpfile();
    assert_non_null(capture);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(capture), STDERR_FILENO) >= 0);
    for (int i = 0; i < 10000; i++)
        pvpanic_io_ops.write(&pv, 0, 1, PVPANIC_PANICKED);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    assert_int_equal(pvpanic_panic_count(&pv), 10000);
    rewind(capture);
    char line[512];
    int panic_lines = 0;
    while (fgets(line, sizeof(line), capture))
        panic_lines += strstr(line, "guest panic") != NULL;
    fclose(capture);
    assert_true(panic_lines >= 1);
    assert_true(panic_lines <= 40); /* 10 per second; generous for a slow host */
}

static void test_hostile_accesses(void **state)
{
    static const unsigned sizes[] = {1, 2, 4, 8};
    uint64_t panics = 0, crashes = 0;
    for (unsigned s = 0; s < 4; s++) {
        for (unsigned value = 0; value < 256; value++) {
            pvpanic_io_ops.write(&pv, 0, sizes[s], value | 0xabcd00u);
            (void)pvpanic_io_ops.read(&pv, 0, sizes[s]);
            if (sizes[s] == 1) {
                panics += value & PVPANIC_PANICKED ? 1 : 0;
                crashes += value & PVPANIC_CRASH_LOADED ? 1 : 0;
            }
        }
    }
    assert_int_equal(pvpanic_panic_count(&pv), panics);
    assert_int_equal(pvpanic_crash_loaded_count(&pv), crashes);
}

static void test_state_roundtrip_and_refusals(void **state)
{
    pvpanic_io_ops.write(&pv, 0, 1, PVPANIC_PANICKED);
    pvpanic_io_ops.write(&pv, 0, 1, PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
    struct pvpanic restored;
    pvpanic_init(&restored, "pvpanic");
    assert_state_roundtrip(&pv.dev, &restored.dev);
    assert_int_equal(pvpanic_panic_count(&restored), 2);
    assert_int_equal(pvpanic_crash_loaded_count(&restored), 1);
    assert_state_refusals(&pv.dev, &restored.dev);
    restored.dev.ops->destroy(&restored.dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_supported_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_panic_and_crash_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignored_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_panic_storm_is_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
