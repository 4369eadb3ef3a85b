/* Machine pause, resume and state on real KVM: a guest loop runs, the
 * machine pauses, its state (registers, MSRs, LAPIC, PIT, IOAPIC, PICs,
 * interrupt lines, devices) loads into a second machine that saves the
 * same bytes and continues the loop; states of another shape, cut short,
 * newer or corrupt are refused naming the record and field. Needs
 * /dev/kvm: without it every test fails. */
#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "stderr_capture.h"

#include "common/bytes.h"
#include "core/machine.h"

#define MEMORY_BYTES (32 * MIB)
#define CODE_ADDR 0x1000
#define LOOP_ADDR 0x100c
#define COUNTER_ADDR 0x2000
#define PIT_COUNT 0x4321
#define LINE_GSI 5
#define LINE_SOURCE (1u << 4)
#define MSR_SYSENTER_CS 0x174
#define MSR_TSC_AUX 0xc0000103

/* Real mode: program PIT channel 0 (mode 2, count PIT_COUNT), then count
 * in ebx forever, storing the count at COUNTER_ADDR. */
static const uint8_t guest_code[] = {
    0xb0, 0x34,             /* mov al, 0x34: channel 0, lobyte/hibyte, mode 2 */
    0xe6, 0x43,             /* out 0x43, al */
    0xb0, 0x21,             /* mov al, 0x21 */
    0xe6, 0x40,             /* out 0x40, al */
    0xb0, 0x43,             /* mov al, 0x43 */
    0xe6, 0x40,             /* out 0x40, al */
    0x66, 0x43,             /* loop: inc ebx */
    0x66, 0x89, 0x1e,       /* mov [COUNTER_ADDR], ebx */
    0x00, 0x20, 0xeb, 0xf7, /* jmp loop */
};

/* At IO_LOOP_ADDR: count in ebx, and read port 0x80 after each count (an
 * exit to the VMM every time). */
#define IO_LOOP_ADDR 0x3000
#define COUNT_PORT 0x80
static const uint8_t io_loop_code[] = {
    0x66, 0x43,       /* loop: inc ebx */
    0xe4, COUNT_PORT, /* in al, 0x80 */
    0xeb, 0xfa,       /* jmp loop */
};

static char bootrom_path[] = "/tmp/test_machine_state_romXXXXXX";

/* ---- A trivial device: one field, pause and resume recorded ---- */

struct test_dev {
    struct device dev;
    uint32_t value;
    bool fail_pause, paused;
    int paused_at, resumed_at; /* sequence numbers */
};

static int sequence;

static int test_dev_pause(struct device *d)
{
    struct test_dev *t = container_of(d, struct test_dev, dev);
    if (t->fail_pause)
        return -1;
    t->paused = true;
    t->paused_at = ++sequence;
    return 0;
}

static void test_dev_resume(struct device *d)
{
    struct test_dev *t = container_of(d, struct test_dev, dev);
    t->paused = false;
    t->resumed_at = ++sequence;
}

static int test_dev_state(struct device *d, struct snap *s)
{
    struct test_dev *t = container_of(d, struct test_dev, dev);
    snap_u32(s, "value", &t->value);
    snap_check(s, t->value != 0xdead, "value", "poisoned");
    return snap_error(s);
}

static const struct device_ops test_dev_ops = {
    .pause = test_dev_pause,
    .resume = test_dev_resume,
    .state = test_dev_state,
    .kind = "test-device",
    .state_version = 1,
};

static const struct device_ops other_dev_ops = {
    .state = test_dev_state,
    .kind = "other-device",
    .state_version = 1,
};

static void test_dev_init(struct test_dev *t, const char *name, const struct device_ops *ops)
{
    memset(t, 0, sizeof(*t));
    t->dev.name = name;
    t->dev.ops = ops;
}

/* ---- Machines ---- */

static void require_kvm(void)
{
    if (access("/dev/kvm", R_OK | W_OK) != 0)
        fail_msg("/dev/kvm is not usable (%s): these tests need KVM and do not skip",
                 strerror(errno));
}

static int group_setup(void **state)
{
    int fd = mkstemp(bootrom_path);
    if (fd < 0)
        return -1;
    uint8_t rom[4096];
    memset(rom, 0xf4, sizeof(rom)); /* hlt */
    ssize_t n = write(fd, rom, sizeof(rom));
    close(fd);
    return n == (ssize_t)sizeof(rom) ? 0 : -1;
}

