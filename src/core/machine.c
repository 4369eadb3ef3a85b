#include "core/machine.h"

#include <errno.h>
#include <cpuid.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/log.h"
#include "core/kvm_state.h"
#include "core/vcpu.h"

/* Same placement QEMU uses: just below a 16 MiB bootrom, clear of the APICs. */
#define KVM_IDENTITY_MAP_ADDR 0xfeffc000ull
#define KVM_TSS_ADDR 0xfeffd000ull

enum { SLOT_LOWMEM, SLOT_HIGHMEM, SLOT_BOOTROM };

uint64_t machine_host_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    return (pages > 0 && page_size > 0) ? (uint64_t)pages * (uint64_t)page_size : 0;
}

bool machine_bootrom_size_ok(uint64_t size)
{
    return size != 0 && size % 4096 == 0 && size <= BOOTROM_MAX_SIZE;
}

static int map_bootrom(struct machine *m, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_error("bootrom %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        log_error("bootrom %s: not a regular file", path);
        close(fd);
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (!machine_bootrom_size_ok(size)) {
        log_error("bootrom %s: size %llu bytes is not a non-zero multiple of 4 KiB up to 16 MiB",
                  path, (unsigned long long)size);
        close(fd);
        return -1;
    }
    /* Private and read-only: the guest sees the file, never changes it. */
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        log_error("bootrom %s: mmap: %s", path, strerror(errno));
        return -1;
    }
    m->bootrom = p;
    m->bootrom_size = size;
    return 0;
}

#define HUGE_PAGE_SIZE (2ull * MIB)

/* True when the host hands out transparent huge pages only to memory that
 * asks (THP "madvise"). Under "always" guest RAM gets them unasked, and
 * asking would only add direct compaction at fault time (the default
 * defrag setting), suspected in an L2 soft lockup on the rig's
 * software-CPU L1 host; under "never" the host's owner said no. */
static bool thp_on_request_only(void)
{
    char mode[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f)
        return false;
    bool ok = fgets(mode, sizeof(mode), f) != NULL;
    fclose(f);
    return ok && strstr(mode, "[madvise]") != NULL;
}

/* Guest RAM on a 2 MiB boundary, on transparent huge pages where the host
 * has them: a guest buffer then spans few host pages, so an O_DIRECT 1 MiB
 * request reaches the host disk whole and merged with its neighbours (on
 * 4 KiB pages it went as two 512 KiB requests), and the vCPU's
 * second-level page walks are shorter. */
static void *map_ram(uint64_t size, bool reserve)
{
    uint64_t span = size + HUGE_PAGE_SIZE;
    uint8_t *area = mmap(NULL, span, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED)
        return NULL;
    uint8_t *p =
        (uint8_t *)(((uintptr_t)area + HUGE_PAGE_SIZE - 1) & ~(uintptr_t)(HUGE_PAGE_SIZE - 1));
    if (p > area)
        munmap(area, (size_t)(p - area));
    if (area + span > p + size)
        munmap(p + size, (size_t)(area + span - (p + size)));
    /* Only a hint: without THP in the host's kernel, 4 KiB pages serve. */
    if (thp_on_request_only())
        (void)madvise(p, size, MADV_HUGEPAGE);
    if (reserve) {
        /* Fail now, not when the guest first touches a page. */
        if (madvise(p, size, MADV_POPULATE_WRITE) < 0 || mlock(p, size) < 0) {
            munmap(p, size);
            return NULL;
        }
    }
    return p;
}

static int setup_memory(struct machine *m)
{
    uint64_t total = m->spec.memory_bytes;
    uint64_t host = machine_host_memory_bytes();
    if (host && total > host) {
        log_error("main.memory: %llu MiB is more than this host has (%llu MiB)",
                  (unsigned long long)(total / MIB), (unsigned long long)(host / MIB));
        return -1;
    }
    m->lowmem_size = total < LOWMEM_LIMIT ? total : LOWMEM_LIMIT;
    m->highmem_size = total - m->lowmem_size;
    m->lowmem = map_ram(m->lowmem_size, m->spec.reserve_memory);
    if (!m->lowmem) {
        log_error("main.memory: cannot allocate %llu MiB of guest RAM: %s",
                  (unsigned long long)(total / MIB), strerror(errno));
        return -1;
    }
    if (m->highmem_size) {
        m->highmem = map_ram(m->highmem_size, m->spec.reserve_memory);
        if (!m->highmem) {
            log_error("main.memory: cannot allocate %llu MiB of guest RAM: %s",
                      (unsigned long long)(total / MIB), strerror(errno));
            return -1;
        }
    }
    guest_mem_add(&m->mem, 0, m->lowmem_size, m->lowmem, false);
    if (m->highmem_size)
        guest_mem_add(&m->mem, HIGHMEM_BASE, m->highmem_size, m->highmem, false);
    guest_mem_add(&m->mem, HIGHMEM_BASE - m->bootrom_size, m->bootrom_size, m->bootrom, true);
    log_debug("memory: lowmem 0x0-0x%llx, highmem %s0x%llx-0x%llx, bootrom 0x%llx-0xffffffff",
              (unsigned long long)m->lowmem_size, m->highmem_size ? "" : "none ",
              (unsigned long long)HIGHMEM_BASE,
              (unsigned long long)(HIGHMEM_BASE + m->highmem_size),
              (unsigned long long)(HIGHMEM_BASE - m->bootrom_size));
    return 0;
}

/* A PC shows the top 128 KiB of the BIOS at 0xE0000-0xFFFFF after reset
 * (the "isa-bios" alias, which the chipset's PAM registers later shadow into
 * RAM); a legacy BIOS such as SeaBIOS jumps there from the reset vector.
 * Copying it into low RAM at power-on gives the same view without extra
 * memory slots (a slot update costs an SRCU grace period once the irqchip exists). */
