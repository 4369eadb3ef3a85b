/* KVM's part of a machine's state, in the snap format (common/snap.h):
 *
 *   "kvm-vm" (version 1), one record: the PICs and IOAPIC, the PIT, kvmclock
 *   and the levels the machine's interrupt sources hold on each line.
 *   "kvm-vcpu" (version 1), one record per vCPU ("cpu<N>"): general and
 *   special registers (with PDPTRs), XCRs, XSAVE area, MSRs, LAPIC, debug
 *   registers, pending events and MP state.
 *
 * A load first reads and checks a whole record, then applies it in the
 * order KVM needs (special registers before the LAPIC, which depends on
 * the APIC base; the TSC deadline after the LAPIC timer mode; events and
 * MP state last). MSRs are restored only from a fixed list of registers
 * the guest owns, each of which the loading host's KVM must support.
 *
 * Time: kvmclock and every vCPU's TSC are read when the machine pauses
 * (kvm_state_freeze), and a saved state holds those values, so a paused
 * machine saves the same bytes however long it waits; a resume puts
 * kvmclock back where the pause found it, so the guest does not see the
 * time it spent paused. */
#ifndef CORE_KVM_STATE_H
#define CORE_KVM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/snap.h"

struct machine;
struct vcpu;

#define KVM_VM_STATE_KIND "kvm-vm"
#define KVM_VM_STATE_VERSION 1
#define KVM_VM_STATE_NAME "kvm"
#define KVM_VCPU_STATE_KIND "kvm-vcpu"
#define KVM_VCPU_STATE_VERSION 1

#define KVM_STATE_MSR_MAX 64

/* What this host's KVM offers for saving and loading state. */
struct kvm_state_host {
    uint32_t msrs[KVM_STATE_MSR_MAX]; /* the MSRs a state may hold that KVM supports */
    unsigned msr_count;
    uint32_t xsave_size; /* bytes KVM_GET_XSAVE(2) fills */
    bool xsave2;
    const char *missing; /* a capability states need that KVM lacks, or NULL */
};

/* After the machine's VM and vCPUs exist: fills m->kvm_host. A host that
 * lacks something states need still runs VMs; saving and loading are then
 * refused, naming it. */
void kvm_state_init(struct machine *m);

/* With every vCPU out of KVM_RUN: records kvmclock and each vCPU's TSC as
 * the paused machine's time. Returns 0, or -1 with the reason in err. */
int kvm_state_freeze(struct machine *m, char *err, size_t err_size);
/* Before the vCPUs run again: kvmclock continues from the recorded time.
 * Returns 0, or -1 (logged). */
int kvm_state_thaw(struct machine *m);

/* Paused machine: moves its time forward by ns, as if it had run that
 * long (a restored snapshot catching up with the time it was away):
 * kvmclock, the devices' clock and every vCPU's TSC. Returns 0, or -1
 * with the reason in err. */
int kvm_state_advance(struct machine *m, uint64_t ns, char *err, size_t err_size);

/* Each record is read and checked (parse: the error names the field of a
 * value the machine cannot take) apart from being applied, so a machine
 * checks every record of a state before it changes anything. Apply the
 * VM record, then every vCPU's, then kvm_state_thaw (kvmclock is set
 * after the TSCs it is measured against). */
struct kvm_vm_state;
int kvm_vm_state_save(struct machine *m, struct snap_buf *out, char *err, size_t err_size);
struct kvm_vm_state *kvm_vm_state_parse(struct machine *m, const struct snap_record *rec, char *err,
                                        size_t err_size);
int kvm_vm_state_apply(struct machine *m, const struct kvm_vm_state *st, char *err,
                       size_t err_size);
void kvm_vm_state_free(struct kvm_vm_state *st);

struct kvm_vcpu_state;
int kvm_vcpu_state_save(struct vcpu *v, struct snap_buf *out, char *err, size_t err_size);
struct kvm_vcpu_state *kvm_vcpu_state_parse(struct vcpu *v, const struct snap_record *rec,
                                            char *err, size_t err_size);
int kvm_vcpu_state_apply(struct vcpu *v, const struct kvm_vcpu_state *st, char *err,
                         size_t err_size);
void kvm_vcpu_state_free(struct kvm_vcpu_state *st);

#endif
