#include "core/vcpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/log.h"
#include "common/text.h"
#include "common/thread.h"
#include "core/cpuid.h"
#include "core/machine.h"

/* A real-time signal: SIGUSR1 asks for a state dump (main.c). */
#define SIG_KICK (SIGRTMIN + 1)

static _Thread_local struct kvm_run *current_run;

/* Runs on the vCPU thread: makes the current or next KVM_RUN return at once. */
static void kick_handler(int sig)
{
    (void)sig;
    if (current_run)
        current_run->immediate_exit = 1;
}

int vcpu_setup_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIG_KICK, &sa, NULL) < 0) {
        log_error("sigaction: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The VM's CPUID table (core/cpuid.h) specialised for this vCPU. */
static int set_cpuid(struct vcpu *v)
{
    struct cpuid_table *t = malloc(sizeof(*t));
    struct kvm_cpuid2 *c = malloc(sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
    int r = -1;
    if (!t || !c)
        goto out;
    if (cpuid_specialize(v->machine->cpuid, v->machine->spec.cpus, v->id, t) < 0) {
        log_error("vCPU %u: CPUID table does not fit", v->id);
        goto out;
    }
    memset(c, 0, sizeof(*c));
    c->nent = t->count;
    memcpy(c->entries, t->entries, t->count * sizeof(c->entries[0]));
    r = ioctl(v->fd, KVM_SET_CPUID2, c);
    if (r < 0)
        log_error("vCPU %u: KVM_SET_CPUID2: %s", v->id, strerror(errno));
out:
    free(t);
    free(c);
    return r;
}

int vcpu_create(struct vcpu *v, struct machine *m, unsigned id)
{
    int host_cpu = v->host_cpu;
    memset(v, 0, sizeof(*v));
    pthread_mutex_init(&v->kick_lock, NULL);
    v->kick_lock_ready = true;
    v->machine = m;
    v->id = id;
    v->host_cpu = host_cpu;
    v->fd = ioctl(m->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        log_error("KVM_CREATE_VCPU %u: %s", id, strerror(errno));
        return -1;
    }
    v->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        log_error("vCPU %u: mmap kvm_run: %s", id, strerror(errno));
        return -1;
    }
    return set_cpuid(v);
}

void vcpu_destroy(struct vcpu *v)
{
    if (v->run)
        munmap(v->run, v->machine->run_size);
    if (v->fd >= 0)
        close(v->fd);
    v->run = NULL;
    v->fd = -1;
    if (v->kick_lock_ready)
        pthread_mutex_destroy(&v->kick_lock);
    v->kick_lock_ready = false;
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    struct bus *pio = &v->machine->pio;
    unsigned size = run->io.size;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    /* KVM bounds data_offset/count to the shared page; string I/O repeats the port. */
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        if (run->io.direction == KVM_EXIT_IO_OUT)
            bus_write(pio, run->io.port, size, le_load(data, size));
        else
            le_store(data, size, bus_read(pio, run->io.port, size));
    }
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    unsigned len = run->mmio.len;
    if (len == 0 || len > 8)
        return;
    if (run->mmio.is_write)
        bus_write(&v->machine->mmio, run->mmio.phys_addr, len, le_load(run->mmio.data, len));
    else
        le_store(run->mmio.data, len, bus_read(&v->machine->mmio, run->mmio.phys_addr, len));
}

static void log_internal_error(struct vcpu *v)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    memset(&regs, 0, sizeof(regs));
    memset(&sregs, 0, sizeof(sregs));
    ioctl(v->fd, KVM_GET_REGS, &regs);
    ioctl(v->fd, KVM_GET_SREGS, &sregs);
    bool emulation = v->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION;
    log_error("vCPU %u: KVM internal error (suberror %u%s) at cs:rip %04x:%016llx (cs base 0x%llx, "
              "cr0 0x%llx)",
              v->id, v->run->internal.suberror,
              emulation ? ": the host KVM could not emulate an instruction" : "", sregs.cs.selector,
              (unsigned long long)regs.rip, (unsigned long long)sregs.cs.base,
              (unsigned long long)sregs.cr0);
    if (emulation)
        log_error("this host's KVM may lack hardware virtualization for this guest (nested or "
                  "paravirtual KVM); real firmware and kernels run in the nested rig, see README");
}

/* Returns false when the vCPU must stop running. */
static void add_exit_history(struct text *t, struct vcpu *v);

