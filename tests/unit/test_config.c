/* Unit tests of the config layer: the README examples, defaults, every key,
 * and the exact text of errors and warnings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stderr_capture.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"

/* Five lines of a valid [main]; tests append sections from line 6 on. */
#define MAIN "[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n"

static char fixture_path[256];

/* tests/configs/NAME, found from this file's path (tests/unit/). */
static const char *fixture(const char *name)
{
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    int dirlen = slash ? (int)(slash - file) : 0;
    snprintf(fixture_path, sizeof(fixture_path), "%.*s%s../configs/%s", dirlen, file,
             slash ? "/" : "", name);
    return fixture_path;
}

static bool is_zeroed(const struct config *cfg)
{
    return cfg->main.name == NULL && cfg->path == NULL && cfg->source_text == NULL &&
           cfg->block_devs == NULL && cfg->devices == NULL && cfg->cpuid_profiles == NULL &&
           cfg->warnings == NULL && cfg->device_count == 0 && cfg->block_dev_count == 0;
}

static void parse_ok(const char *text, struct config *cfg)
{
    int rc = config_parse("t.toml", text, strlen(text), cfg);
    if (rc != 0)
        print_error("unexpected error: %s\n", cfg->error);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->error, "");
}

static void expect_error(const char *text, const char *want)
{
    struct config cfg;
    int rc = config_parse("t.toml", text, strlen(text), &cfg);
    if (rc == 0 || strcmp(cfg.error, want) != 0)
        print_error("for config:\n%s\n", text);
    assert_int_equal(rc, -1);
    assert_string_equal(cfg.error, want);
    assert_true(is_zeroed(&cfg));
    config_free(&cfg);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void assert_sockaddr4(const struct config_sockaddr *sa, const char *ip, uint16_t port)
{
    char buf[64];
    assert_int_equal(sa->u.sa.sa_family, AF_INET);
    assert_int_equal(sa->len, sizeof(struct sockaddr_in));
    assert_non_null(inet_ntop(AF_INET, &sa->u.in4.sin_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(sa->u.in4.sin_port), port);
}

static void assert_sockaddr6(const struct config_sockaddr *sa, const char *ip, uint16_t port,
                             uint32_t scope)
{
    char buf[64];
    assert_int_equal(sa->u.sa.sa_family, AF_INET6);
    assert_int_equal(sa->len, sizeof(struct sockaddr_in6));
    assert_non_null(inet_ntop(AF_INET6, &sa->u.in6.sin6_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(sa->u.in6.sin6_port), port);
    assert_int_equal(sa->u.in6.sin6_scope_id, scope);
}

/* ---- the README examples ---- */

static void test_readme_example(void **state)
{
    (void)state;
    struct config cfg;
    const char *path = fixture("readme-example.toml");
    assert_int_equal(config_load(path, &cfg), 0);
    assert_string_equal(cfg.path, path);
    assert_string_equal(cfg.source_text, read_file(path));
    assert_int_equal(cfg.source_len, strlen(cfg.source_text));
    assert_int_equal(cfg.warning_count, 0);

    const struct config_main *m = &cfg.main;
    assert_string_equal(m->name, "testvm");
    assert_int_equal(m->cpus, 4);
    assert_string_equal(m->bootrom, "/path/to/bootrom/OVMF_CODE.fd");
    assert_int_equal(m->bootrom_pos.line, 5);
    assert_int_equal(m->bootrom_pos.column, 11);
    assert_int_equal(m->memory_mib, 1024);
    assert_int_equal(m->line, 2);
    assert_int_equal(m->column, 2);
    /* defaults */
    assert_string_equal(m->bootrom_version, "v0.0.1-alpha 1");
    assert_false(m->use_reservoir);
    assert_null(m->cpuid_profile);
    assert_null(config_cpuid_profile(&cfg));
    assert_int_equal(m->cpu_binding, CPU_BINDING_ANY);
    assert_int_equal(m->exit_on_halt, 0);
    assert_false(m->has_exit_on_reboot);
    assert_false(m->has_boot_order);
    assert_int_equal(m->boot_order_count, 0);
    assert_int_equal(m->acpi_variant, ACPI_VARIANT_V0);

    assert_int_equal(cfg.block_dev_count, 1);
    const struct config_block_dev *bd = &cfg.block_devs[0];
    assert_string_equal(bd->name, "alpine_iso");
    assert_int_equal(bd->type, CONFIG_BLOCK_FILE);
    assert_string_equal(bd->file.path, "/path/to/alpine-extended-3.12.0-x86_64.iso");
    assert_int_equal(bd->file.path_pos.line, 10);
    assert_int_equal(bd->file.workers, 8);
    assert_false(bd->has_block_size);
    assert_int_equal(config_block_size(bd), 512);
    assert_false(bd->has_read_only);
    assert_false(bd->read_only);
    assert_false(bd->has_skip_flush);
    assert_int_equal(bd->line, 8);
    assert_ptr_equal(config_find_block_dev(&cfg, "alpine_iso"), bd);
    assert_null(config_find_block_dev(&cfg, "alpine"));

    assert_int_equal(cfg.device_count, 2);
    const struct config_device *d = &cfg.devices[0];
    assert_string_equal(d->name, "block0");
    assert_int_equal(d->driver, CONFIG_DRIVER_VIRTIO_BLOCK);
    assert_string_equal(config_driver_name(d->driver), "pci-virtio-block");
    assert_true(d->has_pci);
    assert_int_equal(d->pci.bus, 0);
    assert_int_equal(d->pci.dev, 4);
    assert_int_equal(d->pci.func, 0);
    assert_int_equal(d->pci_pos.line, 15);
    assert_int_equal(d->pci_pos.column, 12);
    assert_string_equal(d->blk.block_dev, "alpine_iso");
    assert_int_equal(d->blk.block_dev_index, 0);
    assert_int_equal(d->line, 12);
    assert_int_equal(d->column, 6);

    d = &cfg.devices[1];
    assert_string_equal(d->name, "net0");
    assert_int_equal(d->driver, CONFIG_DRIVER_VIRTIO_VIONA);
    assert_int_equal(d->pci.dev, 5);
    assert_string_equal(d->viona.vnic, "vnic_name");
    assert_int_equal(d->viona.rx_queue_size, 2048);
    assert_int_equal(d->viona.tx_queue_size, 256);
    assert_false(d->viona.has_tx_copy_data);
    assert_false(d->viona.has_tx_header_pad);
    assert_false(d->viona.has_mac);
    assert_true(d->viona.vhost_net);
    assert_ptr_equal(config_find_device(&cfg, "net0"), d);

    assert_int_equal(cfg.cpuid_profile_count, 0);
    assert_false(cfg.has_cloudinit);
    config_free(&cfg);
    assert_true(is_zeroed(&cfg));
    config_free(&cfg); /* freeing twice is harmless */
}

static void test_crucible_example(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(config_load(fixture("crucible-example.toml"), &cfg), 0);
    assert_int_equal(cfg.warning_count, 0);
    assert_int_equal(cfg.block_dev_count, 1);
    const struct config_block_dev *bd = &cfg.block_devs[0];
    assert_string_equal(bd->name, "some_datastore");
    assert_int_equal(bd->type, CONFIG_BLOCK_CRUCIBLE);
    assert_string_equal(config_block_type_name(bd->type), "crucible");
    assert_true(bd->has_block_size);
    assert_int_equal(bd->block_size, 512);
    const struct config_crucible *c = &bd->crucible;
    assert_int_equal(c->blocks_per_extent, 262144);
    assert_int_equal(c->extent_count, 32);
    assert_sockaddr4(&c->targets[0], "127.0.0.1", 3810);
    assert_sockaddr4(&c->targets[1], "127.0.0.1", 3820);
    assert_sockaddr4(&c->targets[2], "127.0.0.1", 3830);
    assert_string_equal(c->targets[2].text, "127.0.0.1:3830");
    assert_int_equal(c->generation, 1);
    /* optional options, all commented out in the example */
    assert_false(c->has_upstairs_id);
    assert_false(c->lossy);
    assert_false(c->has_flush_timeout);
    assert_true(c->flush_timeout == 5.0);
    assert_false(c->has_encryption_key);
    assert_null(c->encryption_key_b64);
    assert_null(c->cert_pem);
    assert_null(c->key_pem);
    assert_null(c->root_cert_pem);
    assert_false(c->has_control_addr);
    assert_false(bd->has_read_only);
    assert_false(bd->read_only);
    assert_int_equal(cfg.devices[0].blk.block_dev_index, 0);
    config_free(&cfg);
}

static void test_cpuid_example(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(config_load(fixture("cpuid-example.toml"), &cfg), 0);
    assert_int_equal(cfg.warning_count, 0);
    assert_string_equal(cfg.main.cpuid_profile, "NAME");
    const struct config_cpuid_profile *p = config_cpuid_profile(&cfg);
    assert_non_null(p);
    assert_ptr_equal(p, config_find_cpuid_profile(&cfg, "NAME"));
    assert_string_equal(p->name, "NAME");
    assert_int_equal(p->vendor, CONFIG_CPU_VENDOR_AMD);
    assert_string_equal(config_cpu_vendor_name(p->vendor), "amd");
    assert_int_equal(p->leaf_count, 29);

    const struct config_cpuid_leaf *l = &p->leaves[0];
    assert_int_equal(l->func, 0);
    assert_false(l->has_index);
    assert_int_equal(l->regs[0], 0x10);
    assert_int_equal(l->regs[1], 0x68747541);
    assert_int_equal(l->regs[2], 0x444d4163);
    assert_int_equal(l->regs[3], 0x69746e65);
    assert_int_equal(l->line, 11);
    assert_int_equal(l->column, 1);

    /* "7-0" wins over "7" for ecx 0; "7" answers any other ecx */
    l = config_cpuid_find(p, 7, 0);
    assert_non_null(l);
    assert_true(l->has_index);
    assert_int_equal(l->index, 0);
    assert_int_equal(l->regs[1], 0x201401a9);
    l = config_cpuid_find(p, 7, 1);
    assert_non_null(l);
    assert_false(l->has_index);
    assert_int_equal(l->regs[1], 0);

    l = config_cpuid_find(p, 0xd, 2);
    assert_non_null(l);
    assert_int_equal(l->regs[0], 0x100);
    assert_int_equal(l->regs[1], 0x240);
    l = config_cpuid_find(p, 0x8000001d, 3);
    assert_non_null(l);
    assert_int_equal(l->regs[0], 0x163);
    assert_int_equal(l->regs[3], 1);
    l = config_cpuid_find(p, 0x80000004, 0);
    assert_non_null(l);
    assert_int_equal(l->regs[3], 0x202020);
    l = config_cpuid_find(p, 0x8000000a, 0);
    assert_non_null(l);
    assert_int_equal(l->regs[3], 0x13bcff);
    assert_null(config_cpuid_find(p, 2, 0));
    assert_null(config_cpuid_find(p, 0x40000000, 0));
    config_free(&cfg);
}

/* ---- every key ---- */

static void test_full(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(config_load(fixture("full.toml"), &cfg), 0);
    assert_int_equal(cfg.warning_count, 0);

    const struct config_main *m = &cfg.main;
    assert_string_equal(m->name, "full-vm");
    assert_int_equal(m->cpus, 8);
    assert_string_equal(m->bootrom, "/usr/share/ovmf/OVMF_CODE.fd");
    assert_string_equal(m->bootrom_version, "v1.2.3");
    assert_int_equal(m->memory_mib, 4096);
    assert_true(m->use_reservoir);
    assert_string_equal(m->cpuid_profile, "epyc");
    assert_int_equal(m->cpuid_profile_index, 0);
    assert_int_equal(m->cpu_binding, CPU_BINDING_UPPER_HALF);
    assert_string_equal(config_cpu_binding_name(m->cpu_binding), "upper-half");
    assert_int_equal(m->exit_on_halt, 3);
    assert_true(m->has_exit_on_reboot);
    assert_int_equal(m->exit_on_reboot, 4);
    assert_true(m->has_boot_order);
    assert_int_equal(m->boot_order_count, 2);
    assert_string_equal(m->boot_order[0], "nvme0");
    assert_string_equal(m->boot_order[1], "net0");
    assert_string_equal(cfg.devices[m->boot_order_dev[0]].name, "nvme0");
    assert_string_equal(cfg.devices[m->boot_order_dev[1]].name, "net0");

    assert_int_equal(cfg.block_dev_count, 5);
    const struct config_block_dev *bd = config_find_block_dev(&cfg, "disk");
    assert_non_null(bd);
    assert_int_equal(bd->type, CONFIG_BLOCK_FILE);
    assert_string_equal(bd->file.path, "/var/lib/vm/disk.raw");
    assert_int_equal(bd->file.workers, 4);
    assert_true(bd->has_block_size);
    assert_int_equal(config_block_size(bd), 4096);
    assert_true(bd->has_read_only && bd->read_only);
    assert_true(bd->has_skip_flush && bd->skip_flush);

    bd = config_find_block_dev(&cfg, "scratch");
    assert_int_equal(bd->type, CONFIG_BLOCK_MEM_ASYNC);
    assert_int_equal(bd->mem_async.size, 64 << 20);
    assert_int_equal(bd->mem_async.workers, 32);

    bd = config_find_block_dev(&cfg, "remote");
    assert_int_equal(bd->type, CONFIG_BLOCK_CRUCIBLE);
    const struct config_crucible *c = &bd->crucible;
    assert_int_equal(bd->block_size, 4096);
    assert_int_equal(c->blocks_per_extent, 16384);
    assert_int_equal(c->extent_count, 64);
    assert_sockaddr4(&c->targets[0], "192.168.1.10", 3810);
    assert_sockaddr6(&c->targets[1], "fd00::2", 3820, 0);
    assert_sockaddr6(&c->targets[2], "fe80::3", 3830, 2);
    assert_string_equal(c->targets[1].text, "[fd00::2]:3820");
    assert_int_equal(c->generation, 1700000000);
    assert_true(c->has_upstairs_id);
    static const uint8_t uuid[16] = {0xe4, 0x39, 0x6b, 0xd0, 0xed, 0xe1, 0x48, 0xd7,
                                     0xac, 0x14, 0x3d, 0x20, 0x94, 0xdf, 0xba, 0x5b};
    assert_memory_equal(c->upstairs_id, uuid, 16);
    assert_true(c->lossy);
    assert_true(c->has_flush_timeout);
    assert_true(c->flush_timeout == 2.5);
    assert_true(c->has_encryption_key);
    for (int i = 0; i < 32; i++)
        assert_int_equal(c->encryption_key[i], i);
    assert_string_equal(c->encryption_key_b64, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    assert_string_equal(c->cert_pem, "/etc/crucible/cert.pem");
    assert_string_equal(c->key_pem, "/etc/crucible/key.pem");
    assert_string_equal(c->root_cert_pem, "/etc/crucible/root.pem");
    assert_true(c->has_control_addr);
    assert_sockaddr4(&c->control_addr, "127.0.0.1", 9999);
    assert_true(bd->has_read_only);
    assert_false(bd->read_only);

    bd = config_find_block_dev(&cfg, "testmem");
    assert_int_equal(bd->type, CONFIG_BLOCK_CRUCIBLE_MEM);
    assert_int_equal(bd->crucible_mem.size, 1 << 20);
    bd = config_find_block_dev(&cfg, "cidata");
    assert_int_equal(bd->type, CONFIG_BLOCK_CLOUDINIT);
    assert_ptr_equal(bd->cloudinit.data, &cfg.cloudinit); /* the disk's data */

    assert_int_equal(cfg.device_count, 8);
    const struct config_device *d = config_find_device(&cfg, "nvme0");
    assert_int_equal(d->driver, CONFIG_DRIVER_NVME);
    assert_string_equal(cfg.block_devs[d->blk.block_dev_index].name, "remote");
    d = config_find_device(&cfg, "nvme1");
    assert_int_equal(d->pci.dev, 5);
    assert_int_equal(d->pci.func, 1);
    assert_string_equal(cfg.block_devs[d->blk.block_dev_index].name, "scratch");
    d = config_find_device(&cfg, "ci");
    assert_int_equal(d->pci.dev, 16);
    d = config_find_device(&cfg, "mem");
    assert_int_equal(d->pci.bus, 1);
    assert_int_equal(d->pci.dev, 31);

    d = config_find_device(&cfg, "net0");
    assert_string_equal(d->viona.vnic, "tap0");
    assert_int_equal(d->viona.rx_queue_size, 1024);
    assert_int_equal(d->viona.tx_queue_size, 512);
    assert_true(d->viona.has_tx_copy_data && d->viona.tx_copy_data);
    assert_true(d->viona.has_tx_header_pad);
    assert_int_equal(d->viona.tx_header_pad, 64);
    assert_true(d->viona.has_mac);
    static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0x0e};
    assert_memory_equal(d->viona.mac, mac, 6);
    assert_false(d->viona.vhost_net);

    d = config_find_device(&cfg, "vsock0");
    assert_int_equal(d->driver, CONFIG_DRIVER_VIRTIO_SOCKET);
    assert_int_equal(d->vsock.guest_cid, 16);
    assert_int_equal(d->vsock.port_mapping_count, 2);
    assert_int_equal(d->vsock.port_mappings[0].port, 605);
    assert_sockaddr4(&d->vsock.port_mappings[0].addr, "127.0.0.1", 6050);
    assert_int_equal(d->vsock.port_mappings[1].port, 22);
    assert_sockaddr6(&d->vsock.port_mappings[1].addr, "::1", 2222, 0);

    d = config_find_device(&cfg, "panic");
    assert_int_equal(d->driver, CONFIG_DRIVER_QEMU_PVPANIC);
    assert_true(d->pvpanic.enable_isa);
    assert_false(d->has_pci);

    assert_int_equal(cfg.cpuid_profile_count, 2);
    const struct config_cpuid_profile *p = config_find_cpuid_profile(&cfg, "xeon");
    assert_int_equal(p->vendor, CONFIG_CPU_VENDOR_INTEL);
    assert_int_equal(p->leaf_count, 1);
    assert_int_equal(p->leaves[0].regs[3], 0xbfebfbff);
    assert_ptr_equal(config_cpuid_profile(&cfg), config_find_cpuid_profile(&cfg, "epyc"));

    assert_true(cfg.has_cloudinit);
    assert_string_equal(cfg.cloudinit.user_data.data, "#cloud-config\nusers:\n- default\n");
    assert_int_equal(cfg.cloudinit.user_data.len, strlen("#cloud-config\nusers:\n- default\n"));
    assert_null(cfg.cloudinit.user_data.path);
    assert_null(cfg.cloudinit.meta_data.data);
    assert_string_equal(cfg.cloudinit.meta_data.path, "/srv/ci/meta-data");
    assert_string_equal(cfg.cloudinit.network_config.data, "version: 2\n");
    /* Where each value was written, for reports when the disk is built. */
    assert_int_equal(cfg.cloudinit.user_data.pos.line, 113);
    assert_int_equal(cfg.cloudinit.user_data.pos.column, 13);
    assert_int_equal(cfg.cloudinit.meta_data.pos.line, 118);
    assert_int_equal(cfg.cloudinit.meta_data.pos.column, 18);
    assert_int_equal(cfg.cloudinit.network_config.pos.line, 119);
    assert_int_equal(cfg.cloudinit.network_config.pos.column, 18);
    config_free(&cfg);
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    struct config cfg;
    parse_ok(MAIN "[block_dev.m]\ntype = \"mem-async\"\nsize = 4096\n"
                  "[block_dev.c]\ntype = \"crucible\"\nblock_size = 4096\n"
                  "blocks_per_extent = 1\nextent_count = 1\ngeneration = 0\n"
                  "targets = [\"10.0.0.1:1\", \"10.0.0.2:1\", \"10.0.0.1:2\"]\n"
                  "flush_timeout = 7\n"
                  "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.2.0\"\nguest_cid = 3\n"
                  "[dev.p]\ndriver = \"qemu-pvpanic\"\npci-path = \"0.3.0\"\n"
                  "[cloudinit]\n",
             &cfg);
    assert_int_equal(cfg.block_devs[0].mem_async.workers, 8);
    assert_int_equal(cfg.block_devs[0].mem_async.size, 4096);
    assert_true(cfg.block_devs[1].crucible.flush_timeout == 7.0); /* integers are accepted */
    assert_int_equal(cfg.devices[0].vsock.port_mapping_count, 0);
    assert_null(cfg.devices[0].vsock.port_mappings);
    assert_false(cfg.devices[1].pvpanic.enable_isa);
    assert_true(cfg.devices[1].has_pci);
    assert_true(cfg.has_cloudinit);
    assert_null(cfg.cloudinit.user_data.data);
    assert_null(cfg.cloudinit.user_data.path);
    config_free(&cfg);

    /* an empty boot_order is kept apart from an absent one */
    parse_ok(MAIN "boot_order = []\nexit_on_reboot = 0\n", &cfg);
    assert_true(cfg.main.has_boot_order);
    assert_int_equal(cfg.main.boot_order_count, 0);
    assert_true(cfg.main.has_exit_on_reboot);
    assert_int_equal(cfg.main.exit_on_reboot, 0);
    config_free(&cfg);

    /* the longest allowed name, and a text that is not NUL-terminated */
    char text[256];
    int n = snprintf(text, sizeof(text),
                     "[main]\nname = \"%064d\"\ncpus = 255\nbootrom = \"/x\"\n"
                     "memory = 16777216\nXXXX",
                     7);
    assert_int_equal(config_parse("t.toml", text, (size_t)n - 4, &cfg), 0);
    assert_int_equal(strlen(cfg.main.name), 64);
    assert_int_equal(cfg.main.cpus, 255);
    assert_int_equal(cfg.main.memory_mib, 16777216);
    assert_int_equal(cfg.source_len, (size_t)n - 4);
    assert_null(strstr(cfg.source_text, "XXXX"));
    config_free(&cfg);
}

/* ---- errors ---- */

struct error_case {
    const char *text;
    const char *error;
};

static void run_error_cases(const struct error_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++)
        expect_error(cases[i].text, cases[i].error);
}

static void test_main_errors(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"", "t.toml: missing required section [main]"},
        {"main = 1\n", "t.toml:1:1: main: expected a table, got integer"},
        {"[main]\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:1:2: main.name: required key is missing"},
        {"[main]\nname = \"vm\"\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:1:2: main.cpus: required key is missing"},
        {"[main]\nname = \"vm\"\ncpus = 1\nmemory = 16\n",
         "t.toml:1:2: main.bootrom: required key is missing"},
        {"[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"/x\"\n",
         "t.toml:1:2: main.memory: required key is missing"},
        {"[main]\nname = \"\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:2:8: main.name: must not be empty"},
        {"[main]\nname = \"a/b\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:2:8: main.name: must not contain '/' (the name is used in file names)"},
        {"[main]\nname = \"..\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:2:8: main.name: must not be \".\" or \"..\""},
        {"[main]\nname = \"a\\u0000b\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:2:8: main.name: must not contain a NUL character"},
        {"[main]\nname = "
         "\"12345678901234567890123456789012345678901234567890123456789012345\"\n"
         "cpus = 1\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:2:8: main.name: must be at most 64 bytes, got 65"},
        {"[main]\nname = 5\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:2:8: main.name: expected a string, got integer"},
        {"[main]\nname = \"vm\"\ncpus = 0\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:3:8: main.cpus: must be between 1 and 255, got 0"},
        {"[main]\nname = \"vm\"\ncpus = 256\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:3:8: main.cpus: must be between 1 and 255, got 256"},
        {"[main]\nname = \"vm\"\ncpus = -1\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:3:8: main.cpus: must be between 1 and 255, got -1"},
        {"[main]\nname = \"vm\"\ncpus = 1.5\nbootrom = \"/x\"\nmemory = 16\n",
         "t.toml:3:8: main.cpus: expected an integer, got float"},
        {"[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"\"\nmemory = 16\n",
         "t.toml:4:11: main.bootrom: must not be empty"},
        {"[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"/x\"\nmemory = \"1024\"\n",
         "t.toml:5:10: main.memory: expected an integer, got string"},
        {"[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 0\n",
         "t.toml:5:10: main.memory: must be between 1 and 16777216, got 0"},
        {MAIN "use_reservoir = \"yes\"\n",
         "t.toml:6:17: main.use_reservoir: expected a boolean, got string"},
        {MAIN "cpu_binding = \"lower-half\"\n",
         "t.toml:6:15: main.cpu_binding: unknown cpu_binding \"lower-half\" (expected any or "
         "upper-half)"},
        {MAIN "exit_on_halt = 256\n",
         "t.toml:6:16: main.exit_on_halt: must be between 0 and 255, got 256"},
        {MAIN "exit_on_reboot = -1\n",
         "t.toml:6:18: main.exit_on_reboot: must be between 0 and 255, got -1"},
        {MAIN "acpi_variant = \"V1\"\n",
         "t.toml:6:16: main.acpi_variant: unknown acpi_variant \"V1\" (expected V0)"},
        {MAIN "cpuid_profile = \"missing\"\n",
         "t.toml:6:17: main.cpuid_profile: no [cpuid.missing] section"},
        {MAIN "boot_order = \"block0\"\n",
         "t.toml:6:14: main.boot_order: expected an array, got string"},
        {MAIN "boot_order = [1]\n",
         "t.toml:6:15: main.boot_order[0]: expected a string, got integer"},
        {MAIN "boot_order = [\"net0\"]\n",
         "t.toml:6:15: main.boot_order[0]: no [dev.net0] section"},
        {MAIN "boot_order = [\"p\"]\n[dev.p]\ndriver = \"qemu-pvpanic\"\nenable_isa = true\n",
         "t.toml:6:15: main.boot_order[0]: dev.p has no pci-path, so the firmware cannot boot "
         "from it"},
    };
    run_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_block_dev_errors(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"block_dev = 1\n" MAIN, "t.toml:1:1: block_dev: expected a table, got integer"},
        {MAIN "[block_dev]\nd = 1\n", "t.toml:7:1: block_dev.d: expected a table, got integer"},
        {MAIN "[block_dev.d]\npath = \"/x\"\n",
         "t.toml:6:12: block_dev.d.type: required key is missing"},
        {MAIN "[block_dev.d]\ntype = \"raw\"\n",
         "t.toml:7:8: block_dev.d.type: unknown type \"raw\" (expected file, mem-async, "
         "crucible, crucible-mem, cloudinit or nbd)"},
        {MAIN "[block_dev.d]\ntype = \"file\"\n",
         "t.toml:6:12: block_dev.d.path: required key is missing"},
        {MAIN "[block_dev.d]\ntype = \"file\"\npath = \"/x\"\nworkers = 0\n",
         "t.toml:9:11: block_dev.d.workers: must be between 1 and 32, got 0"},
        {MAIN "[block_dev.d]\ntype = \"file\"\npath = \"/x\"\nworkers = 33\n",
         "t.toml:9:11: block_dev.d.workers: must be between 1 and 32, got 33"},
        {MAIN "[block_dev.d]\ntype = \"file\"\npath = \"/x\"\nblock_size = 1000\n",
         "t.toml:9:14: block_dev.d.block_size: must be a power of two between 512 and 65536, "
         "got 1000"},
        {MAIN "[block_dev.d]\ntype = \"file\"\npath = \"/x\"\nread_only = 1\n",
         "t.toml:9:13: block_dev.d.read_only: expected a boolean, got integer"},
        {MAIN "[block_dev.d]\ntype = \"mem-async\"\n",
         "t.toml:6:12: block_dev.d.size: required key is missing"},
        {MAIN "[block_dev.d]\ntype = \"mem-async\"\nsize = 1000\n",
         "t.toml:8:8: block_dev.d.size: must be a multiple of the block size (512), got 1000"},
        {MAIN "[block_dev.d]\ntype = \"mem-async\"\nsize = 0\n",
         "t.toml:8:8: block_dev.d.size: must be at least 1, got 0"},
        {MAIN "[block_dev.d]\ntype = \"crucible-mem\"\nblock_size = 4096\nsize = 512\n",
         "t.toml:9:8: block_dev.d.size: must be a multiple of the block size (4096), got 512"},
        {MAIN "[block_dev.d]\ntype = \"cloudinit\"\n",
         "t.toml:7:8: block_dev.d.type: type \"cloudinit\" needs a [cloudinit] section holding "
         "the data"},
        {MAIN "[block_dev.\"\"]\ntype = \"file\"\n",
         "t.toml:6:12: block_dev.\"\": section name must not be empty"},
        {MAIN "[block_dev.d]\ntype = \"file\"\npath = \"/x\"\ndirect = 1\n",
         "t.toml:9:10: block_dev.d.direct: expected a boolean, got integer"},
        {MAIN "[block_dev.d]\ntype = \"file\"\npath = \"/x\"\ndirect = \"yes\"\n",
         "t.toml:9:10: block_dev.d.direct: expected a boolean, got string"},
        {MAIN "[block_dev.d]\ntype = \"mem-async\"\nsize = 4096\ndirect = true\n",
         "t.toml:9:10: block_dev.d.direct: only a disk of type \"file\" can be opened with "
         "O_DIRECT (this one is \"mem-async\")"},
        /* Refused even when false: the key means nothing there. */
        {MAIN "[block_dev.d]\ntype = \"crucible-mem\"\nsize = 4096\ndirect = false\n",
         "t.toml:9:10: block_dev.d.direct: only a disk of type \"file\" can be opened with "
         "O_DIRECT (this one is \"crucible-mem\")"},
        {MAIN "[block_dev.d]\ntype = \"cloudinit\"\n  direct = true\n[cloudinit]\n",
         "t.toml:8:12: block_dev.d.direct: only a disk of type \"file\" can be opened with "
         "O_DIRECT (this one is \"cloudinit\")"},
    };
    run_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* direct (O_DIRECT, a Linux extension): a boolean of file disks, off unless
 * written; its position is kept for the back end's messages. */
