/* The machine: a KVM VM with its guest memory, buses, vCPUs and the
 * inventory of devices. Built from a machine_spec by main's wiring code. */
#ifndef CORE_MACHINE_H
#define CORE_MACHINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "core/cpuid.h"
#include "core/io_loop.h"
#include "core/guest_mem.h"
#include "core/irq_line.h"
#include "core/kvm_state.h"
#include "core/timer.h"
#include "devices/device.h"

#define MIB (1024ull * 1024ull)
#define GIB (1024ull * MIB)
#define LOWMEM_LIMIT (3 * GIB)
#define HIGHMEM_BASE (4 * GIB)
#define PCI_HOLE_BASE (3 * GIB)
#define ECAM_BASE 0xe0000000ull
#define ECAM_SIZE (256 * MIB)
#define BOOTROM_MAX_SIZE (16 * MIB)

/* A bootrom is a non-zero multiple of 4 KiB up to BOOTROM_MAX_SIZE. */
bool machine_bootrom_size_ok(uint64_t size);
/* Physical memory of the host (0 if unknown). */
uint64_t machine_host_memory_bytes(void);
#define LEGACY_BIOS_ALIAS_END 0x100000ull
#define LEGACY_BIOS_ALIAS_SIZE (128 * 1024ull)
#define MACHINE_MAX_DEVICES 96  /* 64 [dev.*] sections and the fixed platform */
#define IRQ_LINE_COUNT 24       /* IOAPIC pins; 0-15 also reach the PICs */
#define MACHINE_MSI_GSI_BASE 24 /* GSIs from here route MSI messages (irqfd) */
#define MACHINE_MAX_MSI_ROUTES 1024

struct machine_spec {
    unsigned cpus;
    uint64_t memory_bytes;
    const char *bootrom_path;
    bool reserve_memory; /* [main].use_reservoir: populate and lock up front */
    bool pin_upper_half; /* [main].cpu_binding = "upper-half" */
    /* [main].cpuid_profile's section (NULL: the host's CPUID), and the
     * config file its errors name. */
    const struct config_cpuid_profile *cpuid_profile;
    const char *config_path;
};

/* What ended the run; higher values win when several arrive together. */
enum machine_event {
    MACHINE_RUNNING = 0,
    MACHINE_RESET,
    MACHINE_HALT,
    MACHINE_FAILED,
};

/* One KVM exit, for the state dump (no timestamps: exits are hot). */
struct vcpu_exit_record {
    uint64_t seq; /* this vCPU's exit number */
    uint64_t addr;
    uint64_t data;
    uint32_t reason; /* KVM_EXIT_* */
    uint8_t size;
    bool write;
};
#define VCPU_EXIT_HISTORY 8
#define VCPU_DUMP_TEXT_SIZE 3072

struct vcpu {
    struct machine *machine;
    unsigned id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    /* Under kick_lock: other vCPU threads kick while the main thread
     * joins, and a joined thread must not be signalled. */
    pthread_mutex_t kick_lock;
    bool kick_lock_ready;
    bool thread_running;
    int host_cpu;                 /* -1: unpinned */
    uint64_t paused_tsc;          /* the TSC when the machine paused (core/kvm_state.h) */
    _Atomic bool probe_requested; /* report whether halted with interrupts off */
    _Atomic bool halted_irqs_off; /* result of the last probe */

    /* State dump (SIGUSR1): the vCPU thread describes itself in dump_text
     * when dump_answered falls behind dump_requested; exits[] and
     * exit_count are written by the vCPU thread only. */
    struct vcpu_exit_record exits[VCPU_EXIT_HISTORY];
    _Atomic uint64_t exit_count;
    _Atomic bool in_handler; /* handling exits[(exit_count - 1) % HISTORY] in the VMM */
    _Atomic unsigned dump_requested, dump_answered;
    char dump_text[VCPU_DUMP_TEXT_SIZE];
};

/* What a line from machine_irq_line()/machine_irq_bank() drives, or a
 * request line asks for; kept in the machine, the lines point here. */
