/* propolis-standalone for Linux/KVM: reads one TOML config, builds the VM
 * it describes, serves COM1 on ./ttya and runs the guest once a console
 * client connects. The whole machine is wired in build_machine() below. */
#include <errno.h>
#include <getopt.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/virtio_net.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/log.h"
#include "common/sandbox.h"
#include "config/config.h"
#include "control/control.h"
#include "core/io_loop.h"
#include "core/instance.h"
#include "core/machine.h"
#include "devices/console.h"
#include "devices/debug_port.h"
#include "devices/hpet.h"
#include "devices/i440fx.h"
#include "devices/pc_layout.h"
#include "devices/piix3.h"
#include "devices/piix4_pm.h"
#include "devices/ps2.h"
#include "devices/pvpanic.h"
#include "devices/reset_ports.h"
#include "devices/rtc.h"
#include "devices/uart16550.h"
#include "firmware/acpi.h"
#include "firmware/fw_cfg.h"
#include "firmware/platform.h"
#include "block/block.h"
#include "nvme/nvme.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "snapshot/snapshot.h"
#include "net/mac.h"
#include "net/tap.h"
#include "net/vhost_net.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtio_vsock.h"

#define CONSOLE_PATH "./ttya"
#define DEBUG_OUT_PATH "./debug.out"
#define EXIT_FAILURE_CODE 1

/* A NIC's back end: its TAP, and the device its carrier is reported to. */
struct nic {
    struct tap tap;
    bool open;
    struct vhost_net vhost[TAP_MAX_QUEUES]; /* per queue pair, when vhost_pairs > 0 */
    unsigned vhost_pairs;
    struct virtio_device *vdev;
    struct io_watch link_watch;
};

struct vmm {
    struct config cfg;
    struct machine machine;
    struct io_loop loop;
    struct io_watch signal_watch, machine_event_watch;
    struct instance instance;
    struct console console;
    struct uart16550 com[4];
    struct debug_port debug_port;
    struct post_port post_port;
    struct pci_bus pci;
    bool pci_ready;
    struct i440fx host_bridge;
    struct piix3 piix3;
    struct piix4_pm pm;
    struct reset_ports reset_ports;
    struct rtc rtc;
    struct hpet hpet;
    struct ps2 ps2;
    struct pvpanic pvpanic;
    struct fw_cfg fw_cfg;
    struct platform_desc firmware_desc; /* what the fw_cfg tables were built from */
    struct log_ratelimit tables_log;    /* their rebuilds, which the guest can repeat */
    struct block_backend **backends;    /* one per [block_dev], in config order */
    struct nic *nics;                   /* one per [dev.*] (used by NICs), in config order */
    int signal_fd;
    bool snapshot_on_sigint;  /* -s */
    bool seccomp;             /* not --no-seccomp */
    struct snapshot *restore; /* -r: the snapshot the machine is loaded from */
    bool restored;            /* loaded and paused: a console client resumes it */
    bool started;
    uint64_t started_ns;           /* vm_clock_ns() when the guest started or resumed from -r */
    struct control_server control; /* --control */
    bool halting;
    bool done;
    int exit_code;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: propolis-standalone [--log-level LEVEL] [-s|--snapshot] [--control PATH] "
                 "[--no-seccomp] CONFIG.toml\n"
                 "       propolis-standalone [--log-level LEVEL] [--control PATH] [--no-seccomp] "
                 "-r|--restore SNAPSHOT\n"
                 "       propolis-standalone ctl PATH COMMAND [ARG]\n"
                 "LEVEL: critical, error, warning, info (default), debug, trace;\n"
                 "the PROPOLIS_LOG environment variable sets the default.\n");
}

/* What the config names on the host, checked before anything is touched so
 * that a bad value is reported at its place in the file. machine_create()
 * checks the same again (the file may change in between). */
static int check_host_resources(const struct config *cfg)
{
    const struct config_main *m = &cfg->main;
    struct stat st;
    int fd = open(m->bootrom, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        config_report(cfg, m->bootrom_pos, "main.bootrom", "cannot open %s: %s", m->bootrom,
                      strerror(errno));
        return -1;
    }
    int r = fstat(fd, &st);
    close(fd);
    if (r < 0 || !S_ISREG(st.st_mode)) {
        config_report(cfg, m->bootrom_pos, "main.bootrom", "%s is not a regular file", m->bootrom);
        return -1;
    }
    if (!machine_bootrom_size_ok((uint64_t)st.st_size)) {
        config_report(cfg, m->bootrom_pos, "main.bootrom",
                      "%s is %llu bytes; a bootrom is a non-zero multiple of 4 KiB up to %llu MiB",
                      m->bootrom, (unsigned long long)st.st_size,
                      (unsigned long long)(BOOTROM_MAX_SIZE / MIB));
        return -1;
    }
    uint64_t host = machine_host_memory_bytes();
    if (host && m->memory_mib > host / MIB) {
        config_report(cfg, m->memory_pos, "main.memory",
                      "%llu MiB is more than this host has (%llu MiB)",
                      (unsigned long long)m->memory_mib, (unsigned long long)(host / MIB));
        return -1;
    }
    return 0;
}

static int add_pio_device(struct vmm *vmm, struct device *dev, uint16_t port, uint16_t len,
                          const struct io_ops *ops)
{
    if (!bus_register(&vmm->machine.pio, port, len, ops, dev, dev->name))
        return -1;
    return machine_add_device(&vmm->machine, dev);
}