static bool handle_exit(struct vcpu *v)
{
    struct machine *m = v->machine;
    struct kvm_run *run = v->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(v);
        return true;
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_SHUTDOWN:
        log_limited(&m->reset_log, LOG_INFO, "vCPU %u: triple fault, resetting the VM", v->id);
        /* KVM has put the vCPU back to its reset state by now: only the
         * exits before the shutdown tell what the guest was doing. */
        {
            char history[1024];
            struct text t = {history, sizeof(history), 0};
            add_exit_history(&t, v);
            log_limited(&m->reset_log, LOG_INFO, "%s", history);
        }
        machine_request(m, MACHINE_RESET);
        return false;
    case KVM_EXIT_HLT:
        log_info("vCPU %u: halted", v->id);
        machine_request(m, MACHINE_HALT);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
            machine_request(m, MACHINE_RESET);
        } else {
            log_info("vCPU %u: system event %u, halting", v->id, run->system_event.type);
            machine_request(m, MACHINE_HALT);
        }
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        log_internal_error(v);
        machine_request(m, MACHINE_FAILED);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        log_error("vCPU %u: VM entry failed (reason 0x%llx)", v->id,
                  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        machine_request(m, MACHINE_FAILED);
        return false;
    default:
        log_error("vCPU %u: unexpected KVM exit reason %u", v->id, run->exit_reason);
        machine_request(m, MACHINE_FAILED);
        return false;
    }
}

static void pin_thread(struct vcpu *v)
{
    if (v->host_cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(v->host_cpu, &set);
    int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (err)
        log_warn("vCPU %u: cannot pin to host CPU %d: %s", v->id, v->host_cpu, strerror(err));
}

/* Answers the machine's halt probe: halted (or never started by SIPI) with
 * interrupts disabled means only an NMI or INIT could ever wake us. */
static void answer_halt_probe(struct vcpu *v)
{
    struct kvm_mp_state mp;
    struct kvm_regs regs;
    bool stuck = false;
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0) {
        if (mp.mp_state == KVM_MP_STATE_UNINITIALIZED || mp.mp_state == KVM_MP_STATE_INIT_RECEIVED)
            stuck = true;
        else if (mp.mp_state == KVM_MP_STATE_HALTED && ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
            stuck = !(regs.rflags & (1u << 9)); /* IF */
    }
    atomic_store(&v->halted_irqs_off, stuck);
    atomic_store(&v->probe_requested, false);
}

/* ---- State dump ---- */

static const char *exit_reason_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_IO:
        return "io";
    case KVM_EXIT_MMIO:
        return "mmio";
    case KVM_EXIT_HLT:
        return "hlt";
    case KVM_EXIT_SHUTDOWN:
        return "shutdown";
    case KVM_EXIT_INTR:
        return "intr";
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        return "irq-window";
    case KVM_EXIT_SYSTEM_EVENT:
        return "system-event";
    case KVM_EXIT_INTERNAL_ERROR:
        return "internal-error";
    case KVM_EXIT_FAIL_ENTRY:
        return "fail-entry";
    default:
        return "other";
    }
}

static const char *mp_state_name(uint32_t state)
{
    static const char *const names[] = {
        "runnable",   "uninitialized", "init-received", "halted",        "sipi-received", "stopped",
        "check-stop", "operating",     "load",          "ap-reset-hold", "suspended"};
    return state < ARRAY_LEN(names) ? names[state] : "unknown";
}

static void record_exit(struct vcpu *v)
{
    const struct kvm_run *run = v->run;
    uint64_t seq = atomic_load_explicit(&v->exit_count, memory_order_relaxed);
    struct vcpu_exit_record *r = &v->exits[seq % VCPU_EXIT_HISTORY];
    memset(r, 0, sizeof(*r));
    r->seq = seq;
    r->reason = run->exit_reason;
    if (run->exit_reason == KVM_EXIT_IO) {
        r->addr = run->io.port;
        r->size = run->io.size;
        r->write = run->io.direction == KVM_EXIT_IO_OUT;
        r->data = run->io.count; /* repetitions of string I/O */
    } else if (run->exit_reason == KVM_EXIT_MMIO) {
        r->addr = run->mmio.phys_addr;
        r->size = (uint8_t)run->mmio.len;
        r->write = run->mmio.is_write;
        if (r->write && run->mmio.len <= 8)
            r->data = le_load(run->mmio.data, run->mmio.len);
    }
    atomic_store_explicit(&v->exit_count, seq + 1, memory_order_release);
}

