/* MSI-X: capability, table and PBA access, masking and pending bits,
 * function mask, enable, the irqfd path with route updates, reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pci/msix.h"
#include "pci/pci.h"
#include "support/msix_fn.h"
#include "support/state.h"

#define NVEC 4
#define TABLE_OFF 0x0
#define PBA_OFF 0x800
#define GSI_BASE 100
#define MAX_ROUTES 16

struct fake_sink {
    unsigned direct;
    uint64_t last_addr;
    uint32_t last_data;
    unsigned adds, updates, removes;
    unsigned add_attempts;
    bool fail_add;
    struct {
        bool used;
        uint64_t addr;
        uint32_t data;
        int fd; /* irqfd bound, -1 if none */
    } routes[MAX_ROUTES];
};

static struct fake_sink sink;
static struct msix_fn dev;

static int sink_route_add(void *opaque, uint64_t addr, uint32_t data)
{
    struct fake_sink *s = opaque;
    s->add_attempts++;
    if (s->fail_add)
        return -1;
    for (int i = 0; i < MAX_ROUTES; i++) {
        if (!s->routes[i].used) {
            s->routes[i].used = true;
            s->routes[i].addr = addr;
            s->routes[i].data = data;
            s->routes[i].fd = -1;
            s->adds++;
            return GSI_BASE + i;
        }
    }
    return -1;
}

static int sink_route_update(void *opaque, int gsi, uint64_t addr, uint32_t data)
{
    struct fake_sink *s = opaque;
    assert_true(gsi >= GSI_BASE && gsi < GSI_BASE + MAX_ROUTES);
    assert_true(s->routes[gsi - GSI_BASE].used);
    s->routes[gsi - GSI_BASE].addr = addr;
    s->routes[gsi - GSI_BASE].data = data;
    s->updates++;
    return 0;
}

static void sink_route_remove(void *opaque, int gsi)
{
    struct fake_sink *s = opaque;
    assert_true(gsi >= GSI_BASE && gsi < GSI_BASE + MAX_ROUTES);
    assert_true(s->routes[gsi - GSI_BASE].used);
    assert_int_equal(s->routes[gsi - GSI_BASE].fd, -1); /* irqfd released first */
    s->routes[gsi - GSI_BASE].used = false;
    s->removes++;
}

static int sink_irqfd(void *opaque, int fd, int gsi, bool assign)
{
    struct fake_sink *s = opaque;
    assert_true(gsi >= GSI_BASE && gsi < GSI_BASE + MAX_ROUTES);
    s->routes[gsi - GSI_BASE].fd = assign ? fd : -1;
    return 0;
}

static void sink_signal(void *opaque, uint64_t addr, uint32_t data)
{
    struct fake_sink *s = opaque;
    s->direct++;
    s->last_addr = addr;
    s->last_data = data;
}

static const struct device_ops test_dev_ops = {
    .state = msix_fn_state, .kind = "msix-test", .state_version = 1};

static void test_dev_build(struct msix_fn *d, struct fake_sink *fs, bool irqfd)
{
    static const struct pci_ids ids = {.vendor_id = 0x1234, .device_id = 0x5678};
    memset(fs, 0, sizeof(*fs));
    pci_device_init(&d->pci, "msix-test", &test_dev_ops, &ids, &msix_fn_pci_ops);
    struct msix_sink s = {.signal_msi = sink_signal, .opaque = fs};
    if (irqfd) {
        s.route_add = sink_route_add;
        s.route_update = sink_route_update;
        s.route_remove = sink_route_remove;
        s.irqfd = sink_irqfd;
    }
    assert_int_equal(msix_init(&d->msix, &d->pci, NVEC, 1, TABLE_OFF, PBA_OFF, s), 0);
}

static void dev_init(bool irqfd)
{
    test_dev_build(&dev, &sink, irqfd);
}

static int setup_direct(void **state)
{
    dev_init(false);
    return 0;
}

static int setup_irqfd(void **state)
{
    dev_init(true);
    return 0;
}

static int teardown(void **state)
{
    msix_destroy(&dev.msix);
    pci_device_destroy(&dev.pci);
    return 0;
}

static uint64_t tread(uint64_t off, unsigned size)
{
    return msix_bar_io_ops.read(&dev.msix, off, size);
}

static void twrite(uint64_t off, unsigned size, uint64_t v)
{
    msix_bar_io_ops.write(&dev.msix, off, size, v);
}

static void program(unsigned v, uint64_t addr, uint32_t data, bool masked)
{
    twrite(TABLE_OFF + v * 16 + 0, 4, (uint32_t)addr);
    twrite(TABLE_OFF + v * 16 + 4, 4, addr >> 32);
    twrite(TABLE_OFF + v * 16 + 8, 4, data);
    twrite(TABLE_OFF + v * 16 + 12, 4, masked);
}

