#include "core/cpuid.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"

#define LEAF_KVM_SIGNATURE 0x40000000u
#define HYPERVISOR_RANGE_END 0x4fffffffu
#define EXTENDED_BASE 0x80000000u
#define EXTENDED_RANGE_END 0x8000ffffu

#define LEAF1_ECX_X2APIC (1u << 21)
#define LEAF1_ECX_TSC_DEADLINE (1u << 24)
#define LEAF1_ECX_OSXSAVE (1u << 27)
#define LEAF1_ECX_HYPERVISOR (1u << 31)
#define LEAF1_EDX_HTT (1u << 28)
#define LEAF7_ECX_OSPKE (1u << 4)

static const char *const reg_names[4] = {"EAX", "EBX", "ECX", "EDX"};

/* The feature registers (cpuid.h): masks a profile may only ask within. */
struct feature_leaf {
    uint32_t function;
    bool per_subleaf; /* the rule (and the message) name the subleaf */
    uint32_t index;
    uint8_t regs; /* 1 << enum cpuid_reg */
};
#define R(r) (1u << CPUID_##r)
static const struct feature_leaf feature_leaves[] = {
    {0x1, false, 0, R(ECX) | R(EDX)},
    {0x6, false, 0, R(EAX)},
    {0x7, true, 0, R(EBX) | R(ECX) | R(EDX)},
    {0x7, true, 1, R(EAX) | R(EBX) | R(ECX) | R(EDX)},
    {0x7, true, 2, R(EDX)},
    {0xd, true, 0, R(EAX) | R(EDX)},
    {0xd, true, 1, R(EAX) | R(ECX) | R(EDX)},
    {0x14, true, 0, R(EBX) | R(ECX)},
    {0x80000001, false, 0, R(ECX) | R(EDX)},
    {0x80000007, false, 0, R(EDX)},
    {0x80000008, false, 0, R(EBX)},
    {0x8000000a, false, 0, R(EDX)},
    {0x8000001f, false, 0, R(EAX)},
    {0x80000021, false, 0, R(EAX)},
};
#undef R

static uint32_t *entry_reg(struct kvm_cpuid_entry2 *e, enum cpuid_reg r)
{
    switch (r) {
    case CPUID_EAX:
        return &e->eax;
    case CPUID_EBX:
        return &e->ebx;
    case CPUID_ECX:
        return &e->ecx;
    case CPUID_EDX:
        break;
    }
    return &e->edx;
}

static bool is_indexed(const struct kvm_cpuid_entry2 *e)
{
    return (e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) != 0;
}

/* KVM's matching: the first entry of the function that is either not
 * indexed or has this index. */
static const struct kvm_cpuid_entry2 *find_in(const struct kvm_cpuid_entry2 *entries, unsigned n,
                                              uint32_t function, uint32_t index)
{
    for (unsigned i = 0; i < n; i++) {
        const struct kvm_cpuid_entry2 *e = &entries[i];
        if (e->function == function && (!is_indexed(e) || e->index == index))
            return e;
    }
    return NULL;
}

static struct kvm_cpuid_entry2 *find(struct cpuid_table *t, uint32_t function, uint32_t index)
{
    return (struct kvm_cpuid_entry2 *)find_in(t->entries, t->count, function, index);
}

static const struct kvm_cpuid_entry2 *find_supported(const struct cpuid_host *host,
                                                     uint32_t function, uint32_t index)
{
    if (!host || !host->supported)
        return NULL;
    return find_in(host->supported->entries, host->supported->nent, function, index);
}

static bool has_function(const struct cpuid_table *t, uint32_t function)
{
    for (unsigned i = 0; i < t->count; i++)
        if (t->entries[i].function == function)
            return true;
    return false;
}

static struct kvm_cpuid_entry2 *add_entry(struct cpuid_table *t, uint32_t function, bool indexed,
                                          uint32_t index)
{
    if (t->count >= CPUID_MAX_ENTRIES)
        return NULL;
    struct kvm_cpuid_entry2 *e = &t->entries[t->count++];
    memset(e, 0, sizeof(*e));
    e->function = function;
    e->index = indexed ? index : 0;
    e->flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
    return e;
}