struct machine_irq_target {
    struct machine *machine;
    unsigned gsi; /* a bank's line names its own */
    uint32_t source_bit;
};
struct machine_request_target {
    struct machine *machine;
    enum machine_event event;
};
#define MACHINE_IRQ_SOURCES 32 /* one per source bit */

struct msi_route {
    bool used;
    uint64_t address;
    uint32_t data;
};

struct machine {
    bool initialized;
    struct machine_spec spec;
    int kvm_fd;
    int vm_fd;
    size_t run_size;
    struct kvm_cpuid2 *supported_cpuid;
    struct cpuid_table *cpuid; /* the VM's CPUID (core/cpuid.h); vCPUs specialise it */

    struct guest_mem mem;
    uint8_t *lowmem, *highmem, *bootrom;
    uint64_t lowmem_size, highmem_size, bootrom_size;

    struct bus pio, mmio;
    struct io_loop *loop;  /* the main thread's loop, for device timers */
    struct vm_clock clock; /* the devices' one time base (a restore sets it) */
    struct vcpu *vcpus;

    struct device *devices[MACHINE_MAX_DEVICES];
    unsigned device_count;

    pthread_mutex_t irq_lock;
    bool irq_routing_pending;             /* the VM still has KVM's default routing */
    uint32_t irq_sources[IRQ_LINE_COUNT]; /* bit per source asserting the line */
    struct msi_route msi_routes[MACHINE_MAX_MSI_ROUTES]; /* GSI MACHINE_MSI_GSI_BASE + index */
    unsigned msi_routes_used;
    struct log_ratelimit msi_route_log;
    struct machine_irq_target irq_targets[MACHINE_IRQ_SOURCES];        /* by source bit number */
    struct machine_request_target request_targets[MACHINE_FAILED + 1]; /* by event */

    int event_fd;            /* signalled when a vCPU asks the main thread to act */
    _Atomic int event;       /* enum machine_event */
    _Atomic bool stop_vcpus; /* vCPU threads leave their run loops */
    unsigned resets;
    struct log_ratelimit reset_log; /* a guest can reset in a loop */
    struct vm_timer halt_probe;     /* all vCPUs in hlt with IF=0 halts the VM */
    unsigned halt_probe_hits;

    /* Pause and state (machine_pause): the machine's time as the pause
     * found it, which a resume continues from and a state holds. */
    bool paused;
    uint64_t paused_kvmclock_ns, paused_vm_clock_ns;
    struct kvm_state_host kvm_host;
};

/* Validates the spec against the host and builds the VM; on failure logs one
 * error, frees everything and returns -1 (no files are created). */
int machine_create(struct machine *m, const struct machine_spec *spec);
void machine_destroy(struct machine *m);

/* Adds a device to the inventory (reset and teardown walk it). */
int machine_add_device(struct machine *m, struct device *dev);

/* Starts the vCPUs (and, once the event loop is set, the halt detector). */
int machine_start(struct machine *m);
/* From any thread: ask the main thread to reset/halt; wakes event_fd. */
void machine_request(struct machine *m, enum machine_event event);
/* Main thread: stop and join every vCPU thread. */
void machine_stop(struct machine *m);
/* Main thread: logs what the VM is doing, for a guest that stopped making
 * progress: every vCPU's registers, mode, pending events, LAPIC, halted
 * state and last exits; the PICs and IOAPIC; every device's dump op
 * (virtio and NVMe queue indexes). Ends with the line "state dump: end". */
void machine_dump_state(struct machine *m);
/* Main thread: devices back to power-on, a fresh VM on the same RAM, vCPUs
 * restarted at the reset vector. */
int machine_reset(struct machine *m);
/* The device part of machine_reset, with every vCPU stopped: drop_decodes
 * on every device, then reset on every device (see devices/device.h). */
void machine_reset_devices(struct machine *m);