/* i440FX host bridge, PIIX3 ISA bridge, PIIX4 power management, reset ports. */
static int build_chipset(struct vmm *vmm)
{
    struct machine *m = &vmm->machine;
    pci_bus_init(&vmm->pci, &m->pio, &m->mmio);
    vmm->pci_ready = true;
    i440fx_init(&vmm->host_bridge, (struct i440fx_hooks){0});
    struct irq_bank pirq_out[PC_PIRQ_COUNT];
    for (unsigned n = 0; n < PC_PIRQ_COUNT; n++)
        pirq_out[n] = machine_irq_bank(m, PC_IRQ_SOURCE_PIRQ(n));
    piix3_init(&vmm->piix3, pirq_out);
    if (piix4_pm_init(&vmm->pm, &m->clock, machine_irq_line(m, PC_SCI_IRQ, PC_IRQ_SOURCE_SCI),
                      machine_request_line(m, MACHINE_HALT), m->loop) < 0)
        return -1;
    reset_ports_init(&vmm->reset_ports, machine_request_line(m, MACHINE_RESET));
    if (i440fx_attach(&vmm->host_bridge, &vmm->pci) < 0 ||
        piix3_attach(&vmm->piix3, &vmm->pci) < 0 || piix4_pm_attach(&vmm->pm, &vmm->pci) < 0)
        return -1;
    pci_bus_set_cf9_handler(&vmm->pci, &reset_ports_cf9_io_ops, &vmm->reset_ports);
    if (add_pio_device(vmm, &vmm->reset_ports.dev, PC_FAST_A20_PORT, 1,
                       &reset_ports_port92_io_ops) < 0 ||
        machine_add_device(m, &vmm->host_bridge.pci.dev) < 0 ||
        machine_add_device(m, &vmm->piix3.pci.dev) < 0 ||
        machine_add_device(m, &vmm->pm.pci.dev) < 0)
        return -1;
    return 0;
}

/* RTC/CMOS, HPET and the PS/2 controller. */
static int build_isa_devices(struct vmm *vmm)
{
    struct machine *m = &vmm->machine;
    struct irq_bank hpet_irq[HPET_SOURCE_COUNT];
    for (unsigned n = 0; n < HPET_SOURCE_COUNT; n++)
        hpet_irq[n] = machine_irq_bank(m, PC_IRQ_SOURCE_HPET(n));
    if (hpet_init(&vmm->hpet, "hpet", &m->clock, m->loop, HPET_ROUTE_CAP_DEFAULT, hpet_irq,
                  machine_pit_legacy_line(m)) < 0 ||
        !bus_register(&m->mmio, HPET_MMIO_BASE, HPET_MMIO_SIZE, &hpet_io_ops, &vmm->hpet, "hpet") ||
        machine_add_device(m, &vmm->hpet.dev) < 0)
        return -1;
    /* The RTC's interrupt passes through the HPET, which owns IRQ 8 in
     * legacy replacement mode. */
    if (rtc_init(&vmm->rtc, "rtc", &m->clock, m->loop, hpet_rtc_input(&vmm->hpet)) < 0 ||
        add_pio_device(vmm, &vmm->rtc.dev, RTC_PORT_BASE, RTC_PORT_COUNT, &rtc_io_ops) < 0)
        return -1;
    rtc_set_memory_layout(&vmm->rtc, m->lowmem_size, m->highmem_size, m->spec.cpus);

    ps2_init(&vmm->ps2, "ps2", machine_irq_line(m, PS2_KBD_IRQ, PC_IRQ_SOURCE_PS2_KBD),
             machine_irq_line(m, PS2_AUX_IRQ, PC_IRQ_SOURCE_PS2_AUX),
             machine_request_line(m, MACHINE_RESET));
    if (add_pio_device(vmm, &vmm->ps2.dev, PS2_DATA_PORT, 1, &ps2_data_io_ops) < 0 ||
        !bus_register(&m->pio, PS2_CTRL_PORT, 1, &ps2_ctrl_io_ops, &vmm->ps2, "ps2"))
        return -1;
    return 0;
}

/* One back end per [block_dev]; devices share them by index. */
static int open_block_backends(struct vmm *vmm)
{
    size_t n = vmm->cfg.block_dev_count;
    vmm->backends = calloc(n ? n : 1, sizeof(*vmm->backends));
    if (!vmm->backends)
        return -1;
    for (size_t i = 0; i < n; i++) {
        vmm->backends[i] = block_backend_open(&vmm->cfg.block_devs[i]);
        if (!vmm->backends[i])
            return -1;
    }
    return 0;
}

static void close_block_backends(struct vmm *vmm)
{
    for (size_t i = 0; vmm->backends && i < vmm->cfg.block_dev_count; i++)
        if (vmm->backends[i])
            block_backend_destroy(vmm->backends[i]);
    free(vmm->backends);
    vmm->backends = NULL;
}

/* The TAP of every NIC, before anything is built: a `vnic` that cannot be
 * had is a config error at its key. */
static int open_net_backends(struct vmm *vmm)
{
    size_t n = vmm->cfg.device_count;
    vmm->nics = calloc(n ? n : 1, sizeof(*vmm->nics));
    if (!vmm->nics)
        return -1;
    unsigned pairs =
        vmm->cfg.main.cpus < VIRTIO_NET_MAX_PAIRS ? vmm->cfg.main.cpus : VIRTIO_NET_MAX_PAIRS;
    for (size_t i = 0; i < n; i++) {
        const struct config_device *d = &vmm->cfg.devices[i];
        struct nic *nic = &vmm->nics[i];
        io_watch_init(&nic->link_watch);
        if (d->driver != CONFIG_DRIVER_VIRTIO_VIONA)
            continue;
        char err[256], key[128];
        int rc = tap_open(d->viona.vnic, pairs, &nic->tap, err, sizeof(err));
        if (rc < 0 && pairs > 1) {
            /* A TAP made without multi_queue still serves one queue pair. */
            char multi_err[256];
            snprintf(multi_err, sizeof(multi_err), "%s", err);
            rc = tap_open(d->viona.vnic, 1, &nic->tap, err, sizeof(err));
            if (rc == 0)
                log_info("dev.%s: %s; using one queue pair", d->name, multi_err);
        }
        if (rc < 0) {
            snprintf(key, sizeof(key), "dev.%s.vnic", d->name);
            config_report(&vmm->cfg, d->viona.vnic_pos, key, "%s", err);
            return -1;
        }
        nic->open = true;
        log_info("dev.%s: %s TAP %s (%u queue pair%s)", d->name,
                 nic->tap.created ? "created" : "opened existing", nic->tap.name, nic->tap.queues,
                 nic->tap.queues == 1 ? "" : "s");
    }
    return 0;
}