static void test_block_dev_direct(void **state)
{
    (void)state;
    struct config cfg;
    parse_ok(MAIN "[block_dev.a]\ntype = \"file\"\npath = \"/a\"\n"
                  "[block_dev.b]\ntype = \"file\"\npath = \"/b\"\ndirect = true\n"
                  "[block_dev.c]\ntype = \"file\"\npath = \"/c\"\ndirect = false\n",
             &cfg);
    assert_int_equal(cfg.warning_count, 0);
    assert_int_equal(cfg.block_dev_count, 3);
    assert_false(cfg.block_devs[0].file.direct);
    assert_int_equal(cfg.block_devs[0].file.direct_pos.line, 0);
    assert_true(cfg.block_devs[1].file.direct);
    assert_int_equal(cfg.block_devs[1].file.direct_pos.line, 12);
    assert_int_equal(cfg.block_devs[1].file.direct_pos.column, 10);
    assert_false(cfg.block_devs[2].file.direct);
    assert_int_equal(cfg.block_devs[2].file.direct_pos.line, 16);
    config_free(&cfg);
}

/* generation = "auto" (our extension) on a crucible disk. */
static void test_crucible_generation_auto(void **state)
{
    (void)state;
    struct config cfg;
    parse_ok(MAIN "[block_dev.c]\ntype = \"crucible\"\nblock_size = 512\nblocks_per_extent = 8\n"
                  "extent_count = 4\ngeneration = \"auto\"\n"
                  "targets = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n",
             &cfg);
    assert_true(cfg.block_devs[0].crucible.generation_auto);
    assert_int_equal(cfg.block_devs[0].crucible.generation, 0);
    config_free(&cfg);
    parse_ok(MAIN "[block_dev.c]\ntype = \"crucible\"\nblock_size = 512\nblocks_per_extent = 8\n"
                  "extent_count = 4\ngeneration = 7\n"
                  "targets = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n",
             &cfg);
    assert_false(cfg.block_devs[0].crucible.generation_auto);
    assert_int_equal(cfg.block_devs[0].crucible.generation, 7);
    config_free(&cfg);
}