/* Pause, resume and state, on the main thread (like machine_stop).
 *
 * machine_pause stops every vCPU out of KVM_RUN (an exit it was handling
 * completes first, so the registers are consistent), records the
 * machine's time, then pauses every device in reverse inventory order.
 * It fails (err says why) if the machine is already paused, if a reset or
 * halt is under way (the vCPUs then stay stopped for the main loop to act
 * on it), or if a device cannot pause; what it paused then runs again.
 * machine_resume resumes the devices in inventory order and lets the vCPUs
 * continue where they were: kvmclock and the devices' clock go on from
 * the moment of the pause. A machine that never ran can be paused, loaded
 * and resumed: it then starts from the loaded state. */
int machine_pause(struct machine *m, char *err, size_t err_size);
int machine_resume(struct machine *m);

#define MACHINE_STATE_KIND "machine"
#define MACHINE_STATE_VERSION 1

/* Paused only. Appends the machine's state to out: a "machine" record
 * (vCPU count, memory and bootrom sizes, the devices' names), the
 * "kvm-vm" record, one "kvm-vcpu" record per vCPU ("cpu<N>"), then each
 * device's record in inventory order. Guest memory is not part of it.
 * Returns 0, or -1 with the reason in err (out is left as it was). */
int machine_save_state(struct machine *m, struct snap_buf *out, char *err, size_t err_size);
/* Paused only. Loads a state saved from a machine of the same shape and
 * devices: the records are all read and checked before anything changes
 * (a device's fields are checked by its own load, after the core state's),
 * so a state of another shape, with a device this machine lacks, without a
 * device it has, of another kind, cut short, corrupt or newer is refused
 * (err names the record and field). Returns 0 or -1; after a failure once
 * applying began (KVM or a device refusing a value) the machine is in no
 * defined state and must be reset or destroyed. */
int machine_load_state(struct machine *m, const uint8_t *data, size_t len, char *err,
                       size_t err_size);

/* Drives interrupt line gsi (0-15: ISA IRQs to PIC and IOAPIC; 16-23:
 * IOAPIC only), shared by several sources (source_bit: one bit per source);
 * the line is the OR of its sources. */
void machine_set_irq(struct machine *m, unsigned gsi, uint32_t source_bit, bool level);
/* HPET legacy replacement takes IRQ 0 from the in-kernel PIT. */
void machine_set_pit_hpet_legacy(struct machine *m, bool hpet_legacy);

/* The machine's ends of device output lines (core/irq_line.h), valid until
 * machine_destroy; source_bit is one bit, and each source bit is handed out
 * once (as a line or as a bank), since the lines keep their target there.
 * machine_irq_line: machine_set_irq(m, gsi, source_bit, level).
 * machine_irq_bank: line n is machine_set_irq(m, n, source_bit, level).
 * machine_request_line: asserting it is machine_request(m, event).
 * machine_pit_legacy_line: machine_set_pit_hpet_legacy(m, level). */
struct irq_line machine_irq_line(struct machine *m, unsigned gsi, uint32_t source_bit);
struct irq_bank machine_irq_bank(struct machine *m, uint32_t source_bit);
struct irq_line machine_request_line(struct machine *m, enum machine_event event);
struct irq_line machine_pit_legacy_line(struct machine *m);
/* MSI routes for irqfd: a GSI that delivers the message (address, data).
 * add returns the GSI or -1; the table is rebuilt in KVM on each change.
 * Devices drop their routes in their reset op (a VM reset clears them). */
int machine_msi_route_add(struct machine *m, uint64_t address, uint32_t data);
int machine_msi_route_update(struct machine *m, int gsi, uint64_t address, uint32_t data);
void machine_msi_route_remove(struct machine *m, int gsi);
/* Signalling event_fd raises gsi in the kernel, no exit to the VMM. */
int machine_irqfd(struct machine *m, int event_fd, int gsi, bool assign);
/* A guest write of len bytes (1, 2, 4, 8) at address signals event_fd
 * without an exit to the VMM; with datamatch, only a write of that value
 * (several eventfds can share one address). Deassign with the same values. */
int machine_ioeventfd(struct machine *m, int event_fd, uint64_t address, unsigned len, bool pio,
                      const uint64_t *datamatch, bool assign);
/* Delivers a message-signalled interrupt (MSI/MSI-X address and data). */
void machine_signal_msi(struct machine *m, uint64_t address, uint32_t data);

#endif