static int group_teardown(void **state)
{
    unlink(bootrom_path);
    return 0;
}

static void make_machine(struct machine *m, unsigned cpus)
{
    require_kvm();
    struct machine_spec spec = {
        .cpus = cpus, .memory_bytes = MEMORY_BYTES, .bootrom_path = bootrom_path};
    if (machine_create(m, &spec) != 0)
        fail_msg("machine_create failed (see the log above)");
    if (m->kvm_host.missing)
        fail_msg("this host's KVM lacks %s", m->kvm_host.missing);
    /* Guest memory is not part of the state: every machine gets the code. */
    memcpy(m->lowmem + CODE_ADDR, guest_code, sizeof(guest_code));
    memcpy(m->lowmem + IO_LOOP_ADDR, io_loop_code, sizeof(io_loop_code));
    (void)machine_irq_line(m, LINE_GSI, LINE_SOURCE);
}

static void vcpu_ioctl(struct machine *m, unsigned cpu, unsigned long request, void *arg)
{
    if (ioctl(m->vcpus[cpu].fd, request, arg) < 0)
        fail_msg("vCPU %u ioctl 0x%lx: %s", cpu, request, strerror(errno));
}

static void vm_ioctl(struct machine *m, unsigned long request, void *arg)
{
    if (ioctl(m->vm_fd, request, arg) < 0)
        fail_msg("VM ioctl 0x%lx: %s", request, strerror(errno));
}

/* vCPU 0 starts at rip in real mode with CR0 unlike its reset value. */
static void point_at(struct machine *m, uint64_t rip)
{
    struct kvm_sregs sregs;
    vcpu_ioctl(m, 0, KVM_GET_SREGS, &sregs);
    sregs.cs.selector = 0;
    sregs.cs.base = 0;
    sregs.cr0 = 0x10; /* ET only: caches enabled */
    vcpu_ioctl(m, 0, KVM_SET_SREGS, &sregs);
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rip = rip;
    regs.rflags = 2;
    vcpu_ioctl(m, 0, KVM_SET_REGS, &regs);
}

static void point_at_code(struct machine *m)
{
    point_at(m, CODE_ADDR);
}

static struct kvm_regs get_regs(struct machine *m, unsigned cpu)
{
    struct kvm_regs regs;
    vcpu_ioctl(m, cpu, KVM_GET_REGS, &regs);
    return regs;
}

static uint64_t get_msr(struct machine *m, unsigned cpu, uint32_t index)
{
    struct {
        struct kvm_msrs header;
        struct kvm_msr_entry entry;
    } b;
    memset(&b, 0, sizeof(b));
    b.header.nmsrs = 1;
    b.entry.index = index;
    if (ioctl(m->vcpus[cpu].fd, KVM_GET_MSRS, &b) != 1)
        fail_msg("vCPU %u: cannot read MSR 0x%x", cpu, index);
    return b.entry.data;
}

static void set_msr(struct machine *m, unsigned cpu, uint32_t index, uint64_t value)
{
    struct {
        struct kvm_msrs header;
        struct kvm_msr_entry entry;
    } b;
    memset(&b, 0, sizeof(b));
    b.header.nmsrs = 1;
    b.entry.index = index;
    b.entry.data = value;
    if (ioctl(m->vcpus[cpu].fd, KVM_SET_MSRS, &b) != 1)
        fail_msg("vCPU %u: cannot write MSR 0x%x", cpu, index);
}

static bool host_has_msr(struct machine *m, uint32_t index)
{
    for (unsigned i = 0; i < m->kvm_host.msr_count; i++)
        if (m->kvm_host.msrs[i] == index)
            return true;
    return false;
}

static uint32_t lapic_reg(struct machine *m, unsigned cpu, unsigned offset)
{
    struct kvm_lapic_state lapic;
    vcpu_ioctl(m, cpu, KVM_GET_LAPIC, &lapic);
    return le32_load(lapic.regs + offset);
}

static struct kvm_irqchip get_chip(struct machine *m, unsigned id)
{
    struct kvm_irqchip chip;
    memset(&chip, 0, sizeof(chip));
    chip.chip_id = id;
    vm_ioctl(m, KVM_GET_IRQCHIP, &chip);
    return chip;
}

static struct kvm_pit_state2 get_pit(struct machine *m)
{
    struct kvm_pit_state2 pit;
    vm_ioctl(m, KVM_GET_PIT2, &pit);
    return pit;
}

static void sleep_ms(unsigned ms)
{
    nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL);
}