static void load_legacy_bios_alias(struct machine *m)
{
    uint64_t len =
        m->bootrom_size < LEGACY_BIOS_ALIAS_SIZE ? m->bootrom_size : LEGACY_BIOS_ALIAS_SIZE;
    if (m->lowmem_size < LEGACY_BIOS_ALIAS_END)
        return;
    memcpy(m->lowmem + LEGACY_BIOS_ALIAS_END - len, m->bootrom + m->bootrom_size - len, len);
}

/* Writes to the read-only bootrom slot exit as MMIO; they are dropped. */
static void bootrom_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    static struct log_ratelimit rl;
    log_limited(&rl, LOG_DEBUG, "bootrom: ignored %u-byte write at offset 0x%llx", size,
                (unsigned long long)offset);
}

static uint64_t bootrom_read(void *opaque, uint64_t offset, unsigned size)
{
    struct machine *m = opaque;
    if (offset < m->bootrom_size && size <= m->bootrom_size - offset)
        return le_load(m->bootrom + offset, size);
    return 0;
}

static const struct io_ops bootrom_ops = {.read = bootrom_read, .write = bootrom_write};

static int set_slot(struct machine *m, uint32_t slot, uint64_t gpa, uint64_t size, void *hva,
                    uint32_t flags)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot,
        .flags = flags,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)hva,
    };
    if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        log_error("KVM_SET_USER_MEMORY_REGION slot %u: %s", slot, strerror(errno));
        return -1;
    }
    return 0;
}

