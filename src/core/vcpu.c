#include "core/vcpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "core/machine.h"

#define SIG_KICK SIGUSR1

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

/* KVM's supported CPUID, specialised for this vCPU's APIC id and the VM size. */
static int set_cpuid(struct vcpu *v)
{
    const struct kvm_cpuid2 *src = v->machine->supported_cpuid;
    size_t bytes = sizeof(*src) + src->nent * sizeof(src->entries[0]);
    struct kvm_cpuid2 *c = malloc(bytes);
    if (!c)
        return -1;
    memcpy(c, src, bytes);
    unsigned cpus = v->machine->spec.cpus;
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x0000ffffu) | ((cpus > 255 ? 255 : cpus) << 16) | (v->id << 24);
            if (cpus > 1)
                e->edx |= 1u << 28; /* HTT: the logical count field is valid */
            break;
        case 0xb:
        case 0x1f:
            e->edx = v->id; /* x2APIC id */
            break;
        }
    }
    int r = ioctl(v->fd, KVM_SET_CPUID2, c);
    if (r < 0)
        log_error("vCPU %u: KVM_SET_CPUID2: %s", v->id, strerror(errno));
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
            bus_write(pio, run->io.port, size, bus_load_le(data, size));
        else
            bus_store_le(data, size, bus_read(pio, run->io.port, size));
    }
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    unsigned len = run->mmio.len;
    if (len == 0 || len > 8)
        return;
    if (run->mmio.is_write)
        bus_write(&v->machine->mmio, run->mmio.phys_addr, len, bus_load_le(run->mmio.data, len));
    else
        bus_store_le(run->mmio.data, len, bus_read(&v->machine->mmio, run->mmio.phys_addr, len));
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
    while (!atomic_load(&m->stop_vcpus)) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                v->run->immediate_exit = 0;
                if (atomic_load(&v->probe_requested))
                    answer_halt_probe(v);
                continue;
            }
            log_error("vCPU %u: KVM_RUN: %s", v->id, strerror(errno));
            machine_request(m, MACHINE_FAILED);
            break;
        }
        if (!handle_exit(v))
            break;
    }
    pthread_sigmask(SIG_BLOCK, &kick, NULL);
    current_run = NULL;
    return NULL;
}

int vcpu_start(struct vcpu *v)
{
    char name[16];
    v->run->immediate_exit = 0;
    /* Small stacks: exit handling is shallow and RSS is part of the budget. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int err = pthread_create(&v->thread, &attr, vcpu_thread, v);
    pthread_attr_destroy(&attr);
    if (err) {
        log_error("vCPU %u: pthread_create: %s", v->id, strerror(err));
        return -1;
    }
    snprintf(name, sizeof(name), "vcpu%u", v->id);
    pthread_setname_np(v->thread, name);
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
    if (running)
        pthread_join(v->thread, NULL);
}