/* type = "nbd" (our extension): uri (one of libnbd's schemes) and
 * reconnect_timeout (seconds, 30 unless written, 0 allowed). */
static void test_block_dev_nbd(void **state)
{
    (void)state;
    struct config cfg;
    parse_ok(MAIN "[block_dev.a]\ntype = \"nbd\"\nuri = \"nbd://srv:10809/disk\"\n"
                  "[block_dev.b]\ntype = \"nbd\"\nuri = \"nbd+unix:///e?socket=/run/s\"\n"
                  "reconnect_timeout = 0\nread_only = true\n"
                  "[block_dev.c]\ntype = \"nbd\"\nuri = \"nbds://h/x\"\nreconnect_timeout = 2.5\n",
             &cfg);
    assert_int_equal(cfg.warning_count, 0);
    const struct config_block_dev *a = &cfg.block_devs[0], *b = &cfg.block_devs[1],
                                  *c = &cfg.block_devs[2];
    assert_int_equal(a->type, CONFIG_BLOCK_NBD);
    assert_string_equal(a->nbd.uri, "nbd://srv:10809/disk");
    assert_int_equal(a->nbd.uri_pos.line, 8);
    assert_int_equal(a->nbd.uri_pos.column, 7);
    assert_true(a->nbd.reconnect_timeout == 30.0);
    assert_string_equal(b->nbd.uri, "nbd+unix:///e?socket=/run/s");
    assert_true(b->nbd.reconnect_timeout == 0.0);
    assert_true(b->read_only);
    assert_true(c->nbd.reconnect_timeout == 2.5);
    assert_string_equal(config_block_type_name(CONFIG_BLOCK_NBD), "nbd");
    config_free(&cfg);

    static const struct error_case cases[] = {
        {MAIN "[block_dev.d]\ntype = \"nbd\"\n",
         "t.toml:6:12: block_dev.d.uri: required key is missing"},
        {MAIN "[block_dev.d]\ntype = \"nbd\"\nuri = \"http://x/y\"\n",
         "t.toml:8:7: block_dev.d.uri: expected an NBD URI (nbd://HOST[:PORT]/EXPORT, "
         "nbd+unix:///EXPORT?socket=PATH, nbds:// for TLS, nbd+vsock://CID[:PORT]/EXPORT), got "
         "\"http://x/y\""},
        {MAIN "[block_dev.d]\ntype = \"nbd\"\nuri = \"\"\n",
         "t.toml:8:7: block_dev.d.uri: must not be empty"},
        {MAIN "[block_dev.d]\ntype = \"nbd\"\nuri = \"nbd://h\"\nreconnect_timeout = -1\n",
         "t.toml:9:21: block_dev.d.reconnect_timeout: must be a non-negative number of seconds, "
         "got -1"},
        {MAIN "[block_dev.d]\ntype = \"nbd\"\nuri = \"nbd://h\"\nreconnect_timeout = 1e10\n",
         "t.toml:9:21: block_dev.d.reconnect_timeout: at most 604800 seconds (a week), got 1e+10"},
        {MAIN "[block_dev.d]\ntype = \"nbd\"\nuri = \"nbd://h\"\nreconnect_timeout = \"5\"\n",
         "t.toml:9:21: block_dev.d.reconnect_timeout: expected a number of seconds, got string"},
        {MAIN "[block_dev.d]\ntype = \"nbd\"\nuri = \"nbd://h\"\ndirect = true\n",
         "t.toml:9:10: block_dev.d.direct: only a disk of type \"file\" can be opened with "
         "O_DIRECT (this one is \"nbd\")"},
    };
    run_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

#define CRUCIBLE                                                                                   \
    MAIN "[block_dev.c]\ntype = \"crucible\"\nblock_size = 512\nblocks_per_extent = 8\n"           \
         "extent_count = 4\ngeneration = 1\n"
/* CRUCIBLE ends on line 11 */
#define TARGETS "targets = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n"

static void test_crucible_errors(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {MAIN "[block_dev.c]\ntype = \"crucible\"\nblocks_per_extent = 8\n",
         "t.toml:6:12: block_dev.c.block_size: required key is missing (crucible needs the "
         "region's block size)"},
        {CRUCIBLE, "t.toml:6:12: block_dev.c.targets: required key is missing"},
        {CRUCIBLE "targets = \"127.0.0.1:1\"\n",
         "t.toml:12:11: block_dev.c.targets: expected an array, got string"},
        {CRUCIBLE
         "targets = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\", \"127.0.0.1:4\"]\n",
         "t.toml:12:11: block_dev.c.targets: expected exactly 3 targets (\"IP:PORT\" of each "
         "downstairs), got 4"},
        {CRUCIBLE "targets = [\"127.0.0.1:1\", \"localhost:2\", \"127.0.0.1:3\"]\n",
         "t.toml:12:27: block_dev.c.targets[1]: \"localhost\" is not an IPv4 address (host names "
         "are not accepted)"},
        {CRUCIBLE "targets = [\"127.0.0.1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n",
         "t.toml:12:12: block_dev.c.targets[0]: socket address \"127.0.0.1\" has no port "
         "(expected \"IP:PORT\")"},
        {CRUCIBLE "targets = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:65536\"]\n",
         "t.toml:12:42: block_dev.c.targets[2]: invalid port \"65536\" in socket address "
         "\"127.0.0.1:65536\""},
        {CRUCIBLE "targets = [\"127.0.0.1:1\", \"127.0.0.1:0\", \"127.0.0.1:3\"]\n",
         "t.toml:12:27: block_dev.c.targets[1]: port 0 in \"127.0.0.1:0\" cannot be connected to"},
        {CRUCIBLE "targets = [\"::1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n",
         "t.toml:12:12: block_dev.c.targets[0]: malformed socket address \"::1:1\" (write IPv6 "
         "addresses as \"[ADDR]:PORT\")"},
        {CRUCIBLE "targets = [\"[::1]:1\", \"[::1]:2\", \"[0::1]:1\"]\n",
         "t.toml:12:34: block_dev.c.targets[2]: [0::1]:1 is the same downstairs as "
         "block_dev.c.targets[0]"},
        {CRUCIBLE TARGETS "upstairs_id = \"not-a-uuid\"\n",
         "t.toml:13:15: block_dev.c.upstairs_id: \"not-a-uuid\" is not a UUID (expected e.g. "
         "\"e4396bd0-ede1-48d7-ac14-3d2094dfba5b\")"},
        {CRUCIBLE TARGETS "encryption_key = \"\"\n",
         "t.toml:13:18: block_dev.c.encryption_key: must be the base64 encoding of a 256-bit key "
         "(32 bytes), got 0 bytes"},
        {CRUCIBLE TARGETS "encryption_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"\n",
         "t.toml:13:18: block_dev.c.encryption_key: invalid base64: length 43 is not a multiple "
         "of 4"},
        {CRUCIBLE TARGETS "encryption_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==\"\n",
         "t.toml:13:18: block_dev.c.encryption_key: must be the base64 encoding of a 256-bit key "
         "(32 bytes), got 34 bytes"},
        {CRUCIBLE TARGETS "flush_timeout = 0\n",
         "t.toml:13:17: block_dev.c.flush_timeout: must be a positive number of seconds, got 0"},
        {CRUCIBLE TARGETS "flush_timeout = nan\n",
         "t.toml:13:17: block_dev.c.flush_timeout: must be a positive number of seconds, got nan"},
        {CRUCIBLE TARGETS "flush_timeout = \"5\"\n",
         "t.toml:13:17: block_dev.c.flush_timeout: expected a number of seconds, got string"},
        {CRUCIBLE TARGETS "control_addr = \"\"\n",
         "t.toml:13:16: block_dev.c.control_addr: empty socket address (expected \"IP:PORT\")"},
        {CRUCIBLE TARGETS "cert_pem = \"\"\n",
         "t.toml:13:12: block_dev.c.cert_pem: must not be empty"},
        {MAIN "[block_dev.c]\ntype = \"crucible\"\nblock_size = 512\nblocks_per_extent = 8\n"
              "extent_count = 4\ngeneration = -1\n" TARGETS,
         "t.toml:11:14: block_dev.c.generation: must not be negative, got -1"},
        {MAIN "[block_dev.c]\ntype = \"crucible\"\nblock_size = 512\nblocks_per_extent = 8\n"
              "extent_count = 4\ngeneration = \"latest\"\n" TARGETS,
         "t.toml:11:14: block_dev.c.generation: expected a non-negative integer or \"auto\", got "
         "\"latest\""},
        {MAIN "[block_dev.c]\ntype = \"crucible\"\nblock_size = 512\nblocks_per_extent = 8\n"
              "extent_count = 4294967296\n",
         "t.toml:10:16: block_dev.c.extent_count: must be between 1 and 4294967295, got "
         "4294967296"},
    };
    run_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

#define DISK MAIN "[block_dev.d]\ntype = \"file\"\npath = \"/x\"\n"
/* DISK ends on line 8 */

static void test_device_errors(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"dev = [1]\n" MAIN, "t.toml:1:1: dev: expected a table, got array"},
        {MAIN "[dev.x]\npci-path = \"0.4.0\"\n",
         "t.toml:6:6: dev.x.driver: required key is missing"},
        {MAIN "[dev.x]\ndriver = \"virtio-net\"\n",
         "t.toml:7:10: dev.x.driver: unknown driver \"virtio-net\" (expected pci-virtio-block, "
         "pci-nvme, pci-virtio-viona, pci-virtio-socket or qemu-pvpanic)"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\nblock_dev = \"d\"\n",
         "t.toml:9:6: dev.x.pci-path: required key is missing"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = 4\n",
         "t.toml:11:12: dev.x.pci-path: expected a string, got integer"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.4.0.0\"\n",
         "t.toml:11:12: dev.x.pci-path: malformed PCI path \"0.4.0.0\" (expected \"BUS.DEV.FUNC\" "
         "in decimal, e.g. \"0.4.0\")"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0x0.4.0\"\n",
         "t.toml:11:12: dev.x.pci-path: malformed PCI path \"0x0.4.0\" (expected \"BUS.DEV.FUNC\" "
         "in decimal, e.g. \"0.4.0\")"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"256.4.0\"\n",
         "t.toml:11:12: dev.x.pci-path: bus 256 of \"256.4.0\" is out of range (0..=255)"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.32.0\"\n",
         "t.toml:11:12: dev.x.pci-path: device 32 of \"0.32.0\" is out of range (0..=31)"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.4.8\"\n",
         "t.toml:11:12: dev.x.pci-path: function 8 of \"0.4.8\" is out of range (0..=7)"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.0.0\"\n",
         "t.toml:11:12: dev.x.pci-path: 0.0.0 is reserved for the chipset (host bridge 0.0.0, "
         "PIIX3 0.1.0, PIIX4 PM 0.1.3); use a device number from 2 to 31"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.1.0\"\n",
         "t.toml:11:12: dev.x.pci-path: 0.1.0 is reserved for the chipset (host bridge 0.0.0, "
         "PIIX3 0.1.0, PIIX4 PM 0.1.3); use a device number from 2 to 31"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.4.0\"\n",
         "t.toml:9:6: dev.x.block_dev: required key is missing"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.4.0\"\nblock_dev = \"e\"\n",
         "t.toml:12:13: dev.x.block_dev: no [block_dev.e] section"},
        {DISK "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.4.0\"\nblock_dev = \"a b\"\n",
         "t.toml:12:13: dev.x.block_dev: no [block_dev.\"a b\"] section"},
        {DISK
         "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.4.0\"\nblock_dev = \"d\"\n"
         "[dev.y]\ndriver = \"pci-virtio-block\"\npci-path = \"00.04.00\"\nblock_dev = \"d\"\n",
         "t.toml:15:12: dev.y.pci-path: 00.04.00 is already used by dev.x (line 11)"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\n",
         "t.toml:6:6: dev.n.vnic: required key is missing"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\n"
              "vnic = \"a-very-long-name0\"\n",
         "t.toml:9:8: dev.n.vnic: Linux interface names are at most 15 bytes, got 17 "
         "(\"a-very-long-name0\")"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"a/b\"\n",
         "t.toml:9:8: dev.n.vnic: \"a/b\" is not a valid interface name"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "mac = \"52:54:00:12:34\"\n",
         "t.toml:10:7: dev.n.mac: \"52:54:00:12:34\" is not a MAC address (six pairs of hex "
         "digits separated by ':')"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "mac = \"52-54-00-12-34-56\"\n",
         "t.toml:10:7: dev.n.mac: \"52-54-00-12-34-56\" is not a MAC address (six pairs of hex "
         "digits separated by ':')"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "mac = \"52:54:00:12:34:5g\"\n",
         "t.toml:10:7: dev.n.mac: \"52:54:00:12:34:5g\" is not a MAC address (six pairs of hex "
         "digits separated by ':')"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "mac = \"01:00:5e:00:00:01\"\n",
         "t.toml:10:7: dev.n.mac: 01:00:5e:00:00:01 is a multicast address; a NIC needs a "
         "unicast one"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "mac = \"00:00:00:00:00:00\"\n",
         "t.toml:10:7: dev.n.mac: the all-zero address is not a NIC's address"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "mac = 5\n",
         "t.toml:10:7: dev.n.mac: expected a string, got integer"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "vhost-net = \"no\"\n",
         "t.toml:10:13: dev.n.vhost-net: expected a boolean, got string"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "rx-queue-size = 1000\n",
         "t.toml:10:17: dev.n.rx-queue-size: must be a power of two between 2 and 32768, got "
         "1000"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "tx-queue-size = 65536\n",
         "t.toml:10:17: dev.n.tx-queue-size: must be a power of two between 2 and 32768, got "
         "65536"},
        {MAIN "[dev.n]\ndriver = \"pci-virtio-viona\"\npci-path = \"0.4.0\"\nvnic = \"t\"\n"
              "tx_header_pad = 65536\n",
         "t.toml:10:17: dev.n.tx_header_pad: must be between 0 and 65535, got 65536"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\n",
         "t.toml:6:6: dev.v.guest_cid: required key is missing"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 2\n",
         "t.toml:9:13: dev.v.guest_cid: must be between 3 and 4294967294, got 2"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\n"
              "guest_cid = 4294967296\n",
         "t.toml:9:13: dev.v.guest_cid: must be between 3 and 4294967294, got 4294967296"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "port_mappings = [605]\n",
         "t.toml:10:18: dev.v.port_mappings[0]: expected a table { port = GUEST_PORT, addr = "
         "\"IP:PORT\" }, got integer"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "port_mappings = [{ port = 605 }]\n",
         "t.toml:10:18: dev.v.port_mappings[0].addr: required key is missing"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "port_mappings = [{ port = -1, addr = \"127.0.0.1:1\" }]\n",
         "t.toml:10:27: dev.v.port_mappings[0].port: must be between 0 and 4294967295, got -1"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "[[dev.v.port_mappings]]\nport = 605\naddr = \"127.0.0.1:1\"\n"
              "[[dev.v.port_mappings]]\nport = 605\naddr = \"127.0.0.1:2\"\n",
         "t.toml:14:8: dev.v.port_mappings[1].port: guest port 605 is already mapped by "
         "dev.v.port_mappings[0]"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "port_mappings = [{ port = 1, addr = \"unix:relative.sock\" }]\n",
         "t.toml:10:37: dev.v.port_mappings[0].addr: \"unix:relative.sock\": a UNIX socket path "
         "must be absolute"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "port_mappings = [{ port = 1, addr = \"unix:/"
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaa"
              "aaaaaaaaaaaaaaaaaa\" }]\n",
         "t.toml:10:37: dev.v.port_mappings[0].addr: \"unix:/"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aa"
         "aaaaaaaaaaaaaaaaaa\": a UNIX socket path has at most 107 bytes"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "uds_path = \"\"\n",
         "t.toml:10:12: dev.v.uds_path: must not be empty"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "uds_path = 5\n",
         "t.toml:10:12: dev.v.uds_path: expected a string, got integer"},
        {MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
              "[dev.w]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.5.0\"\nguest_cid = 4\n",
         "t.toml:10:6: dev.w: only one pci-virtio-socket device is supported (dev.v is one)"},
        {MAIN "[dev.p]\ndriver = \"qemu-pvpanic\"\n",
         "t.toml:6:6: dev.p.pci-path: required key is missing"},
        {MAIN "[dev.p]\ndriver = \"qemu-pvpanic\"\nenable_isa = 1\n",
         "t.toml:8:14: dev.p.enable_isa: expected a boolean, got integer"},
        {MAIN "[dev.p]\ndriver = \"qemu-pvpanic\"\nenable_isa = true\n"
              "[dev.q]\ndriver = \"qemu-pvpanic\"\nenable_isa = true\n",
         "t.toml:9:6: dev.q: only one qemu-pvpanic can have enable_isa (I/O port 0x505 is "
         "already dev.p's)"},
    };
    run_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* The vsock keys of ours: a UNIX address in a port mapping, and uds_path. */