static uint32_t guest_counter(struct machine *m)
{
    return *(const volatile uint32_t *)(m->lowmem + COUNTER_ADDR);
}

/* The guest's counter moves: its vCPU runs (read from guest memory, as a
 * vCPU ioctl would wait for a KVM_RUN that never exits). */
static bool guest_counting(struct machine *m)
{
    uint32_t before = guest_counter(m);
    for (unsigned i = 0; i < 400; i++) {
        sleep_ms(5);
        if (guest_counter(m) != before)
            return true;
    }
    return false;
}

static void pause_ok(struct machine *m)
{
    char err[512] = "";
    if (machine_pause(m, err, sizeof(err)) != 0)
        fail_msg("machine_pause: %s", err);
}

static void save_ok(struct machine *m, struct snap_buf *out)
{
    char err[512] = "";
    if (machine_save_state(m, out, err, sizeof(err)) != 0)
        fail_msg("machine_save_state: %s", err);
}

static void load_ok(struct machine *m, const struct snap_buf *in)
{
    char err[512] = "";
    if (machine_load_state(m, in->data, in->len, err, sizeof(err)) != 0)
        fail_msg("machine_load_state: %s", err);
}

/* Runs the guest until its PIT has ticked (PIC IRR bit 0; IF is clear, so
 * it stays pending and the chips' state is stable), then pauses. */
static void run_guest_and_pause(struct machine *m)
{
    point_at_code(m);
    assert_int_equal(machine_start(m), 0);
    for (unsigned ms = 0; !(get_chip(m, KVM_IRQCHIP_PIC_MASTER).chip.pic.irr & 1); ms += 5) {
        if (ms > 3000)
            fail_msg("the guest's PIT never raised IRQ 0");
        sleep_ms(5);
    }
    pause_ok(m);
}

/* Guest-visible values the paused machine a is given through KVM, apart
 * from what its guest did. */
static void set_values(struct machine *m, struct test_dev *dev)
{
    set_msr(m, 0, MSR_SYSENTER_CS, 0x10);
    set_msr(m, 1, MSR_SYSENTER_CS, 0x18);
    if (host_has_msr(m, MSR_TSC_AUX))
        set_msr(m, 1, MSR_TSC_AUX, 7);
    struct kvm_lapic_state lapic;
    vcpu_ioctl(m, 0, KVM_GET_LAPIC, &lapic);
    le32_store(lapic.regs + 0x80, 0x20); /* TPR */
    vcpu_ioctl(m, 0, KVM_SET_LAPIC, &lapic);
    struct kvm_irqchip io = get_chip(m, KVM_IRQCHIP_IOAPIC);
    io.chip.ioapic.redirtbl[LINE_GSI].bits = 0x35 | (1u << 15) | (1u << 16); /* level, masked */
    vm_ioctl(m, KVM_SET_IRQCHIP, &io);
    struct kvm_debugregs debug;
    vcpu_ioctl(m, 0, KVM_GET_DEBUGREGS, &debug);
    debug.db[0] = 0x1234;
    vcpu_ioctl(m, 0, KVM_SET_DEBUGREGS, &debug);
    machine_set_irq(m, LINE_GSI, LINE_SOURCE, true);
    if (dev)
        dev->value = 0x5a;
}

static void assert_same_state(struct machine *a, struct machine *b)
{
    struct snap_buf sa = {0}, sb = {0};
    save_ok(a, &sa);
    save_ok(b, &sb);
    assert_int_equal(sa.len, sb.len);
    assert_memory_equal(sa.data, sb.data, sa.len);
    snap_buf_free(&sa);
    snap_buf_free(&sb);
}

static void assert_loop_rip(uint64_t rip)
{
    if (rip != LOOP_ADDR && rip != LOOP_ADDR + 2 && rip != LOOP_ADDR + 7)
        fail_msg("rip 0x%llx is not in the guest's loop", (unsigned long long)rip);
}

/* ---- Tests ---- */

