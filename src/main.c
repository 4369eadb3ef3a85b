/* propolis-standalone for Linux/KVM: reads one TOML config, builds the VM
 * it describes, serves COM1 on ./ttya and runs the guest once a console
 * client connects. The whole machine is wired in build_machine() below. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"
#include "core/event_loop.h"
#include "core/instance.h"
#include "core/machine.h"
#include "devices/console.h"
#include "devices/debug_port.h"
#include "devices/uart16550.h"

#define CONSOLE_PATH "./ttya"
#define DEBUG_OUT_PATH "./debug.out"
#define EXIT_FAILURE_CODE 1

struct isa_irq_line {
    struct machine *machine;
    unsigned irq;
    uint32_t source_bit;
};

struct vmm {
    struct config cfg;
    struct machine machine;
    struct event_loop loop;
    struct instance instance;
    struct console console;
    struct uart16550 com[4];
    struct isa_irq_line com_irq[4];
    struct debug_port debug_port;
    struct post_port post_port;
    int signal_fd;
    bool started;
    bool halting;
    bool done;
    int exit_code;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: propolis-standalone [--log-level LEVEL] [-s|--snapshot] CONFIG.toml\n"
                 "       propolis-standalone [--log-level LEVEL] -r|--restore SNAPSHOT\n"
                 "LEVEL: critical, error, warning, info (default), debug, trace;\n"
                 "the PROPOLIS_LOG environment variable sets the default.\n");
}

/* Features later work implements are refused by name rather than ignored. */
static int refuse_unsupported(const struct config *cfg)
{
    struct config_pos main_pos = {cfg->main.line, cfg->main.column};
    if (cfg->main.cpuid_profile) {
        config_report(cfg, main_pos, "main.cpuid_profile", "CPUID profiles are not yet supported");
        return -1;
    }
    if (cfg->main.has_boot_order) {
        config_report(cfg, main_pos, "main.boot_order", "boot_order is not yet supported");
        return -1;
    }
    for (size_t i = 0; i < cfg->block_dev_count; i++) {
        const struct config_block_dev *bd = &cfg->block_devs[i];
        char key[128];
        snprintf(key, sizeof(key), "block_dev.%s", bd->name);
        config_report(cfg, (struct config_pos){bd->line, bd->column}, key,
                      "block device type \"%s\" is not yet supported",
                      config_block_type_name(bd->type));
        return -1;
    }
    for (size_t i = 0; i < cfg->device_count; i++) {
        const struct config_device *dev = &cfg->devices[i];
        char key[128];
        snprintf(key, sizeof(key), "dev.%s", dev->name);
        config_report(cfg, (struct config_pos){dev->line, dev->column}, key,
                      "driver \"%s\" is not yet supported", config_driver_name(dev->driver));
        return -1;
    }
    if (cfg->has_cloudinit) {
        config_report(cfg, (struct config_pos){cfg->cloudinit.line, cfg->cloudinit.column},
                      "cloudinit", "cloud-init disks are not yet supported");
        return -1;
    }
    return 0;
}

static void isa_irq_set(void *opaque, bool level)
{
    struct isa_irq_line *line = opaque;
    machine_set_irq(line->machine, line->irq, line->source_bit, level);
}

static int add_pio_device(struct vmm *vmm, struct device *dev, uint16_t port, uint16_t len,
                          const struct io_ops *ops)
{
    if (!bus_register(&vmm->machine.pio, port, len, ops, dev, dev->name))
        return -1;
    return machine_add_device(&vmm->machine, dev);
}

/* The fixed PC devices every VM has, then the configured ones. */
static int build_machine(struct vmm *vmm)
{
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
        vmm->com_irq[i] = (struct isa_irq_line){&vmm->machine, com_ports[i].irq, 1u << i};
        /* COM1 is the console; COM2-COM4 accept and discard. */
        struct uart_backend backend = {0};
        if (i == 0)
            backend = console_uart_backend(&vmm->console);
        uart16550_init(&vmm->com[i], com_ports[i].name, backend,
                       (struct uart_irq){isa_irq_set, &vmm->com_irq[i]});
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
    return 0;
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
    log_info("starting VM %s", vmm->cfg.main.name);
    if (machine_start(&vmm->machine) < 0) {
        finish(vmm, EXIT_FAILURE_CODE);
        return;
    }
    vmm->started = true;
}