static void test_vsock_unix_keys(void **state)
{
    (void)state;
    struct config cfg;
    parse_ok(MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n"
                  "port_mappings = [{ port = 1, addr = \"unix:/run/svc.sock\" },"
                  " { port = 2, addr = \"127.0.0.1:7\" }]\n"
                  "uds_path = \"/run/vm/vsock.sock\"\n",
             &cfg);
    const struct config_device *d = config_find_device(&cfg, "v");
    assert_int_equal(d->vsock.port_mapping_count, 2);
    assert_string_equal(d->vsock.port_mappings[0].unix_path, "/run/svc.sock");
    assert_int_equal(d->vsock.port_mappings[0].addr.len, 0);
    assert_null(d->vsock.port_mappings[1].unix_path);
    assert_sockaddr4(&d->vsock.port_mappings[1].addr, "127.0.0.1", 7);
    assert_string_equal(d->vsock.uds_path, "/run/vm/vsock.sock");
    config_free(&cfg);
    parse_ok(MAIN "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.4.0\"\nguest_cid = 3\n",
             &cfg);
    assert_null(config_find_device(&cfg, "v")->vsock.uds_path);
    config_free(&cfg);
}

#define PROF MAIN "[cpuid.p]\nvendor = \"intel\"\n"
/* PROF ends on line 7 */