static int describe_exit(const struct vcpu_exit_record *r, char *buf, size_t cap)
{
    if (r->reason == KVM_EXIT_IO)
        return snprintf(buf, cap, "#%llu io %s port 0x%llx size %u count %llu",
                        (unsigned long long)r->seq, r->write ? "out" : "in",
                        (unsigned long long)r->addr, r->size, (unsigned long long)r->data);
    if (r->reason == KVM_EXIT_MMIO && r->write)
        return snprintf(buf, cap, "#%llu mmio write 0x%llx size %u value 0x%llx",
                        (unsigned long long)r->seq, (unsigned long long)r->addr, r->size,
                        (unsigned long long)r->data);
    if (r->reason == KVM_EXIT_MMIO)
        return snprintf(buf, cap, "#%llu mmio read 0x%llx size %u", (unsigned long long)r->seq,
                        (unsigned long long)r->addr, r->size);
    return snprintf(buf, cap, "#%llu %s (%u)", (unsigned long long)r->seq,
                    exit_reason_name(r->reason), r->reason);
}

static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned offset)
{
    uint32_t v;
    memcpy(&v, l->regs + offset, sizeof(v));
    return v;
}

/* The vectors set in a 256-bit LAPIC register (ISR, TMR, IRR at base). */
static void add_vectors(struct text *t, const char *name, const struct kvm_lapic_state *l,
                        unsigned base)
{
    text_add(t, " %s=[", name);
    bool first = true;
    for (unsigned word = 0; word < 8; word++) {
        uint32_t bits = lapic_reg(l, base + word * 0x10);
        for (unsigned b = 0; b < 32; b++)
            if (bits & (1u << b)) {
                text_add(t, "%s0x%x", first ? "" : ",", word * 32 + b);
                first = false;
            }
    }
    text_add(t, "]");
}

static const char *cpu_mode(const struct kvm_sregs *s, uint64_t rflags)
{
    if (!(s->cr0 & 1))
        return "real";
    if (rflags & (1u << 17))
        return "vm86";
    if (s->efer & (1u << 10)) /* LMA */
        return s->cs.l ? "long 64-bit" : "long compat";
    return s->cs.db ? "protected 32-bit" : "protected 16-bit";
}

/* "vCPU N:   last exits (newest first): ..." from the vCPU's history. */
static void add_exit_history(struct text *t, struct vcpu *v)
{
    uint64_t count = atomic_load(&v->exit_count);
    unsigned n = count < VCPU_EXIT_HISTORY ? (unsigned)count : VCPU_EXIT_HISTORY;
    text_add(t, "vCPU %u:   last exits (newest first):", v->id);
    for (unsigned i = 0; i < n; i++) {
        char one[96];
        describe_exit(&v->exits[(count - 1 - i) % VCPU_EXIT_HISTORY], one, sizeof(one));
        text_add(t, "%s %s", i ? ";" : "", one);
    }
    if (!n)
        text_add(t, " none");
}

/* Fills v->dump_text; on the vCPU's own thread (KVM serialises vCPU ioctls
 * with KVM_RUN), or on the main thread while no vCPU thread runs. */