static void control(uint16_t value)
{
    pci_device_config_write(&dev.pci, dev.msix.cap + MSIX_CAP_CONTROL, 2, value);
}

static uint64_t eventfd_count(int fd)
{
    uint64_t n = 0;
    if (read(fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
        return 0;
    return n;
}

static void test_capability(void **state)
{
    unsigned cap = pci_find_capability(&dev.pci, PCI_CAP_ID_MSIX);
    assert_int_equal(cap, dev.msix.cap);
    assert_true(cap >= PCI_HEADER_END);
    assert_int_equal(pci_device_config_read(&dev.pci, cap + 2, 2), NVEC - 1);
    assert_int_equal(pci_device_config_read(&dev.pci, cap + 4, 4), TABLE_OFF | 1);
    assert_int_equal(pci_device_config_read(&dev.pci, cap + 8, 4), PBA_OFF | 1);
    /* Only enable and function mask are writable. */
    control(0xffff);
    assert_int_equal(pci_device_config_read(&dev.pci, cap + 2, 2), 0xc000 | (NVEC - 1));
    assert_true(msix_enabled(&dev.msix));
    control(0);
    assert_false(msix_enabled(&dev.msix));
    pci_device_config_write(&dev.pci, cap + 4, 4, 0xffffffff);
    assert_int_equal(pci_device_config_read(&dev.pci, cap + 4, 4), TABLE_OFF | 1);
}

static void test_table_access(void **state)
{
    /* Power-on: every vector masked, address/data zero. */
    for (unsigned v = 0; v < NVEC; v++) {
        assert_int_equal(tread(v * 16 + 12, 4), 1);
        assert_int_equal(tread(v * 16, 8), 0);
    }
    program(2, 0xfee01004, 0x4041, true);
    assert_int_equal(tread(2 * 16, 4), 0xfee01004);
    assert_int_equal(tread(2 * 16 + 8, 4), 0x4041);
    assert_int_equal(tread(2 * 16 + 8, 8), 0x100004041ull);
    /* Address bits 1:0 are reserved; only the mask bit of vector control. */
    twrite(2 * 16, 4, 0xfee01007);
    assert_int_equal(tread(2 * 16, 4), 0xfee01004);
    twrite(2 * 16 + 12, 4, 0xfffffffe);
    assert_int_equal(tread(2 * 16 + 12, 4), 0);
    /* 64-bit writes cover two dwords. */
    twrite(3 * 16, 8, 0x12345678fee00000ull);
    assert_int_equal(tread(3 * 16 + 4, 4), 0x12345678);
    /* Odd sizes and misaligned accesses are ignored. */
    twrite(3 * 16 + 8, 2, 0xbeef);
    twrite(3 * 16 + 9, 4, 0xbeef);
    twrite(3 * 16 + 4, 8, 0);
    assert_int_equal(tread(3 * 16 + 8, 4), 0);
    assert_int_equal(tread(3 * 16 + 4, 4), 0x12345678);
    assert_int_equal(tread(3 * 16 + 1, 1), 0);
    /* Past the table and PBA: not ours. */
    uint64_t value = 77;
    assert_false(msix_bar_read(&dev.msix, NVEC * 16, 4, &value));
    assert_int_equal(value, 77);
    assert_false(msix_bar_write(&dev.msix, 0x400, 4, 1));
    assert_false(msix_bar_read(&dev.msix, PBA_OFF + 8, 4, &value));
    /* The PBA is read-only. */
    twrite(PBA_OFF, 8, ~0ull);
    assert_int_equal(tread(PBA_OFF, 8), 0);
}

static void test_disabled_and_masked(void **state)
{
    program(0, 0xfee00000, 0x30, false);
    /* Disabled: the caller falls back to INTx. */
    assert_false(msix_notify(&dev.msix, 0));
    assert_int_equal(sink.direct, 0);
    control(MSIX_CONTROL_ENABLE);
    assert_true(msix_notify(&dev.msix, 0));
    assert_int_equal(sink.direct, 1);
    assert_int_equal(sink.last_addr, 0xfee00000);
    assert_int_equal(sink.last_data, 0x30);

    /* A masked vector goes pending; unmasking delivers and clears. */
    program(1, 0xfee02000, 0x31, true);
    assert_true(msix_notify(&dev.msix, 1));
    assert_int_equal(sink.direct, 1);
    assert_true(msix_is_pending(&dev.msix, 1));
    assert_int_equal(tread(PBA_OFF, 8), 0x2);
    assert_int_equal(tread(PBA_OFF, 4), 0x2);
    twrite(16 + 12, 4, 0);
    assert_int_equal(sink.direct, 2);
    assert_int_equal(sink.last_data, 0x31);
    assert_false(msix_is_pending(&dev.msix, 1));
    assert_int_equal(tread(PBA_OFF, 8), 0);
    /* Unmasking without a pending bit delivers nothing. */
    twrite(16 + 12, 4, 1);
    twrite(16 + 12, 4, 0);
    assert_int_equal(sink.direct, 2);

    /* Out-of-range vectors are dropped but handled. */
    assert_true(msix_notify(&dev.msix, NVEC));
    assert_true(msix_notify(&dev.msix, 0xffff));
    assert_int_equal(sink.direct, 2);
}

static void test_function_mask(void **state)
{
    program(0, 0xfee00000, 0x40, false);
    program(3, 0xfee00000, 0x43, false);
    control(MSIX_CONTROL_ENABLE | MSIX_CONTROL_MASKALL);
    assert_true(msix_is_masked(&dev.msix, 0));
    assert_true(msix_notify(&dev.msix, 0));
    assert_true(msix_notify(&dev.msix, 3));
    assert_int_equal(sink.direct, 0);
    assert_int_equal(tread(PBA_OFF, 8), 0x9);
    /* Unmasking a vector while the function is masked still delivers nothing. */
    twrite(12, 4, 0);
    assert_int_equal(sink.direct, 0);
    control(MSIX_CONTROL_ENABLE);
    assert_int_equal(sink.direct, 2);
    assert_int_equal(tread(PBA_OFF, 8), 0);
    /* Pending survives a disable/enable cycle only while masked. */
    twrite(12, 4, 1);
    assert_true(msix_notify(&dev.msix, 0));
    control(0);
    control(MSIX_CONTROL_ENABLE);
    assert_true(msix_is_pending(&dev.msix, 0));
    twrite(12, 4, 0);
    assert_int_equal(sink.direct, 3);
}

static void test_reset(void **state)
{
    program(0, 0xfee00000, 0x50, true);
    control(MSIX_CONTROL_ENABLE);
    msix_notify(&dev.msix, 0);
    assert_true(msix_is_pending(&dev.msix, 0));
    msix_reset(&dev.msix);
    pci_device_reset(&dev.pci);
    assert_false(msix_enabled(&dev.msix));
    assert_false(msix_is_pending(&dev.msix, 0));
    assert_int_equal(tread(12, 4), 1);
    assert_int_equal(tread(0, 8), 0);
    /* (The control register itself returns to power-on through
     * pci_device_reset on a device that sits on a bus.) */
}

static void test_irqfd_path(void **state)
{
    program(0, 0xfee00000, 0x60, false);
    program(1, 0xfee01000, 0x61, false);
    control(MSIX_CONTROL_ENABLE);
    /* First delivery makes a route and binds an eventfd to it. */
    assert_true(msix_notify(&dev.msix, 0));
    assert_int_equal(sink.adds, 1);
    assert_int_equal(sink.direct, 0);
    int gsi0 = dev.msix.vec[0].gsi;
    assert_int_equal(gsi0, GSI_BASE);
    int fd0 = sink.routes[0].fd;
    assert_true(fd0 >= 0);
    assert_int_equal(sink.routes[0].data, 0x60);
    assert_int_equal(eventfd_count(fd0), 1);
    /* Later deliveries only signal the eventfd. */
    msix_notify(&dev.msix, 0);
    msix_notify(&dev.msix, 0);
    assert_int_equal(eventfd_count(fd0), 2);
    assert_int_equal(sink.adds, 1);
    /* Another vector, another route. */
    msix_notify(&dev.msix, 1);
    assert_int_equal(sink.adds, 2);
    assert_int_equal(sink.routes[1].data, 0x61);
    /* Rewriting address/data updates the route before the next delivery. */
    twrite(8, 4, 0x70);
    assert_int_equal(sink.updates, 0);
    msix_notify(&dev.msix, 0);
    assert_int_equal(sink.updates, 1);
    assert_int_equal(sink.routes[0].data, 0x70);
    assert_int_equal(eventfd_count(fd0), 1);
    /* Rewriting the same value is not a change. */
    twrite(8, 4, 0x70);
    msix_notify(&dev.msix, 0);
    assert_int_equal(sink.updates, 1);
    eventfd_count(fd0);
    /* Reset drops irqfds and routes; the eventfds stay for reuse. */
    msix_reset(&dev.msix);
    assert_int_equal(sink.removes, 2);
    assert_false(sink.routes[0].used);
    assert_int_equal(dev.msix.vec[0].event_fd, fd0);
    pci_device_reset(&dev.pci);
    program(0, 0xfee00000, 0x80, false);
    control(MSIX_CONTROL_ENABLE);
    msix_notify(&dev.msix, 0);
    assert_int_equal(sink.adds, 3);
    assert_int_equal(sink.routes[0].fd, fd0);
    assert_int_equal(eventfd_count(fd0), 1);
}

/* A vector another engine writes (vhost): bound while deliverable, its
 * route moved as soon as the guest rewrites the message, unbound while
 * masked or disabled with the engine's signals kept for the rebinding. */
static void test_external_engine_vector(void **state)
{
    program(3, 0xfee00000, 0x41, true);
    int fd = msix_vector_eventfd(&dev.msix, 3);
    assert_true(fd >= 0);
    assert_int_equal(fd, dev.msix.vec[3].event_fd);
    assert_int_equal(sink.adds, 0); /* disabled and masked: nothing bound yet */
    uint64_t one = 1;
    assert_int_equal(write(fd, &one, 8), 8); /* the engine signals meanwhile */
    control(MSIX_CONTROL_ENABLE);
    assert_int_equal(sink.adds, 0);
    twrite(TABLE_OFF + 3 * 16 + 12, 4, 0); /* unmask: bound, the signal kept */
    assert_int_equal(sink.adds, 1);
    int gsi = dev.msix.vec[3].gsi;
    assert_int_equal(sink.routes[gsi - GSI_BASE].fd, fd);
    assert_int_equal(sink.routes[gsi - GSI_BASE].data, 0x41);
    assert_int_equal(eventfd_count(fd), 1);

    /* The guest moves the vector (as Linux does: mask, rewrite, unmask). */
    twrite(TABLE_OFF + 3 * 16 + 12, 4, 1);
    assert_int_equal(sink.routes[gsi - GSI_BASE].fd, -1);
    assert_int_equal(write(fd, &one, 8), 8);
    twrite(TABLE_OFF + 3 * 16 + 8, 4, 0x42);
    twrite(TABLE_OFF + 3 * 16 + 12, 4, 0);
    assert_int_equal(sink.routes[gsi - GSI_BASE].data, 0x42);
    assert_int_equal(sink.routes[gsi - GSI_BASE].fd, fd);
    assert_int_equal(eventfd_count(fd), 1);
    /* ... or rewrites it unmasked: the route follows at once. */
    twrite(TABLE_OFF + 3 * 16 + 8, 4, 0x43);
    assert_int_equal(sink.routes[gsi - GSI_BASE].data, 0x43);
    assert_int_equal(sink.direct, 0);

    /* The function mask and MSI-X off unbind it too. */
    control(MSIX_CONTROL_ENABLE | MSIX_CONTROL_MASKALL);
    assert_int_equal(sink.routes[gsi - GSI_BASE].fd, -1);
    control(MSIX_CONTROL_ENABLE);
    assert_int_equal(sink.routes[gsi - GSI_BASE].fd, fd);
    control(0);
    assert_int_equal(sink.routes[gsi - GSI_BASE].fd, -1);

    /* A reset ends it: the vector is an ordinary one again. */
    msix_reset(&dev.msix);
    assert_false(dev.msix.vec[3].external);
    assert_int_equal(msix_vector_eventfd(&dev.msix, 99), -1);
}

static void test_route_failure_falls_back(void **state)
{
    sink.fail_add = true;
    program(2, 0xfee00000, 0x90, false);
    control(MSIX_CONTROL_ENABLE);
    assert_true(msix_notify(&dev.msix, 2));
    assert_int_equal(sink.direct, 1);
    assert_int_equal(sink.last_data, 0x90);
    assert_int_equal(sink.add_attempts, 1);

    /* The refusal is remembered: a busy vector does not ask the machine
     * (a search of its routes under its lock) on every interrupt. */
    for (int i = 0; i < 1000; i++)
        assert_true(msix_notify(&dev.msix, 2));
    assert_int_equal(sink.direct, 1001);
    assert_int_equal(sink.add_attempts, 1);

    /* Rewriting the same message changes nothing; a new message asks again. */
    sink.fail_add = false;
    program(2, 0xfee00000, 0x90, false);
    msix_notify(&dev.msix, 2);
    assert_int_equal(sink.add_attempts, 1);
    assert_int_equal(sink.direct, 1002);
    program(2, 0xfee00000, 0x91, false);
    msix_notify(&dev.msix, 2);
    assert_int_equal(sink.add_attempts, 2);
    assert_int_equal(sink.adds, 1);
    assert_int_equal(sink.direct, 1002);

    /* A reset forgets a refusal too. */
    sink.fail_add = true;
    program(3, 0xfee00000, 0x92, false);
    msix_notify(&dev.msix, 3);
    assert_int_equal(sink.add_attempts, 3);
    msix_reset(&dev.msix);
    sink.fail_add = false;
    program(3, 0xfee00000, 0x92, false);
    control(MSIX_CONTROL_ENABLE);
    msix_notify(&dev.msix, 3);
    assert_int_equal(sink.add_attempts, 4);
    assert_int_equal(sink.adds, 2);
}

static void test_bad_layouts(void **state)
{
    static const struct pci_ids ids = {.vendor_id = 0x1234, .device_id = 0x1};
    struct pci_device pdev;
    struct msix x;
    struct msix_sink s = {0};
    pci_device_init(&pdev, "bad", NULL, &ids, NULL);
    assert_int_equal(msix_init(&x, &pdev, 0, 0, 0, 0x800, s), -1);
    assert_int_equal(msix_init(&x, &pdev, 4, 0, 0, 0x20, s), -1);  /* PBA inside table */
    assert_int_equal(msix_init(&x, &pdev, 4, 0, 4, 0x800, s), -1); /* misaligned */
    assert_int_equal(msix_init(&x, &pdev, 4, 7, 0, 0x800, s), -1); /* no such BAR */
    assert_int_equal(msix_init(&x, &pdev, 4096, 0, 0, 0x800, s), -1);
    /* An uninitialized (failed) model refuses quietly. */
    assert_false(msix_enabled(&x));
    assert_false(msix_notify(&x, 0));
    msix_destroy(&x);
    pci_device_destroy(&pdev);
}

/* The table, pending bits and enable state survive a state round trip;
 * routes are made again on the restored function at first delivery. */
static void test_state_round_trip(void **state)
{
    program(0, 0xfee00000, 0x30, false);
    program(2, 0xfee01000, 0x32, true);
    control(MSIX_CONTROL_ENABLE);
    assert_true(msix_notify(&dev.msix, 0));
    assert_true(msix_notify(&dev.msix, 2)); /* masked: pending */
    assert_int_equal(sink.adds, 1);

    static struct msix_fn restored;
    static struct fake_sink restored_sink;
    test_dev_build(&restored, &restored_sink, true);
    assert_state_roundtrip(&dev.pci.dev, &restored.pci.dev);
    assert_true(msix_enabled(&restored.msix));
    assert_true(msix_is_pending(&restored.msix, 2));
    assert_int_equal(msix_bar_io_ops.read(&restored.msix, 2 * 16 + 8, 4), 0x32);
    assert_int_equal(restored_sink.adds, 0);
    /* Unmasking delivers the pending vector through a new route. */
    msix_bar_io_ops.write(&restored.msix, 2 * 16 + 12, 4, 0);
    assert_false(msix_is_pending(&restored.msix, 2));
    assert_int_equal(restored_sink.adds, 1);
    assert_int_equal(restored_sink.routes[0].data, 0x32);
    assert_true(msix_notify(&restored.msix, 0));
    assert_int_equal(restored_sink.adds, 2);
    assert_int_equal(restored_sink.routes[1].addr, 0xfee00000);

    assert_state_refusals(&dev.pci.dev, &restored.pci.dev);
    uint32_t vectors = NVEC + 1;
    assert_state_field_refused(&dev.pci.dev, &restored.pci.dev, "msix.vectors", &vectors, 4);
    uint8_t pending[NVEC] = {0, 0, 2, 0};
    assert_state_field_refused(&dev.pci.dev, &restored.pci.dev, "msix.pending", pending, NVEC);
    msix_destroy(&restored.msix);
    pci_device_destroy(&restored.pci);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capability, setup_direct, teardown),
        cmocka_unit_test_setup_teardown(test_table_access, setup_direct, teardown),
        cmocka_unit_test_setup_teardown(test_disabled_and_masked, setup_direct, teardown),
        cmocka_unit_test_setup_teardown(test_function_mask, setup_direct, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup_direct, teardown),
        cmocka_unit_test_setup_teardown(test_irqfd_path, setup_irqfd, teardown),
        cmocka_unit_test_setup_teardown(test_external_engine_vector, setup_irqfd, teardown),
        cmocka_unit_test_setup_teardown(test_route_failure_falls_back, setup_irqfd, teardown),
        cmocka_unit_test(test_bad_layouts),
        cmocka_unit_test_setup_teardown(test_state_round_trip, setup_irqfd, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