static void on_signal(void *opaque, uint32_t events)
{
    struct vmm *vmm = opaque;
    struct signalfd_siginfo si;
    if (read(vmm->signal_fd, &si, sizeof(si)) != sizeof(si))
        return;
    if (vmm->halting)
        return; /* a second Ctrl-C while the first is handled */
    vmm->halting = true;
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
            log_info("guest reset: VM restarted (reset %u)", vmm->machine.resets);
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
    /* Blocked in every thread (vCPU threads inherit it); read via signalfd. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    vmm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (vmm->signal_fd < 0) {
        log_error("signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int run(struct vmm *vmm, const char *config_path)
{
    if (config_load(config_path, &vmm->cfg) < 0)
        return EXIT_FAILURE_CODE;
    if (refuse_unsupported(&vmm->cfg) < 0)
        return EXIT_FAILURE_CODE;
    if (console_check_path(CONSOLE_PATH) < 0) {
        log_error("%s exists and is not a socket; refusing to replace it", CONSOLE_PATH);
        return EXIT_FAILURE_CODE;
    }
    if (setup_signals(vmm) < 0 || event_loop_init(&vmm->loop) < 0)
        return EXIT_FAILURE_CODE;

    struct machine_spec spec = {
        .cpus = vmm->cfg.main.cpus,
        .memory_bytes = vmm->cfg.main.memory_mib * MIB,
        .bootrom_path = vmm->cfg.main.bootrom,
        .reserve_memory = vmm->cfg.main.use_reservoir,
        .pin_upper_half = vmm->cfg.main.cpu_binding == CPU_BINDING_UPPER_HALF,
    };
    if (machine_create(&vmm->machine, &spec) < 0)
        return EXIT_FAILURE_CODE;
    vmm->machine.loop = &vmm->loop;
    /* Only now, with the VM known to be buildable, touch shared state. */
    if (instance_acquire(&vmm->instance, vmm->cfg.main.name) < 0)
        return EXIT_FAILURE_CODE;
    vmm->console.on_connect = on_console_connect;
    vmm->console.on_connect_opaque = vmm;
    if (console_open(&vmm->console, CONSOLE_PATH, &vmm->loop) < 0 || build_machine(vmm) < 0)
        return EXIT_FAILURE_CODE;
    if (event_loop_watch(&vmm->loop, vmm->signal_fd, EPOLLIN, on_signal, vmm) < 0 ||
        event_loop_watch(&vmm->loop, vmm->machine.event_fd, EPOLLIN, on_machine_event, vmm) < 0)
        return EXIT_FAILURE_CODE;

    log_info("VM %s: %u vCPUs, %llu MiB; waiting for a client on %s", vmm->cfg.main.name, spec.cpus,
             (unsigned long long)vmm->cfg.main.memory_mib, CONSOLE_PATH);
    while (!vmm->done) {
        if (event_loop_poll(&vmm->loop, -1) < 0) {
            log_error("event loop: %s", strerror(errno));
            return EXIT_FAILURE_CODE;
        }
    }
    return vmm->exit_code;
}

static void teardown(struct vmm *vmm)
{
    if (vmm->machine.vcpus)
        machine_stop(&vmm->machine);
    console_close(&vmm->console);
    machine_destroy(&vmm->machine);
    instance_release(&vmm->instance);
    event_loop_destroy(&vmm->loop);
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
    bool snapshot = false;
    const char *restore = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "sr:h", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            snapshot = true;
            break;
        case 'r':
            restore = optarg;
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
    if (restore) {
        log_error("--restore %s: snapshot restore is not yet supported", restore);
        return 2;
    }
    if (snapshot) {
        log_error("--snapshot: saving snapshots is not yet supported");
        return 2;
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    struct vmm *vmm = calloc(1, sizeof(*vmm));
    if (!vmm)
        return EXIT_FAILURE_CODE;
    vmm->signal_fd = -1;
    vmm->machine.kvm_fd = vmm->machine.vm_fd = vmm->machine.event_fd = -1;
    vmm->instance.fd = -1;
    vmm->console.listen_fd = vmm->console.client_fd = vmm->console.wake_fd = -1;
    int code = run(vmm, argv[optind]);
    teardown(vmm);
    free(vmm);
    return code;
}