static void test_roundtrip_and_continue(void **state)
{
    static struct machine a, b;
    static struct test_dev dev_a, dev_b;
    make_machine(&a, 2);
    make_machine(&b, 2);
    test_dev_init(&dev_a, "probe", &test_dev_ops);
    test_dev_init(&dev_b, "probe", &test_dev_ops);
    assert_int_equal(machine_add_device(&a, &dev_a.dev), 0);
    assert_int_equal(machine_add_device(&b, &dev_b.dev), 0);

    run_guest_and_pause(&a);
    struct kvm_regs regs_a = get_regs(&a, 0);
    assert_loop_rip(regs_a.rip);
    assert_true((uint32_t)regs_a.rbx != 0);
    set_values(&a, &dev_a);

    struct snap_buf saved = {0}, again = {0};
    save_ok(&a, &saved);
    uint64_t a_paused_at = vm_clock_ns();
    /* A paused machine's time stands still: a later save is identical. */
    sleep_ms(100);
    save_ok(&a, &again);
    assert_int_equal(saved.len, again.len);
    assert_memory_equal(saved.data, again.data, saved.len);
    snap_buf_free(&again);

    /* b never ran: pause it, load, and it saves the same bytes. */
    pause_ok(&b);
    load_ok(&b, &saved);
    save_ok(&b, &again);
    assert_int_equal(saved.len, again.len);
    assert_memory_equal(saved.data, again.data, saved.len);

    /* The values themselves, read back from b's KVM. */
    struct kvm_regs regs_b = get_regs(&b, 0);
    assert_int_equal(regs_b.rip, regs_a.rip);
    assert_int_equal(regs_b.rbx, regs_a.rbx);
    struct kvm_sregs sregs_b;
    vcpu_ioctl(&b, 0, KVM_GET_SREGS, &sregs_b);
    assert_int_equal(sregs_b.cr0, 0x10);
    assert_int_equal(sregs_b.cs.base, 0);
    assert_int_equal(get_msr(&b, 0, MSR_SYSENTER_CS), 0x10);
    assert_int_equal(get_msr(&b, 1, MSR_SYSENTER_CS), 0x18);
    if (host_has_msr(&b, MSR_TSC_AUX))
        assert_int_equal(get_msr(&b, 1, MSR_TSC_AUX), 7);
    assert_int_equal(lapic_reg(&b, 0, 0x80), 0x20);
    assert_int_equal(lapic_reg(&b, 1, 0x80), 0);
    struct kvm_pit_state2 pit = get_pit(&b);
    assert_int_equal(pit.channels[0].mode, 2);
    assert_int_equal(pit.channels[0].count, PIT_COUNT);
    struct kvm_irqchip io = get_chip(&b, KVM_IRQCHIP_IOAPIC);
    assert_int_equal(io.chip.ioapic.redirtbl[LINE_GSI].bits, 0x35 | (1u << 15) | (1u << 16));
    assert_true(io.chip.ioapic.irr & (1u << LINE_GSI)); /* the line is held high */
    assert_true(get_chip(&b, KVM_IRQCHIP_PIC_MASTER).chip.pic.irr & 1);
    assert_int_equal(b.irq_sources[LINE_GSI], LINE_SOURCE);
    struct kvm_debugregs debug;
    vcpu_ioctl(&b, 0, KVM_GET_DEBUGREGS, &debug);
    assert_int_equal(debug.db[0], 0x1234);
    struct kvm_mp_state mp;
    vcpu_ioctl(&b, 1, KVM_GET_MP_STATE, &mp);
    assert_int_equal(mp.mp_state, KVM_MP_STATE_UNINITIALIZED);
    assert_int_equal(dev_b.value, 0x5a);
    assert_int_equal(b.paused_kvmclock_ns, a.paused_kvmclock_ns);
    assert_int_equal(b.paused_vm_clock_ns, a.paused_vm_clock_ns);
    assert_int_equal(b.vcpus[0].paused_tsc, a.vcpus[0].paused_tsc);

    /* Both continue the loop where the state left it, with no reset. */
    uint64_t kvmclock_at_save = a.paused_kvmclock_ns;
    assert_int_equal(machine_resume(&b), 0);
    assert_int_equal(machine_resume(&a), 0);
    assert_false(dev_b.paused);
    assert_true(guest_counting(&b));
    sleep_ms(30);
    pause_ok(&b);
    pause_ok(&a);
    uint64_t wall = vm_clock_ns() - a_paused_at;
    struct kvm_regs later_b = get_regs(&b, 0), later_a = get_regs(&a, 0);
    assert_loop_rip(later_b.rip);
    assert_loop_rip(later_a.rip);
    assert_true(later_b.rbx != regs_a.rbx);
    assert_true(later_a.rbx != regs_a.rbx);
    vcpu_ioctl(&b, 0, KVM_GET_SREGS, &sregs_b);
    assert_int_equal(sregs_b.cr0, 0x10);
    assert_int_equal(get_msr(&b, 0, MSR_SYSENTER_CS), 0x10);
    /* kvmclock did not count the pauses: each machine's clock moved by
     * the time it ran, not by the 100 ms and more since a paused. */
    uint64_t ran_b = b.paused_kvmclock_ns - kvmclock_at_save;
    uint64_t ran_a = a.paused_kvmclock_ns - kvmclock_at_save;
    if (ran_b < 25000000ull || ran_b + 80000000ull > wall || ran_a < 25000000ull ||
        ran_a + 80000000ull > wall)
        fail_msg("kvmclock moved %llu ns (b) and %llu ns (a) over %llu ns, 100 ms of them paused",
                 (unsigned long long)ran_b, (unsigned long long)ran_a, (unsigned long long)wall);

    snap_buf_free(&saved);
    snap_buf_free(&again);
    machine_destroy(&a);
    machine_destroy(&b);
}