static void describe_vcpu(struct vcpu *v)
{
    struct text t = {v->dump_text, sizeof(v->dump_text), 0};
    struct kvm_regs r;
    struct kvm_sregs s;
    struct kvm_mp_state mp;
    struct kvm_vcpu_events ev;
    struct kvm_lapic_state lapic;
    memset(&r, 0, sizeof(r));
    memset(&s, 0, sizeof(s));
    memset(&ev, 0, sizeof(ev));
    v->dump_text[0] = '\0';
    if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
        text_add(&t, "vCPU %u: cannot read registers: %s", v->id, strerror(errno));
        return;
    }
    const char *mp_name =
        ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0 ? mp_state_name(mp.mp_state) : "?";
    text_add(&t,
             "vCPU %u: %s, %s mode, cpl %u, cs:rip %04x:%016llx rflags %llx (IF=%u), "
             "exits %llu\n",
             v->id, mp_name, cpu_mode(&s, r.rflags), s.cs.selector & 3u, s.cs.selector,
             (unsigned long long)r.rip, (unsigned long long)r.rflags,
             (unsigned)((r.rflags >> 9) & 1), (unsigned long long)atomic_load(&v->exit_count));
    text_add(&t,
             "vCPU %u:   rax %llx rbx %llx rcx %llx rdx %llx rsi %llx rdi %llx rbp %llx rsp %llx\n",
             v->id, (unsigned long long)r.rax, (unsigned long long)r.rbx, (unsigned long long)r.rcx,
             (unsigned long long)r.rdx, (unsigned long long)r.rsi, (unsigned long long)r.rdi,
             (unsigned long long)r.rbp, (unsigned long long)r.rsp);
    text_add(&t, "vCPU %u:   cr0 %llx cr2 %llx cr3 %llx cr4 %llx cr8 %llx efer %llx apic_base %llx",
             v->id, (unsigned long long)s.cr0, (unsigned long long)s.cr2, (unsigned long long)s.cr3,
             (unsigned long long)s.cr4, (unsigned long long)s.cr8, (unsigned long long)s.efer,
             (unsigned long long)s.apic_base);
    /* With paging on, the CPU walks tables at cr3: no guest runs with them
     * outside its RAM. Seen in the nested rig, where vCPU 0 of a fresh VM
     * held the L1 host's rip, rsp and cr3. */
    if ((s.cr0 & (1ull << 31)) && !guest_mem_valid(&v->machine->mem, s.cr3 & ~0xfffull, 8, false))
        text_add(&t, " [VCPU-STATE-CORRUPT: cr3 outside guest RAM: this state is not one the guest "
                     "could reach; it came from the host or a nested hypervisor]");
    text_add(&t, "\n");
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) == 0)
        text_add(&t,
                 "vCPU %u:   events: interrupt injected %u vector 0x%x shadow %u; nmi injected %u "
                 "pending %u masked %u; exception injected %u pending %u vector %u\n",
                 v->id, ev.interrupt.injected, ev.interrupt.nr, ev.interrupt.shadow,
                 ev.nmi.injected, ev.nmi.pending, ev.nmi.masked, ev.exception.injected,
                 ev.exception.pending, ev.exception.nr);
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) == 0) {
        text_add(&t,
                 "vCPU %u:   lapic: id %u tpr 0x%x ppr 0x%x svr 0x%x lvt-timer 0x%x "
                 "initial-count %u current-count %u lint0 0x%x lint1 0x%x",
                 v->id, lapic_reg(&lapic, 0x20) >> 24, lapic_reg(&lapic, 0x80),
                 lapic_reg(&lapic, 0xa0), lapic_reg(&lapic, 0xf0), lapic_reg(&lapic, 0x320),
                 lapic_reg(&lapic, 0x380), lapic_reg(&lapic, 0x390), lapic_reg(&lapic, 0x350),
                 lapic_reg(&lapic, 0x360));
        add_vectors(&t, "isr", &lapic, 0x100);
        add_vectors(&t, "irr", &lapic, 0x200);
        add_vectors(&t, "tmr", &lapic, 0x180);
        text_add(&t, "\n");
    }
    add_exit_history(&t, v);
}

/* Answers a dump request on the vCPU thread. */
static void answer_dump(struct vcpu *v)
{
    unsigned want = atomic_load(&v->dump_requested);
    if (atomic_load(&v->dump_answered) == want)
        return;
    describe_vcpu(v);
    atomic_store_explicit(&v->dump_answered, want, memory_order_release);
}

bool vcpu_request_dump(struct vcpu *v)
{
    unsigned want = atomic_fetch_add(&v->dump_requested, 1) + 1;
    pthread_mutex_lock(&v->kick_lock);
    bool running = v->thread_running;
    if (running)
        pthread_kill(v->thread, SIG_KICK);
    pthread_mutex_unlock(&v->kick_lock);
    if (!running) { /* no thread holds the vCPU: describe it from here */
        describe_vcpu(v);
        atomic_store(&v->dump_answered, want);
    }
    return running;
}

const char *vcpu_dump_answer(struct vcpu *v)
{
    if (atomic_load_explicit(&v->dump_answered, memory_order_acquire) !=
        atomic_load(&v->dump_requested))
        return NULL;
    return v->dump_text;
}

void vcpu_describe_unanswered(struct vcpu *v, char *buf, size_t cap)
{
    uint64_t count = atomic_load_explicit(&v->exit_count, memory_order_acquire);
    if (!atomic_load(&v->in_handler) || count == 0) {
        snprintf(buf, cap, "vCPU %u: no answer (in KVM_RUN or between exits; %llu exits)", v->id,
                 (unsigned long long)count);
        return;
    }
    /* The vCPU thread is stuck handling this exit, so the record is stable. */
    int n = snprintf(buf, cap, "vCPU %u: no answer: still handling exit ", v->id);
    if (n > 0 && (size_t)n < cap)
        describe_exit(&v->exits[(count - 1) % VCPU_EXIT_HISTORY], buf + n, cap - (size_t)n);
}