static int entry_order(const void *a, const void *b)
{
    const struct kvm_cpuid_entry2 *x = a, *y = b;
    if (x->function != y->function)
        return x->function < y->function ? -1 : 1;
    if (is_indexed(x) != is_indexed(y))
        return is_indexed(x) ? -1 : 1;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    return 0;
}

static void sort_entries(struct cpuid_table *t)
{
    qsort(t->entries, t->count, sizeof(t->entries[0]), entry_order);
}

static void vendor_regs(enum cpuid_vendor vendor, uint32_t *ebx, uint32_t *ecx, uint32_t *edx)
{
    const char *s = vendor == CPUID_VENDOR_AMD ? "AuthenticAMD" : "GenuineIntel";
    *ebx = le32_load(s);
    *edx = le32_load(s + 4);
    *ecx = le32_load(s + 8);
}

static enum cpuid_vendor vendor_of_string(const char s[13])
{
    return strcmp(s, "AuthenticAMD") == 0 || strcmp(s, "HygonGenuine") == 0 ? CPUID_VENDOR_AMD
                                                                            : CPUID_VENDOR_INTEL;
}

void cpuid_vendor_string(const struct cpuid_table *t, char out[13])
{
    const struct kvm_cpuid_entry2 *e = find_in(t->entries, t->count, 0, 0);
    memset(out, 0, 13);
    if (!e)
        return;
    le32_store(out, e->ebx);
    le32_store(out + 4, e->edx);
    le32_store(out + 8, e->ecx);
}