static void test_pause_order_and_failed_pause(void **state)
{
    static struct machine m;
    static struct test_dev first, second;
    make_machine(&m, 1);
    test_dev_init(&first, "first", &test_dev_ops);
    test_dev_init(&second, "second", &test_dev_ops);
    assert_int_equal(machine_add_device(&m, &first.dev), 0);
    assert_int_equal(machine_add_device(&m, &second.dev), 0);
    point_at_code(&m);
    assert_int_equal(machine_start(&m), 0);
    char err[512] = "";
    struct snap_buf out = {0};
    assert_int_equal(machine_save_state(&m, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not paused"));

    /* Devices pause in reverse inventory order and resume in order. */
    sequence = 0;
    pause_ok(&m);
    assert_true(m.paused && first.paused && second.paused);
    assert_true(second.paused_at < first.paused_at);
    assert_int_equal(machine_pause(&m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "already paused"));
    uint64_t rbx = get_regs(&m, 0).rbx;
    sleep_ms(10);
    assert_int_equal(get_regs(&m, 0).rbx, rbx); /* the vCPU is held */
    assert_int_equal(machine_resume(&m), 0);
    assert_true(first.resumed_at < second.resumed_at);
    assert_false(m.paused || first.paused || second.paused);

    /* A device that cannot pause: the one paused before it resumes, the
     * vCPUs run again, and the error names the device. */
    first.fail_pause = true;
    assert_int_equal(machine_pause(&m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "first"));
    assert_false(m.paused || second.paused);
    assert_true(second.resumed_at > second.paused_at);
    assert_true(guest_counting(&m));
    first.fail_pause = false;
    machine_destroy(&m);
}

/* A port whose reads count themselves, as a device's side effects would:
 * the n-th read returns n (low byte). */
static _Atomic uint32_t port_reads;

static uint64_t count_port_read(void *opaque, uint64_t offset, unsigned size)
{
    uint32_t n = ++port_reads;
    /* Slow, like a real device: a pause mostly finds the vCPU here. */
    nanosleep(&(struct timespec){0, 200000}, NULL);
    return n & 0xff;
}

static void count_port_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
}

static const struct io_ops count_port_ops = {.read = count_port_read, .write = count_port_write};

/* A vCPU stopped right after an IN the VMM answered has its rip still on
 * the IN and the value not yet in al until KVM_RUN completes the exit: a
 * pause must complete it, or a resumed or restored guest reads the port
 * again and the first value is lost. So at every pause the guest's count
 * in ebx and the port's agree (ebx reads done, with al the last value; or
 * ebx-1, with rip on the IN not yet executed), also across a round trip
 * through a second machine. */
static void test_pause_completes_exits(void **state)
{
    static struct machine m, copy;
    make_machine(&m, 1);
    make_machine(&copy, 1);
    assert_true(bus_register(&m.pio, COUNT_PORT, 1, &count_port_ops, NULL, "count"));
    assert_true(bus_register(&copy.pio, COUNT_PORT, 1, &count_port_ops, NULL, "count"));
    port_reads = 0;
    point_at(&m, IO_LOOP_ADDR);
    assert_int_equal(machine_start(&m), 0);
    pause_ok(&copy);
    for (unsigned round = 0; round < 40; round++) {
        sleep_ms(2);
        pause_ok(&m);
        struct kvm_regs regs = get_regs(&m, 0);
        uint32_t ebx = (uint32_t)regs.rbx, reads = port_reads;
        bool before_in = regs.rip == IO_LOOP_ADDR + 2;
        uint32_t done = before_in ? ebx - 1 : ebx;
        if (reads != done || (done && (regs.rax & 0xff) != (done & 0xff)))
            fail_msg("round %u: the guest counted %u (al 0x%02x), the port saw %u reads, rip "
                     "0x%llx",
                     round, ebx, (unsigned)(regs.rax & 0xff), reads, (unsigned long long)regs.rip);
        /* Alternate: resume in place, or move to the copy and back. */
        if (round % 2) {
            struct snap_buf s = {0};
            save_ok(&m, &s);
            load_ok(&copy, &s);
            snap_buf_free(&s);
            s = (struct snap_buf){0};
            save_ok(&copy, &s);
            load_ok(&m, &s);
            snap_buf_free(&s);
        }
        assert_int_equal(machine_resume(&m), 0);
    }
    assert_true(port_reads > 40);
    machine_destroy(&m);
    machine_destroy(&copy);
}

/* ---- Refusals ---- */

struct located {
    size_t record_at, version_at, body_at, body_len;
    size_t value_at, value_len;
};

/* Finds record `record` and, unless field is NULL, its field `field`. */
static struct located locate(const struct snap_buf *b, const char *record, const char *field)
{
    size_t pos = 0;
    while (pos < b->len) {
        struct located l = {.record_at = pos};
        size_t name_len = b->data[pos];
        bool match = name_len == strlen(record) && !memcmp(b->data + pos + 1, record, name_len);
        pos += 1 + name_len;
        pos += 1 + b->data[pos]; /* kind */
        l.version_at = pos;
        l.body_len = le32_load(b->data + pos + 4);
        l.body_at = pos + 8;
        pos = l.body_at + l.body_len;
        if (!match)
            continue;
        if (!field)
            return l;
        for (size_t f = l.body_at; f < l.body_at + l.body_len;) {
            size_t n = b->data[f];
            size_t len = le32_load(b->data + f + 1 + n);
            if (n == strlen(field) && !memcmp(b->data + f + 1, field, n)) {
                l.value_at = f + 1 + n + 4;
                l.value_len = len;
                return l;
            }
            f += 1 + n + 4 + len;
        }
        fail_msg("record %s has no field %s", record, field);
    }
    fail_msg("no record %s", record);
    return (struct located){0};
}

static struct snap_buf copy_of(const struct snap_buf *b)
{
    struct snap_buf c = {.data = malloc(b->len), .len = b->len, .cap = b->len};
    assert_non_null(c.data);
    memcpy(c.data, b->data, b->len);
    return c;
}

/* Loads a state into victim and expects a refusal whose error contains
 * each of the words given (NULL: none). */
static void assert_refused3(struct machine *victim, const uint8_t *data, size_t len,
                            const char *what, const char *word1, const char *word2,
                            const char *word3)
{
    char err[512] = "";
    if (machine_load_state(victim, data, len, err, sizeof(err)) == 0)
        fail_msg("%s: loaded", what);
    const char *words[] = {word1, word2, word3};
    for (unsigned i = 0; i < 3; i++)
        if (words[i] && !strstr(err, words[i]))
            fail_msg("%s: error does not name '%s': %s", what, words[i], err);
}

static void assert_refused(struct machine *victim, const uint8_t *data, size_t len,
                           const char *what, const char *word1, const char *word2)
{
    assert_refused3(victim, data, len, what, word1, word2, NULL);
}

/* The state with one field's value (or an array's first elements) replaced is refused, the error
 * naming the record, the field ('field' in quotes, as snap reports it) and word. */
static void assert_field_refused(struct machine *victim, const struct snap_buf *good,
                                 const char *record, const char *field, const void *value,
                                 size_t len, const char *word)
{
    struct snap_buf bad = copy_of(good);
    struct located l = locate(&bad, record, field);
    assert_true(len <= l.value_len); /* an array's first elements, or the whole field */
    memcpy(bad.data + l.value_at, value, len);
    char what[128], quoted[128];
    snprintf(what, sizeof(what), "%s with %s corrupted", record, field);
    snprintf(quoted, sizeof(quoted), "'%s'", field);
    assert_refused3(victim, bad.data, bad.len, what, record, quoted, word);
    snap_buf_free(&bad);
}

static void test_refusals(void **state)
{
    static struct machine a, victim, small;
    static struct test_dev dev_a, dev_victim, extra, other;
    make_machine(&a, 2);
    make_machine(&victim, 2);
    test_dev_init(&dev_a, "probe", &test_dev_ops);
    test_dev_init(&dev_victim, "probe", &test_dev_ops);
    assert_int_equal(machine_add_device(&a, &dev_a.dev), 0);
    assert_int_equal(machine_add_device(&victim, &dev_victim.dev), 0);
    run_guest_and_pause(&a);
    set_values(&a, &dev_a);
    struct snap_buf good = {0};
    save_ok(&a, &good);

    char err[512] = "";
    /* Not paused. */
    assert_int_equal(machine_load_state(&victim, good.data, good.len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not paused"));
    pause_ok(&victim);

    /* Cut short anywhere. */
    for (size_t len = 0; len < good.len; len++) {
        err[0] = '\0';
        if (machine_load_state(&victim, good.data, len, err, sizeof(err)) == 0)
            fail_msg("a state cut to %zu of %zu bytes loaded", len, good.len);
        if (!err[0])
            fail_msg("a state cut to %zu bytes was refused without a reason", len);
    }

    /* Newer and zero versions. */
    struct snap_buf bad = copy_of(&good);
    le32_store(bad.data + locate(&bad, "cpu1", NULL).version_at, 2);
    assert_refused(&victim, bad.data, bad.len, "newer vCPU state", "cpu1", "version 2");
    memcpy(bad.data, good.data, good.len);
    le32_store(bad.data + locate(&bad, "kvm", NULL).version_at, 0);
    assert_refused(&victim, bad.data, bad.len, "version 0", "kvm", "version 0");
    memcpy(bad.data, good.data, good.len);
    le32_store(bad.data + locate(&bad, "machine", NULL).version_at, 2);
    assert_refused(&victim, bad.data, bad.len, "newer header", "machine", "version 2");
    memcpy(bad.data, good.data, good.len);
    le32_store(bad.data + locate(&bad, "probe", NULL).version_at, 2);
    assert_refused(&victim, bad.data, bad.len, "newer device state", "probe", "version 2");
    snap_buf_free(&bad);

    /* Another shape: the header's fields, and a real machine of 1 vCPU. */
    uint32_t one = 1;
    assert_field_refused(&victim, &good, "machine", "cpus", &one, 4, "vCPUs");
    uint8_t mem[8];
    le64_store(mem, 64 * MIB);
    assert_field_refused(&victim, &good, "machine", "memory_bytes", mem, 8, "MiB");
    le64_store(mem, 8192);
    assert_field_refused(&victim, &good, "machine", "bootrom_size", mem, 8, NULL);
    le32_store(mem, 2);
    assert_field_refused(&victim, &good, "machine", "device_count", mem, 4, NULL);
    make_machine(&small, 1);
    test_dev_init(&extra, "probe", &test_dev_ops);
    assert_int_equal(machine_add_device(&small, &extra.dev), 0);
    pause_ok(&small);
    assert_refused(&small, good.data, good.len, "2 vCPUs into 1", "cpus", "2 vCPUs");
    machine_destroy(&small);

    /* The XSAVE area. */
    uint8_t size[4];
    le32_store(size, 100);
    assert_field_refused(&victim, &good, "cpu0", "xsave.size", size, 4, NULL);
    le32_store(size, victim.kvm_host.xsave_size + 64);
    assert_field_refused(&victim, &good, "cpu0", "xsave.size", size, 4, NULL);

    /* An MSR this host's KVM does not support (a host without
     * SYSENTER_CS, as the victim now believes), and one no state holds. */
    struct kvm_state_host host = victim.kvm_host;
    for (unsigned i = 0, j = 0; i < host.msr_count; i++)
        if (host.msrs[i] != MSR_SYSENTER_CS)
            victim.kvm_host.msrs[j++] = host.msrs[i];
    victim.kvm_host.msr_count = host.msr_count - 1;
    assert_refused3(&victim, good.data, good.len, "unsupported MSR", "cpu0", "'msrs.index'",
                    "MSR 0x174 is not supported by this host");
    victim.kvm_host = host;
    uint8_t index[4];
    le32_store(index, 0x12345);
    assert_field_refused(&victim, &good, "cpu1", "msrs.index", index, 4, "MSR 0x12345 is not one");

    /* Corrupt values, each refused naming its field. */
    uint8_t byte = 7;
    assert_field_refused(&victim, &good, "kvm", "pit.ch0.mode", &byte, 1, NULL);
    byte = 2;
    assert_field_refused(&victim, &good, "kvm", "pic.slave.poll", &byte, 1, NULL);
    byte = 0xff;
    assert_field_refused(&victim, &good, "kvm", "pic.master.elcr_mask", &byte, 1, NULL);
    le64_store(mem, 0xfee00000);
    assert_field_refused(&victim, &good, "kvm", "ioapic.base_address", mem, 8, NULL);
    uint32_t lines[IRQ_LINE_COUNT] = {0};
    uint8_t lines_le[sizeof(lines)];
    lines[3] = 1u << 9; /* a source this machine never wired */
    for (unsigned i = 0; i < IRQ_LINE_COUNT; i++)
        le32_store(lines_le + 4 * i, lines[i]);
    assert_field_refused(&victim, &good, "kvm", "irq_sources", lines_le, sizeof(lines_le),
                         "not wired");
    byte = 4;
    assert_field_refused(&victim, &good, "cpu0", "sregs.cs.dpl", &byte, 1, NULL);
    le32_store(size, 9);
    assert_field_refused(&victim, &good, "cpu1", "mp_state", size, 4, NULL);
    le32_store(size, 0x80);
    assert_field_refused(&victim, &good, "cpu0", "events.flags", size, 4, NULL);
    le64_store(mem, 1ull << 40);
    assert_field_refused(&victim, &good, "cpu0", "regs.rflags", mem, 8, NULL);
    le32_store(size, 0xdead);
    assert_field_refused(&victim, &good, "probe", "value", size, 4, NULL);
    bad = copy_of(&good);
    bad.data[locate(&bad, "cpu0", "regs.rip").value_at - 5] = 'x'; /* renamed "regs.rix" */
    assert_refused3(&victim, bad.data, bad.len, "renamed field", "cpu0", "'regs.rip'", "regs.rix");
    snap_buf_free(&bad);

    /* Devices matched by name and kind. */
    bad = copy_of(&good);
    struct located probe = locate(&bad, "probe", NULL);
    memcpy(bad.data + probe.record_at + 1, "prabe", 5);
    assert_refused(&victim, bad.data, bad.len, "unknown device", "prabe", "no device");
    snap_buf_free(&bad);
    assert_refused(&victim, good.data, probe.record_at, "missing device record", "probe",
                   "no record");
    test_dev_init(&extra, "extra", &test_dev_ops);
    assert_int_equal(machine_add_device(&victim, &extra.dev), 0);
    assert_refused(&victim, good.data, good.len, "missing device", "device_count", NULL);
    victim.device_count--;
    /* Same name, another kind: the header matches, the record does not. */
    test_dev_init(&other, "probe", &other_dev_ops);
    victim.devices[0] = &other.dev;
    assert_refused(&victim, good.data, good.len, "device of another kind", "probe", "test-device");
    victim.devices[0] = &dev_victim.dev;

    /* After all that, the state still loads and round-trips. */
    load_ok(&victim, &good);
    assert_same_state(&a, &victim);
    assert_int_equal(get_regs(&victim, 0).rip, get_regs(&a, 0).rip);

    snap_buf_free(&good);
    machine_destroy(&a);
    machine_destroy(&victim);
}

/* With every MSI route in use, a further request fails at once and its
 * message is rate-limited; a freed route is found again. */
static void test_msi_routes_exhausted(void **state)
{
    static struct machine m;
    make_machine(&m, 1);
    for (unsigned i = 0; i < MACHINE_MAX_MSI_ROUTES; i++)
        assert_int_equal(machine_msi_route_add(&m, 0xfee00000, 0x40 + (i & 0xff)),
                         (int)(MACHINE_MSI_GSI_BASE + i));
    assert_int_equal(m.msi_routes_used, MACHINE_MAX_MSI_ROUTES);

    capture_stderr();
    for (int i = 0; i < 5000; i++)
        assert_int_equal(machine_msi_route_add(&m, 0xfee00000, 0x30), -1);
    const char *log = captured_stderr();
    unsigned lines = 0;
    for (const char *p = log; (p = strstr(p, "no MSI route free")); p++)
        lines++;
    /* At most 10 a second; the loop takes far less than two seconds. */
    assert_in_range(lines, 1, 20);

    int victim = (int)MACHINE_MSI_GSI_BASE + 517;
    machine_msi_route_remove(&m, victim);
    assert_int_equal(m.msi_routes_used, MACHINE_MAX_MSI_ROUTES - 1);
    assert_int_equal(machine_msi_route_add(&m, 0xfee00000, 0x31), victim);
    machine_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_continue),
        cmocka_unit_test(test_pause_order_and_failed_pause),
        cmocka_unit_test(test_pause_completes_exits),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_msi_routes_exhausted),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