static void close_net_backends(struct vmm *vmm)
{
    for (size_t i = 0; vmm->nics && i < vmm->cfg.device_count; i++) {
        io_loop_unwatch(&vmm->loop, &vmm->nics[i].link_watch);
        for (unsigned k = 0; k < vmm->nics[i].vhost_pairs; k++)
            vhost_net_close(&vmm->nics[i].vhost[k]);
        if (vmm->nics[i].open)
            tap_close(&vmm->nics[i].tap);
    }
    free(vmm->nics);
    vmm->nics = NULL;
}

static int nic_set_vnet_hdr_len(void *opaque, unsigned len)
{
    struct nic *nic = opaque;
    return tap_set_vnet_hdr_len(&nic->tap, len);
}

/* What the guest takes on receive is what the TAP may hand us. */
static int nic_set_offloads(void *opaque, uint64_t features)
{
    struct nic *nic = opaque;
    unsigned flags = 0;
    if (features & (1ull << VIRTIO_NET_F_GUEST_CSUM)) {
        flags |= TUN_F_CSUM;
        if (features & (1ull << VIRTIO_NET_F_GUEST_TSO4))
            flags |= TUN_F_TSO4;
        if (features & (1ull << VIRTIO_NET_F_GUEST_TSO6))
            flags |= TUN_F_TSO6;
        if ((flags & (TUN_F_TSO4 | TUN_F_TSO6)) && (features & (1ull << VIRTIO_NET_F_GUEST_ECN)))
            flags |= TUN_F_TSO_ECN;
    }
    return tap_set_offload(&nic->tap, flags);
}

static int nic_enable_queue_pairs(void *opaque, unsigned pairs)
{
    struct nic *nic = opaque;
    return tap_enable_queues(&nic->tap, pairs);
}

static int nic_set_rx_filter(void *opaque, const uint8_t (*addrs)[6], unsigned count,
                             bool all_multicast)
{
    struct nic *nic = opaque;
    return tap_set_rx_filter(&nic->tap, addrs, count, all_multicast);
}

static const struct virtio_net_backend_ops nic_backend_ops = {
    .set_vnet_hdr_len = nic_set_vnet_hdr_len,
    .set_offloads = nic_set_offloads,
    .enable_queue_pairs = nic_enable_queue_pairs,
    .set_rx_filter = nic_set_rx_filter,
};

static int nic_vhost_set_features(void *opaque, unsigned pair, uint64_t features)
{
    struct nic *nic = opaque;
    return vhost_net_set_features(&nic->vhost[pair], features);
}

static int nic_vhost_start_ring(void *opaque, unsigned pair, unsigned ring,
                                const struct virtio_net_ring *r)
{
    struct nic *nic = opaque;
    return vhost_net_start_ring(&nic->vhost[pair], ring,
                                &(struct vhost_net_ring){
                                    .size = r->size,
                                    .last_avail = r->last_avail,
                                    .desc = r->desc,
                                    .avail = r->avail,
                                    .used = r->used,
                                    .kick_fd = r->kick_fd,
                                    .call_fd = r->call_fd,
                                    .tap_fd = nic->tap.queue_fds[pair],
                                });
}

static int nic_vhost_stop_ring(void *opaque, unsigned pair, unsigned ring, uint16_t *last_avail)
{
    struct nic *nic = opaque;
    return vhost_net_stop_ring(&nic->vhost[pair], ring, last_avail);
}

static int nic_vhost_set_call(void *opaque, unsigned pair, unsigned ring, int call_fd)
{
    struct nic *nic = opaque;
    return vhost_net_set_call(&nic->vhost[pair], ring, call_fd);
}

static const struct virtio_net_vhost_ops nic_vhost_ops = {
    .set_features = nic_vhost_set_features,
    .start_ring = nic_vhost_start_ring,
    .stop_ring = nic_vhost_stop_ring,
    .set_call = nic_vhost_set_call,
};

/* One vhost-net instance per queue pair, or none (the reason in why). */
static bool nic_open_vhost(struct nic *nic, const struct guest_mem *mem, char *why, size_t cap)
{
    for (unsigned k = 0; k < nic->tap.queues; k++) {
        if (vhost_net_open(&nic->vhost[k], mem, why, cap) < 0) {
            while (k > 0)
                vhost_net_close(&nic->vhost[--k]);
            return false;
        }
    }
    nic->vhost_pairs = nic->tap.queues;
    return true;
}

/* The TAP's carrier is the guest's link status. */
static void nic_link_event(void *opaque, uint32_t events)
{
    struct nic *nic = opaque;
    if (tap_link_event(&nic->tap)) {
        log_info("%s: link %s", nic->tap.name, nic->tap.link_up ? "up" : "down");
        virtio_net_set_link(nic->vdev, nic->tap.link_up);
    }
}

/* Hands a PCI function to the machine (which then owns it) and the bus. */
static int add_pci_function(struct vmm *vmm, struct pci_device *pdev, const struct config_bdf *bdf)
{
    if (machine_add_device(&vmm->machine, &pdev->dev) < 0) {
        pdev->dev.ops->destroy(&pdev->dev);
        return -1;
    }
    return pci_bus_add(&vmm->pci, pdev, PCI_DEVFN(bdf->dev, bdf->func));
}

/* ---- The [dev.*] drivers: a build function each, and one table ---- */

static int build_virtio_block(struct vmm *vmm, const struct config_device *d)
{
    struct machine *m = &vmm->machine;
    unsigned queues =
        m->spec.cpus < VIRTIO_BLK_DEFAULT_QUEUES ? m->spec.cpus : VIRTIO_BLK_DEFAULT_QUEUES;
    struct virtio_device *blk = virtio_blk_create(&(struct virtio_blk_params){
        .name = d->name,
        .backend = vmm->backends[d->blk.block_dev_index],
        .num_queues = queues,
        .mem = &m->mem,
    });
    struct virtio_pci *vp = blk ? virtio_pci_create(blk,
                                                    &(struct virtio_pci_params){
                                                        .machine = m,
                                                        .msix_sink = msix_machine_sink(m),
                                                    })
                                : NULL;
    return vp ? add_pci_function(vmm, &vp->pci, &d->pci) : -1;
}