static int fail(struct cpuid_error *err, struct config_pos pos, const char *key, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
static int fail(struct cpuid_error *err, struct config_pos pos, const char *key, const char *fmt,
                ...)
{
    err->pos = pos;
    snprintf(err->key, sizeof(err->key), "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

/* The config key path of a profile's leaf, e.g. cpuid.epyc.7-0. */
static void leaf_key(char *out, size_t size, const struct config_cpuid_profile *p,
                     const struct config_cpuid_leaf *l)
{
    if (l->has_index)
        snprintf(out, size, "cpuid.%s.%" PRIx32 "-%" PRIx32, p->name, l->func, l->index);
    else
        snprintf(out, size, "cpuid.%s.%" PRIx32, p->name, l->func);
}

static void describe_leaf(char *out, size_t size, uint32_t function, bool subleaf, uint32_t index)
{
    if (subleaf)
        snprintf(out, size, "leaf 0x%" PRIx32 " subleaf %" PRIu32, function, index);
    else
        snprintf(out, size, "leaf 0x%" PRIx32, function);
}

/* Bits the VMM or KVM set in this register themselves (cpuid.h). */
static uint32_t exempt_bits(uint32_t function, uint32_t index, enum cpuid_reg r)
{
    if (function == 1 && r == CPUID_ECX)
        return LEAF1_ECX_OSXSAVE | LEAF1_ECX_HYPERVISOR;
    if (function == 1 && r == CPUID_EDX)
        return LEAF1_EDX_HTT;
    if (function == 7 && index == 0 && r == CPUID_ECX)
        return LEAF7_ECX_OSPKE;
    return 0;
}

static uint32_t available_bits(const struct cpuid_host *host, uint32_t function, uint32_t index,
                               enum cpuid_reg r)
{
    const struct kvm_cpuid_entry2 *s = find_supported(host, function, index);
    uint32_t avail = s ? *entry_reg((struct kvm_cpuid_entry2 *)s, r) : 0;
    if (function == 1 && r == CPUID_ECX && host && host->tsc_deadline)
        avail |= LEAF1_ECX_TSC_DEADLINE;
    return avail | exempt_bits(function, index, r);
}

/* A profile leaf's feature registers against what this host's KVM gives. */
static int check_features(const struct config_cpuid_profile *p, const struct config_cpuid_leaf *l,
                          const struct cpuid_host *host, struct cpuid_error *err)
{
    for (size_t i = 0; i < ARRAY_LEN(feature_leaves); i++) {
        const struct feature_leaf *f = &feature_leaves[i];
        /* A plain key answers every subleaf: checked against each rule. */
        uint32_t index = l->has_index ? l->index : f->per_subleaf ? f->index : 0;
        if (f->function != l->func || (f->per_subleaf && f->index != index))
            continue;
        for (int r = CPUID_EAX; r <= CPUID_EDX; r++) {
            if (!(f->regs & (1u << r)))
                continue;
            uint32_t missing = l->regs[r] & ~available_bits(host, l->func, index, r);
            if (!missing)
                continue;
            char key[128], where[64], bits[160];
            size_t used = 0;
            unsigned count = 0;
            for (unsigned b = 0; b < 32; b++) {
                if (!(missing & (1u << b)))
                    continue;
                int w = snprintf(bits + used, sizeof(bits) - used, "%s%u", count ? ", " : "", b);
                if (w > 0 && (size_t)w < sizeof(bits) - used)
                    used += (size_t)w;
                count++;
            }
            leaf_key(key, sizeof(key), p, l);
            describe_leaf(where, sizeof(where), l->func, f->per_subleaf, index);
            return fail(err, (struct config_pos){l->line, l->column}, key,
                        "%s %s bit%s %s (requested by the profile) %s not available from this "
                        "host's KVM",
                        where, reg_names[r], count > 1 ? "s" : "", bits, count > 1 ? "are" : "is");
        }
    }
    return 0;
}

/* KVM's leaves at 0x40000000.. from its supported list, with the signature
 * the guest looks for (KVM's list may leave it to the VMM). */
static int add_kvm_leaves(struct cpuid_table *t, const struct cpuid_host *host)
{
    const struct kvm_cpuid2 *s = host ? host->supported : NULL;
    for (unsigned i = 0; s && i < s->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &s->entries[i];
        if (e->function < LEAF_KVM_SIGNATURE || e->function > LEAF_KVM_SIGNATURE + 0xff)
            continue;
        if (find(t, e->function, e->index))
            continue; /* the host path copied it already */
        if (t->count >= CPUID_MAX_ENTRIES)
            return -1;
        t->entries[t->count++] = *e;
    }
    uint32_t max = LEAF_KVM_SIGNATURE;
    for (unsigned i = 0; i < t->count; i++)
        if (t->entries[i].function > max && t->entries[i].function <= LEAF_KVM_SIGNATURE + 0xff)
            max = t->entries[i].function;
    struct kvm_cpuid_entry2 *sig = find(t, LEAF_KVM_SIGNATURE, 0);
    if (!sig && !(sig = add_entry(t, LEAF_KVM_SIGNATURE, false, 0)))
        return -1;
    if (sig->eax < max)
        sig->eax = max;
    const char *kvm = "KVMKVMKVM\0\0\0";
    sig->ebx = le32_load(kvm);
    sig->ecx = le32_load(kvm + 4);
    sig->edx = le32_load(kvm + 8);
    return 0;
}

/* KVM's PV features that a guest reaches by hypercall: pv-spinlock kicks
 * (PV_UNHALT), PV IPIs and PV yield. */
#define KVM_HYPERCALL_FEATURES (1u << 7 | 1u << 11 | 1u << 13)

/* A profile of the other vendor makes Linux issue the other vendor's
 * hypercall instruction (VMCALL on AMD, VMMCALL on Intel), which the CPU
 * refuses with #UD unless KVM rewrites it: seen as a guest panic in
 * kvm_kick_cpu. Such a guest gets no hypercall features (MSR-based ones,
 * kvm-clock included, stay). */
static void hide_hypercall_features(struct cpuid_table *t, const struct cpuid_host *host)
{
    const struct kvm_cpuid2 *s = host ? host->supported : NULL;
    char vendor[13] = "";
    for (unsigned i = 0; s && i < s->nent; i++)
        if (s->entries[i].function == 0 && s->entries[i].index == 0) {
            le32_store(vendor, s->entries[i].ebx);
            le32_store(vendor + 4, s->entries[i].edx);
            le32_store(vendor + 8, s->entries[i].ecx);
        }
    struct kvm_cpuid_entry2 *features = find(t, LEAF_KVM_SIGNATURE + 1, 0);
    if (!t->from_profile || !vendor[0] || vendor_of_string(vendor) == t->vendor || !features)
        return;
    features->eax &= ~KVM_HYPERCALL_FEATURES;
}

/* Without the hypervisor bit Linux never looks at KVM's leaves (no
 * kvm-clock, no PV EOI) and runs on the HPET; KVM before 6.x leaves it out
 * of its supported CPUID. */
static void set_hypervisor_bit(struct cpuid_table *t)
{
    for (unsigned i = 0; i < t->count; i++)
        if (t->entries[i].function == 1)
            t->entries[i].ecx |= LEAF1_ECX_HYPERVISOR;
}

static int too_big(struct cpuid_error *err, struct config_pos pos, const char *key)
{
    return fail(err, pos, key, "more than %d CPUID entries",
                CPUID_MAX_ENTRIES - CPUID_SPECIALIZE_SLACK);
}

static int build_from_host(struct cpuid_table *t, const struct cpuid_host *host,
                           struct cpuid_error *err)
{
    const struct kvm_cpuid2 *s = host->supported;
    if (!s || s->nent > CPUID_MAX_ENTRIES - CPUID_SPECIALIZE_SLACK)
        return too_big(err, (struct config_pos){0, 0}, "KVM_GET_SUPPORTED_CPUID");
    memcpy(t->entries, s->entries, s->nent * sizeof(s->entries[0]));
    t->count = s->nent;
    char vendor[13];
    cpuid_vendor_string(t, vendor);
    t->vendor = vendor_of_string(vendor);
    struct kvm_cpuid_entry2 *leaf1 = find(t, 1, 0);
    if (leaf1 && host->tsc_deadline)
        leaf1->ecx |= LEAF1_ECX_TSC_DEADLINE;
    /* The brand string: the host's where KVM gives none (absent or zero). */
    struct kvm_cpuid_entry2 *ext = find(t, EXTENDED_BASE, 0);
    for (uint32_t i = 0; host->has_brand && ext && ext->eax >= EXTENDED_BASE + 4 && i < 3; i++) {
        struct kvm_cpuid_entry2 *e = find(t, EXTENDED_BASE + 2 + i, 0);
        if (!e && !(e = add_entry(t, EXTENDED_BASE + 2 + i, false, 0)))
            return too_big(err, (struct config_pos){0, 0}, "KVM_GET_SUPPORTED_CPUID");
        if (e->eax | e->ebx | e->ecx | e->edx)
            continue;
        e->eax = host->brand[i][0];
        e->ebx = host->brand[i][1];
        e->ecx = host->brand[i][2];
        e->edx = host->brand[i][3];
    }
    return 0;
}

/* Leaf 0 or 0x80000000 of a profile: made up when absent (max = the
 * highest leaf listed in its range), the vendor string checked and set. */
static int range_head(struct cpuid_table *t, const struct config_cpuid_profile *p, uint32_t base,
                      uint32_t range_end, bool vendor_string, struct cpuid_error *err)
{
    uint32_t highest = base;
    for (size_t i = 0; i < p->leaf_count; i++)
        if (p->leaves[i].func >= base && p->leaves[i].func <= range_end &&
            p->leaves[i].func > highest)
            highest = p->leaves[i].func;
    struct kvm_cpuid_entry2 *head = find(t, base, 0);
    if (!head) {
        if (!(head = add_entry(t, base, false, 0)))
            return -1;
        head->eax = highest;
    }
    if (vendor_string) {
        uint32_t ebx, ecx, edx;
        vendor_regs(t->vendor, &ebx, &ecx, &edx);
        if ((head->ebx | head->ecx | head->edx) != 0 &&
            (head->ebx != ebx || head->ecx != ecx || head->edx != edx)) {
            const struct config_cpuid_leaf *l = config_cpuid_find(p, base, 0);
            if (!l) /* head came from the profile, so its key exists */
                return -1;
            char key[128], given[13] = {0};
            leaf_key(key, sizeof(key), p, l);
            le32_store(given, head->ebx);
            le32_store(given + 4, head->edx);
            le32_store(given + 8, head->ecx);
            for (int c = 0; c < 12; c++)
                if (given[c] < 0x20 || given[c] > 0x7e)
                    given[c] = '?';
            return fail(err, (struct config_pos){l->line, l->column}, key,
                        "leaf 0x%" PRIx32 " names vendor \"%s\" but the profile's vendor is "
                        "\"%s\"",
                        base, given, config_cpu_vendor_name(p->vendor));
        }
        head->ebx = ebx;
        head->ecx = ecx;
        head->edx = edx;
    }
    for (size_t i = 0; i < p->leaf_count; i++) {
        const struct config_cpuid_leaf *l = &p->leaves[i];
        if (l->func < base || l->func > range_end || l->func <= head->eax)
            continue;
        char key[128];
        leaf_key(key, sizeof(key), p, l);
        return fail(err, (struct config_pos){l->line, l->column}, key,
                    "leaf 0x%" PRIx32 " is beyond the highest leaf 0x%" PRIx32
                    " that leaf 0x%" PRIx32 " gives, so a guest would never see it",
                    l->func, head->eax, base);
    }
    return 0;
}

static int build_from_profile(struct cpuid_table *t, const struct cpuid_host *host,
                              const struct config_cpuid_profile *p, struct cpuid_error *err)
{
    char section[128];
    snprintf(section, sizeof(section), "cpuid.%s", p->name);
    struct config_pos section_pos = {p->line, p->column};
    t->vendor = p->vendor == CONFIG_CPU_VENDOR_AMD ? CPUID_VENDOR_AMD : CPUID_VENDOR_INTEL;
    t->from_profile = true;
    if (p->leaf_count > CPUID_MAX_ENTRIES - CPUID_SPECIALIZE_SLACK - 8)
        return too_big(err, section_pos, section);

    for (size_t i = 0; i < p->leaf_count; i++) {
        const struct config_cpuid_leaf *l = &p->leaves[i];
        char key[128];
        leaf_key(key, sizeof(key), p, l);
        bool basic = l->func < LEAF_KVM_SIGNATURE;
        bool extended = l->func >= EXTENDED_BASE && l->func <= EXTENDED_RANGE_END;
        if (l->func >= LEAF_KVM_SIGNATURE && l->func <= HYPERVISOR_RANGE_END)
            return fail(err, (struct config_pos){l->line, l->column}, key,
                        "leaves 0x40000000-0x4fffffff are the hypervisor's (KVM's), not the "
                        "profile's");
        if (!basic && !extended)
            return fail(err, (struct config_pos){l->line, l->column}, key,
                        "leaf 0x%" PRIx32 " is neither basic (below 0x40000000) nor extended "
                        "(0x80000000-0x8000ffff)",
                        l->func);
        if (check_features(p, l, host, err) < 0)
            return -1;
        struct kvm_cpuid_entry2 *e = add_entry(t, l->func, l->has_index, l->index);
        if (!e)
            return too_big(err, section_pos, section);
        e->eax = l->regs[CPUID_EAX];
        e->ebx = l->regs[CPUID_EBX];
        e->ecx = l->regs[CPUID_ECX];
        e->edx = l->regs[CPUID_EDX];
    }
    if (!config_cpuid_find(p, 1, 0))
        return fail(err, section_pos, section,
                    "the profile lists no leaf 1 (family, model, features), which every guest "
                    "reads");
    sort_entries(t); /* find() now prefers an indexed key */
    if (range_head(t, p, 0, LEAF_KVM_SIGNATURE - 1, true, err) < 0 ||
        range_head(t, p, EXTENDED_BASE, EXTENDED_RANGE_END, t->vendor == CPUID_VENDOR_AMD, err) < 0)
        return err->msg[0] ? -1 : too_big(err, section_pos, section);
    return 0;
}

int cpuid_table_build(struct cpuid_table *t, const struct cpuid_host *host,
                      const struct config_cpuid_profile *profile, struct cpuid_error *err)
{
    memset(t, 0, sizeof(*t));
    memset(err, 0, sizeof(*err));
    int r = profile ? build_from_profile(t, host, profile, err) : build_from_host(t, host, err);
    if (r < 0)
        return -1;
    set_hypervisor_bit(t);
    if (add_kvm_leaves(t, host) < 0 || t->count > CPUID_MAX_ENTRIES - CPUID_SPECIALIZE_SLACK)
        return too_big(
            err, (struct config_pos){profile ? profile->line : 0, profile ? profile->column : 0},
            "cpuid");
    hide_hypercall_features(t, host);
    sort_entries(t);
    return 0;
}

void cpuid_lookup(const struct cpuid_table *t, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
    memset(out, 0, 4 * sizeof(out[0]));
    const struct kvm_cpuid_entry2 *e = find_in(t->entries, t->count, leaf, subleaf);
    if (!e) {
        /* The leaf that gives the maximum of leaf's range. */
        uint32_t head = leaf >= LEAF_KVM_SIGNATURE && leaf <= HYPERVISOR_RANGE_END
                            ? leaf & 0xffffff00u
                            : (leaf >= 0xc0000000u ? 0xc0000000u : leaf & EXTENDED_BASE);
        const struct kvm_cpuid_entry2 *range = find_in(t->entries, t->count, head, 0);
        if (t->vendor == CPUID_VENDOR_AMD || (range && leaf <= range->eax))
            return; /* absent: zeros */
        /* Intel: out of range reads as the highest basic leaf. */
        const struct kvm_cpuid_entry2 *basic = find_in(t->entries, t->count, 0, 0);
        if (!basic || !(e = find_in(t->entries, t->count, basic->eax, subleaf)))
            return;
    }
    out[0] = e->eax;
    out[1] = e->ebx;
    out[2] = e->ecx;
    out[3] = e->edx;
}

/* Bits an APIC id needs to tell n vCPUs apart: ceil(log2(n)). */
static unsigned id_bits(unsigned n)
{
    unsigned bits = 0;
    while ((1u << bits) < n)
        bits++;
    return bits;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* Cache levels 1 and 2 belong to one core, the others to the socket. */
static bool cache_per_core(uint32_t eax)
{
    return ((eax >> 5) & 7) <= 2;
}

/* Leaf 0xB/0x1F: SMT level (shift 0, one thread), core level (every vCPU),
 * then the invalid level that ends the list; EDX is the x2APIC id. */
static int topology_leaf(struct cpuid_table *t, uint32_t function, unsigned cpus, unsigned vcpu)
{
    if (!has_function(t, function))
        return 0;
    unsigned kept = 0;
    for (unsigned i = 0; i < t->count; i++)
        if (t->entries[i].function != function)
            t->entries[kept++] = t->entries[i];
    t->count = kept;
    static const uint32_t level_type[3] = {1 /* SMT */, 2 /* core */, 0 /* invalid */};
    for (uint32_t sub = 0; sub < 3; sub++) {
        struct kvm_cpuid_entry2 *e = add_entry(t, function, true, sub);
        if (!e)
            return -1;
        e->eax = sub == 1 ? id_bits(cpus) : 0;
        e->ebx = sub == 0 ? 1 : sub == 1 ? min_u32(cpus, 0xffff) : 0;
        e->ecx = sub | level_type[sub] << 8;
        e->edx = vcpu;
    }
    return 0;
}

int cpuid_specialize(const struct cpuid_table *vm, unsigned cpus, unsigned vcpu,
                     struct cpuid_table *out)
{
    if (vcpu >= cpus)
        return -1;
    if (out != vm)
        memcpy(out, vm, sizeof(*out));
    unsigned core_bits = id_bits(cpus);
    uint32_t addressable = 1u << core_bits; /* APIC ids the socket spans */
    for (unsigned i = 0; i < out->count; i++) {
        struct kvm_cpuid_entry2 *e = &out->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0xffffu) | min_u32(cpus, 255) << 16 | (vcpu & 0xffu) << 24;
            e->edx = cpus > 1 ? e->edx | LEAF1_EDX_HTT : e->edx & ~LEAF1_EDX_HTT;
            e->ecx |= LEAF1_ECX_HYPERVISOR;
            break;
        case 4:
            if ((e->eax & 0x1f) == 0)
                break; /* no more caches */
            e->eax = (e->eax & 0x3fffu) |
                     (min_u32(cache_per_core(e->eax) ? 1 : addressable, 4096) - 1) << 14 |
                     (min_u32(addressable, 64) - 1) << 26;
            break;
        case 0x80000008:
            e->ecx = (e->ecx & ~0xf0ffu) | ((cpus - 1) & 0xffu) | (core_bits & 0xfu) << 12;
            break;
        case 0x8000001d:
            if ((e->eax & 0x1f) == 0)
                break;
            e->eax = (e->eax & ~(0xfffu << 14)) |
                     (min_u32(cache_per_core(e->eax) ? 1 : cpus, 4096) - 1) << 14;
            break;
        case 0x8000001e:
            e->eax = vcpu;                                 /* extended APIC id */
            e->ebx = (e->ebx & ~0xffffu) | (vcpu & 0xffu); /* core id, 1 thread */
            e->ecx = e->ecx & ~0x7ffu;                     /* node 0 of 1 */
            break;
        }
    }
    if (topology_leaf(out, 0xb, cpus, vcpu) < 0 || topology_leaf(out, 0x1f, cpus, vcpu) < 0)
        return -1;
    sort_entries(out);
    return 0;
}