/* An I/O or MMIO exit completes (the read value lands in the register,
 * rip moves on) only at the next KVM_RUN. With immediate_exit set, that
 * call finishes it and returns before the guest runs another instruction,
 * so a stopped vCPU's registers are consistent for saving. String I/O can
 * need more exits to finish; they are handled like any other. */
#define COMPLETE_EXIT_ROUNDS 4096

static void complete_pending_exit(struct vcpu *v)
{
    for (unsigned round = 0; round < COMPLETE_EXIT_ROUNDS; round++) {
        v->run->immediate_exit = 1;
        int r = ioctl(v->fd, KVM_RUN, 0);
        v->run->immediate_exit = 0;
        if (r < 0) {
            if (errno != EINTR && errno != EAGAIN)
                log_error("vCPU %u: KVM_RUN completing its last exit: %s", v->id, strerror(errno));
            return;
        }
        record_exit(v);
        atomic_store_explicit(&v->in_handler, true, memory_order_relaxed);
        bool keep_running = handle_exit(v);
        atomic_store_explicit(&v->in_handler, false, memory_order_relaxed);
        if (!keep_running)
            return;
    }
    log_warn("vCPU %u: string I/O still unfinished after %u exits; stopped within it", v->id,
             COMPLETE_EXIT_ROUNDS);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct machine *m = v->machine;
    current_run = v->run;
    pin_thread(v);
    log_debug("vCPU %u: running%s", v->id, v->id ? " (waiting for INIT/SIPI)" : "");
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, SIG_KICK);
    pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
    bool asked_to_stop = true;
    while (!atomic_load(&m->stop_vcpus)) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                v->run->immediate_exit = 0;
                if (atomic_load(&v->probe_requested))
                    answer_halt_probe(v);
                answer_dump(v);
                continue;
            }
            log_error("vCPU %u: KVM_RUN: %s", v->id, strerror(errno));
            machine_request(m, MACHINE_FAILED);
            asked_to_stop = false;
            break;
        }
        record_exit(v);
        atomic_store_explicit(&v->in_handler, true, memory_order_relaxed);
        bool keep_running = handle_exit(v);
        atomic_store_explicit(&v->in_handler, false, memory_order_relaxed);
        if (!keep_running) {
            asked_to_stop = false;
            break;
        }
    }
    /* Stopped for a pause (not a reset or halt, which discard the state):
     * finish the last exit. Kicks that arrive now only set immediate_exit,
     * which the completion sets anyway. */
    if (asked_to_stop && atomic_load(&m->event) == MACHINE_RUNNING)
        complete_pending_exit(v);
    pthread_sigmask(SIG_BLOCK, &kick, NULL);
    current_run = NULL;
    return NULL;
}

int vcpu_start(struct vcpu *v)
{
    char name[16];
    v->run->immediate_exit = 0;
    snprintf(name, sizeof(name), "vcpu%u", v->id);
    /* Small stacks: exit handling is shallow and RSS is part of the budget. */
    int err = thread_start(&v->thread, name, THREAD_VCPU, 256 * 1024, vcpu_thread, v);
    if (err) {
        log_error("vCPU %u: cannot start its thread: %s", v->id, strerror(-err));
        return -1;
    }
    pthread_mutex_lock(&v->kick_lock);
    v->thread_running = true;
    pthread_mutex_unlock(&v->kick_lock);
    return 0;
}

void vcpu_kick(struct vcpu *v)
{
    pthread_mutex_lock(&v->kick_lock);
    if (v->thread_running)
        pthread_kill(v->thread, SIG_KICK);
    pthread_mutex_unlock(&v->kick_lock);
}

/* The caller has already kicked the thread out of its run loop; kicks
 * after this point are dropped, so none reaches a joined thread. */
void vcpu_join(struct vcpu *v)
{
    pthread_mutex_lock(&v->kick_lock);
    bool running = v->thread_running;
    v->thread_running = false;
    pthread_mutex_unlock(&v->kick_lock);
    if (!running)
        return;
    /* A kicked vCPU leaves KVM_RUN at once; one that does not is stuck in
     * the kernel (a broken nested hypervisor), which is worth saying. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 2;
    if (pthread_timedjoin_np(v->thread, NULL, &deadline) == 0)
        return;
    log_error("vCPU %u: still in KVM_RUN 2 s after its kick (stuck in the host kernel?); waiting",
              v->id);
    pthread_join(v->thread, NULL);
}