static int build_virtio_net(struct vmm *vmm, const struct config_device *d)
{
    struct machine *m = &vmm->machine;
    struct nic *nic = &vmm->nics[d - vmm->cfg.devices];
    struct virtio_net_params params = {
        .name = d->name,
        .max_queue_pairs = nic->tap.queues,
        .fds = nic->tap.queue_fds,
        .rx_queue_size = (uint16_t)d->viona.rx_queue_size,
        .tx_queue_size = (uint16_t)d->viona.tx_queue_size,
        .backend = &nic_backend_ops,
        .backend_opaque = nic,
        .mem = &m->mem,
    };
    char why[160] = "vhost-net = false";
    if (d->viona.vhost_net && nic_open_vhost(nic, &m->mem, why, sizeof(why))) {
        params.vhost = &nic_vhost_ops;
        params.vhost_opaque = nic;
        params.vhost_features = nic->vhost[0].features;
    }
    if (d->viona.has_mac)
        memcpy(params.mac, d->viona.mac, sizeof(params.mac));
    else
        net_derive_mac(vmm->cfg.main.name, d->name, params.mac);
    nic->vdev = virtio_net_create(&params);
    if (!nic->vdev)
        return -1;
    virtio_net_set_link(nic->vdev, tap_carrier(&nic->tap));
    struct virtio_pci *vp = virtio_pci_create(nic->vdev, &(struct virtio_pci_params){
                                                             .machine = m,
                                                             .msix_sink = msix_machine_sink(m),
                                                         });
    if (!vp || add_pci_function(vmm, &vp->pci, &d->pci) < 0)
        return -1;
    if (io_loop_watch(&vmm->loop, &nic->link_watch, nic->tap.link_fd, EPOLLIN, nic_link_event,
                      nic) < 0)
        return -1;
    /* viona's knobs for loaning guest pages and leaving header room: a
     * TAP write always copies, and the kernel sizes its own headroom. */
    if (d->viona.has_tx_copy_data || d->viona.has_tx_header_pad)
        log_info("dev.%s: tx_copy_data and tx_header_pad have no effect on Linux (a TAP write "
                 "copies the frame; the kernel reserves its own headroom)",
                 d->name);
    const uint8_t *mac = params.mac;
    char path[200];
    if (params.vhost)
        snprintf(path, sizeof(path), "vhost-net data path");
    else
        snprintf(path, sizeof(path), "userspace data path (%s)", why);
    log_info("dev.%s: virtio-net on TAP %s, MAC %02x:%02x:%02x:%02x:%02x:%02x%s, %s", d->name,
             nic->tap.name, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
             d->viona.has_mac ? "" : " (derived)", path);
    return 0;
}

static int build_nvme(struct vmm *vmm, const struct config_device *d)
{
    struct machine *m = &vmm->machine;
    struct nvme_ctrl *nvme = nvme_create(&(struct nvme_params){
        .name = d->name,
        .backend = vmm->backends[d->blk.block_dev_index],
        .mem = &m->mem,
        .msix_sink = msix_machine_sink(m),
        .clock = &m->clock,
    });
    return nvme ? add_pci_function(vmm, nvme_pci_device(nvme), &d->pci) : -1;
}

/* The ISA pvpanic port (the config allows one pvpanic device). */
static int build_pvpanic(struct vmm *vmm, const struct config_device *d)
{
    pvpanic_init(&vmm->pvpanic, d->name);
    log_info("%s: QEMU pvpanic at I/O port 0x%x (ACPI QEMU0001)", d->name, PVPANIC_PORT);
    return add_pio_device(vmm, &vmm->pvpanic.dev, PVPANIC_PORT, 1, &pvpanic_io_ops);
}

/* pci-virtio-socket: the guest's vsock connections proxied by this
 * process to the mapped host addresses, and host clients' into the guest
 * through uds_path. */
static int build_virtio_socket(struct vmm *vmm, const struct config_device *d)
{
    size_t n = d->vsock.port_mapping_count;
    struct virtio_vsock_mapping *maps = calloc(n + 1, sizeof(*maps));
    char list[512] = "";
    size_t used = 0;
    if (!maps) {
        log_error("dev.%s: out of memory", d->name);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct config_port_mapping *pm = &d->vsock.port_mappings[i];
        maps[i].port = pm->port;
        if (pm->unix_path) {
            struct sockaddr_un *un = (struct sockaddr_un *)&maps[i].addr;
            un->sun_family = AF_UNIX;
            snprintf(un->sun_path, sizeof(un->sun_path), "%s", pm->unix_path);
            maps[i].addr_len = sizeof(*un);
        } else {
            memcpy(&maps[i].addr, &pm->addr.u, pm->addr.len);
            maps[i].addr_len = pm->addr.len;
        }
        if (used < sizeof(list))
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%u -> %s%s",
                                     i ? ", " : "", pm->port, pm->unix_path ? "unix:" : "",
                                     pm->unix_path ? pm->unix_path : pm->addr.text);
    }
    struct virtio_device *vdev = virtio_vsock_create(&(struct virtio_vsock_params){
        .name = d->name,
        .guest_cid = d->vsock.guest_cid,
        .mappings = maps,
        .mapping_count = n,
        .uds_path = d->vsock.uds_path,
        .mem = &vmm->machine.mem,
    });
    free(maps);
    if (!vdev)
        return -1;
    struct virtio_pci *vp =
        virtio_pci_create(vdev, &(struct virtio_pci_params){
                                    .machine = &vmm->machine,
                                    .msix_sink = msix_machine_sink(&vmm->machine),
                                });
    if (!vp || add_pci_function(vmm, &vp->pci, &d->pci) < 0)
        return -1;
    log_info("dev.%s: virtio-vsock, guest CID %llu, port mappings: %s; host connections: %s",
             d->name, (unsigned long long)d->vsock.guest_cid, n ? list : "none",
             d->vsock.uds_path ? d->vsock.uds_path : "none (no uds_path)");
    return 0;
}

/* One row per [dev.*] driver. A new device is its own file, its row here,
 * and its tests. */
struct driver {
    enum config_driver driver;
    /* Builds the device and adds it to the machine; NULL: the driver is
     * refused as not yet supported. */
    int (*build)(struct vmm *vmm, const struct config_device *d);
    bool pci; /* a PCI function at its pci-path (else: no pci-path allowed) */
    enum boot_device_kind boot_kind; /* in main.boot_order */
};