static void test_cpuid_errors(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {MAIN "[cpuid.p]\n\"1\" = [0, 0, 0, 0]\n",
         "t.toml:6:8: cpuid.p.vendor: required key is missing"},
        {MAIN "[cpuid.p]\nvendor = \"AMD\"\n",
         "t.toml:7:10: cpuid.p.vendor: unknown vendor \"AMD\" (expected amd or intel)"},
        {PROF "\"0x1\" = [0, 0, 0, 0]\n",
         "t.toml:8:1: cpuid.p.0x1: not a cpuid leaf: expected \"LEAF\" or \"LEAF-INDEX\" as hex "
         "numbers of at most 32 bits without 0x (e.g. \"d\" or \"8000001d-1\")"},
        {PROF "\"1-\" = [0, 0, 0, 0]\n",
         "t.toml:8:1: cpuid.p.1-: not a cpuid leaf: expected \"LEAF\" or \"LEAF-INDEX\" as hex "
         "numbers of at most 32 bits without 0x (e.g. \"d\" or \"8000001d-1\")"},
        {PROF "\"100000000\" = [0, 0, 0, 0]\n",
         "t.toml:8:1: cpuid.p.100000000: not a cpuid leaf: expected \"LEAF\" or \"LEAF-INDEX\" as "
         "hex numbers of at most 32 bits without 0x (e.g. \"d\" or \"8000001d-1\")"},
        {PROF "\"1\" = 5\n",
         "t.toml:8:7: cpuid.p.1: expected an array of 4 integers [eax, ebx, ecx, edx], got "
         "integer"},
        {PROF "\"1\" = [0, 0, 0]\n",
         "t.toml:8:7: cpuid.p.1: expected 4 values [eax, ebx, ecx, edx], got 3"},
        {PROF "\"1\" = [0, -1, 0, 0]\n",
         "t.toml:8:11: cpuid.p.1[1]: must be between 0 and 4294967295, got -1"},
        {PROF "\"1\" = [0, 0, \"0\", 0]\n",
         "t.toml:8:14: cpuid.p.1[2]: expected an integer, got string"},
        {PROF "\"d\" = [0, 0, 0, 0]\n\"D\" = [0, 0, 0, 0]\n",
         "t.toml:9:1: cpuid.p.D: leaf 0xd is already defined by \"d\" at line 8"},
        {PROF "\"d-1\" = [0, 0, 0, 0]\n\"0d-01\" = [1, 0, 0, 0]\n",
         "t.toml:9:1: cpuid.p.0d-01: leaf 0xd index 0x1 is already defined by \"d-1\" at line 8"},
        {PROF "\"8000001d-0\" = [0, 0, 0, 0]\n\"8000001D-00000000\" = [0, 0, 0, 0]\n",
         "t.toml:9:1: cpuid.p.8000001D-00000000: leaf 0x8000001d index 0x0 is already defined by "
         "\"8000001d-0\" at line 8"},
    };
    run_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_cloudinit_errors(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"cloudinit = \"x\"\n" MAIN, "t.toml:1:1: cloudinit: expected a table, got string"},
        {MAIN "[cloudinit]\nuser-data = 1\n",
         "t.toml:7:13: cloudinit.user-data: expected a string, got integer"},
        {MAIN "[cloudinit]\nmeta-data-path = \"\"\n",
         "t.toml:7:18: cloudinit.meta-data-path: must not be empty"},
        {MAIN "[cloudinit]\nnetwork-config-path = \"/n\"\nnetwork-config = \"v: 2\"\n",
         "t.toml:7:23: cloudinit.network-config-path: cannot be combined with "
         "cloudinit.network-config (line 8): give the data or a file, not both"},
        {MAIN "[cloudinit]\nuser-data = \"a\"\nmeta-data = \"b\"\nuser-data-path = \"/u\"\n",
         "t.toml:9:18: cloudinit.user-data-path: cannot be combined with "
         "cloudinit.user-data (line 7): give the data or a file, not both"},
        /* the disk is a FAT volume of 512-byte sectors and read-only */
        {MAIN "[block_dev.seed]\ntype = \"cloudinit\"\nblock_size = 4096\n[cloudinit]\n",
         "t.toml:8:14: block_dev.seed.block_size: a cloudinit disk has 512-byte blocks (its FAT "
         "volume's sector size)"},
        {MAIN "[block_dev.seed]\ntype = \"cloudinit\"\nread_only = false\n[cloudinit]\n",
         "t.toml:8:13: block_dev.seed.read_only: a cloudinit disk is always read-only"},
    };
    run_error_cases(cases, sizeof(cases) / sizeof(cases[0]));

    /* What the disk is anyway may be written. */
    struct config cfg;
    parse_ok(MAIN "[block_dev.seed]\ntype = \"cloudinit\"\nblock_size = 512\nread_only = true\n"
                  "[cloudinit]\nuser-data = \"u\"\n",
             &cfg);
    assert_ptr_equal(cfg.block_devs[0].cloudinit.data, &cfg.cloudinit);
    assert_int_equal(cfg.cloudinit.user_data.pos.line, 11);
    assert_int_equal(cfg.cloudinit.user_data.pos.column, 13);
    assert_null(cfg.cloudinit.meta_data.data);
    assert_null(cfg.cloudinit.meta_data.path);
    config_free(&cfg);
}