static int load_supported_cpuid(struct machine *m)
{
    for (unsigned n = 256; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
        if (!c)
            return -1;
        c->nent = n;
        if (ioctl(m->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            m->supported_cpuid = c;
            return 0;
        }
        free(c);
        if (errno != E2BIG)
            break;
    }
    log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
    return -1;
}

/* The VM's one CPUID table, from the profile or the host; a profile this
 * host cannot give is refused here, before anything else is built. */
static int build_cpuid(struct machine *m)
{
    struct cpuid_host host = {
        .supported = m->supported_cpuid,
        .tsc_deadline = ioctl(m->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0,
    };
    unsigned max_ext = __get_cpuid_max(0x80000000u, NULL);
    host.has_brand = max_ext >= 0x80000004u;
    for (unsigned i = 0; host.has_brand && i < 3; i++)
        __cpuid(0x80000002u + i, host.brand[i][0], host.brand[i][1], host.brand[i][2],
                host.brand[i][3]);
    struct cpuid_error err;
    if (!(m->cpuid = malloc(sizeof(*m->cpuid))))
        return -1;
    if (cpuid_table_build(m->cpuid, &host, m->spec.cpuid_profile, &err) < 0) {
        config_report_at(m->spec.config_path, err.pos, err.key, "%s", err.msg);
        return -1;
    }
    return 0;
}

/* Registered before the irqchip exists: KVM's first slot update after
 * KVM_CREATE_IRQCHIP waits a full SRCU grace period (measured ~6 ms here),
 * while before it the same update takes ~0.2 ms. */
static int register_memory_slots(struct machine *m)
{
    uint64_t start = vm_clock_ns();
    int r = set_slot(m, SLOT_LOWMEM, 0, m->lowmem_size, m->lowmem, 0);
    if (r == 0 && m->highmem_size)
        r = set_slot(m, SLOT_HIGHMEM, HIGHMEM_BASE, m->highmem_size, m->highmem, 0);
    if (r == 0)
        r = set_slot(m, SLOT_BOOTROM, HIGHMEM_BASE - m->bootrom_size, m->bootrom_size, m->bootrom,
                     KVM_MEM_READONLY);
    log_debug("memory slots registered in %.2f ms", (double)(vm_clock_ns() - start) / 1e6);
    return r;
}

/* The routing table: QEMU's layout for the wired lines, which guests' ACPI
 * tables assume (ISA IRQ 0, from the PIT or the HPET in legacy mode,
 * reaches IOAPIC pin 2 as the MADT override says; GSIs 0-15 also reach the
 * PICs; 16-23 only the IOAPIC), then one GSI per MSI route. Called with
 * irq_lock held (or before any other thread exists). */
static int apply_irq_routing(struct machine *m)
{
    enum { BASE_ROUTES = 15 + IRQ_LINE_COUNT - 1 };
    struct {
        struct kvm_irq_routing header;
        struct kvm_irq_routing_entry entries[BASE_ROUTES + MACHINE_MAX_MSI_ROUTES];
    } *table = calloc(1, sizeof(*table));
    if (!table)
        return -1;
    unsigned n = 0;
    for (unsigned gsi = 0; gsi < 16; gsi++) {
        if (gsi == 2)
            continue; /* the cascade */
        table->entries[n++] = (struct kvm_irq_routing_entry){
            .gsi = gsi,
            .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = {gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8},
        };
    }
    for (unsigned gsi = 0; gsi < IRQ_LINE_COUNT; gsi++) {
        if (gsi == 2)
            continue;
        table->entries[n++] = (struct kvm_irq_routing_entry){
            .gsi = gsi,
            .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = {KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi},
        };
    }
    for (unsigned i = 0; i < MACHINE_MAX_MSI_ROUTES; i++) {
        const struct msi_route *r = &m->msi_routes[i];
        if (!r->used)
            continue;
        table->entries[n++] = (struct kvm_irq_routing_entry){
            .gsi = MACHINE_MSI_GSI_BASE + i,
            .type = KVM_IRQ_ROUTING_MSI,
            .u.msi = {.address_lo = (uint32_t)r->address,
                      .address_hi = (uint32_t)(r->address >> 32),
                      .data = r->data},
        };
    }
    table->header.nr = n;
    int ret = 0;
    if (m->vm_fd >= 0 && ioctl(m->vm_fd, KVM_SET_GSI_ROUTING, table) < 0) {
        log_error("KVM_SET_GSI_ROUTING: %s", strerror(errno));
        ret = -1;
    }
    free(table);
    return ret;
}

int machine_msi_route_add(struct machine *m, uint64_t address, uint32_t data)
{
    pthread_mutex_lock(&m->irq_lock);
    int gsi = -1;
    for (unsigned i = 0; m->msi_routes_used < MACHINE_MAX_MSI_ROUTES && i < MACHINE_MAX_MSI_ROUTES;
         i++) {
        if (!m->msi_routes[i].used) {
            m->msi_routes[i] = (struct msi_route){true, address, data};
            if (apply_irq_routing(m) < 0) {
                m->msi_routes[i].used = false;
            } else {
                gsi = (int)(MACHINE_MSI_GSI_BASE + i);
                m->msi_routes_used++;
            }
            break;
        }
    }
    bool full = m->msi_routes_used == MACHINE_MAX_MSI_ROUTES;
    pthread_mutex_unlock(&m->irq_lock);
    if (gsi < 0)
        log_limited(&m->msi_route_log, LOG_WARNING, "no MSI route free (%s of %u in use)",
                    full ? "all" : "not all", MACHINE_MAX_MSI_ROUTES);
    return gsi;
}

static struct msi_route *route_of(struct machine *m, int gsi)
{
    if (gsi < (int)MACHINE_MSI_GSI_BASE ||
        gsi >= (int)(MACHINE_MSI_GSI_BASE + MACHINE_MAX_MSI_ROUTES))
        return NULL;
    struct msi_route *r = &m->msi_routes[gsi - (int)MACHINE_MSI_GSI_BASE];
    return r->used ? r : NULL;
}

int machine_msi_route_update(struct machine *m, int gsi, uint64_t address, uint32_t data)
{
    pthread_mutex_lock(&m->irq_lock);
    struct msi_route *r = route_of(m, gsi);
    int ret = -1;
    if (r) {
        ret = 0;
        if (r->address != address || r->data != data) {
            r->address = address;
            r->data = data;
            ret = apply_irq_routing(m);
        }
    }
    pthread_mutex_unlock(&m->irq_lock);
    return ret;
}

void machine_msi_route_remove(struct machine *m, int gsi)
{
    pthread_mutex_lock(&m->irq_lock);
    struct msi_route *r = route_of(m, gsi);
    if (r) {
        r->used = false;
        m->msi_routes_used--;
        apply_irq_routing(m);
    }
    pthread_mutex_unlock(&m->irq_lock);
}

int machine_irqfd(struct machine *m, int event_fd, int gsi, bool assign)
{
    struct kvm_irqfd irqfd = {
        .fd = (uint32_t)event_fd,
        .gsi = (uint32_t)gsi,
        .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
    };
    if (ioctl(m->vm_fd, KVM_IRQFD, &irqfd) < 0) {
        log_error("KVM_IRQFD gsi %d: %s", gsi, strerror(errno));
        return -1;
    }
    return 0;
}

int machine_ioeventfd(struct machine *m, int event_fd, uint64_t address, unsigned len, bool pio,
                      const uint64_t *datamatch, bool assign)
{
    struct kvm_ioeventfd io = {
        .datamatch = datamatch ? *datamatch : 0,
        .addr = address,
        .len = len,
        .fd = event_fd,
        .flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN) |
                 (datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0),
    };
    if (ioctl(m->vm_fd, KVM_IOEVENTFD, &io) < 0) {
        log_error("KVM_IOEVENTFD %s 0x%llx: %s", pio ? "pio" : "mmio", (unsigned long long)address,
                  strerror(errno));
        return -1;
    }
    return 0;
}

/* Creates the KVM VM on the existing RAM: memory slots, irqchip, PIT, vCPUs. */
static int create_vm(struct machine *m)
{
    m->vm_fd = ioctl(m->kvm_fd, KVM_CREATE_VM, 0);
    if (m->vm_fd < 0) {
        log_error("KVM_CREATE_VM: %s", strerror(errno));
        return -1;
    }
    fcntl(m->vm_fd, F_SETFD, FD_CLOEXEC);
    if (register_memory_slots(m) < 0)
        return -1;
    uint64_t identity = KVM_IDENTITY_MAP_ADDR;
    if (ioctl(m->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0 ||
        ioctl(m->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
        log_error("KVM: cannot place TSS/identity map: %s", strerror(errno));
        return -1;
    }
    if (ioctl(m->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        log_error("KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return -1;
    }
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(m->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        log_error("KVM_CREATE_PIT2: %s", strerror(errno));
        return -1;
    }
    /* The routing table (IRQ 0 to IOAPIC pin 2) is installed once the
     * vCPUs run: each table update waits for an RCU grace period, and the
     * guest cannot look at IOAPIC pin 2 that early (it starts at the reset
     * vector with the IOAPIC masked). */
    m->irq_routing_pending = true;
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        if (vcpu_create(&m->vcpus[i], m, i) < 0)
            return -1;
    }
    for (unsigned i = 0; i < m->device_count; i++) {
        struct device *d = m->devices[i];
        if (d->ops->vm_attached && d->ops->vm_attached(d, m) < 0)
            return -1;
    }
    return 0;
}

static void destroy_vm(struct machine *m)
{
    for (unsigned i = 0; i < m->spec.cpus; i++)
        vcpu_destroy(&m->vcpus[i]);
    if (m->vm_fd >= 0)
        close(m->vm_fd);
    m->vm_fd = -1;
}

static int check_kvm(struct machine *m)
{
    m->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (m->kvm_fd < 0) {
        log_error("/dev/kvm: %s", strerror(errno));
        return -1;
    }
    if (ioctl(m->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        log_error("/dev/kvm: unsupported KVM API version");
        return -1;
    }
    static const struct {
        int cap;
        const char *name;
    } required[] = {
        {KVM_CAP_IRQCHIP, "in-kernel irqchip"},           {KVM_CAP_PIT2, "in-kernel PIT"},
        {KVM_CAP_READONLY_MEM, "read-only memory slots"}, {KVM_CAP_USER_MEMORY, "user memory"},
        {KVM_CAP_IMMEDIATE_EXIT, "immediate exit"},
    };
    for (size_t i = 0; i < ARRAY_LEN(required); i++) {
        if (ioctl(m->kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
            log_error("/dev/kvm: host KVM lacks %s", required[i].name);
            return -1;
        }
    }
    int max_vcpus = ioctl(m->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max_vcpus <= 0)
        max_vcpus = ioctl(m->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    if (max_vcpus <= 0)
        max_vcpus = 4;
    if (m->spec.cpus == 0 || m->spec.cpus > (unsigned)max_vcpus) {
        log_error("main.cpus: %u vCPUs requested, this host's KVM allows 1 to %d", m->spec.cpus,
                  max_vcpus);
        return -1;
    }
    int run_size = ioctl(m->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0) {
        log_error("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        return -1;
    }
    m->run_size = (size_t)run_size;
    return 0;
}

static void assign_host_cpus(struct machine *m)
{
    long ncpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        m->vcpus[i].host_cpu = -1;
        if (m->spec.pin_upper_half) {
            long cpu = ncpus - (long)m->spec.cpus + (long)i;
            if (cpu >= 0)
                m->vcpus[i].host_cpu = (int)cpu;
        }
    }
    if (m->spec.pin_upper_half && (long)m->spec.cpus > ncpus)
        log_warn("main.cpu_binding: %u vCPUs but only %ld host CPUs; extra vCPUs are not pinned",
                 m->spec.cpus, ncpus);
}

int machine_create(struct machine *m, const struct machine_spec *spec)
{
    memset(m, 0, sizeof(*m));
    m->initialized = true;
    m->spec = *spec;
    m->kvm_fd = m->vm_fd = m->event_fd = -1;
    m->halt_probe.fd = -1;
    vm_clock_init(&m->clock);
    pthread_mutex_init(&m->irq_lock, NULL);
    bus_init(&m->pio, "pio");
    bus_init(&m->mmio, "mmio");
    if (check_kvm(m) < 0 || map_bootrom(m, spec->bootrom_path) < 0 || setup_memory(m) < 0)
        goto fail;
    load_legacy_bios_alias(m);
    if (load_supported_cpuid(m) < 0 || build_cpuid(m) < 0)
        goto fail;
    m->vcpus = calloc(spec->cpus, sizeof(*m->vcpus));
    m->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!m->vcpus || m->event_fd < 0)
        goto fail;
    for (unsigned i = 0; i < spec->cpus; i++)
        m->vcpus[i].fd = -1;
    assign_host_cpus(m);
    if (!bus_register(&m->mmio, HIGHMEM_BASE - m->bootrom_size, m->bootrom_size, &bootrom_ops, m,
                      "bootrom"))
        goto fail;
    if (vcpu_setup_signals() < 0 || create_vm(m) < 0)
        goto fail;
    kvm_state_init(m);
    return 0;
fail:
    machine_destroy(m);
    return -1;
}

int machine_add_device(struct machine *m, struct device *dev)
{
    if (m->device_count >= MACHINE_MAX_DEVICES) {
        log_error("too many devices");
        return -1;
    }
    /* Every device in the inventory can be paused, saved and restored. */
    if (!dev->ops || !dev->ops->state || !dev->ops->kind || dev->ops->state_version == 0) {
        log_error("%s: device has no saved state (kind, version, state function)", dev->name);
        return -1;
    }
    m->devices[m->device_count++] = dev;
    if (m->vm_fd >= 0 && dev->ops->vm_attached)
        return dev->ops->vm_attached(dev, m);
    return 0;
}

#define HALT_PROBE_PERIOD_NS 500000000ull
#define HALT_PROBE_ROUNDS 2 /* consecutive all-halted probes before halting */

/* bhyve halts a VM whose vCPUs all sit in hlt with interrupts disabled (only
 * an NMI or INIT could wake them, and nothing is left to send one). KVM
 * handles hlt in the kernel, so ask each vCPU periodically: a kick makes
 * KVM_RUN return, and the vCPU thread reports its state. */
static void halt_probe_tick(void *opaque)
{
    struct machine *m = opaque;
    bool all_halted = true;
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        struct vcpu *v = &m->vcpus[i];
        if (atomic_load(&v->probe_requested) || !atomic_load(&v->halted_irqs_off))
            all_halted = false;
    }
    m->halt_probe_hits = all_halted ? m->halt_probe_hits + 1 : 0;
    if (m->halt_probe_hits >= HALT_PROBE_ROUNDS) {
        log_info("every vCPU is halted with interrupts disabled: halting the VM");
        machine_request(m, MACHINE_HALT);
        return;
    }
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        atomic_store(&m->vcpus[i].probe_requested, true);
        vcpu_kick(&m->vcpus[i]);
    }
}

/* Installs the routing table if the VM still has KVM's default one. */
static int apply_pending_irq_routing(struct machine *m)
{
    int r = 0;
    pthread_mutex_lock(&m->irq_lock);
    if (m->irq_routing_pending) {
        r = apply_irq_routing(m);
        m->irq_routing_pending = false;
    }
    pthread_mutex_unlock(&m->irq_lock);
    return r;
}

/* Starts every vCPU's thread; each runs from the vCPU's current state. */
static int run_vcpus(struct machine *m)
{
    atomic_store(&m->stop_vcpus, false);
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        atomic_store(&m->vcpus[i].probe_requested, false);
        atomic_store(&m->vcpus[i].halted_irqs_off, false);
        if (vcpu_start(&m->vcpus[i]) < 0) {
            machine_stop(m);
            return -1;
        }
    }
    if (apply_pending_irq_routing(m) < 0) {
        machine_stop(m);
        return -1;
    }
    m->halt_probe_hits = 0;
    if (m->loop && m->halt_probe.fd < 0 &&
        vm_timer_init(&m->halt_probe, m->loop, halt_probe_tick, m) < 0)
        return -1;
    vm_timer_arm(&m->halt_probe, HALT_PROBE_PERIOD_NS, HALT_PROBE_PERIOD_NS);
    return 0;
}

int machine_start(struct machine *m)
{
    atomic_store(&m->event, MACHINE_RUNNING);
    return run_vcpus(m);
}

void machine_set_pit_hpet_legacy(struct machine *m, bool hpet_legacy)
{
    struct kvm_pit_state2 pit;
    if (m->vm_fd < 0 || ioctl(m->vm_fd, KVM_GET_PIT2, &pit) < 0)
        return;
    if (hpet_legacy)
        pit.flags |= KVM_PIT_FLAGS_HPET_LEGACY;
    else
        pit.flags &= ~(uint32_t)KVM_PIT_FLAGS_HPET_LEGACY;
    if (ioctl(m->vm_fd, KVM_SET_PIT2, &pit) < 0)
        log_error("KVM_SET_PIT2: %s", strerror(errno));
}

void machine_request(struct machine *m, enum machine_event event)
{
    int cur = atomic_load(&m->event);
    while ((int)event > cur && !atomic_compare_exchange_weak(&m->event, &cur, (int)event))
        ;
    atomic_store(&m->stop_vcpus, true);
    for (unsigned i = 0; i < m->spec.cpus; i++)
        vcpu_kick(&m->vcpus[i]);
    uint64_t one = 1;
    ssize_t r = write(m->event_fd, &one, sizeof(one));
    (void)r;
}

void machine_stop(struct machine *m)
{
    vm_timer_disarm(&m->halt_probe);
    atomic_store(&m->stop_vcpus, true);
    for (unsigned i = 0; i < m->spec.cpus; i++)
        vcpu_kick(&m->vcpus[i]);
    for (unsigned i = 0; i < m->spec.cpus; i++)
        vcpu_join(&m->vcpus[i]);
}

/* ---- Pause, resume and state ---- */

/* Runs the vCPUs again after a pause: kvmclock first, so the guest does
 * not see the time the machine spent paused. With a reset or halt under
 * way they stay stopped for the main loop. */
static int continue_vcpus(struct machine *m)
{
    if (atomic_load(&m->event) != MACHINE_RUNNING)
        return 0;
    if (kvm_state_thaw(m) < 0)
        return -1;
    return run_vcpus(m);
}

int machine_pause(struct machine *m, char *err, size_t err_size)
{
    if (m->paused) {
        snprintf(err, err_size, "the machine is already paused");
        return -1;
    }
    machine_stop(m);
    if (atomic_load(&m->event) != MACHINE_RUNNING) {
        snprintf(err, err_size, "the machine is resetting or halting; not paused");
        return -1;
    }
    m->paused_vm_clock_ns = vm_clock_now(&m->clock);
    if (kvm_state_freeze(m, err, err_size) < 0) {
        run_vcpus(m);
        return -1;
    }
    /* Reverse order: a device is paused before those it was built on. */
    for (unsigned i = m->device_count; i-- > 0;) {
        struct device *d = m->devices[i];
        if (device_pause(d) == 0)
            continue;
        snprintf(err, err_size, "%s: cannot pause (its I/O could not be parked)", d->name);
        for (unsigned j = i + 1; j < m->device_count; j++)
            device_resume(m->devices[j]);
        continue_vcpus(m);
        return -1;
    }
    m->paused = true;
    log_debug("machine paused");
    return 0;
}

int machine_resume(struct machine *m)
{
    if (!m->paused)
        return 0;
    /* Device timers continue from the time the pause found. */
    vm_clock_set(&m->clock, m->paused_vm_clock_ns);
    for (unsigned i = 0; i < m->device_count; i++)
        device_resume(m->devices[i]);
    m->paused = false;
    log_debug("machine resumed");
    return continue_vcpus(m);
}

static struct device *device_named(struct machine *m, const char *name, unsigned *index)
{
    for (unsigned i = 0; i < m->device_count; i++)
        if (strcmp(m->devices[i]->name, name) == 0) {
            if (index)
                *index = i;
            return m->devices[i];
        }
    return NULL;
}

/* The "machine" record: the shape a state fits. Loading compares, it
 * changes nothing. */
static int machine_header_fields(void *opaque, struct snap *s)
{
    struct machine *m = opaque;
    uint32_t cpus = m->spec.cpus, device_count = m->device_count;
    uint64_t memory = m->spec.memory_bytes, bootrom = m->bootrom_size;
    snap_u32(s, "cpus", &cpus);
    if (snap_loading(s) && cpus != m->spec.cpus)
        snap_fail(s, "cpus", "the state is of %u vCPUs, this machine has %u", cpus, m->spec.cpus);
    snap_u64(s, "memory_bytes", &memory);
    if (snap_loading(s) && memory != m->spec.memory_bytes)
        snap_fail(
            s, "memory_bytes", "the state is of %llu MiB of memory, this machine has %llu MiB",
            (unsigned long long)(memory / MIB), (unsigned long long)(m->spec.memory_bytes / MIB));
    snap_u64(s, "bootrom_size", &bootrom);
    if (snap_loading(s) && bootrom != m->bootrom_size)
        snap_fail(s, "bootrom_size", "the state is of a %llu-byte bootrom, this machine's has %llu",
                  (unsigned long long)bootrom, (unsigned long long)m->bootrom_size);
    snap_u32(s, "device_count", &device_count);
    if (snap_loading(s) && device_count != m->device_count)
        snap_fail(s, "device_count", "the state has %u devices, this machine %u", device_count,
                  m->device_count);
    bool listed[MACHINE_MAX_DEVICES] = {false};
    for (unsigned i = 0; i < device_count && !s->failed; i++) {
        char name[SNAP_NAME_MAX + 1] = "";
        size_t len = 0;
        if (!snap_loading(s)) {
            len = strnlen(m->devices[i]->name, SNAP_NAME_MAX);
            memcpy(name, m->devices[i]->name, len);
        }
        snap_enter(s, "device%u", i);
        snap_var_bytes(s, "name", name, &len, SNAP_NAME_MAX);
        name[len] = '\0';
        unsigned index = 0;
        if (snap_loading(s) && !s->failed) {
            if (memchr(name, '\0', len))
                snap_fail(s, "name", "contains a NUL byte");
            else if (!device_named(m, name, &index))
                snap_fail(s, "name", "the state has a device '%s', this machine none of that name",
                          name);
            else if (listed[index])
                snap_fail(s, "name", "device '%s' is listed twice", name);
            else
                listed[index] = true;
        }
        snap_leave(s);
    }
    return snap_error(s);
}

int machine_save_state(struct machine *m, struct snap_buf *out, char *err, size_t err_size)
{
    if (!m->paused) {
        snprintf(err, err_size, "machine state: the machine is not paused");
        return -1;
    }
    size_t start = out->len;
    int r = snap_save_record(out, "machine", MACHINE_STATE_KIND, MACHINE_STATE_VERSION,
                             machine_header_fields, m, err, err_size);
    if (r == 0)
        r = kvm_vm_state_save(m, out, err, err_size);
    for (unsigned i = 0; r == 0 && i < m->spec.cpus; i++)
        r = kvm_vcpu_state_save(&m->vcpus[i], out, err, err_size);
    for (unsigned i = 0; r == 0 && i < m->device_count; i++)
        r = device_save_state(m->devices[i], out, err, err_size);
    if (r < 0 && !out->failed)
        out->len = start;
    return r;
}

/* The next record, which must exist and be called `name`. */
static int expect_record(const uint8_t *data, size_t len, size_t *pos, const char *name,
                         struct snap_record *rec, char *err, size_t err_size)
{
    int r = snap_next_record(data, len, pos, rec, err, err_size);
    if (r < 0)
        return -1;
    if (r == 0) {
        snprintf(err, err_size, "machine state: ends before the record of %s", name);
        return -1;
    }
    if (strcmp(rec->name, name) != 0) {
        snprintf(err, err_size, "machine state: expected the record of %s, found '%s'", name,
                 rec->name);
        return -1;
    }
    return 0;
}

/* Every record of a state, read and checked. */
struct machine_state_load {
    struct kvm_vm_state *vm;
    struct kvm_vcpu_state **vcpus;
    struct snap_record *devices; /* by inventory index */
};

static void free_state_load(struct machine *m, struct machine_state_load *l)
{
    kvm_vm_state_free(l->vm);
    for (unsigned i = 0; l->vcpus && i < m->spec.cpus; i++)
        kvm_vcpu_state_free(l->vcpus[i]);
    free(l->vcpus);
    free(l->devices);
}

static int check_state(struct machine *m, const uint8_t *data, size_t len,
                       struct machine_state_load *l, char *err, size_t err_size)
{
    size_t pos = 0;
    struct snap_record rec;
    if (expect_record(data, len, &pos, "machine", &rec, err, err_size) < 0 ||
        snap_load_record(&rec, MACHINE_STATE_KIND, MACHINE_STATE_VERSION, machine_header_fields, m,
                         err, err_size) < 0)
        return -1;
    if (expect_record(data, len, &pos, KVM_VM_STATE_NAME, &rec, err, err_size) < 0)
        return -1;
    l->vm = kvm_vm_state_parse(m, &rec, err, err_size);
    if (!l->vm)
        return -1;
    l->vcpus = calloc(m->spec.cpus, sizeof(*l->vcpus));
    l->devices = calloc(MACHINE_MAX_DEVICES, sizeof(*l->devices));
    if (!l->vcpus || !l->devices) {
        snprintf(err, err_size, "machine state: out of memory");
        return -1;
    }
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        char name[16];
        snprintf(name, sizeof(name), "cpu%u", i);
        if (expect_record(data, len, &pos, name, &rec, err, err_size) < 0)
            return -1;
        l->vcpus[i] = kvm_vcpu_state_parse(&m->vcpus[i], &rec, err, err_size);
        if (!l->vcpus[i])
            return -1;
    }
    bool found[MACHINE_MAX_DEVICES] = {false};
    int r;
    while ((r = snap_next_record(data, len, &pos, &rec, err, err_size)) == 1) {
        unsigned i = 0;
        struct device *d = device_named(m, rec.name, &i);
        if (!d) {
            snprintf(err, err_size, "%s (%s): this machine has no device of that name", rec.name,
                     rec.kind);
            return -1;
        }
        if (found[i]) {
            snprintf(err, err_size, "%s: the state has two records of it", rec.name);
            return -1;
        }
        if (!d->ops->kind || strcmp(rec.kind, d->ops->kind) != 0) {
            snprintf(err, err_size, "%s: state is for a %s, this device is a %s", rec.name,
                     rec.kind, d->ops->kind ? d->ops->kind : "device without state");
            return -1;
        }
        if (rec.version == 0 || rec.version > d->ops->state_version) {
            snprintf(err, err_size, "%s (%s): state version %u is not one this VMM reads (1 to %u)",
                     rec.name, rec.kind, rec.version, d->ops->state_version);
            return -1;
        }
        found[i] = true;
        l->devices[i] = rec;
    }
    if (r < 0)
        return -1;
    for (unsigned i = 0; i < m->device_count; i++)
        if (!found[i]) {
            snprintf(err, err_size, "%s: the state has no record of this device",
                     m->devices[i]->name);
            return -1;
        }
    return 0;
}

int machine_load_state(struct machine *m, const uint8_t *data, size_t len, char *err,
                       size_t err_size)
{
    if (!m->paused) {
        snprintf(err, err_size, "machine state: the machine is not paused");
        return -1;
    }
    struct machine_state_load l = {0};
    int r = check_state(m, data, len, &l, err, err_size);
    /* Nothing has changed so far; from here a failure leaves the machine
     * half loaded. The wired routes first, so lines reach the chips they
     * will reach when the vCPUs run. */
    if (r == 0 && apply_pending_irq_routing(m) < 0) {
        snprintf(err, err_size, "machine state: cannot install the interrupt routing");
        r = -1;
    }
    if (r == 0)
        r = kvm_vm_state_apply(m, l.vm, err, err_size);
    for (unsigned i = 0; r == 0 && i < m->spec.cpus; i++)
        r = kvm_vcpu_state_apply(&m->vcpus[i], l.vcpus[i], err, err_size);
    if (r == 0 && kvm_state_thaw(m) < 0) {
        snprintf(err, err_size, "%s: kvmclock: KVM_SET_CLOCK refused it", KVM_VM_STATE_NAME);
        r = -1;
    }
    for (unsigned i = 0; r == 0 && i < m->device_count; i++)
        r = device_load_state(m->devices[i], &l.devices[i], err, err_size);
    free_state_load(m, &l);
    return r;
}

/* ---- State dump ---- */

static void log_text_lines(const char *text)
{
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        log_info("%.*s", len, line);
        line += len + (end ? 1 : 0);
    }
}

static void dump_pic(struct machine *m, unsigned chip_id, const char *name)
{
    struct kvm_irqchip chip = {.chip_id = chip_id};
    if (ioctl(m->vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
        log_info("%s: KVM_GET_IRQCHIP: %s", name, strerror(errno));
        return;
    }
    const struct kvm_pic_state *p = &chip.chip.pic;
    log_info("%s: irr 0x%02x imr 0x%02x isr 0x%02x elcr 0x%02x base 0x%02x last_irr 0x%02x "
             "init_state %u",
             name, p->irr, p->imr, p->isr, p->elcr, p->irq_base, p->last_irr, p->init_state);
}

static void dump_ioapic(struct machine *m)
{
    struct kvm_irqchip chip = {.chip_id = KVM_IRQCHIP_IOAPIC};
    if (ioctl(m->vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
        log_info("ioapic: KVM_GET_IRQCHIP: %s", strerror(errno));
        return;
    }
    const struct kvm_ioapic_state *io = &chip.chip.ioapic;
    log_info("ioapic: irr 0x%06x (pins the devices assert are marked *)", io->irr);
    pthread_mutex_lock(&m->irq_lock);
    uint32_t asserted = 0;
    for (unsigned pin = 0; pin < IRQ_LINE_COUNT; pin++)
        if (m->irq_sources[pin])
            asserted |= 1u << pin;
    pthread_mutex_unlock(&m->irq_lock);
    for (unsigned pin = 0; pin < KVM_IOAPIC_NUM_PINS && pin < IRQ_LINE_COUNT; pin++) {
        uint64_t e = io->redirtbl[pin].bits;
        bool masked = e & (1u << 16);
        if (masked && !(asserted & (1u << pin)) && !(io->irr & (1u << pin)))
            continue;
        log_info("ioapic: pin %2u%s vector 0x%02llx %s %s%s%s dest 0x%02llx", pin,
                 asserted & (1u << pin) ? "*" : " ", (unsigned long long)(e & 0xff),
                 e & (1u << 15) ? "level" : "edge", masked ? "masked" : "unmasked",
                 e & (1u << 14) ? " remote-irr" : "", e & (1u << 12) ? " delivery-pending" : "",
                 (unsigned long long)(e >> 56));
    }
}

#define DUMP_ANSWER_WAIT_MS 1000

void machine_dump_state(struct machine *m)
{
    log_info("state dump: %u vCPUs, %u resets so far", m->spec.cpus, m->resets);
    bool waiting = false;
    for (unsigned i = 0; i < m->spec.cpus; i++)
        waiting |= vcpu_request_dump(&m->vcpus[i]);
    /* vCPUs answer at their next exit; the kick forces one. */
    for (unsigned ms = 0; waiting && ms < DUMP_ANSWER_WAIT_MS; ms += 10) {
        waiting = false;
        for (unsigned i = 0; i < m->spec.cpus; i++)
            waiting |= !vcpu_dump_answer(&m->vcpus[i]);
        if (waiting)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    for (unsigned i = 0; i < m->spec.cpus; i++) {
        const char *text = vcpu_dump_answer(&m->vcpus[i]);
        if (text) {
            log_text_lines(text);
        } else {
            char why[256];
            vcpu_describe_unanswered(&m->vcpus[i], why, sizeof(why));
            log_info("%s", why);
        }
    }
    if (m->vm_fd >= 0) {
        dump_pic(m, KVM_IRQCHIP_PIC_MASTER, "pic master");
        dump_pic(m, KVM_IRQCHIP_PIC_SLAVE, "pic slave");
        dump_ioapic(m);
    }
    for (unsigned i = 0; i < m->device_count; i++)
        if (m->devices[i]->ops->dump)
            m->devices[i]->ops->dump(m->devices[i]);
    log_info("state dump: end");
}

void machine_reset_devices(struct machine *m)
{
    /* Two passes: a power-on decode (the PM block at 0xB000) may lie where
     * another device's guest-placed BAR still is, and the bus refuses the
     * overlap; so all guest-placed decodes go first, whatever the order of
     * the inventory. */
    for (unsigned i = 0; i < m->device_count; i++)
        if (m->devices[i]->ops->drop_decodes)
            m->devices[i]->ops->drop_decodes(m->devices[i]);
    for (unsigned i = 0; i < m->device_count; i++)
        if (m->devices[i]->ops->reset)
            m->devices[i]->ops->reset(m->devices[i]);
}

int machine_reset(struct machine *m)
{
    machine_stop(m);
    machine_reset_devices(m);
    pthread_mutex_lock(&m->irq_lock);
    memset(m->irq_sources, 0, sizeof(m->irq_sources));
    /* Devices dropped their MSI routes in their reset; the new VM starts
     * with the wired routes only. */
    memset(m->msi_routes, 0, sizeof(m->msi_routes));
    m->msi_routes_used = 0;
    pthread_mutex_unlock(&m->irq_lock);
    destroy_vm(m);
    load_legacy_bios_alias(m);
    m->resets++;
    if (create_vm(m) < 0)
        return -1;
    return machine_start(m);
}

void machine_set_irq(struct machine *m, unsigned gsi, uint32_t source_bit, bool level)
{
    if (gsi >= IRQ_LINE_COUNT)
        return;
    pthread_mutex_lock(&m->irq_lock);
    uint32_t before = m->irq_sources[gsi];
    uint32_t after = level ? (before | source_bit) : (before & ~source_bit);
    m->irq_sources[gsi] = after;
    if ((before != 0) != (after != 0) && m->vm_fd >= 0) {
        struct kvm_irq_level line = {.irq = gsi, .level = after != 0};
        if (ioctl(m->vm_fd, KVM_IRQ_LINE, &line) < 0)
            log_error("KVM_IRQ_LINE %u: %s", gsi, strerror(errno));
    }
    pthread_mutex_unlock(&m->irq_lock);
}

/* ---- The machine's ends of device output lines. */

static void irq_target_set(void *opaque, bool level)
{
    const struct machine_irq_target *t = opaque;
    machine_set_irq(t->machine, t->gsi, t->source_bit, level);
}

static void irq_target_bank_set(void *opaque, unsigned gsi, bool level)
{
    const struct machine_irq_target *t = opaque;
    machine_set_irq(t->machine, gsi, t->source_bit, level);
}

/* The slot of source_bit; two users of one bit are a wiring bug. */
static struct machine_irq_target *irq_target(struct machine *m, unsigned gsi, uint32_t source_bit)
{
    if (source_bit == 0 || (source_bit & (source_bit - 1)) != 0) {
        log_crit("interrupt source 0x%x is not one bit", source_bit);
        abort();
    }
    struct machine_irq_target *t = &m->irq_targets[__builtin_ctz(source_bit)];
    if (t->machine) {
        log_crit("interrupt source 0x%x wired twice", source_bit);
        abort();
    }
    *t = (struct machine_irq_target){m, gsi, source_bit};
    return t;
}

struct irq_line machine_irq_line(struct machine *m, unsigned gsi, uint32_t source_bit)
{
    return (struct irq_line){irq_target_set, irq_target(m, gsi, source_bit)};
}

struct irq_bank machine_irq_bank(struct machine *m, uint32_t source_bit)
{
    return (struct irq_bank){irq_target_bank_set, irq_target(m, 0, source_bit)};
}

static void request_target_set(void *opaque, bool level)
{
    const struct machine_request_target *t = opaque;
    if (level)
        machine_request(t->machine, t->event);
}

struct irq_line machine_request_line(struct machine *m, enum machine_event event)
{
    struct machine_request_target *t = &m->request_targets[event];
    *t = (struct machine_request_target){m, event};
    return (struct irq_line){request_target_set, t};
}

static void pit_legacy_set(void *opaque, bool level)
{
    machine_set_pit_hpet_legacy(opaque, level);
}

struct irq_line machine_pit_legacy_line(struct machine *m)
{
    return (struct irq_line){pit_legacy_set, m};
}

void machine_signal_msi(struct machine *m, uint64_t address, uint32_t data)
{
    struct kvm_msi msi = {
        .address_lo = (uint32_t)address,
        .address_hi = (uint32_t)(address >> 32),
        .data = data,
    };
    /* A guest-programmed message: a bad one is the guest's problem, logged. */
    if (ioctl(m->vm_fd, KVM_SIGNAL_MSI, &msi) < 0) {
        static struct log_ratelimit rl;
        log_limited(&rl, LOG_WARNING, "MSI to 0x%llx data 0x%x not delivered: %s",
                    (unsigned long long)address, data, strerror(errno));
    }
}

void machine_destroy(struct machine *m)
{
    if (!m->initialized)
        return;
    if (m->vcpus) {
        machine_stop(m);
        destroy_vm(m);
    } else if (m->vm_fd >= 0) {
        close(m->vm_fd);
    }
    for (unsigned i = m->device_count; i-- > 0;)
        if (m->devices[i]->ops->destroy)
            m->devices[i]->ops->destroy(m->devices[i]);
    m->device_count = 0;
    free(m->vcpus);
    m->vcpus = NULL;
    free(m->supported_cpuid);
    m->supported_cpuid = NULL;
    free(m->cpuid);
    m->cpuid = NULL;
    if (m->lowmem)
        munmap(m->lowmem, m->lowmem_size);
    if (m->highmem)
        munmap(m->highmem, m->highmem_size);
    if (m->bootrom)
        munmap(m->bootrom, m->bootrom_size);
    m->lowmem = m->highmem = m->bootrom = NULL;
    vm_timer_destroy(&m->halt_probe);
    if (m->event_fd >= 0)
        close(m->event_fd);
    if (m->kvm_fd >= 0)
        close(m->kvm_fd);
    m->event_fd = m->kvm_fd = -1;
    bus_destroy(&m->pio);
    bus_destroy(&m->mmio);
    pthread_mutex_destroy(&m->irq_lock);
    m->initialized = false;
}