static const struct driver drivers[] = {
    {CONFIG_DRIVER_VIRTIO_BLOCK, build_virtio_block, true, BOOT_DEVICE_VIRTIO_BLOCK},
    {CONFIG_DRIVER_NVME, build_nvme, true, BOOT_DEVICE_NVME},
    {CONFIG_DRIVER_VIRTIO_VIONA, build_virtio_net, true, BOOT_DEVICE_NIC},
    {CONFIG_DRIVER_VIRTIO_SOCKET, build_virtio_socket, true, BOOT_DEVICE_PCI},
    {CONFIG_DRIVER_QEMU_PVPANIC, build_pvpanic, false, BOOT_DEVICE_NONE},
};

static const struct driver *driver_of(enum config_driver driver)
{
    static const struct driver none = {.boot_kind = BOOT_DEVICE_NONE};
    for (size_t i = 0; i < ARRAY_LEN(drivers); i++)
        if (drivers[i].driver == driver)
            return &drivers[i];
    return &none;
}

static enum boot_device_kind driver_boot_kind(enum config_driver driver)
{
    return driver_of(driver)->boot_kind;
}

/* The [dev.*] devices, in config order. */
static int build_configured_devices(struct vmm *vmm)
{
    for (size_t i = 0; i < vmm->cfg.device_count; i++) {
        const struct config_device *d = &vmm->cfg.devices[i];
        if (driver_of(d->driver)->build(vmm, d) < 0)
            return -1;
    }
    return 0;
}

/* Features later work implements are refused by name rather than ignored. */
static int refuse_unsupported(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->device_count; i++) {
        const struct config_device *dev = &cfg->devices[i];
        const struct driver *drv = driver_of(dev->driver);
        char key[128];
        if (!drv->build) {
            snprintf(key, sizeof(key), "dev.%s", dev->name);
            config_report(cfg, (struct config_pos){dev->line, dev->column}, key,
                          "driver \"%s\" is not yet supported", config_driver_name(dev->driver));
            return -1;
        }
        if (dev->has_pci && !drv->pci) {
            /* qemu-pvpanic: the config layer asks for a pci-path unless enable_isa is set. */
            snprintf(key, sizeof(key), "dev.%s.pci-path", dev->name);
            config_report(cfg, dev->pci_pos, key,
                          "driver \"%s\" has no PCI form here; set enable_isa = true (I/O port "
                          "0x505) instead of a pci-path",
                          config_driver_name(dev->driver));
            return -1;
        }
        if (dev->has_pci && dev->pci.bus != 0) {
            snprintf(key, sizeof(key), "dev.%s.pci-path", dev->name);
            config_report(cfg, dev->pci_pos, key, "only PCI bus 0 is supported");
            return -1;
        }
    }
    return 0;
}

/* CPUID as vCPU 0 sees it (leaf, subleaf 0), for SMBIOS: the same table
 * the vCPUs get (core/cpuid.h). */
static void guest_cpuid(const struct machine *m, uint32_t leaf, uint32_t out[4])
{
    memset(out, 0, 4 * sizeof(out[0]));
    struct cpuid_table *t = malloc(sizeof(*t));
    if (t && cpuid_specialize(m->cpuid, m->spec.cpus, 0, t) == 0)
        cpuid_lookup(t, leaf, 0, out);
    free(t);
}

/* SeaBIOS moves the PM block (to 0x600 when it finds a table loader)
 * before it reads the ACPI tables, so the FADT is built again for where
 * the block is when the firmware selects the tables, as QEMU's are. */
static void refresh_acpi_tables(void *opaque, uint8_t *tables, uint32_t size)
{
    struct vmm *vmm = opaque;
    struct platform_desc *desc = &vmm->firmware_desc;
    uint16_t base = piix4_pm_block_base(&vmm->pm);
    if (base == 0 || base == desc->pm_base)
        return;
    uint16_t built = desc->pm_base;
    desc->pm_base = base;
    if (acpi_rebuild_tables(desc, tables, size) < 0) {
        desc->pm_base = built;
        return;
    }
    log_limited(&vmm->tables_log, LOG_DEBUG,
                "ACPI tables: PM block at 0x%04x, where the firmware placed it", base);
}

/* fw_cfg with the generated ACPI tables, SMBIOS, e820, bootorder, ramfb. */
static int build_firmware_interface(struct vmm *vmm)
{
    struct machine *m = &vmm->machine;
    struct platform_desc desc;
    platform_desc_defaults(&desc, m->spec.cpus, m->lowmem_size, m->highmem_size);
    desc.bootrom_size = m->bootrom_size;
    uint32_t leaf0[4], leaf1[4], brand[3][4], addr_sizes[4];
    guest_cpuid(m, 0, leaf0);
    guest_cpuid(m, 1, leaf1);
    for (unsigned i = 0; i < 3; i++)
        guest_cpuid(m, 0x80000002u + i, brand[i]);
    platform_desc_set_cpuid(&desc, leaf0, leaf1, (const uint32_t(*)[4])brand);
    guest_cpuid(m, 0x80000008u, addr_sizes);
    platform_desc_set_phys_bits(&desc, addr_sizes[0] & 0xff);
    if (platform_desc_from_config(&desc, &vmm->cfg, driver_boot_kind) < 0 ||
        fw_cfg_init(&vmm->fw_cfg, &m->mem) < 0)
        return -1;
    if (machine_add_device(m, &vmm->fw_cfg.dev) < 0) {
        vmm->fw_cfg.dev.ops->destroy(&vmm->fw_cfg.dev);
        return -1;
    }
    vmm->firmware_desc = desc;
    if (fw_cfg_build(&vmm->fw_cfg, &desc) < 0 ||
        fw_cfg_set_refresh(&vmm->fw_cfg, ACPI_TABLES_FILE, refresh_acpi_tables, vmm) < 0 ||
        !bus_register(&m->pio, FW_CFG_IO_BASE, FW_CFG_IO_COUNT, &fw_cfg_io_ops, &vmm->fw_cfg,
                      "fw_cfg") ||
        !bus_register(&m->pio, FW_CFG_DMA_BASE, FW_CFG_DMA_COUNT, &fw_cfg_dma_ops, &vmm->fw_cfg,
                      "fw_cfg-dma"))
        return -1;
    return 0;
}

