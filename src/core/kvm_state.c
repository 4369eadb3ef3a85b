#include "core/kvm_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/bytes.h"
#include "common/log.h"
#include "core/machine.h"

#define MSR_TSC 0x10
#define MSR_MTRR_CAP 0xfe
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_MTRR_VAR_BASE 0x200
#define MSR_MTRR_VAR_PAIRS 8 /* KVM emulates 8 variable ranges */
#define MSR_TSC_DEADLINE 0x6e0
#define MSR_KVM_WALL_CLOCK 0x11
#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00

/* The MSRs a state may hold: registers the guest programs and KVM keeps.
 * EFER and the APIC base travel in the special registers; feature MSRs
 * (ARCH_CAPABILITIES and the like) are the VMM's configuration, not state.
 * A load writes them in this order: the TSC first (the deadline and
 * kvmclock count from it), the async page-fault vector before its enable,
 * and the TSC deadline last, apart, after the LAPIC (KVM ignores it unless
 * the LAPIC timer is in deadline mode). */
static const struct {
    uint32_t first, count;
} state_msr_ranges[] = {
    {MSR_TSC, 1},
    {0x3b, 1},                                   /* TSC_ADJUST */
    {0x174, 3},                                  /* SYSENTER_CS, _ESP, _EIP */
    {0xc0000081, 4},                             /* STAR, LSTAR, CSTAR, FMASK */
    {0xc0000102, 2},                             /* KERNEL_GS_BASE, TSC_AUX */
    {0x277, 1},                                  /* PAT */
    {0x1a0, 1},                                  /* MISC_ENABLE */
    {0x140, 1},                                  /* MISC_FEATURES_ENABLES */
    {0x48, 1},                                   /* SPEC_CTRL */
    {0xc001011f, 1},                             /* VIRT_SPEC_CTRL (AMD) */
    {0x1d9, 1},                                  /* DEBUGCTL */
    {0xda0, 1},                                  /* XSS */
    {0x1c4, 2},                                  /* XFD, XFD_ERR */
    {0xe1, 1},                                   /* UMWAIT_CONTROL */
    {MSR_MTRR_DEF_TYPE, 1},                      /* MTRRs: default type, */
    {0x250, 1},                                  /* fixed 64K, */
    {0x258, 2},                                  /* fixed 16K, */
    {0x268, 8},                                  /* fixed 4K, */
    {MSR_MTRR_VAR_BASE, 2 * MSR_MTRR_VAR_PAIRS}, /* variable base/mask pairs */
    {MSR_KVM_WALL_CLOCK, 2},                     /* kvmclock (old): wall clock, system time */
    {MSR_KVM_WALL_CLOCK_NEW, 2},                 /* kvmclock: wall clock, system time */
    {0x4b564d05, 1},                             /* async page fault: vector, */
    {0x4b564d02, 3},                             /* enable; steal time; PV EOI */
    {0x4b564d06, 1},                             /* poll control */
    {MSR_TSC_DEADLINE, 1},
};

/* The MSRs a state may hold, in load order; returns how many. */
static unsigned list_state_msrs(uint32_t out[KVM_STATE_MSR_MAX])
{
    unsigned n = 0;
    for (size_t r = 0; r < ARRAY_LEN(state_msr_ranges); r++)
        for (uint32_t i = 0; i < state_msr_ranges[r].count && n < KVM_STATE_MSR_MAX; i++)
            out[n++] = state_msr_ranges[r].first + i;
    return n;
}

static bool is_mtrr(uint32_t index)
{
    return index == MSR_MTRR_DEF_TYPE || (index >= 0x250 && index <= 0x26f) ||
           (index >= MSR_MTRR_VAR_BASE && index < MSR_MTRR_VAR_BASE + 2 * MSR_MTRR_VAR_PAIRS);
}

/* Writing a wall-clock MSR makes KVM write the time into guest memory at
 * its value, so one the guest never set (0) is not saved. */
static bool saved_only_if_set(uint32_t index)
{
    return index == MSR_KVM_WALL_CLOCK || index == MSR_KVM_WALL_CLOCK_NEW;
}

static bool is_state_msr(uint32_t index)
{
    for (size_t r = 0; r < ARRAY_LEN(state_msr_ranges); r++)
        if (index - state_msr_ranges[r].first < state_msr_ranges[r].count)
            return true;
    return false;
}

static bool host_has_msr(const struct kvm_state_host *h, uint32_t index)
{
    for (unsigned i = 0; i < h->msr_count; i++)
        if (h->msrs[i] == index)
            return true;
    return false;
}

/* Up to n MSRs in one KVM_GET_MSRS/KVM_SET_MSRS; returns how many KVM
 * handled (it stops at the first it refuses), or -1. */
static int vcpu_msrs(int vcpu_fd, unsigned long request, const uint32_t *index, uint64_t *value,
                     unsigned n)
{
    struct {
        struct kvm_msrs header;
        struct kvm_msr_entry entries[KVM_STATE_MSR_MAX];
    } b;
    if (n > KVM_STATE_MSR_MAX)
        return -1;
    memset(&b, 0, sizeof(b));
    b.header.nmsrs = n;
    for (unsigned i = 0; i < n; i++) {
        b.entries[i].index = index[i];
        b.entries[i].data = value[i];
    }
    int r = ioctl(vcpu_fd, request, &b);
    if (r < 0)
        return -1;
    for (unsigned i = 0; i < n && i < (unsigned)r; i++)
        value[i] = b.entries[i].data;
    return r;
}

/* KVM lists the MSRs it saves and restores, except the MTRRs, which it
 * emulates for a vCPU whose CPUID has them: MTRRcap says how many. */