static void test_error_hides_warnings(void **state)
{
    (void)state;
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"/x\"\nmemroy = 16\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct config cfg;
    log_set_level(LOG_WARNING);
    capture_stderr();
    int rc = config_load(path, &cfg);
    char *printed = captured_stderr();
    log_set_level(LOG_ERROR);
    unlink(path);
    assert_int_equal(rc, -1);
    char want[CONFIG_ERROR_MAX + 8];
    snprintf(want, sizeof(want),
             "%s:1:2: main.memory: required key is missing (is \"memroy\" at line 5 a "
             "misspelling?)\n",
             path);
    assert_string_equal(printed, want);
}

static void test_toml_syntax_error(void **state)
{
    (void)state;
    struct config cfg;
    const char *text = MAIN "[dev.x]\ndriver = \"pci-nvme\"\ndriver = \"pci-nvme\"\n";
    assert_int_equal(config_parse("t.toml", text, strlen(text), &cfg), -1);
    /* the TOML layer's message, behind the file name and position */
    assert_true(strncmp(cfg.error, "t.toml:8:", 9) == 0);
    assert_true(is_zeroed(&cfg));
}

/* Every tests/configs/bad-*.toml holds its expected error on line 1. */
static void test_bad_fixtures(void **state)
{
    (void)state;
    static const char *const names[] = {
        "bad-toml-syntax.toml",        "bad-missing-main.toml",      "bad-cpus-range.toml",
        "bad-memory-type.toml",        "bad-block-dev-ref.toml",     "bad-pci-path-dup.toml",
        "bad-pci-path-malformed.toml", "bad-pci-path-reserved.toml", "bad-driver.toml",
        "bad-block-type.toml",         "bad-cpuid-conflict.toml",    "bad-cpuid-value.toml",
        "bad-cloudinit-both.toml",     "bad-crucible-targets.toml",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *path = fixture(names[i]);
        char *text = read_file(path);
        const char *prefix = "# error: PATH";
        assert_true(strncmp(text, prefix, strlen(prefix)) == 0);
        char want[1024];
        snprintf(want, sizeof(want), "%s%.*s", path, (int)strcspn(text + strlen(prefix), "\n"),
                 text + strlen(prefix));

        struct config cfg;
        capture_stderr();
        int rc = config_load(path, &cfg);
        char *printed = captured_stderr();
        assert_int_equal(rc, -1);
        assert_string_equal(cfg.error, want);
        assert_true(is_zeroed(&cfg));
        /* exactly one message on stderr: the error */
        strcat(want, "\n");
        assert_string_equal(printed, want);
    }
}

