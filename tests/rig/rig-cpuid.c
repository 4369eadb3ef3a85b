/* The CPUID rig test's helper (test_cpuid.sh, cpuid-inner.sh), run in L1:
 * prints a [cpuid.NAME] profile built from this machine's
 * KVM_GET_SUPPORTED_CPUID, so that its KVM can give every feature in it.
 *
 *   rig-cpuid amd NAME BRAND    every supported leaf but KVM's own
 *                               (0x4000xxxx), leaf 0 and 0x80000000 without
 *                               a vendor string (the VMM fills it in), the
 *                               brand string replaced
 *   rig-cpuid intel NAME BRAND  a Skylake-SP-like Intel CPU (family 6 model
 *                               85): leaves 1, 6, 7, 0xD from the supported
 *                               list, Intel cache leaves 4 and 0x80000006,
 *                               0xB for the topology, 0x80000001 limited to
 *                               the bits Intel CPUs have, 0x80000008's
 *                               address sizes; nothing AMD-only */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static struct kvm_cpuid2 *supported;
/* Leaf 1 ECX bit 24 when KVM_CAP_TSC_DEADLINE_TIMER says the LAPIC has it
 * (older KVMs leave it out of the supported list; the VMM adds it too). */
static uint32_t tsc_deadline;

static const struct kvm_cpuid_entry2 *find(uint32_t function, uint32_t index)
{
    for (unsigned i = 0; i < supported->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &supported->entries[i];
        if (e->function == function &&
            (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index))
            return e;
    }
    return NULL;
}

static void leaf(uint32_t function, int index, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    if (index < 0)
        printf("\"%x\" = [0x%x, 0x%x, 0x%x, 0x%x]\n", function, a, b, c, d);
    else
        printf("\"%x-%x\" = [0x%x, 0x%x, 0x%x, 0x%x]\n", function, index, a, b, c, d);
}

/* Every subleaf the supported list has for function (or the plain one). */
static void copy(uint32_t function)
{
    for (unsigned i = 0; i < supported->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &supported->entries[i];
        if (e->function != function)
            continue;
        int index = e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX ? (int)e->index : -1;
        leaf(function, index, e->eax, e->ebx, e->ecx, e->edx);
    }
}

static void brand(const char *text)
{
    char b[48] = {0};
    strncpy(b, text, sizeof(b) - 1);
    for (int i = 0; i < 3; i++) {
        uint32_t r[4];
        memcpy(r, b + 16 * i, 16);
        leaf(0x80000002 + i, -1, r[0], r[1], r[2], r[3]);
    }
}

static uint32_t reg(uint32_t function, uint32_t index, int which)
{
    const struct kvm_cpuid_entry2 *e = find(function, index);
    if (!e)
        return 0;
    return which == 0 ? e->eax : which == 1 ? e->ebx : which == 2 ? e->ecx : e->edx;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "amd") && strcmp(argv[1], "intel"))) {
        fprintf(stderr, "usage: rig-cpuid amd|intel NAME BRAND\n");
        return 2;
    }
    int fd = open("/dev/kvm", O_RDWR);
    supported = calloc(1, sizeof(*supported) + 256 * sizeof(supported->entries[0]));
    if (fd < 0 || !supported) {
        perror("/dev/kvm");
        return 1;
    }
    supported->nent = 256;
    if (ioctl(fd, KVM_GET_SUPPORTED_CPUID, supported) < 0) {
        perror("KVM_GET_SUPPORTED_CPUID");
        return 1;
    }
    if (ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
        tsc_deadline = 1u << 24;
    printf("[cpuid.%s]\nvendor = \"%s\"\n", argv[2], argv[1]);
    if (strcmp(argv[1], "amd") == 0) {
        for (unsigned i = 0; i < supported->nent; i++) {
            const struct kvm_cpuid_entry2 *e = &supported->entries[i];
            uint32_t f = e->function;
            if ((f >= 0x40000000 && f <= 0x4fffffff) || (f >= 0x80000002 && f <= 0x80000004))
                continue;
            int index = e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX ? (int)e->index : -1;
            if (f == 0 || f == 0x80000000)
                leaf(f, index, e->eax, 0, 0, 0);
            else if (f == 1)
                leaf(f, index, e->eax, e->ebx, e->ecx | tsc_deadline, e->edx);
            else
                leaf(f, index, e->eax, e->ebx, e->ecx, e->edx);
        }
        brand(argv[3]);
        return 0;
    }
    leaf(0, -1, 0xd, 0, 0, 0);
    /* Family 6 model 0x55 stepping 4; the CLFLUSH line size from the host. */
    leaf(1, -1, 0x00050654, reg(1, 0, 1) & 0xff00, reg(1, 0, 2) | tsc_deadline, reg(1, 0, 3));
    /* L1d and L1i 32 KiB 8-way, L2 1 MiB 16-way, L3 16 MiB 16-way. */
    leaf(4, 0, 0x121, 0x01c0003f, 0x3f, 0);
    leaf(4, 1, 0x122, 0x01c0003f, 0x3f, 0);
    leaf(4, 2, 0x143, 0x03c0003f, 0x3ff, 0);
    leaf(4, 3, 0x163, 0x03c0003f, 0x3fff, 6);
    leaf(4, 4, 0, 0, 0, 0);
    copy(6);
    copy(7);
    leaf(0xb, -1, 0, 0, 0, 0);
    copy(0xd);
    leaf(0x80000000, -1, 0x80000008, 0, 0, 0);
    /* LAHF, ABM, PREFETCHW; SYSCALL, NX, 1 GiB pages, RDTSCP, LM. */
    leaf(0x80000001, -1, 0, 0, reg(0x80000001, 0, 2) & 0x121, reg(0x80000001, 0, 3) & 0x2c100800);
    brand(argv[3]);
    leaf(0x80000006, -1, 0, 0, 0x04008040, 0);
    leaf(0x80000007, -1, 0, 0, 0, reg(0x80000007, 0, 3) & 0x100); /* invariant TSC */
    leaf(0x80000008, -1, reg(0x80000008, 0, 0) & 0xffff, 0, 0, 0);
    return 0;
}