/* The fixed PC devices every VM has, then the configured ones. */
static int build_machine(struct vmm *vmm)
{
    if (build_chipset(vmm) < 0 || build_isa_devices(vmm) < 0 || build_configured_devices(vmm) < 0)
        return -1;
    static const struct {
        const char *name;
        uint16_t port;
        uint8_t irq;
    } com_ports[4] = {
        {"com1", 0x3f8, 4},
        {"com2", 0x2f8, 3},
        {"com3", 0x3e8, 4},
        {"com4", 0x2e8, 3},
    };
    for (unsigned i = 0; i < 4; i++) {
        /* COM1 is the console; COM2-COM4 accept and discard. */
        struct uart_backend backend = {0};
        if (i == 0)
            backend = console_uart_backend(&vmm->console);
        uart16550_init(&vmm->com[i], com_ports[i].name, backend,
                       machine_irq_line(&vmm->machine, com_ports[i].irq, PC_IRQ_SOURCE_COM(i)));
        if (add_pio_device(vmm, &vmm->com[i].dev, com_ports[i].port, UART_PORT_COUNT,
                           &uart16550_io_ops) < 0)
            return -1;
    }
    console_attach_uart(&vmm->console, &vmm->com[0]);

    if (debug_port_init(&vmm->debug_port, DEBUG_OUT_PATH) < 0 ||
        add_pio_device(vmm, &vmm->debug_port.dev, DEBUG_PORT_ADDR, 1, &debug_port_io_ops) < 0)
        return -1;
    post_port_init(&vmm->post_port);
    if (add_pio_device(vmm, &vmm->post_port.dev, POST_PORT_ADDR, 1, &post_port_io_ops) < 0)
        return -1;
    return build_firmware_interface(vmm);
}

static void finish(struct vmm *vmm, int code)
{
    vmm->done = true;
    vmm->exit_code = code;
}

static void on_console_connect(void *opaque)
{
    struct vmm *vmm = opaque;
    if (vmm->started || vmm->halting)
        return;
    if (vmm->restored) {
        char err[512];
        log_info("resuming VM %s from its snapshot", vmm->cfg.main.name);
        if (snapshot_catch_up(&vmm->machine, snapshot_saved_realtime_ns(vmm->restore), err,
                              sizeof(err)) < 0 ||
            machine_resume(&vmm->machine) < 0) {
            log_error("snapshot: cannot resume: %s", err);
            finish(vmm, EXIT_FAILURE_CODE);
            return;
        }
        vmm->started = true;
        vmm->started_ns = vm_clock_ns();
        return;
    }
    log_info("starting VM %s", vmm->cfg.main.name);
    if (machine_start(&vmm->machine) < 0) {
        finish(vmm, EXIT_FAILURE_CODE);
        return;
    }
    vmm->started = true;
    vmm->started_ns = vm_clock_ns();
}

/* -s and Ctrl-C: pause, write NAME-<unix-ms>.tar, exit as a halt does. */
static void save_snapshot(struct vmm *vmm)
{
    char err[512], path[512];
    log_info("received SIGINT: pausing VM %s to save a snapshot", vmm->cfg.main.name);
    /* It may be paused already (by the control socket). */
    if ((!vmm->machine.paused && machine_pause(&vmm->machine, err, sizeof(err)) < 0) ||
        snapshot_save(&vmm->machine, &vmm->cfg, vmm->backends, path, sizeof(path), err,
                      sizeof(err)) < 0) {
        log_error("snapshot not saved: %s", err);
        finish(vmm, EXIT_FAILURE_CODE);
        return;
    }
    log_info("VM halted after its snapshot: exiting with exit_on_halt = %d",
             vmm->cfg.main.exit_on_halt);
    finish(vmm, vmm->cfg.main.exit_on_halt);
}

/* ---- The control socket's commands (control/control.h), main thread ---- */

static const char *vm_state(const struct vmm *vmm)
{
    if (vmm->halting || vmm->done)
        return "halting";
    if (!vmm->started)
        return "waiting"; /* for a console client */
    return vmm->machine.paused ? "paused" : "running";
}

static json_t *status_answer(struct vmm *vmm)
{
    struct machine *m = &vmm->machine;
    struct control_device_info devices[MACHINE_MAX_DEVICES];
    for (unsigned i = 0; i < m->device_count; i++)
        devices[i] = (struct control_device_info){m->devices[i]->name, m->devices[i]->ops->kind};
    bool pvpanic = vmm->pvpanic.dev.ops != NULL;
    struct control_status st = {
        .name = vmm->cfg.main.name,
        .state = vm_state(vmm),
        .uptime_ms = vmm->started ? (vm_clock_ns() - vmm->started_ns) / 1000000 : 0,
        .vcpus = m->spec.cpus,
        .memory_mib = vmm->cfg.main.memory_mib,
        .resets = m->resets,
        .devices = devices,
        .device_count = m->device_count,
        .has_pvpanic = pvpanic,
        .panics = pvpanic ? pvpanic_panic_count(&vmm->pvpanic) : 0,
        .crash_loads = pvpanic ? pvpanic_crash_loaded_count(&vmm->pvpanic) : 0,
    };
    return control_status_answer(&st);
}

/* A machine that cannot run again after a pause ends the VMM. */
static json_t *control_resume_failed(struct vmm *vmm)
{
    log_crit("control: the VM could not be resumed");
    finish(vmm, EXIT_FAILURE_CODE);
    return control_error("the VM could not be resumed; the VMM exits");
}

/* snapshot: pauses a running VM, saves it and lets it run on. */
static json_t *control_snapshot(struct vmm *vmm, const char *to)
{
    struct machine *m = &vmm->machine;
    char err[1024], path[512];
    bool was_paused = m->paused;
    if (!was_paused && machine_pause(m, err, sizeof(err)) < 0)
        return control_error("snapshot not taken: %s", err);
    int r = to ? snapshot_save_to(m, &vmm->cfg, vmm->backends, to, err, sizeof(err))
               : snapshot_save(m, &vmm->cfg, vmm->backends, path, sizeof(path), err, sizeof(err));
    if (!was_paused && machine_resume(m) < 0)
        return control_resume_failed(vmm);
    if (r < 0)
        return control_error("snapshot not taken: %s", err);
    json_t *a = control_ok();
    if (a)
        json_object_set_new(a, "path", json_string(to ? to : path));
    return a;
}