static void test_unreadable(void **state)
{
    (void)state;
    struct config cfg;
    capture_stderr();
    int rc = config_load("/nonexistent/vm.toml", &cfg);
    assert_string_equal(captured_stderr(), "/nonexistent/vm.toml: cannot read the config file: "
                                           "No such file or directory\n");
    assert_int_equal(rc, -1);
    assert_string_equal(
        cfg.error, "/nonexistent/vm.toml: cannot read the config file: No such file or directory");
    assert_true(is_zeroed(&cfg));
}

/* ---- warnings ---- */

static void test_unknown_keys_warn(void **state)
{
    (void)state;
    struct config cfg;
    log_set_level(LOG_WARNING);
    capture_stderr();
    int rc = config_load(fixture("warn-unknown-keys.toml"), &cfg);
    char *printed = captured_stderr();
    log_set_level(LOG_ERROR);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.warning_count, 4);
    /* each warning is logged once, in file order */
    const char *at = printed;
    for (size_t i = 0; i < cfg.warning_count; i++) {
        const char *hit = strstr(at, cfg.warnings[i]);
        assert_non_null(hit);
        assert_true(strstr(hit, " WARN ") == NULL || strstr(hit, " WARN ") > hit);
        at = hit + strlen(cfg.warnings[i]);
    }
    assert_null(strstr(at, "unknown key"));
    char want[4][1024];
    const char *path = fixture("warn-unknown-keys.toml");
    snprintf(want[0], sizeof(want[0]), "%s:7:1: unknown key main.qemu_debug_file ignored", path);
    snprintf(want[1], sizeof(want[1]), "%s:12:1: unknown key block_dev.disk.readonly ignored",
             path);
    snprintf(want[2], sizeof(want[2]), "%s:18:1: unknown key dev.block0.\"my option\" ignored",
             path);
    snprintf(want[3], sizeof(want[3]), "%s:20:2: unknown key future_section ignored", path);
    for (int i = 0; i < 4; i++)
        assert_string_equal(cfg.warnings[i], want[i]);
    /* the section with the unknown keys is still read */
    assert_false(cfg.block_devs[0].has_read_only);
    assert_string_equal(cfg.devices[0].blk.block_dev, "disk");
    config_free(&cfg);

    /* options of another driver or type are unknown here, not errors */
    parse_ok(DISK "workers = 2\nsize = 4096\nguest_cid = 3\n"
                  "[dev.x]\ndriver = \"pci-nvme\"\npci-path = \"0.4.1\"\nblock_dev = \"d\"\n"
                  "vnic = \"t\"\nenable_isa = true\n"
                  "[dev.v]\ndriver = \"pci-virtio-socket\"\npci-path = \"0.5.0\"\nguest_cid = 3\n"
                  "port_mappings = [{ port = 1, addr = \"127.0.0.1:1\", proto = \"tcp\" }]\n"
                  "[cpuid]\n[cloudinit]\nvendor-data = \"\"\n",
             &cfg);
    static const char *const warns[] = {
        "t.toml:10:1: unknown key block_dev.d.size ignored",
        "t.toml:11:1: unknown key block_dev.d.guest_cid ignored",
        ("t.toml:14:12: dev.x.pci-path: no device at function 0 of 0.4; guests scan functions "
         "1-7 only when function 0 exists"),
        "t.toml:16:1: unknown key dev.x.vnic ignored",
        "t.toml:17:1: unknown key dev.x.enable_isa ignored",
        "t.toml:22:52: unknown key dev.v.port_mappings[0].proto ignored",
        "t.toml:25:1: unknown key cloudinit.vendor-data ignored",
    };
    assert_int_equal(cfg.warning_count, sizeof(warns) / sizeof(warns[0]));
    for (size_t i = 0; i < cfg.warning_count; i++)
        assert_string_equal(cfg.warnings[i], warns[i]);
    assert_int_equal(cfg.block_devs[0].file.workers, 2);
    config_free(&cfg);
}

/* ---- value syntaxes ---- */