static void find_host_msrs(struct machine *m)
{
    struct kvm_state_host *h = &m->kvm_host;
    struct kvm_msr_list probe = {.nmsrs = 0};
    struct kvm_msr_list *list = NULL;
    if (ioctl(m->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno == E2BIG && probe.nmsrs > 0 &&
        probe.nmsrs < 65536) {
        list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
        if (list) {
            list->nmsrs = probe.nmsrs;
            if (ioctl(m->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
                list->nmsrs = 0;
        }
    }
    uint32_t cap_index = MSR_MTRR_CAP;
    uint64_t mtrr_cap = 0;
    bool mtrrs = vcpu_msrs(m->vcpus[0].fd, KVM_GET_MSRS, &cap_index, &mtrr_cap, 1) == 1;
    unsigned var_pairs = (unsigned)(mtrr_cap & 0xff);
    uint32_t wanted[KVM_STATE_MSR_MAX];
    unsigned count = list_state_msrs(wanted);
    h->msr_count = 0;
    for (unsigned i = 0; i < count; i++) {
        uint32_t index = wanted[i];
        bool listed = false;
        if (is_mtrr(index))
            listed = mtrrs && (index < MSR_MTRR_VAR_BASE ||
                               index >= MSR_MTRR_VAR_BASE + 2 * MSR_MTRR_VAR_PAIRS ||
                               (index - MSR_MTRR_VAR_BASE) / 2 < var_pairs);
        for (unsigned j = 0; list && !listed && j < list->nmsrs; j++)
            listed = list->indices[j] == index;
        if (listed && h->msr_count < KVM_STATE_MSR_MAX)
            h->msrs[h->msr_count++] = index;
    }
    if ((!list || list->nmsrs == 0) && !h->missing)
        h->missing = "KVM_GET_MSR_INDEX_LIST";
    free(list);
}

void kvm_state_init(struct machine *m)
{
    struct kvm_state_host *h = &m->kvm_host;
    memset(h, 0, sizeof(*h));
    static const struct {
        int cap;
        const char *name;
    } needed[] = {
        {KVM_CAP_SREGS2, "KVM_CAP_SREGS2"},
        {KVM_CAP_XSAVE, "KVM_CAP_XSAVE"},
        {KVM_CAP_XCRS, "KVM_CAP_XCRS"},
        {KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"},
        {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
        {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK"},
        {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
    };
    for (size_t i = 0; i < ARRAY_LEN(needed) && !h->missing; i++)
        if (ioctl(m->vm_fd, KVM_CHECK_EXTENSION, needed[i].cap) <= 0)
            h->missing = needed[i].name;
    int xsave2 = ioctl(m->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    h->xsave2 = xsave2 > 0;
    h->xsave_size = xsave2 > (int)sizeof(struct kvm_xsave) ? (uint32_t)xsave2
                                                           : (uint32_t)sizeof(struct kvm_xsave);
    find_host_msrs(m);
    if (h->missing)
        log_debug("KVM lacks %s: machine state cannot be saved or loaded", h->missing);
}

static bool host_ready(const struct machine *m, char *err, size_t err_size)
{
    if (!m->kvm_host.missing)
        return true;
    snprintf(err, err_size, "machine state: this host's KVM lacks %s", m->kvm_host.missing);
    return false;
}

static void ioctl_error(char *err, size_t err_size, const char *who, const char *what)
{
    snprintf(err, err_size, "%s: %s: %s", who, what, strerror(errno));
}

/* ---- Time ---- */

int kvm_state_freeze(struct machine *m, char *err, size_t err_size)
{
    struct kvm_clock_data clock;
    memset(&clock, 0, sizeof(clock));
    if (ioctl(m->vm_fd, KVM_GET_CLOCK, &clock) < 0) {
        ioctl_error(err, err_size, "kvm", "KVM_GET_CLOCK");
        return -1;
    }
    m->paused_kvmclock_ns = clock.clock;
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        struct vcpu *v = &m->vcpus[i];
        uint32_t index = MSR_TSC;
        if (vcpu_msrs(v->fd, KVM_GET_MSRS, &index, &v->paused_tsc, 1) != 1) {
            snprintf(err, err_size, "cpu%u: cannot read its TSC", v->id);
            return -1;
        }
    }
    return 0;
}

int kvm_state_thaw(struct machine *m)
{
    struct kvm_clock_data clock;
    memset(&clock, 0, sizeof(clock));
    clock.clock = m->paused_kvmclock_ns;
    if (ioctl(m->vm_fd, KVM_SET_CLOCK, &clock) < 0) {
        log_error("KVM_SET_CLOCK: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int kvm_state_advance(struct machine *m, uint64_t ns, char *err, size_t err_size)
{
    if (!m->paused) {
        snprintf(err, err_size, "the machine is not paused");
        return -1;
    }
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        struct vcpu *v = &m->vcpus[i];
        int khz = ioctl(v->fd, KVM_GET_TSC_KHZ);
        if (khz <= 0) {
            snprintf(err, err_size, "cpu%u: KVM_GET_TSC_KHZ: %s", v->id, strerror(errno));
            return -1;
        }
        /* ns * kHz / 10^6 without overflow for any gap up to centuries. */
        uint64_t ticks = ns / 1000000 * (uint64_t)khz + ns % 1000000 * (uint64_t)khz / 1000000;
        uint64_t tsc = v->paused_tsc + ticks;
        uint32_t index = MSR_TSC;
        if (vcpu_msrs(v->fd, KVM_SET_MSRS, &index, &tsc, 1) != 1) {
            snprintf(err, err_size, "cpu%u: cannot set its TSC", v->id);
            return -1;
        }
        v->paused_tsc = tsc;
    }
    m->paused_kvmclock_ns += ns;
    m->paused_vm_clock_ns += ns;
    return 0;
}

/* ---- Field helpers ---- */

/* KVM's structures hold __u64 (unsigned long long), not uint64_t. */
static void kvm_u64(struct snap *s, const char *name, __u64 *v)
{
    uint64_t x = *v;
    snap_u64(s, name, &x);
    *v = x;
}

#define KVM_U64_ARRAY_MAX 4

static void kvm_u64_array(struct snap *s, const char *name, __u64 *v, size_t count)
{
    uint64_t x[KVM_U64_ARRAY_MAX];
    for (size_t i = 0; i < count && i < KVM_U64_ARRAY_MAX; i++)
        x[i] = v[i];
    snap_u64_array(s, name, x, count < KVM_U64_ARRAY_MAX ? count : KVM_U64_ARRAY_MAX);
    for (size_t i = 0; i < count && i < KVM_U64_ARRAY_MAX; i++)
        v[i] = x[i];
}

static void flag_u8(struct snap *s, const char *name, uint8_t *v)
{
    snap_u8(s, name, v);
    snap_check(s, *v <= 1, name, "not 0 or 1");
}

static void bounded_u8(struct snap *s, const char *name, uint8_t *v, uint8_t max)
{
    snap_u8(s, name, v);
    if (snap_loading(s) && *v > max)
        snap_fail(s, name, "%u is more than %u", *v, max);
}

/* ---- The VM: PICs, IOAPIC, PIT, clocks, interrupt lines ---- */

struct kvm_vm_state {
    struct kvm_pic_state pic[2];
    struct kvm_ioapic_state ioapic;
    struct kvm_pit_state2 pit;
    uint64_t kvmclock_ns;
    uint64_t vm_clock_ns;
    uint32_t irq_sources[IRQ_LINE_COUNT];
};

struct vm_state_ctx {
    struct machine *m;
    struct kvm_vm_state *st;
    const struct kvm_vm_state *current; /* loading: the VM as it is, for fixed fields */
};

static void pic_fields(struct snap *s, const char *name, struct kvm_pic_state *p,
                       const struct kvm_pic_state *current)
{
    snap_enter(s, "%s", name);
    snap_u8(s, "last_irr", &p->last_irr);
    snap_u8(s, "irr", &p->irr);
    snap_u8(s, "imr", &p->imr);
    snap_u8(s, "isr", &p->isr);
    bounded_u8(s, "priority_add", &p->priority_add, 7);
    snap_u8(s, "irq_base", &p->irq_base);
    snap_check(s, (p->irq_base & 7) == 0, "irq_base", "not a multiple of 8");
    flag_u8(s, "read_reg_select", &p->read_reg_select);
    flag_u8(s, "poll", &p->poll);
    flag_u8(s, "special_mask", &p->special_mask);
    bounded_u8(s, "init_state", &p->init_state, 3);
    flag_u8(s, "auto_eoi", &p->auto_eoi);
    flag_u8(s, "rotate_on_auto_eoi", &p->rotate_on_auto_eoi);
    flag_u8(s, "special_fully_nested_mode", &p->special_fully_nested_mode);
    flag_u8(s, "init4", &p->init4);
    snap_u8(s, "elcr_mask", &p->elcr_mask);
    /* Which lines can be level-triggered is the chip's wiring, not state. */
    if (snap_loading(s) && p->elcr_mask != current->elcr_mask)
        snap_fail(s, "elcr_mask", "0x%02x, this PIC's is 0x%02x", p->elcr_mask, current->elcr_mask);
    snap_u8(s, "elcr", &p->elcr);
    snap_check(s, (p->elcr & ~p->elcr_mask) == 0, "elcr", "sets lines elcr_mask does not allow");
    snap_leave(s);
}

static void ioapic_fields(struct snap *s, struct kvm_ioapic_state *io,
                          const struct kvm_ioapic_state *current)
{
    snap_enter(s, "ioapic");
    kvm_u64(s, "base_address", &io->base_address);
    if (snap_loading(s) && io->base_address != current->base_address)
        snap_fail(s, "base_address", "0x%llx, this IOAPIC is at 0x%llx",
                  (unsigned long long)io->base_address, (unsigned long long)current->base_address);
    snap_u32(s, "ioregsel", &io->ioregsel);
    snap_check(s, io->ioregsel <= 0xff, "ioregsel", "more than 8 bits");
    snap_u32(s, "id", &io->id);
    snap_check(s, io->id <= 0xf, "id", "more than 4 bits");
    snap_u32(s, "irr", &io->irr);
    snap_check(s, io->irr < (1u << KVM_IOAPIC_NUM_PINS), "irr", "names pins the IOAPIC lacks");
    uint64_t redir[KVM_IOAPIC_NUM_PINS];
    for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
        redir[i] = io->redirtbl[i].bits;
    snap_u64_array(s, "redirtbl", redir, KVM_IOAPIC_NUM_PINS);
    for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
        io->redirtbl[i].bits = redir[i];
    snap_leave(s);
}

static void pit_fields(struct snap *s, struct kvm_pit_state2 *pit)
{
    /* count_load_time is the host's clock; KVM restarts each count when
     * the state is loaded, so it is not part of the state. */
    for (unsigned i = 0; i < 3; i++) {
        struct kvm_pit_channel_state *c = &pit->channels[i];
        snap_enter(s, "pit.ch%u", i);
        snap_u32(s, "count", &c->count);
        snap_check(s, c->count <= 0x10000, "count", "more than 0x10000");
        snap_u16(s, "latched_count", &c->latched_count);
        bounded_u8(s, "count_latched", &c->count_latched, 3);
        flag_u8(s, "status_latched", &c->status_latched);
        snap_u8(s, "status", &c->status);
        bounded_u8(s, "read_state", &c->read_state, 4);
        bounded_u8(s, "write_state", &c->write_state, 4);
        snap_u8(s, "write_latch", &c->write_latch);
        bounded_u8(s, "rw_mode", &c->rw_mode, 3);
        snap_u8(s, "mode", &c->mode);
        /* 0xff: never programmed since the PIT was created */
        snap_check(s, c->mode <= 5 || c->mode == 0xff, "mode", "not a PIT mode (0-5)");
        flag_u8(s, "bcd", &c->bcd);
        flag_u8(s, "gate", &c->gate);
        snap_leave(s);
    }
    snap_u32(s, "pit.flags", &pit->flags);
    snap_check(
        s,
        (pit->flags & ~(uint32_t)(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON)) == 0,
        "pit.flags", "unknown flags");
}

static int vm_state_fields(void *opaque, struct snap *s)
{
    struct vm_state_ctx *c = opaque;
    struct kvm_vm_state *st = c->st;
    pic_fields(s, "pic.master", &st->pic[0], &c->current->pic[0]);
    pic_fields(s, "pic.slave", &st->pic[1], &c->current->pic[1]);
    ioapic_fields(s, &st->ioapic, &c->current->ioapic);
    pit_fields(s, &st->pit);
    snap_u64(s, "kvmclock", &st->kvmclock_ns);
    snap_u64(s, "vm_clock", &st->vm_clock_ns);
    /* Which of the machine's interrupt sources hold each line high. */
    snap_u32_array(s, "irq_sources", st->irq_sources, IRQ_LINE_COUNT);
    for (unsigned gsi = 0; snap_loading(s) && !s->failed && gsi < IRQ_LINE_COUNT; gsi++) {
        uint32_t bits = st->irq_sources[gsi];
        for (unsigned b = 0; bits && b < MACHINE_IRQ_SOURCES; b++)
            if ((bits & (1u << b)) && !c->m->irq_targets[b].machine) {
                snap_fail(s, "irq_sources",
                          "line %u is held by interrupt source %u, which this machine has not "
                          "wired",
                          gsi, b);
                break;
            }
    }
    return snap_error(s);
}

static int read_irqchip(struct machine *m, unsigned chip_id, void *out, size_t len)
{
    struct kvm_irqchip chip;
    memset(&chip, 0, sizeof(chip));
    chip.chip_id = chip_id;
    if (ioctl(m->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
        return -1;
    memcpy(out, &chip.chip, len);
    return 0;
}

/* The VM's chips as KVM has them now. */
static int read_vm(struct machine *m, struct kvm_vm_state *st, char *err, size_t err_size)
{
    memset(st, 0, sizeof(*st));
    if (read_irqchip(m, KVM_IRQCHIP_PIC_MASTER, &st->pic[0], sizeof(st->pic[0])) < 0 ||
        read_irqchip(m, KVM_IRQCHIP_PIC_SLAVE, &st->pic[1], sizeof(st->pic[1])) < 0 ||
        read_irqchip(m, KVM_IRQCHIP_IOAPIC, &st->ioapic, sizeof(st->ioapic)) < 0) {
        ioctl_error(err, err_size, KVM_VM_STATE_NAME, "KVM_GET_IRQCHIP");
        return -1;
    }
    if (ioctl(m->vm_fd, KVM_GET_PIT2, &st->pit) < 0) {
        ioctl_error(err, err_size, KVM_VM_STATE_NAME, "KVM_GET_PIT2");
        return -1;
    }
    return 0;
}

int kvm_vm_state_save(struct machine *m, struct snap_buf *out, char *err, size_t err_size)
{
    if (!host_ready(m, err, err_size))
        return -1;
    struct kvm_vm_state st;
    if (read_vm(m, &st, err, err_size) < 0)
        return -1;
    /* The paused machine's time, read when it paused. */
    st.kvmclock_ns = m->paused_kvmclock_ns;
    st.vm_clock_ns = m->paused_vm_clock_ns;
    pthread_mutex_lock(&m->irq_lock);
    memcpy(st.irq_sources, m->irq_sources, sizeof(st.irq_sources));
    pthread_mutex_unlock(&m->irq_lock);
    struct vm_state_ctx c = {m, &st, &st};
    return snap_save_record(out, KVM_VM_STATE_NAME, KVM_VM_STATE_KIND, KVM_VM_STATE_VERSION,
                            vm_state_fields, &c, err, err_size);
}

struct kvm_vm_state *kvm_vm_state_parse(struct machine *m, const struct snap_record *rec, char *err,
                                        size_t err_size)
{
    if (!host_ready(m, err, err_size))
        return NULL;
    struct kvm_vm_state current;
    if (read_vm(m, &current, err, err_size) < 0)
        return NULL;
    struct kvm_vm_state *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, err_size, "%s: out of memory", rec->name);
        return NULL;
    }
    /* Fields a state does not carry keep the VM's values. */
    *st = current;
    struct vm_state_ctx c = {m, st, &current};
    if (snap_load_record(rec, KVM_VM_STATE_KIND, KVM_VM_STATE_VERSION, vm_state_fields, &c, err,
                         err_size) < 0) {
        free(st);
        return NULL;
    }
    return st;
}

static int write_irqchip(struct machine *m, unsigned chip_id, const void *in, size_t len)
{
    struct kvm_irqchip chip;
    memset(&chip, 0, sizeof(chip));
    chip.chip_id = chip_id;
    memcpy(&chip.chip, in, len);
    return ioctl(m->vm_fd, KVM_SET_IRQCHIP, &chip);
}

int kvm_vm_state_apply(struct machine *m, const struct kvm_vm_state *st, char *err, size_t err_size)
{
    /* Lines first, so KVM's record of what userspace drives matches the
     * state; the chips' state, loaded next, then replaces whatever those
     * levels did to them, and no edge is raised twice. */
    pthread_mutex_lock(&m->irq_lock);
    int r = 0;
    for (unsigned gsi = 0; gsi < IRQ_LINE_COUNT && r == 0; gsi++) {
        bool before = m->irq_sources[gsi] != 0, after = st->irq_sources[gsi] != 0;
        struct kvm_irq_level line = {.irq = gsi, .level = after};
        if (before != after && ioctl(m->vm_fd, KVM_IRQ_LINE, &line) < 0)
            r = -1;
        else
            m->irq_sources[gsi] = st->irq_sources[gsi];
    }
    pthread_mutex_unlock(&m->irq_lock);
    if (r < 0) {
        ioctl_error(err, err_size, KVM_VM_STATE_NAME, "irq_sources: KVM_IRQ_LINE");
        return -1;
    }
    if (write_irqchip(m, KVM_IRQCHIP_PIC_MASTER, &st->pic[0], sizeof(st->pic[0])) < 0) {
        ioctl_error(err, err_size, KVM_VM_STATE_NAME, "pic.master: KVM_SET_IRQCHIP");
        return -1;
    }
    if (write_irqchip(m, KVM_IRQCHIP_PIC_SLAVE, &st->pic[1], sizeof(st->pic[1])) < 0) {
        ioctl_error(err, err_size, KVM_VM_STATE_NAME, "pic.slave: KVM_SET_IRQCHIP");
        return -1;
    }
    if (write_irqchip(m, KVM_IRQCHIP_IOAPIC, &st->ioapic, sizeof(st->ioapic)) < 0) {
        ioctl_error(err, err_size, KVM_VM_STATE_NAME, "ioapic: KVM_SET_IRQCHIP");
        return -1;
    }
    struct kvm_pit_state2 pit = st->pit;
    if (ioctl(m->vm_fd, KVM_SET_PIT2, &pit) < 0) {
        ioctl_error(err, err_size, KVM_VM_STATE_NAME, "pit: KVM_SET_PIT2");
        return -1;
    }
    /* kvmclock is set by kvm_state_thaw, after the vCPUs' TSCs. */
    m->paused_kvmclock_ns = st->kvmclock_ns;
    m->paused_vm_clock_ns = st->vm_clock_ns;
    vm_clock_set(&m->clock, st->vm_clock_ns);
    return 0;
}

void kvm_vm_state_free(struct kvm_vm_state *st)
{
    free(st);
}

/* ---- A vCPU ---- */

struct kvm_vcpu_state {
    struct kvm_regs regs;
    struct kvm_sregs2 sregs;
    uint64_t xcr0;
    uint32_t msr_count;
    uint32_t msr_index[KVM_STATE_MSR_MAX];
    uint64_t msr_value[KVM_STATE_MSR_MAX];
    struct kvm_lapic_state lapic;
    struct kvm_debugregs debug;
    struct kvm_vcpu_events events;
    uint32_t mp_state;
    uint32_t xsave_size;
    uint8_t xsave[]; /* the host's XSAVE size */
};

struct vcpu_state_ctx {
    const struct machine *m;
    struct kvm_vcpu_state *st;
};

#define KNOWN_EVENT_FLAGS                                                                          \
    (KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |                           \
     KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM)

static void regs_fields(struct snap *s, struct kvm_regs *r)
{
    static const struct {
        const char *name;
        size_t offset;
    } regs[] = {
        {"rax", offsetof(struct kvm_regs, rax)}, {"rbx", offsetof(struct kvm_regs, rbx)},
        {"rcx", offsetof(struct kvm_regs, rcx)}, {"rdx", offsetof(struct kvm_regs, rdx)},
        {"rsi", offsetof(struct kvm_regs, rsi)}, {"rdi", offsetof(struct kvm_regs, rdi)},
        {"rsp", offsetof(struct kvm_regs, rsp)}, {"rbp", offsetof(struct kvm_regs, rbp)},
        {"r8", offsetof(struct kvm_regs, r8)},   {"r9", offsetof(struct kvm_regs, r9)},
        {"r10", offsetof(struct kvm_regs, r10)}, {"r11", offsetof(struct kvm_regs, r11)},
        {"r12", offsetof(struct kvm_regs, r12)}, {"r13", offsetof(struct kvm_regs, r13)},
        {"r14", offsetof(struct kvm_regs, r14)}, {"r15", offsetof(struct kvm_regs, r15)},
        {"rip", offsetof(struct kvm_regs, rip)}, {"rflags", offsetof(struct kvm_regs, rflags)},
    };
    snap_enter(s, "regs");
    for (size_t i = 0; i < ARRAY_LEN(regs); i++) {
        uint64_t v;
        memcpy(&v, (char *)r + regs[i].offset, sizeof(v));
        snap_u64(s, regs[i].name, &v);
        memcpy((char *)r + regs[i].offset, &v, sizeof(v));
    }
    snap_check(s, (r->rflags >> 32) == 0 && (r->rflags & 2), "rflags",
               "reserved bits wrong (bit 1 is always set, bits 32-63 clear)");
    snap_leave(s);
}

static void segment_fields(struct snap *s, const char *name, struct kvm_segment *seg)
{
    snap_enter(s, "%s", name);
    kvm_u64(s, "base", &seg->base);
    snap_u32(s, "limit", &seg->limit);
    snap_u16(s, "selector", &seg->selector);
    bounded_u8(s, "type", &seg->type, 15);
    flag_u8(s, "present", &seg->present);
    bounded_u8(s, "dpl", &seg->dpl, 3);
    flag_u8(s, "db", &seg->db);
    flag_u8(s, "s", &seg->s);
    flag_u8(s, "l", &seg->l);
    flag_u8(s, "g", &seg->g);
    flag_u8(s, "avl", &seg->avl);
    flag_u8(s, "unusable", &seg->unusable);
    snap_leave(s);
}

static void table_fields(struct snap *s, const char *name, struct kvm_dtable *t)
{
    snap_enter(s, "%s", name);
    kvm_u64(s, "base", &t->base);
    snap_u16(s, "limit", &t->limit);
    snap_leave(s);
}

static void sregs_fields(struct snap *s, struct kvm_sregs2 *sr)
{
    snap_enter(s, "sregs");
    segment_fields(s, "cs", &sr->cs);
    segment_fields(s, "ds", &sr->ds);
    segment_fields(s, "es", &sr->es);
    segment_fields(s, "fs", &sr->fs);
    segment_fields(s, "gs", &sr->gs);
    segment_fields(s, "ss", &sr->ss);
    segment_fields(s, "tr", &sr->tr);
    segment_fields(s, "ldt", &sr->ldt);
    table_fields(s, "gdt", &sr->gdt);
    table_fields(s, "idt", &sr->idt);
    kvm_u64(s, "cr0", &sr->cr0);
    kvm_u64(s, "cr2", &sr->cr2);
    kvm_u64(s, "cr3", &sr->cr3);
    kvm_u64(s, "cr4", &sr->cr4);
    kvm_u64(s, "cr8", &sr->cr8);
    snap_check(s, sr->cr8 <= 15, "cr8", "more than 4 bits");
    kvm_u64(s, "efer", &sr->efer);
    kvm_u64(s, "apic_base", &sr->apic_base);
    snap_check(s, (sr->apic_base & 0x2ff) == 0, "apic_base", "reserved bits set");
    kvm_u64(s, "flags", &sr->flags);
    snap_check(s, (sr->flags & ~(uint64_t)KVM_SREGS2_FLAGS_PDPTRS_VALID) == 0, "flags",
               "unknown flags");
    kvm_u64_array(s, "pdptrs", sr->pdptrs, 4);
    snap_leave(s);
}

static void xsave_fields(struct snap *s, struct kvm_vcpu_state *st, uint32_t host_size)
{
    snap_enter(s, "xsave");
    snap_u32(s, "size", &st->xsave_size);
    /* A smaller area (from a host with fewer XSAVE features) loads with
     * the rest zero; a larger one has state this host cannot hold. */
    if (snap_loading(s) &&
        (st->xsave_size < sizeof(struct kvm_xsave) || st->xsave_size > host_size))
        snap_fail(s, "size", "%u bytes; this host's XSAVE area takes 4096 to %u", st->xsave_size,
                  host_size);
    size_t len = st->xsave_size;
    snap_var_bytes(s, "area", st->xsave, &len, host_size);
    if (snap_loading(s) && !s->failed && len != st->xsave_size)
        snap_fail(s, "area", "%zu bytes, size says %u", len, st->xsave_size);
    snap_leave(s);
}

static void msr_fields(struct snap *s, struct kvm_vcpu_state *st, const struct kvm_state_host *h)
{
    snap_enter(s, "msrs");
    snap_u32(s, "count", &st->msr_count);
    if (snap_loading(s) && st->msr_count > KVM_STATE_MSR_MAX) {
        snap_fail(s, "count", "%u, a state holds at most %u", st->msr_count, KVM_STATE_MSR_MAX);
        st->msr_count = 0;
    }
    snap_u32_array(s, "index", st->msr_index, st->msr_count);
    for (unsigned i = 0; snap_loading(s) && !s->failed && i < st->msr_count; i++) {
        uint32_t index = st->msr_index[i];
        if (!is_state_msr(index))
            snap_fail(s, "index", "MSR 0x%x is not one a state may hold", index);
        else if (!host_has_msr(h, index))
            snap_fail(s, "index", "MSR 0x%x is not supported by this host's KVM", index);
        for (unsigned j = 0; j < i; j++)
            if (st->msr_index[j] == index)
                snap_fail(s, "index", "MSR 0x%x is listed twice", index);
    }
    snap_u64_array(s, "value", st->msr_value, st->msr_count);
    snap_leave(s);
}

static void events_fields(struct snap *s, struct kvm_vcpu_events *e)
{
    snap_enter(s, "events");
    flag_u8(s, "exception.injected", &e->exception.injected);
    snap_u8(s, "exception.nr", &e->exception.nr);
    snap_check(s, !(e->exception.injected || e->exception.pending) || e->exception.nr < 32,
               "exception.nr", "not an exception vector");
    flag_u8(s, "exception.has_error_code", &e->exception.has_error_code);
    flag_u8(s, "exception.pending", &e->exception.pending);
    snap_u32(s, "exception.error_code", &e->exception.error_code);
    flag_u8(s, "interrupt.injected", &e->interrupt.injected);
    snap_u8(s, "interrupt.nr", &e->interrupt.nr);
    flag_u8(s, "interrupt.soft", &e->interrupt.soft);
    bounded_u8(s, "interrupt.shadow", &e->interrupt.shadow,
               KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI);
    flag_u8(s, "nmi.injected", &e->nmi.injected);
    flag_u8(s, "nmi.pending", &e->nmi.pending);
    flag_u8(s, "nmi.masked", &e->nmi.masked);
    snap_u32(s, "sipi_vector", &e->sipi_vector);
    snap_check(s, e->sipi_vector <= 0xff, "sipi_vector", "more than 8 bits");
    snap_u32(s, "flags", &e->flags);
    snap_check(s, (e->flags & ~(uint32_t)KNOWN_EVENT_FLAGS) == 0, "flags", "unknown flags");
    flag_u8(s, "smi.smm", &e->smi.smm);
    flag_u8(s, "smi.pending", &e->smi.pending);
    flag_u8(s, "smi.smm_inside_nmi", &e->smi.smm_inside_nmi);
    flag_u8(s, "smi.latched_init", &e->smi.latched_init);
    snap_leave(s);
}

static int vcpu_state_fields(void *opaque, struct snap *s)
{
    struct vcpu_state_ctx *c = opaque;
    struct kvm_vcpu_state *st = c->st;
    const struct kvm_state_host *h = &c->m->kvm_host;
    regs_fields(s, &st->regs);
    sregs_fields(s, &st->sregs);
    snap_u64(s, "xcr0", &st->xcr0);
    snap_check(s, st->xcr0 & 1, "xcr0", "x87 state (bit 0) is always enabled");
    xsave_fields(s, st, h->xsave_size);
    msr_fields(s, st, h);
    snap_bytes(s, "lapic", st->lapic.regs, sizeof(st->lapic.regs));
    snap_enter(s, "debugregs");
    kvm_u64_array(s, "db", st->debug.db, 4);
    kvm_u64(s, "dr6", &st->debug.dr6);
    snap_check(s, (st->debug.dr6 >> 32) == 0, "dr6", "bits 32-63 set");
    kvm_u64(s, "dr7", &st->debug.dr7);
    snap_check(s, (st->debug.dr7 >> 32) == 0, "dr7", "bits 32-63 set");
    snap_leave(s);
    events_fields(s, &st->events);
    snap_u32(s, "mp_state", &st->mp_state);
    snap_check(s, st->mp_state <= KVM_MP_STATE_SIPI_RECEIVED, "mp_state",
               "not an x86 processor state");
    return snap_error(s);
}

static struct kvm_vcpu_state *vcpu_state_alloc(const struct machine *m)
{
    return calloc(1, sizeof(struct kvm_vcpu_state) + m->kvm_host.xsave_size);
}

static int read_vcpu(struct vcpu *v, struct kvm_vcpu_state *st, const char *who, char *err,
                     size_t err_size)
{
    const struct kvm_state_host *h = &v->machine->kvm_host;
    if (ioctl(v->fd, KVM_GET_REGS, &st->regs) < 0) {
        ioctl_error(err, err_size, who, "KVM_GET_REGS");
        return -1;
    }
    if (ioctl(v->fd, KVM_GET_SREGS2, &st->sregs) < 0) {
        ioctl_error(err, err_size, who, "KVM_GET_SREGS2");
        return -1;
    }
    struct kvm_xcrs xcrs;
    memset(&xcrs, 0, sizeof(xcrs));
    if (ioctl(v->fd, KVM_GET_XCRS, &xcrs) < 0) {
        ioctl_error(err, err_size, who, "KVM_GET_XCRS");
        return -1;
    }
    st->xcr0 = 1;
    for (unsigned i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++)
        if (xcrs.xcrs[i].xcr == 0)
            st->xcr0 = xcrs.xcrs[i].value;
    st->xsave_size = h->xsave_size;
    if (ioctl(v->fd, h->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, st->xsave) < 0) {
        ioctl_error(err, err_size, who, h->xsave2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE");
        return -1;
    }
    /* MSRs before the LAPIC: see KVM's note on a deadline timer expiring
     * between the two reads. */
    uint64_t values[KVM_STATE_MSR_MAX] = {0};
    int n = vcpu_msrs(v->fd, KVM_GET_MSRS, h->msrs, values, h->msr_count);
    if (n != (int)h->msr_count) {
        if (n < 0)
            ioctl_error(err, err_size, who, "KVM_GET_MSRS");
        else
            snprintf(err, err_size, "%s: msrs: KVM cannot read MSR 0x%x", who, h->msrs[n]);
        return -1;
    }
    st->msr_count = 0;
    for (unsigned i = 0; i < h->msr_count; i++) {
        if (saved_only_if_set(h->msrs[i]) && values[i] == 0)
            continue;
        st->msr_index[st->msr_count] = h->msrs[i];
        /* The TSC as it was when the machine paused. */
        st->msr_value[st->msr_count++] = h->msrs[i] == MSR_TSC ? v->paused_tsc : values[i];
    }
    if (ioctl(v->fd, KVM_GET_LAPIC, &st->lapic) < 0) {
        ioctl_error(err, err_size, who, "KVM_GET_LAPIC");
        return -1;
    }
    if (ioctl(v->fd, KVM_GET_DEBUGREGS, &st->debug) < 0) {
        ioctl_error(err, err_size, who, "KVM_GET_DEBUGREGS");
        return -1;
    }
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &st->events) < 0) {
        ioctl_error(err, err_size, who, "KVM_GET_VCPU_EVENTS");
        return -1;
    }
    st->events.flags &= KNOWN_EVENT_FLAGS;
    struct kvm_mp_state mp;
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0) {
        ioctl_error(err, err_size, who, "KVM_GET_MP_STATE");
        return -1;
    }
    st->mp_state = mp.mp_state;
    return 0;
}

int kvm_vcpu_state_save(struct vcpu *v, struct snap_buf *out, char *err, size_t err_size)
{
    struct machine *m = v->machine;
    if (!host_ready(m, err, err_size))
        return -1;
    char name[16];
    snprintf(name, sizeof(name), "cpu%u", v->id);
    struct kvm_vcpu_state *st = vcpu_state_alloc(m);
    if (!st) {
        snprintf(err, err_size, "%s: out of memory", name);
        return -1;
    }
    int r = read_vcpu(v, st, name, err, err_size);
    if (r == 0) {
        struct vcpu_state_ctx c = {m, st};
        r = snap_save_record(out, name, KVM_VCPU_STATE_KIND, KVM_VCPU_STATE_VERSION,
                             vcpu_state_fields, &c, err, err_size);
    }
    free(st);
    return r;
}

struct kvm_vcpu_state *kvm_vcpu_state_parse(struct vcpu *v, const struct snap_record *rec,
                                            char *err, size_t err_size)
{
    struct machine *m = v->machine;
    if (!host_ready(m, err, err_size))
        return NULL;
    struct kvm_vcpu_state *st = vcpu_state_alloc(m);
    if (!st) {
        snprintf(err, err_size, "%s: out of memory", rec->name);
        return NULL;
    }
    struct vcpu_state_ctx c = {m, st};
    if (snap_load_record(rec, KVM_VCPU_STATE_KIND, KVM_VCPU_STATE_VERSION, vcpu_state_fields, &c,
                         err, err_size) < 0) {
        free(st);
        return NULL;
    }
    return st;
}

/* Writes the state's MSRs in state_msrs order: the TSC deadline alone, or
 * all the others. */
static int write_msrs(struct vcpu *v, const struct kvm_vcpu_state *st, bool deadline,
                      const char *who, char *err, size_t err_size)
{
    uint32_t index[KVM_STATE_MSR_MAX];
    uint64_t value[KVM_STATE_MSR_MAX];
    uint32_t order[KVM_STATE_MSR_MAX];
    unsigned count = list_state_msrs(order), n = 0;
    for (unsigned p = 0; p < count; p++) {
        if ((order[p] == MSR_TSC_DEADLINE) != deadline)
            continue;
        for (unsigned i = 0; i < st->msr_count; i++)
            if (st->msr_index[i] == order[p] && n < KVM_STATE_MSR_MAX) {
                index[n] = st->msr_index[i];
                value[n++] = st->msr_value[i];
            }
    }
    int r = vcpu_msrs(v->fd, KVM_SET_MSRS, index, value, n);
    if (r == (int)n)
        return 0;
    if (r < 0)
        ioctl_error(err, err_size, who, "msrs: KVM_SET_MSRS");
    else
        snprintf(err, err_size, "%s: msrs: KVM refused MSR 0x%x = 0x%llx", who, index[r],
                 (unsigned long long)value[r]);
    return -1;
}

int kvm_vcpu_state_apply(struct vcpu *v, const struct kvm_vcpu_state *st, char *err,
                         size_t err_size)
{
    const struct kvm_state_host *h = &v->machine->kvm_host;
    char who[16];
    snprintf(who, sizeof(who), "cpu%u", v->id);
    /* Special registers first: the mode, EFER and the APIC base, which
     * the LAPIC state is checked against. */
    struct kvm_sregs2 sregs = st->sregs;
    if (ioctl(v->fd, KVM_SET_SREGS2, &sregs) < 0) {
        ioctl_error(err, err_size, who, "sregs: KVM_SET_SREGS2");
        return -1;
    }
    struct kvm_regs regs = st->regs;
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) {
        ioctl_error(err, err_size, who, "regs: KVM_SET_REGS");
        return -1;
    }
    struct kvm_xcrs xcrs;
    memset(&xcrs, 0, sizeof(xcrs));
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = st->xcr0;
    if (ioctl(v->fd, KVM_SET_XCRS, &xcrs) < 0) {
        ioctl_error(err, err_size, who, "xcr0: KVM_SET_XCRS");
        return -1;
    }
    /* KVM_SET_XSAVE reads the host's full size; a smaller saved area is
     * followed by zeros. */
    uint8_t *area = calloc(1, h->xsave_size);
    if (!area) {
        snprintf(err, err_size, "%s: out of memory", who);
        return -1;
    }
    memcpy(area, st->xsave, st->xsave_size);
    int r = ioctl(v->fd, KVM_SET_XSAVE, area);
    free(area);
    if (r < 0) {
        ioctl_error(err, err_size, who, "xsave: KVM_SET_XSAVE");
        return -1;
    }
    if (write_msrs(v, st, false, who, err, err_size) < 0)
        return -1;
    struct kvm_lapic_state lapic = st->lapic;
    if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0) {
        ioctl_error(err, err_size, who, "lapic: KVM_SET_LAPIC");
        return -1;
    }
    if (write_msrs(v, st, true, who, err, err_size) < 0)
        return -1;
    struct kvm_debugregs debug = st->debug;
    debug.flags = 0;
    if (ioctl(v->fd, KVM_SET_DEBUGREGS, &debug) < 0) {
        ioctl_error(err, err_size, who, "debugregs: KVM_SET_DEBUGREGS");
        return -1;
    }
    /* Events, then the MP state: KVM checks an INIT-received state
     * against the latched INIT the events carry. */
    struct kvm_vcpu_events events = st->events;
    if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &events) < 0) {
        ioctl_error(err, err_size, who, "events: KVM_SET_VCPU_EVENTS");
        return -1;
    }
    struct kvm_mp_state mp = {.mp_state = st->mp_state};
    if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) {
        ioctl_error(err, err_size, who, "mp_state: KVM_SET_MP_STATE");
        return -1;
    }
    for (unsigned i = 0; i < st->msr_count; i++)
        if (st->msr_index[i] == MSR_TSC)
            v->paused_tsc = st->msr_value[i];
    return 0;
}

void kvm_vcpu_state_free(struct kvm_vcpu_state *st)
{
    free(st);
}