static json_t *on_control(void *opaque, const struct control_request *req)
{
    struct vmm *vmm = opaque;
    struct machine *m = &vmm->machine;
    char err[512];
    if (req->cmd == CONTROL_STATUS)
        return status_answer(vmm);
    if (vmm->halting || vmm->done)
        return control_error("the VM is halting");
    if (req->cmd == CONTROL_HALT) {
        log_info("control: halting the VM");
        vmm->halting = true;
        if (vmm->started)
            machine_request(m, MACHINE_HALT); /* a paused VM halts as it is */
        else
            finish(vmm, vmm->cfg.main.exit_on_halt);
        json_t *a = control_ok();
        if (a)
            json_object_set_new(a, "exit_code", json_integer(vmm->cfg.main.exit_on_halt));
        return a;
    }
    if (!vmm->started)
        return control_error("the VM has not started: it waits for a console client on %s",
                             CONSOLE_PATH);
    switch (req->cmd) {
    case CONTROL_PAUSE:
        if (machine_pause(m, err, sizeof(err)) < 0)
            return control_error("not paused: %s", err);
        log_info("control: VM paused");
        return control_ok();
    case CONTROL_RESUME:
        if (!m->paused)
            return control_error("the VM is not paused");
        if (machine_resume(m) < 0)
            return control_resume_failed(vmm);
        log_info("control: VM resumed");
        return control_ok();
    case CONTROL_SNAPSHOT:
        return control_snapshot(vmm, req->path);
    case CONTROL_RESET:
        log_info("control: resetting the VM");
        /* The main loop resets it; a paused VM's devices resume first and
         * its vCPUs stay stopped for that. */
        machine_request(m, MACHINE_RESET);
        if (m->paused && machine_resume(m) < 0)
            return control_resume_failed(vmm);
        return control_ok();
    case CONTROL_STATUS:
    case CONTROL_HALT:
        break;
    }
    return control_error("command %s not handled", control_cmd_name(req->cmd));
}

static void on_signal(void *opaque, uint32_t events)
{
    struct vmm *vmm = opaque;
    struct signalfd_siginfo si;
    if (read(vmm->signal_fd, &si, sizeof(si)) != sizeof(si))
        return;
    if (si.ssi_signo == SIGUSR1) {
        log_info("received SIGUSR1: state dump of VM %s (%s)", vmm->cfg.main.name,
                 vmm->started ? "running" : "not started: no console client yet");
        console_dump(&vmm->console);
        machine_dump_state(&vmm->machine);
        return;
    }
    if (vmm->halting)
        return; /* a second Ctrl-C while the first is handled */
    vmm->halting = true;
    if (si.ssi_signo == SIGINT && vmm->snapshot_on_sigint && vmm->started) {
        save_snapshot(vmm);
        return;
    }
    log_info("received %s: halting the VM", strsignal((int)si.ssi_signo));
    if (vmm->started)
        machine_request(&vmm->machine, MACHINE_HALT);
    else
        finish(vmm, vmm->cfg.main.exit_on_halt);
}

static void on_machine_event(void *opaque, uint32_t events)
{
    struct vmm *vmm = opaque;
    uint64_t count;
    if (read(vmm->machine.event_fd, &count, sizeof(count)) < 0)
        return;
    /* Join every vCPU first so that the event can no longer change. */
    machine_stop(&vmm->machine);
    enum machine_event event = atomic_load(&vmm->machine.event);
    switch (event) {
    case MACHINE_RUNNING:
        machine_start(&vmm->machine);
        break;
    case MACHINE_RESET:
        if (vmm->cfg.main.has_exit_on_reboot) {
            log_info("guest reset: exiting with exit_on_reboot = %d", vmm->cfg.main.exit_on_reboot);
            finish(vmm, vmm->cfg.main.exit_on_reboot);
        } else if (machine_reset(&vmm->machine) < 0) {
            finish(vmm, EXIT_FAILURE_CODE);
        } else {
            log_limited(&vmm->machine.reset_log, LOG_INFO, "guest reset: VM restarted (reset %u)",
                        vmm->machine.resets);
        }
        break;
    case MACHINE_HALT:
        log_info("VM halted: exiting with exit_on_halt = %d", vmm->cfg.main.exit_on_halt);
        finish(vmm, vmm->cfg.main.exit_on_halt);
        break;
    case MACHINE_FAILED:
        log_crit("VM stopped after an unrecoverable error");
        finish(vmm, EXIT_FAILURE_CODE);
        break;
    }
}