static void test_parse_bdf(void **state)
{
    (void)state;
    struct config_bdf b;
    char why[256];
    assert_int_equal(config_parse_bdf("255.31.7", &b, why, sizeof(why)), 0);
    assert_int_equal(b.bus, 255);
    assert_int_equal(b.dev, 31);
    assert_int_equal(b.func, 7);
    assert_int_equal(config_parse_bdf("0.004.0", &b, why, sizeof(why)), 0);
    assert_int_equal(b.dev, 4);
    static const char *const bad[] = {"",       "0",      "0.4",    "0.4.",          ".4.0",
                                      "0..0",   "0.4.0.", "+0.4.0", "0.-4.0",        " 0.4.0",
                                      "0.4.0 ", "0,4,0",  "a.b.c",  "0.4.1000000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(config_parse_bdf(bad[i], &b, why, sizeof(why)), -1);
}

static void test_parse_sockaddr(void **state)
{
    (void)state;
    struct config_sockaddr sa;
    char why[256];
    assert_int_equal(config_parse_sockaddr("0.0.0.0:0", &sa, why, sizeof(why)), 0);
    assert_sockaddr4(&sa, "0.0.0.0", 0);
    assert_int_equal(config_parse_sockaddr("[2001:db8::1]:65535", &sa, why, sizeof(why)), 0);
    assert_sockaddr6(&sa, "2001:db8::1", 65535, 0);
    assert_int_equal(config_parse_sockaddr("[::ffff:1.2.3.4]:80", &sa, why, sizeof(why)), 0);
    assert_int_equal(sa.u.sa.sa_family, AF_INET6);
    static const char *const bad[] = {
        "",           "1.2.3.4",     "1.2.3.4:",    "1.2.3:80",     "1.2.3.4.5:80",  "01.2.3.4:80x",
        "[::1]",      "[::1]80",     "::1:80",      "[1.2.3.4]:80", "[::1%eth0]:80", "host:80",
        "1.2.3.4:-1", "1.2.3.4:+80", "[::1]:99999", " 1.2.3.4:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (config_parse_sockaddr(bad[i], &sa, why, sizeof(why)) != -1)
            print_error("accepted \"%s\"\n", bad[i]);
        assert_int_equal(config_parse_sockaddr(bad[i], &sa, why, sizeof(why)), -1);
    }
}

static void test_parse_uuid(void **state)
{
    (void)state;
    static const uint8_t want[16] = {0xe4, 0x39, 0x6b, 0xd0, 0xed, 0xe1, 0x48, 0xd7,
                                     0xac, 0x14, 0x3d, 0x20, 0x94, 0xdf, 0xba, 0x5b};
    static const char *const good[] = {
        "e4396bd0-ede1-48d7-ac14-3d2094dfba5b",
        "E4396BD0-EDE1-48D7-AC14-3D2094DFBA5B",
        "e4396bd0ede148d7ac143d2094dfba5b",
        "{e4396bd0-ede1-48d7-ac14-3d2094dfba5b}",
        "urn:uuid:e4396bd0-ede1-48d7-ac14-3d2094dfba5b",
    };
    static const char *const bad[] = {
        "",
        "e4396bd0-ede1-48d7-ac14-3d2094dfba5",
        "e4396bd0-ede1-48d7-ac14-3d2094dfba5bb",
        "e4396bd0-ede148d7-ac14-3d2094dfba5b-",
        "g4396bd0-ede1-48d7-ac14-3d2094dfba5b",
        "{e4396bd0ede148d7ac143d2094dfba5b}",
        "e4396bd0_ede1_48d7_ac14_3d2094dfba5b",
    };
    uint8_t out[16];
    char why[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(config_parse_uuid(good[i], out, why, sizeof(why)), 0);
        assert_memory_equal(out, want, 16);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(config_parse_uuid(bad[i], out, why, sizeof(why)), -1);
}

static void test_base64(void **state)
{
    (void)state;
    uint8_t out[64];
    size_t len;
    char why[256];
    assert_int_equal(config_base64_decode("", 0, out, sizeof(out), &len, why, sizeof(why)), 0);
    assert_int_equal(len, 0);
    assert_int_equal(config_base64_decode("Zm9vYmFy", 8, out, sizeof(out), &len, why, sizeof(why)),
                     0);
    assert_int_equal(len, 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(config_base64_decode("Zm9vYg==", 8, out, sizeof(out), &len, why, sizeof(why)),
                     0);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "foob", 4);
    assert_int_equal(config_base64_decode("Zm9vYmE=", 8, out, sizeof(out), &len, why, sizeof(why)),
                     0);
    assert_int_equal(len, 5);
    assert_int_equal(config_base64_decode("+/+/", 4, out, sizeof(out), &len, why, sizeof(why)), 0);
    assert_int_equal(out[0], 0xfb);
    static const char *const bad[] = {
        "Zm9vYg=", "Zm9vYg", "Zm9v=mFy", "Zm9vYh==", "Zm9v YmFy", "Zm9vYmF-", "=m9v", "Zg=a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(
            config_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &len, why, sizeof(why)),
            -1);
    /* too long for the output */
    assert_int_equal(config_base64_decode("Zm9vYmFy", 8, out, 5, &len, why, sizeof(why)), -1);
}

static void test_cpuid_key(void **state)
{
    (void)state;
    uint32_t func, index;
    bool has_index;
    char why[256];
    assert_int_equal(
        config_parse_cpuid_key("8000001d-3", 10, &func, &has_index, &index, why, sizeof(why)), 0);
    assert_int_equal(func, 0x8000001d);
    assert_true(has_index);
    assert_int_equal(index, 3);
    assert_int_equal(config_parse_cpuid_key("D", 1, &func, &has_index, &index, why, sizeof(why)),
                     0);
    assert_int_equal(func, 0xd);
    assert_false(has_index);
    assert_int_equal(
        config_parse_cpuid_key("0000000000001", 13, &func, &has_index, &index, why, sizeof(why)),
        0);
    assert_int_equal(func, 1);
    assert_int_equal(config_parse_cpuid_key("ffffffff-ffffffff", 17, &func, &has_index, &index, why,
                                            sizeof(why)),
                     0);
    assert_int_equal(func, 0xffffffff);
    assert_int_equal(index, 0xffffffff);
    static const char *const bad[] = {"",    "-",  "1-", "-1", "1-2-3",
                                      "0x1", "+1", "g",  "1 ", "vendor"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(config_parse_cpuid_key(bad[i], strlen(bad[i]), &func, &has_index, &index,
                                                why, sizeof(why)),
                         -1);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(config_block_type_name(CONFIG_BLOCK_MEM_ASYNC), "mem-async");
    assert_string_equal(config_block_type_name(CONFIG_BLOCK_CRUCIBLE_MEM), "crucible-mem");
    assert_string_equal(config_block_type_name(CONFIG_BLOCK_CLOUDINIT), "cloudinit");
    assert_string_equal(config_driver_name(CONFIG_DRIVER_NVME), "pci-nvme");
    assert_string_equal(config_driver_name(CONFIG_DRIVER_VIRTIO_SOCKET), "pci-virtio-socket");
    assert_string_equal(config_driver_name(CONFIG_DRIVER_QEMU_PVPANIC), "qemu-pvpanic");
    assert_string_equal(config_cpu_vendor_name(CONFIG_CPU_VENDOR_INTEL), "intel");
    assert_string_equal(config_cpu_binding_name(CPU_BINDING_ANY), "any");
}

/* Limits the machine has are config errors, reported where they are
 * written: boot_order entries (at most 32, each once), [dev.*] sections. */
static void test_limits(void **state)
{
    static char text[32768];
    const char *head = "[main]\nname = \"v\"\ncpus = 1\nbootrom = \"rom\"\nmemory = 64\n";
    int n = snprintf(text, sizeof(text),
                     "%sboot_order = [\"a\", \"b\", \"a\"]\n"
                     "[block_dev.m]\ntype = \"mem-async\"\nsize = 4096\n"
                     "[dev.a]\ndriver = \"pci-nvme\"\nblock_dev = \"m\"\npci-path = \"0.4.0\"\n"
                     "[dev.b]\ndriver = \"pci-nvme\"\nblock_dev = \"m\"\npci-path = \"0.5.0\"\n",
                     head);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    expect_error(text, "t.toml:6:25: main.boot_order[2]: dev.a is already listed at "
                       "main.boot_order[0]");

    n = snprintf(text, sizeof(text), "%s[block_dev.m]\ntype = \"mem-async\"\nsize = 4096\n", head);
    for (unsigned i = 0; i <= CONFIG_MAX_DEVICES; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "[dev.d%u]\ndriver = \"pci-nvme\"\nblock_dev = \"m\"\n"
                      "pci-path = \"0.%u.%u\"\n",
                      i, 2 + i / 8, i % 8);
    assert_true((size_t)n < sizeof(text));
    expect_error(text, "t.toml:265:6: dev.d64: at most 64 [dev.*] sections are supported");

    expect_error("[main]\nname = \"a\\nb\"\ncpus = 1\nbootrom = \"rom\"\nmemory = 64\n",
                 "t.toml:2:8: main.name: must not contain control characters (it is used in "
                 "file names and logs)");
}

int main(void)
{
    /* Warnings are checked through cfg.warnings; keep the output quiet. */
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_example),
        cmocka_unit_test(test_crucible_example),
        cmocka_unit_test(test_cpuid_example),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_main_errors),
        cmocka_unit_test(test_block_dev_errors),
        cmocka_unit_test(test_block_dev_direct),
        cmocka_unit_test(test_block_dev_nbd),
        cmocka_unit_test(test_crucible_generation_auto),
        cmocka_unit_test(test_crucible_errors),
        cmocka_unit_test(test_device_errors),
        cmocka_unit_test(test_cpuid_errors),
        cmocka_unit_test(test_cloudinit_errors),
        cmocka_unit_test(test_error_hides_warnings),
        cmocka_unit_test(test_toml_syntax_error),
        cmocka_unit_test(test_bad_fixtures),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_unknown_keys_warn),
        cmocka_unit_test(test_parse_bdf),
        cmocka_unit_test(test_parse_sockaddr),
        cmocka_unit_test(test_parse_uuid),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_cpuid_key),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_vsock_unix_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
