/* The VM's CPUID: one table, built once at machine setup, from which every
 * vCPU's KVM_SET_CPUID2 and the SMBIOS processor record are derived.
 *
 * Without a profile the table is KVM's supported CPUID (what QEMU's
 * `-cpu host` shows minus what KVM cannot give), plus TSC-deadline when
 * KVM_CAP_TSC_DEADLINE_TIMER says the in-kernel LAPIC has it.
 *
 * With [main].cpuid_profile the table is the [cpuid.NAME] section and
 * nothing of the host's, except KVM's own leaves at 0x40000000.. (copied
 * from the supported list; a profile may not set them). Leaf 0 and
 * 0x80000000 are made up when the profile lacks them (their maximum is the
 * highest leaf listed in the range); the vendor string in leaf 0 (and, for
 * AMD, 0x80000000) is `vendor`'s, and a profile that spells another one
 * there is refused. Every leaf listed must lie within the maximum its
 * range's first leaf gives. Queries for leaves the profile does not list
 * follow the vendor's rules (cpuid_lookup; KVM applies the same ones to
 * the guest from the vendor of leaf 0): Intel answers an out-of-range leaf
 * with the highest basic leaf (same subleaf), AMD with zeros; a leaf in
 * range but absent is zeros for both.
 *
 * The rule for what a profile may ask of this host: registers that are
 * bit masks of features ("feature" registers, below) must be a subset of
 * what KVM_GET_SUPPORTED_CPUID gives for that leaf and subleaf; a bit it
 * lacks refuses the profile at start, with the key's file:line, the leaf,
 * subleaf, register and bits (a plain "LEAF" key answers every subleaf, so
 * it must fit each subleaf's rule). Everything else (family/model/stepping,
 * brand string, cache and TLB descriptors, sizes, address widths, PMU
 * version and counts, maximum subleaf numbers) is identity or information
 * and is taken as given. Feature registers:
 *   1: ECX, EDX        6: EAX (KVM gives only ARAT)
 *   7.0: EBX ECX EDX   7.1: EAX EBX ECX EDX   7.2: EDX
 *   0xD.0: EAX EDX (XCR0)   0xD.1: EAX ECX EDX (XSAVE extensions, XSS)
 *   0x14.0: EBX ECX (processor trace)
 *   0x80000001: ECX EDX   0x80000007: EDX   0x80000008: EBX
 *   0x8000000A: EDX   0x8000001F: EAX   0x80000021: EAX
 * Exempt bits, which the VMM or KVM set themselves: leaf 1 ECX bit 27
 * (OSXSAVE, follows CR4), bit 31 (hypervisor, always set) and EDX bit 28
 * (HTT, topology); leaf 7.0 ECX bit 4 (OSPKE, follows CR4); leaf 1 ECX
 * bit 24 (TSC-deadline) is available when KVM_CAP_TSC_DEADLINE_TIMER is.
 *
 * Per vCPU (cpuid_specialize), from the VM's shape: every vCPU is one core
 * of one thread, all in one socket, and its APIC id is its index. Leaf 1
 * EBX[31:24] APIC id and [23:16] logical count, EDX HTT; leaves 0xB and
 * 0x1F (when the table has them) rebuilt as SMT (shift 0, 1 thread) and
 * core (shift = bits for the vCPU count) levels with the x2APIC id; leaf 4
 * and AMD 0x8000001D cache sharing (levels 1-2 per core, 3 and up shared
 * by every vCPU) and leaf 4 EAX[31:26] cores; AMD 0x8000001E (extended
 * APIC id, core id) and 0x80000008 ECX (cores - 1, APIC id size). Leaf 1
 * ECX bit 31 (hypervisor) is set for every vCPU. */
#ifndef CORE_CPUID_H
#define CORE_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* KVM's own limit for KVM_SET_CPUID2 (KVM_MAX_CPUID_ENTRIES). */
#define CPUID_MAX_ENTRIES 256
/* Room cpuid_specialize may need beyond a built table (0xB, 0x1F subleaves). */
#define CPUID_SPECIALIZE_SLACK 8

enum cpuid_vendor {
    CPUID_VENDOR_INTEL, /* also any vendor KVM does not treat as AMD */
    CPUID_VENDOR_AMD,   /* AuthenticAMD, HygonGenuine */
};

enum cpuid_reg { CPUID_EAX, CPUID_EBX, CPUID_ECX, CPUID_EDX };

/* Leaves in KVM's layout; an entry without KVM_CPUID_FLAG_SIGNIFCANT_INDEX
 * answers every subleaf. Kept sorted by function, indexed entries first (by
 * index): KVM answers with the first entry that matches, so a "LEAF-INDEX"
 * key wins over the plain "LEAF" one. */
struct cpuid_table {
    enum cpuid_vendor vendor;
    bool from_profile;
    unsigned count;
    struct kvm_cpuid_entry2 entries[CPUID_MAX_ENTRIES];
};

/* What the host's KVM offers. */
struct cpuid_host {
    const struct kvm_cpuid2 *supported; /* KVM_GET_SUPPORTED_CPUID */
    bool tsc_deadline;                  /* KVM_CHECK_EXTENSION(KVM_CAP_TSC_DEADLINE_TIMER) */
    /* The host CPU's brand string (the CPUID instruction's leaves
     * 0x80000002-4, EAX..EDX each), for a KVM that leaves them out of its
     * supported list: the guest then reads the host's model name, as with
     * QEMU's -cpu host. has_brand false: none known. */
    bool has_brand;
    uint32_t brand[3][4];
};

/* Why a profile was refused: where (the key, or the section) and what. */
struct cpuid_error {
    struct config_pos pos;
    char key[160];
    char msg[320];
};

/* Builds the VM's table from profile (NULL: the host's). Returns 0, or -1
 * with err filled (a profile's problem, or a table over the size limit). */
int cpuid_table_build(struct cpuid_table *t, const struct cpuid_host *host,
                      const struct config_cpuid_profile *profile, struct cpuid_error *err);

/* What CPUID(leaf, subleaf) returns with table t, by t's vendor's rules for
 * leaves it lacks (see above). */
void cpuid_lookup(const struct cpuid_table *t, uint32_t leaf, uint32_t subleaf, uint32_t out[4]);

/* The table of vCPU `vcpu` of a VM of `cpus` vCPUs (pure: no KVM). Returns
 * 0, or -1 if vcpu >= cpus or the result would not fit. */
int cpuid_specialize(const struct cpuid_table *vm, unsigned cpus, unsigned vcpu,
                     struct cpuid_table *out);

/* The 12-character vendor string of leaf 0's EBX, EDX, ECX ("" if absent). */
void cpuid_vendor_string(const struct cpuid_table *t, char out[13]);

#endif