static int setup_signals(struct vmm *vmm)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1); /* state dump */
    /* Blocked in every thread (vCPU threads inherit it); read via signalfd. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    vmm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (vmm->signal_fd < 0) {
        log_error("signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int run(struct vmm *vmm, const char *config_path, const char *control_path)
{
    if (vmm->restore) {
        /* The config the snapshot was taken with; its paths as they were. */
        size_t len;
        const char *text = snapshot_config_text(vmm->restore, &len);
        char where[600];
        snprintf(where, sizeof(where), "%s:config.toml", config_path);
        if (config_parse(where, text, len, &vmm->cfg) < 0) {
            log_error("snapshot %s: member config.toml: %s", config_path, vmm->cfg.error);
            return EXIT_FAILURE_CODE;
        }
    } else if (config_load(config_path, &vmm->cfg) < 0) {
        return EXIT_FAILURE_CODE;
    }
    if (refuse_unsupported(&vmm->cfg) < 0 || check_host_resources(&vmm->cfg) < 0)
        return EXIT_FAILURE_CODE;
    if (console_check_path(CONSOLE_PATH) < 0) {
        log_error("%s exists and is not a socket; refusing to replace it", CONSOLE_PATH);
        return EXIT_FAILURE_CODE;
    }
    /* Before the first thread starts: each enters its class's filter. */
    if (vmm->seccomp && sandbox_init() < 0) {
        log_error("cannot set up the seccomp sandbox (--no-seccomp runs without it)");
        return EXIT_FAILURE_CODE;
    }
    if (setup_signals(vmm) < 0 || io_loop_init(&vmm->loop, "main") < 0)
        return EXIT_FAILURE_CODE;

    struct machine_spec spec = {
        .cpus = vmm->cfg.main.cpus,
        .memory_bytes = vmm->cfg.main.memory_mib * MIB,
        .bootrom_path = vmm->cfg.main.bootrom,
        .reserve_memory = vmm->cfg.main.use_reservoir,
        .pin_upper_half = vmm->cfg.main.cpu_binding == CPU_BINDING_UPPER_HALF,
        .cpuid_profile = config_cpuid_profile(&vmm->cfg),
        .config_path = vmm->cfg.path,
    };
    if (machine_create(&vmm->machine, &spec) < 0)
        return EXIT_FAILURE_CODE;
    vmm->machine.loop = &vmm->loop;
    if (open_block_backends(vmm) < 0 || open_net_backends(vmm) < 0)
        return EXIT_FAILURE_CODE;
    /* Only now, with the VM known to be buildable, touch shared state. */
    if (instance_acquire(&vmm->instance, vmm->cfg.main.name) < 0)
        return EXIT_FAILURE_CODE;
    vmm->console.on_connect = on_console_connect;
    vmm->console.on_connect_opaque = vmm;
    if (console_open(&vmm->console, CONSOLE_PATH, &vmm->loop) < 0 || build_machine(vmm) < 0)
        return EXIT_FAILURE_CODE;
    if (io_loop_watch(&vmm->loop, &vmm->signal_watch, vmm->signal_fd, EPOLLIN, on_signal, vmm) <
            0 ||
        io_loop_watch(&vmm->loop, &vmm->machine_event_watch, vmm->machine.event_fd, EPOLLIN,
                      on_machine_event, vmm) < 0)
        return EXIT_FAILURE_CODE;
    if (vmm->restore) {
        char err[1024];
        if (snapshot_restore(vmm->restore, &vmm->machine, &vmm->cfg, vmm->backends, err,
                             sizeof(err)) < 0) {
            log_error("snapshot %s: %s", config_path, err);
            return EXIT_FAILURE_CODE;
        }
        /* Firmware saved part way through reading the ACPI tables reads on
         * in tables built for the loaded PM block (now that it is loaded). */
        fw_cfg_refresh_selected(&vmm->fw_cfg);
        vmm->restored = true;
    }
    if (control_path &&
        control_server_open(&vmm->control, control_path, &vmm->loop, on_control, vmm) < 0)
        return EXIT_FAILURE_CODE;
    if (!vmm->seccomp)
        log_info("sandbox: seccomp filters off (--no-seccomp)");
    else if (sandbox_enter_main() < 0)
        return EXIT_FAILURE_CODE;

    log_info("VM %s: %u vCPUs, %llu MiB; waiting for a client on %s", vmm->cfg.main.name, spec.cpus,
             (unsigned long long)vmm->cfg.main.memory_mib, CONSOLE_PATH);
    while (!vmm->done) {
        if (io_loop_poll(&vmm->loop, -1) < 0) {
            log_error("event loop: %s", strerror(errno));
            return EXIT_FAILURE_CODE;
        }
    }
    return vmm->exit_code;
}

static void teardown(struct vmm *vmm)
{
    control_server_close(&vmm->control);
    if (vmm->machine.vcpus)
        machine_stop(&vmm->machine);
    console_close(&vmm->console);
    machine_destroy(&vmm->machine);
    if (vmm->pci_ready)
        pci_bus_destroy(&vmm->pci);
    close_block_backends(vmm); /* after the devices drained their requests */
    close_net_backends(vmm);
    instance_release(&vmm->instance);
    io_loop_unwatch(&vmm->loop, &vmm->signal_watch);
    io_loop_unwatch(&vmm->loop, &vmm->machine_event_watch);
    io_loop_destroy(&vmm->loop);
    if (vmm->signal_fd >= 0)
        close(vmm->signal_fd);
    config_free(&vmm->cfg);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"snapshot", no_argument, NULL, 's'},
        {"restore", required_argument, NULL, 'r'},
        {"log-level", required_argument, NULL, 'l'},
        {"control", required_argument, NULL, 'c'},
        {"no-seccomp", no_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env_level = getenv("PROPOLIS_LOG");
    enum log_level level = LOG_INFO;
    if (env_level && *env_level && !log_parse_level(env_level, &level)) {
        fprintf(stderr, "PROPOLIS_LOG: unknown log level \"%s\"\n", env_level);
        return 2;
    }
    log_set_level(level);
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
        return control_ctl_main(argc - 2, argv + 2);
    bool snapshot = false, seccomp = true;
    const char *restore = NULL, *control = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "sr:h", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            snapshot = true;
            break;
        case 'r':
            restore = optarg;
            break;
        case 'c':
            control = optarg;
            break;
        case 'S':
            seccomp = false;
            break;
        case 'l':
            if (!log_parse_level(optarg, &level)) {
                fprintf(stderr, "--log-level: unknown log level \"%s\"\n", optarg);
                return 2;
            }
            log_set_level(level);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (restore ? optind != argc : optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    struct snapshot *snap = NULL;
    if (restore) {
        char err[1024];
        if (snapshot_open(restore, &snap, err, sizeof(err)) < 0) {
            log_error("snapshot %s: %s", restore, err);
            return EXIT_FAILURE_CODE;
        }
    }
    struct vmm *vmm = calloc(1, sizeof(*vmm));
    if (!vmm)
        return EXIT_FAILURE_CODE;
    vmm->signal_fd = -1;
    vmm->snapshot_on_sigint = snapshot;
    vmm->seccomp = seccomp;
    vmm->restore = snap;
    vmm->loop.epoll_fd = -1;
    io_watch_init(&vmm->signal_watch);
    io_watch_init(&vmm->machine_event_watch);
    control_server_init(&vmm->control);
    vmm->machine.kvm_fd = vmm->machine.vm_fd = vmm->machine.event_fd = -1;
    vmm->instance.fd = -1;
    vmm->console.listen_fd = vmm->console.client_fd = vmm->console.wake_fd = -1;
    int code = run(vmm, restore ? restore : argv[optind], control);
    teardown(vmm);
    snapshot_close(snap);
    free(vmm);
    return code;
}
