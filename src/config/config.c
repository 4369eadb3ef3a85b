/* Reads the propolis-standalone TOML file into struct config: the parsers of
 * every section, written with the accessors of config_access.h, the checks
 * between sections, and the entry points of config.h. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "config/config_access.h"
#include "config/toml.h"

#define CONFIG_FILE_MAX (16u << 20)        /* refuse absurdly large files */
#define PVPANIC_PORT_TEXT "I/O port 0x505" /* for messages */

/* Values of [main] that name other sections, resolved once every section has
 * been read. */
struct main_refs {
    const struct toml_value *cpuid_profile;
    const struct toml_value *boot_order;
};

static const char *const block_type_names[] = {
    [CONFIG_BLOCK_FILE] = "file",           [CONFIG_BLOCK_MEM_ASYNC] = "mem-async",
    [CONFIG_BLOCK_CRUCIBLE] = "crucible",   [CONFIG_BLOCK_CRUCIBLE_MEM] = "crucible-mem",
    [CONFIG_BLOCK_CLOUDINIT] = "cloudinit", [CONFIG_BLOCK_NBD] = "nbd",
};

static const char *const driver_names[] = {
    [CONFIG_DRIVER_VIRTIO_BLOCK] = "pci-virtio-block",
    [CONFIG_DRIVER_NVME] = "pci-nvme",
    [CONFIG_DRIVER_VIRTIO_VIONA] = "pci-virtio-viona",
    [CONFIG_DRIVER_VIRTIO_SOCKET] = "pci-virtio-socket",
    [CONFIG_DRIVER_QEMU_PVPANIC] = "qemu-pvpanic",
};

static const char *const vendor_names[] = {
    [CONFIG_CPU_VENDOR_AMD] = "amd",
    [CONFIG_CPU_VENDOR_INTEL] = "intel",
};

static const char *const cpu_binding_names[] = {
    [CPU_BINDING_ANY] = "any",
    [CPU_BINDING_UPPER_HALF] = "upper-half",
};

static const char *name_of(const char *const *names, size_t count, size_t i)
{
    return i < count ? names[i] : "?";
}

const char *config_block_type_name(enum config_block_type type)
{
    return name_of(block_type_names, ARRAY_LEN(block_type_names), (size_t)type);
}

const char *config_driver_name(enum config_driver driver)
{
    return name_of(driver_names, ARRAY_LEN(driver_names), (size_t)driver);
}

const char *config_cpu_vendor_name(enum config_cpu_vendor vendor)
{
    return name_of(vendor_names, ARRAY_LEN(vendor_names), (size_t)vendor);
}

const char *config_cpu_binding_name(enum cpu_binding binding)
{
    return name_of(cpu_binding_names, ARRAY_LEN(cpu_binding_names), (size_t)binding);
}

/* ---- [main] ---- */

static int check_vm_name(struct parser *p, const struct toml_value *v, const char *kp)
{
    if (check_str(p, v, kp, STR_NONEMPTY | STR_NO_NUL))
        return -1;
    const char *s = v->u.string.ptr;
    if (v->u.string.len > CONFIG_NAME_MAX)
        return perr(p, v->line, v->column, kp, "must be at most %d bytes, got %zu", CONFIG_NAME_MAX,
                    v->u.string.len);
    if (strchr(s, '/'))
        return perr(p, v->line, v->column, kp,
                    "must not contain '/' (the name is used in file names)");
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return perr(p, v->line, v->column, kp,
                        "must not contain control characters (it is used in file names and logs)");
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return perr(p, v->line, v->column, kp, "must not be \".\" or \"..\"");
    return 0;
}

static int parse_main(struct parser *p, struct section *root, struct main_refs *refs)
{
    struct config_main *m = &p->cfg->main;
    const struct toml_keyval *kv;
    int r = sec_table(root, "main", &kv);
    if (r < 0)
        return -1;
    if (r == 0)
        return perr(p, 0, 0, NULL, "missing required section [main]");
    m->line = kv->line;
    m->column = kv->column;

    struct section s;
    if (sec_open(p, &s, kv->value, "main", kv->line, kv->column))
        return -1;
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    int e = 0;

    if (sec_get(&s, "name", true, &v, kp) != 1 || check_vm_name(p, v, kp) ||
        !(m->name = value_strdup(p, v)))
        goto out;
    if (sec_int(&s, "cpus", true, 1, CONFIG_MAX_CPUS, &n) < 0)
        goto out;
    m->cpus = (unsigned)n;
    if (sec_str(&s, "bootrom", true, STR_NONEMPTY | STR_NO_NUL, &m->bootrom, &m->bootrom_pos) < 0)
        goto out;
    if ((e = sec_str(&s, "bootrom_version", false, STR_NO_NUL, &m->bootrom_version, NULL)) < 0)
        goto out;
    if (e == 0 && !(m->bootrom_version = memdup_str(p, CONFIG_DEFAULT_BOOTROM_VERSION,
                                                    strlen(CONFIG_DEFAULT_BOOTROM_VERSION))))
        goto out;
    if (sec_int(&s, "memory", true, 1, (int64_t)CONFIG_MAX_MEMORY_MIB, &n) < 0)
        goto out;
    m->memory_mib = (uint64_t)n;
    m->memory_pos = sec_pos(&s, "memory");
    if (sec_bool(&s, "use_reservoir", &m->use_reservoir) < 0)
        goto out;

    if ((e = sec_str(&s, "cpuid_profile", false, STR_NONEMPTY | STR_NO_NUL, &m->cpuid_profile,
                     NULL)) < 0)
        goto out;
    if (e == 1)
        refs->cpuid_profile = sec_find(&s, "cpuid_profile")->value;

    int binding = CPU_BINDING_ANY;
    if (sec_enum(&s, "cpu_binding", false, cpu_binding_names, ARRAY_LEN(cpu_binding_names),
                 "cpu_binding", &binding, NULL) < 0)
        goto out;
    m->cpu_binding = (enum cpu_binding)binding;

    if ((e = sec_int(&s, "exit_on_halt", false, 0, 255, &n)) < 0)
        goto out;
    m->exit_on_halt = e == 1 ? (int)n : 0;
    if ((e = sec_int(&s, "exit_on_reboot", false, 0, 255, &n)) < 0)
        goto out;
    if (e == 1) {
        m->has_exit_on_reboot = true;
        m->exit_on_reboot = (int)n;
    }

    if ((e = sec_typed(&s, "boot_order", false, TOML_ARRAY, &v, kp)) < 0)
        goto out;
    if (e == 1) {
        size_t count = v->u.array.count;
        m->has_boot_order = true;
        if (!(m->boot_order = xcalloc(p, count, sizeof(char *))) ||
            !(m->boot_order_dev = xcalloc(p, count, sizeof(size_t))))
            goto out;
        for (size_t i = 0; i < count; i++) {
            const struct toml_value *el = v->u.array.items[i];
            char ekp[KP_MAX];
            kp_index(ekp, sizeof(ekp), kp, i);
            if (check_str(p, el, ekp, STR_NONEMPTY | STR_NO_NUL) ||
                !(m->boot_order[i] = value_strdup(p, el)))
                goto out;
            m->boot_order_count = i + 1;
        }
        refs->boot_order = v;
    }

    if ((e = sec_get(&s, "acpi_variant", false, &v, kp)) < 0)
        goto out;
    if (e == 1) {
        if (check_str(p, v, kp, 0))
            goto out;
        if (strcasecmp(v->u.string.ptr, "V0") != 0 || v->u.string.len != 2) {
            perr(p, v->line, v->column, kp, "unknown acpi_variant \"%.*s\" (expected V0)",
                 (int)v->u.string.len, v->u.string.ptr);
            goto out;
        }
    }
    m->acpi_variant = ACPI_VARIANT_V0;

out:
    sec_close(&s);
    return p->failed ? -1 : 0;
}

/* ---- [cpuid.NAME] ---- */

static int parse_cpuid_profile(struct parser *p, const struct toml_keyval *kv, const char *kp,
                               struct config_cpuid_profile *prof)
{
    const struct toml_value *tbl = kv->value;
    struct section s;
    if (sec_open(p, &s, tbl, kp, kv->line, kv->column))
        return -1;
    const struct toml_keyval **leaf_kv = NULL;
    int vendor;
    if (sec_enum(&s, "vendor", true, vendor_names, ARRAY_LEN(vendor_names), "vendor", &vendor,
                 NULL) < 0)
        goto out;
    prof->vendor = (enum config_cpu_vendor)vendor;

    if (!(prof->leaves = xcalloc(p, tbl->u.table.count, sizeof(*prof->leaves))) ||
        !(leaf_kv = xcalloc(p, tbl->u.table.count, sizeof(*leaf_kv))))
        goto out;
    for (size_t i = 0; i < tbl->u.table.count; i++) {
        const struct toml_keyval *lkv = &tbl->u.table.items[i];
        if (s.used[i]) /* vendor */
            continue;
        s.used[i] = true;
        char lkp[KP_MAX], why[256];
        kp_join(lkp, sizeof(lkp), kp, lkv->key, lkv->key_len);
        struct config_cpuid_leaf *leaf = &prof->leaves[prof->leaf_count];
        if (config_parse_cpuid_key(lkv->key, lkv->key_len, &leaf->func, &leaf->has_index,
                                   &leaf->index, why, sizeof(why))) {
            perr(p, lkv->line, lkv->column, lkp, "%s", why);
            goto out;
        }
        leaf->line = lkv->line;
        leaf->column = lkv->column;

        const struct toml_value *v = lkv->value;
        if (v->type != TOML_ARRAY) {
            perr(p, v->line, v->column, lkp,
                 "expected an array of 4 integers [eax, ebx, ecx, edx], got %s",
                 toml_type_name(v->type));
            goto out;
        }
        if (v->u.array.count != 4) {
            perr(p, v->line, v->column, lkp, "expected 4 values [eax, ebx, ecx, edx], got %zu",
                 v->u.array.count);
            goto out;
        }
        for (size_t r = 0; r < 4; r++) {
            char ekp[KP_MAX];
            int64_t x = 0;
            kp_index(ekp, sizeof(ekp), lkp, r);
            if (check_int(p, v->u.array.items[r], ekp, 0, UINT32_MAX, &x))
                goto out;
            leaf->regs[r] = (uint32_t)x;
        }

        for (size_t j = 0; j < prof->leaf_count; j++) {
            const struct config_cpuid_leaf *o = &prof->leaves[j];
            if (o->func != leaf->func || o->has_index != leaf->has_index ||
                (leaf->has_index && o->index != leaf->index))
                continue;
            char what[64];
            if (leaf->has_index)
                snprintf(what, sizeof(what), "leaf 0x%" PRIx32 " index 0x%" PRIx32, leaf->func,
                         leaf->index);
            else
                snprintf(what, sizeof(what), "leaf 0x%" PRIx32, leaf->func);
            perr(p, lkv->line, lkv->column, lkp, "%s is already defined by \"%.*s\" at line %u",
                 what, (int)leaf_kv[j]->key_len, leaf_kv[j]->key, o->line);
            goto out;
        }
        leaf_kv[prof->leaf_count++] = lkv;
    }

out:
    free(leaf_kv);
    sec_close(&s);
    return p->failed ? -1 : 0;
}

static int reserve_cpuid_profiles(struct parser *p, size_t n)
{
    return (p->cfg->cpuid_profiles = xcalloc(p, n, sizeof(*p->cfg->cpuid_profiles))) ? 0 : -1;
}

static int add_cpuid_profile(struct parser *p, const struct toml_keyval *kv, const char *kp,
                             char *name)
{
    struct config_cpuid_profile *prof = &p->cfg->cpuid_profiles[p->cfg->cpuid_profile_count++];
    *prof = (struct config_cpuid_profile){.name = name, .line = kv->line, .column = kv->column};
    return parse_cpuid_profile(p, kv, kp, prof);
}

static int parse_cpuid(struct parser *p, struct section *root)
{
    return parse_named_sections(p, root, "cpuid", reserve_cpuid_profiles, add_cpuid_profile);
}

/* ---- [cloudinit] ---- */

static int parse_cloudinit_item(struct parser *p, struct section *s, const char *key,
                                struct config_cloudinit_item *item)
{
    char kp[KP_MAX], pkey[64];
    const struct toml_value *v = NULL;
    int r = sec_get(s, key, false, &v, kp);
    if (r < 0)
        return -1;
    if (r == 1) {
        if (check_str(p, v, kp, 0) || !(item->data = value_strdup(p, v)))
            return -1;
        item->len = v->u.string.len;
        item->pos = (struct config_pos){v->line, v->column};
    }
    snprintf(pkey, sizeof(pkey), "%s-path", key);
    struct config_pos pos;
    int rp = sec_str(s, pkey, false, STR_NONEMPTY | STR_NO_NUL, &item->path, &pos);
    if (rp < 0)
        return -1;
    if (rp == 1)
        item->pos = pos;
    if (r == 1 && rp == 1) {
        char pkp[KP_MAX];
        kp_key(pkp, sizeof(pkp), s->kp, pkey);
        return perr(p, pos.line, pos.column, pkp,
                    "cannot be combined with %s (line %u): give the data or a file, not both", kp,
                    v->line);
    }
    return 0;
}

static int parse_cloudinit(struct parser *p, struct section *root)
{
    struct config *cfg = p->cfg;
    const struct toml_keyval *kv;
    int r = sec_table(root, "cloudinit", &kv);
    if (r <= 0)
        return r;
    cfg->has_cloudinit = true;
    cfg->cloudinit.line = kv->line;
    cfg->cloudinit.column = kv->column;
    struct section s;
    if (sec_open(p, &s, kv->value, "cloudinit", kv->line, kv->column))
        return -1;
    if (!parse_cloudinit_item(p, &s, "user-data", &cfg->cloudinit.user_data) &&
        !parse_cloudinit_item(p, &s, "meta-data", &cfg->cloudinit.meta_data))
        parse_cloudinit_item(p, &s, "network-config", &cfg->cloudinit.network_config);
    sec_close(&s);
    return p->failed ? -1 : 0;
}

/* ---- [block_dev.NAME] ---- */

static int sec_workers(struct section *s, unsigned *out)
{
    int64_t n = CONFIG_DEFAULT_WORKERS;
    if (sec_int(s, "workers", false, 1, CONFIG_MAX_WORKERS, &n) < 0)
        return -1;
    *out = (unsigned)n;
    return 0;
}

/* A size in bytes: > 0 and a whole number of blocks. */
static int sec_size(struct section *s, const struct config_block_dev *bd, uint64_t *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    if (sec_get(s, "size", true, &v, kp) != 1 || check_int(s->p, v, kp, 1, INT64_MAX, &n))
        return -1;
    uint32_t bs = config_block_size(bd);
    if ((uint64_t)n % bs)
        return perr(s->p, v->line, v->column, kp,
                    "must be a multiple of the block size (%" PRIu32 "), got %" PRId64, bs, n);
    *out = (uint64_t)n;
    return 0;
}

static int check_sockaddr(struct parser *p, const struct toml_value *v, const char *kp,
                          bool need_port, struct config_sockaddr *out)
{
    char why[256];
    if (check_str(p, v, kp, STR_NO_NUL))
        return -1;
    if (config_parse_sockaddr(v->u.string.ptr, out, why, sizeof(why)))
        return perr(p, v->line, v->column, kp, "%s", why);
    if (need_port &&
        ntohs(out->u.sa.sa_family == AF_INET ? out->u.in4.sin_port : out->u.in6.sin6_port) == 0)
        return perr(p, v->line, v->column, kp, "port 0 in \"%s\" cannot be connected to",
                    out->text);
    return 0;
}

/* A number of seconds (integer or float, finite; > 0, or >= 0 with
 * zero_ok). Returns 1 when written (*out set), 0 when absent, -1 on error. */
static int sec_seconds(struct section *s, const char *key, bool zero_ok, double *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_get(s, key, false, &v, kp);
    if (r != 1)
        return r;
    double t;
    if (v->type == TOML_INTEGER)
        t = (double)v->u.integer;
    else if (v->type == TOML_FLOAT)
        t = v->u.floating;
    else
        return perr(s->p, v->line, v->column, kp, "expected a number of seconds, got %s",
                    toml_type_name(v->type));
    if (!isfinite(t) || t < 0 || (t == 0 && !zero_ok))
        return perr(s->p, v->line, v->column, kp, "must be a %s number of seconds, got %g",
                    zero_ok ? "non-negative" : "positive", t);
    *out = t;
    return 1;
}

/* The URI forms libnbd connects to; the rest of the URI is libnbd's to
 * check when the disk is opened (reported at this key). */
static const char *const nbd_uri_schemes[] = {
    "nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+vsock://", "nbds+vsock://",
};

static int parse_nbd(struct parser *p, struct section *s, struct config_block_dev *bd)
{
    if (sec_str(s, "uri", true, STR_NONEMPTY | STR_NO_NUL, &bd->nbd.uri, &bd->nbd.uri_pos) < 0)
        return -1;
    bool known = false;
    for (size_t i = 0; i < ARRAY_LEN(nbd_uri_schemes); i++)
        known = known || strncmp(bd->nbd.uri, nbd_uri_schemes[i], strlen(nbd_uri_schemes[i])) == 0;
    if (!known) {
        char kp[KP_MAX];
        kp_key(kp, sizeof(kp), s->kp, "uri");
        return perr(
            p, bd->nbd.uri_pos.line, bd->nbd.uri_pos.column, kp,
            "expected an NBD URI (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, "
            "nbds:// for TLS, nbd+vsock://CID[:PORT]/EXPORT), got \"%s\"",
            bd->nbd.uri);
    }
    bd->nbd.reconnect_timeout = CONFIG_DEFAULT_NBD_RECONNECT_TIMEOUT;
    int r = sec_seconds(s, "reconnect_timeout", true, &bd->nbd.reconnect_timeout);
    if (r == 1 && bd->nbd.reconnect_timeout > CONFIG_MAX_NBD_RECONNECT_TIMEOUT) {
        char kp[KP_MAX];
        struct config_pos pos = sec_pos(s, "reconnect_timeout");
        kp_key(kp, sizeof(kp), s->kp, "reconnect_timeout");
        return perr(p, pos.line, pos.column, kp, "at most %d seconds (a week), got %g",
                    CONFIG_MAX_NBD_RECONNECT_TIMEOUT, bd->nbd.reconnect_timeout);
    }
    return r < 0 ? -1 : 0;
}

static int parse_crucible(struct parser *p, struct section *s, struct config_block_dev *bd)
{
    struct config_crucible *c = &bd->crucible;
    char kp[KP_MAX], why[256];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    int r;

    if (!bd->has_block_size) {
        kp_key(kp, sizeof(kp), s->kp, "block_size");
        return perr(p, s->line, s->column, kp,
                    "required key is missing (crucible needs the region's block size)");
    }
    if (sec_int(s, "blocks_per_extent", true, 1, INT64_MAX, &n) < 0)
        return -1;
    c->blocks_per_extent = (uint64_t)n;
    if (sec_int(s, "extent_count", true, 1, UINT32_MAX, &n) < 0)
        return -1;
    c->extent_count = (uint32_t)n;

    if (sec_typed(s, "targets", true, TOML_ARRAY, &v, kp) != 1)
        return -1;
    if (v->u.array.count != CONFIG_CRUCIBLE_TARGETS)
        return perr(p, v->line, v->column, kp,
                    "expected exactly 3 targets (\"IP:PORT\" of each downstairs), got %zu",
                    v->u.array.count);
    for (size_t i = 0; i < CONFIG_CRUCIBLE_TARGETS; i++) {
        const struct toml_value *el = v->u.array.items[i];
        char ekp[KP_MAX];
        kp_index(ekp, sizeof(ekp), kp, i);
        if (check_sockaddr(p, el, ekp, true, &c->targets[i]))
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (c->targets[j].len == c->targets[i].len &&
                memcmp(&c->targets[j].u, &c->targets[i].u, c->targets[i].len) == 0)
                return perr(p, el->line, el->column, ekp, "%s is the same downstairs as %s[%zu]",
                            c->targets[i].text, kp, j);
        }
    }

    /* "auto" (our extension): one more than the highest generation the
     * downstairs report, so a restart needs no config change. */
    if ((r = sec_get(s, "generation", true, &v, kp)) != 1)
        return -1;
    if (v->type == TOML_STRING) {
        if (strcmp(v->u.string.ptr, "auto") != 0)
            return perr(p, v->line, v->column, kp,
                        "expected a non-negative integer or \"auto\", got \"%s\"", v->u.string.ptr);
        c->generation_auto = true;
    } else {
        if (check_int(p, v, kp, 0, INT64_MAX, &n))
            return -1;
        c->generation = (uint64_t)n;
    }

    if ((r = sec_get(s, "upstairs_id", false, &v, kp)) < 0)
        return -1;
    if (r == 1) {
        if (check_str(p, v, kp, STR_NO_NUL))
            return -1;
        if (config_parse_uuid(v->u.string.ptr, c->upstairs_id, why, sizeof(why)))
            return perr(p, v->line, v->column, kp, "%s", why);
        c->has_upstairs_id = true;
    }
    if (sec_bool(s, "lossy", &c->lossy) < 0)
        return -1;

    c->flush_timeout = CONFIG_DEFAULT_FLUSH_TIMEOUT;
    if ((r = sec_seconds(s, "flush_timeout", false, &c->flush_timeout)) < 0)
        return -1;
    c->has_flush_timeout = r == 1;

    if ((r = sec_str(s, "encryption_key", false, STR_NO_NUL, &c->encryption_key_b64, NULL)) < 0)
        return -1;
    if (r == 1) {
        v = sec_find(s, "encryption_key")->value;
        kp_key(kp, sizeof(kp), s->kp, "encryption_key");
        size_t len = 0;
        uint8_t key[CONFIG_CRUCIBLE_KEY_LEN + 3];
        if (config_base64_decode(v->u.string.ptr, v->u.string.len, key, sizeof(key), &len, why,
                                 sizeof(why)))
            return perr(p, v->line, v->column, kp, "%s", why);
        if (len != CONFIG_CRUCIBLE_KEY_LEN)
            return perr(p, v->line, v->column, kp,
                        "must be the base64 encoding of a 256-bit key (32 bytes), got %zu bytes",
                        len);
        memcpy(c->encryption_key, key, sizeof(c->encryption_key));
        c->has_encryption_key = true;
    }
    if (sec_str(s, "cert_pem", false, STR_NONEMPTY | STR_NO_NUL, &c->cert_pem, NULL) < 0 ||
        sec_str(s, "key_pem", false, STR_NONEMPTY | STR_NO_NUL, &c->key_pem, NULL) < 0 ||
        sec_str(s, "root_cert_pem", false, STR_NONEMPTY | STR_NO_NUL, &c->root_cert_pem, NULL) < 0)
        return -1;

    if ((r = sec_get(s, "control_addr", false, &v, kp)) < 0)
        return -1;
    if (r == 1) {
        if (check_sockaddr(p, v, kp, false, &c->control_addr))
            return -1;
        c->has_control_addr = true;
    }
#define KEY_POS(k) c->pos.k = sec_pos(s, #k)
    KEY_POS(block_size);
    KEY_POS(blocks_per_extent);
    KEY_POS(extent_count);
    KEY_POS(targets);
    KEY_POS(generation);
    KEY_POS(upstairs_id);
    KEY_POS(lossy);
    KEY_POS(encryption_key);
    KEY_POS(cert_pem);
    KEY_POS(key_pem);
    KEY_POS(root_cert_pem);
    KEY_POS(control_addr);
    KEY_POS(read_only);
#undef KEY_POS
    return 0;
}

/* A cloud-init disk is a read-only volume of 512-byte sectors built from
 * [cloudinit]; a block_size or read_only saying otherwise is refused. */
static int parse_cloudinit_dev(struct parser *p, struct section *s, struct config_block_dev *bd,
                               const struct toml_value *type_val)
{
    char vkp[KP_MAX];
    if (!p->cfg->has_cloudinit) {
        kp_key(vkp, sizeof(vkp), s->kp, "type");
        return perr(p, type_val->line, type_val->column, vkp,
                    "type \"cloudinit\" needs a [cloudinit] section holding the data");
    }
    if (bd->has_block_size && bd->block_size != 512) {
        struct config_pos pos = sec_pos(s, "block_size");
        kp_key(vkp, sizeof(vkp), s->kp, "block_size");
        return perr(p, pos.line, pos.column, vkp,
                    "a cloudinit disk has 512-byte blocks (its FAT volume's sector size)");
    }
    if (bd->has_read_only && !bd->read_only) {
        struct config_pos pos = sec_pos(s, "read_only");
        kp_key(vkp, sizeof(vkp), s->kp, "read_only");
        return perr(p, pos.line, pos.column, vkp, "a cloudinit disk is always read-only");
    }
    bd->cloudinit.data = &p->cfg->cloudinit;
    return 0;
}

static int parse_block_dev(struct parser *p, const struct toml_keyval *kv, const char *kp,
                           struct config_block_dev *bd)
{
    struct section s;
    if (sec_open(p, &s, kv->value, kp, kv->line, kv->column))
        return -1;
    const struct toml_value *type_val = NULL;
    int64_t n = 0;
    int type, r;

    if (sec_enum(&s, "type", true, block_type_names, ARRAY_LEN(block_type_names), "type", &type,
                 &type_val) < 0)
        goto out;
    bd->type = (enum config_block_type)type;

    if ((r = sec_pow2(&s, "block_size", CONFIG_MIN_BLOCK_SIZE, CONFIG_MAX_BLOCK_SIZE, &n)) < 0)
        goto out;
    if (r == 1) {
        bd->has_block_size = true;
        bd->block_size = (uint32_t)n;
    }
    if ((r = sec_bool(&s, "read_only", &bd->read_only)) < 0)
        goto out;
    bd->has_read_only = r == 1;
    if ((r = sec_bool(&s, "skip_flush", &bd->skip_flush)) < 0)
        goto out;
    bd->has_skip_flush = r == 1;

    /* O_DIRECT is about a host file: refused rather than ignored elsewhere,
     * so nobody believes a RAM disk bypasses a cache it never had. */
    if (bd->type != CONFIG_BLOCK_FILE && sec_find(&s, "direct")) {
        char vkp[KP_MAX];
        struct config_pos pos = sec_pos(&s, "direct");
        kp_key(vkp, sizeof(vkp), s.kp, "direct");
        perr(p, pos.line, pos.column, vkp,
             "only a disk of type \"file\" can be opened with O_DIRECT (this one is \"%s\")",
             config_block_type_name(bd->type));
        goto out;
    }

    switch (bd->type) {
    case CONFIG_BLOCK_FILE:
        if (sec_str(&s, "path", true, STR_NONEMPTY | STR_NO_NUL, &bd->file.path,
                    &bd->file.path_pos) < 0 ||
            sec_workers(&s, &bd->file.workers) < 0)
            goto out;
        if ((r = sec_bool(&s, "direct", &bd->file.direct)) < 0)
            goto out;
        if (r == 1)
            bd->file.direct_pos = sec_pos(&s, "direct");
        break;
    case CONFIG_BLOCK_MEM_ASYNC:
        if (sec_size(&s, bd, &bd->mem_async.size) == 0)
            sec_workers(&s, &bd->mem_async.workers);
        break;
    case CONFIG_BLOCK_CRUCIBLE:
        parse_crucible(p, &s, bd);
        break;
    case CONFIG_BLOCK_CRUCIBLE_MEM:
        sec_size(&s, bd, &bd->crucible_mem.size);
        break;
    case CONFIG_BLOCK_CLOUDINIT:
        parse_cloudinit_dev(p, &s, bd, type_val);
        break;
    case CONFIG_BLOCK_NBD:
        parse_nbd(p, &s, bd);
        break;
    }

out:
    sec_close(&s);
    return p->failed ? -1 : 0;
}

static int reserve_block_devs(struct parser *p, size_t n)
{
    return (p->cfg->block_devs = xcalloc(p, n, sizeof(*p->cfg->block_devs))) ? 0 : -1;
}

static int add_block_dev(struct parser *p, const struct toml_keyval *kv, const char *kp, char *name)
{
    struct config_block_dev *bd = &p->cfg->block_devs[p->cfg->block_dev_count++];
    *bd = (struct config_block_dev){
        .name = name, .line = kv->line, .column = kv->column, .source = p->cfg->path};
    return parse_block_dev(p, kv, kp, bd);
}

static int parse_block_devs(struct parser *p, struct section *root)
{
    return parse_named_sections(p, root, "block_dev", reserve_block_devs, add_block_dev);
}

/* ---- [dev.NAME] ---- */

/* A Linux network interface name (dev_valid_name()). */
static int check_ifname(struct parser *p, const struct toml_value *v, const char *kp)
{
    if (check_str(p, v, kp, STR_NONEMPTY | STR_NO_NUL))
        return -1;
    const char *s = v->u.string.ptr;
    if (v->u.string.len > 15)
        return perr(p, v->line, v->column, kp,
                    "Linux interface names are at most 15 bytes, got %zu (\"%s\")", v->u.string.len,
                    s);
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strpbrk(s, "/: \t\n\r\v\f"))
        return perr(p, v->line, v->column, kp, "\"%s\" is not a valid interface name", s);
    return 0;
}

/* "52:54:00:12:34:56": six pairs of hex digits; unicast and not all zero,
 * as the guest will use it as its own address. */
static int check_mac(struct parser *p, const struct toml_value *v, const char *kp, uint8_t out[6])
{
    if (check_str(p, v, kp, STR_NONEMPTY | STR_NO_NUL))
        return -1;
    const char *s = v->u.string.ptr;
    unsigned bytes[6];
    char tail;
    if (v->u.string.len != 17 ||
        sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &bytes[0], &bytes[1], &bytes[2], &bytes[3],
               &bytes[4], &bytes[5], &tail) != 6 ||
        strspn(s, "0123456789abcdefABCDEF:") != 17)
        return perr(p, v->line, v->column, kp,
                    "\"%s\" is not a MAC address (six pairs of hex digits separated by ':')", s);
    for (unsigned i = 0; i < 6; i++)
        if (s[3 * i + 2] != (i == 5 ? '\0' : ':'))
            return perr(p, v->line, v->column, kp,
                        "\"%s\" is not a MAC address (six pairs of hex digits separated by ':')",
                        s);
    if (bytes[0] & 1)
        return perr(p, v->line, v->column, kp,
                    "%s is a multicast address; a NIC needs a unicast one", s);
    if ((bytes[0] | bytes[1] | bytes[2] | bytes[3] | bytes[4] | bytes[5]) == 0)
        return perr(p, v->line, v->column, kp, "the all-zero address is not a NIC's address");
    for (unsigned i = 0; i < 6; i++)
        out[i] = (uint8_t)bytes[i];
    return 0;
}

static int sec_queue_size(struct section *s, const char *key, unsigned def, unsigned *out)
{
    int64_t n = def;
    int r = sec_pow2(s, key, 2, CONFIG_MAX_QUEUE_SIZE, &n);
    *out = (unsigned)n;
    return r;
}

/* "unix:/path" (our extension: a UNIX stream socket), else "IP:PORT". */
static int check_mapping_addr(struct parser *p, const struct toml_value *v, const char *kp,
                              struct config_port_mapping *pm)
{
    if (v->type != TOML_STRING || v->u.string.len < 5 || strncmp(v->u.string.ptr, "unix:", 5) != 0)
        return check_sockaddr(p, v, kp, true, &pm->addr);
    if (check_str(p, v, kp, STR_NO_NUL))
        return -1;
    const char *path = v->u.string.ptr + 5;
    if (path[0] != '/')
        return perr(p, v->line, v->column, kp, "\"%s\": a UNIX socket path must be absolute",
                    v->u.string.ptr);
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return perr(p, v->line, v->column, kp, "\"%s\": a UNIX socket path has at most %zu bytes",
                    v->u.string.ptr, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    if (!(pm->unix_path = xcalloc(p, strlen(path) + 1, 1)))
        return -1;
    strcpy(pm->unix_path, path);
    return 0;
}

static int parse_port_mappings(struct parser *p, struct section *s, struct config_device *d)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_typed(s, "port_mappings", false, TOML_ARRAY, &v, kp);
    if (r <= 0)
        return r;
    size_t count = v->u.array.count;
    if (!(d->vsock.port_mappings = xcalloc(p, count, sizeof(*d->vsock.port_mappings))))
        return -1;
    for (size_t i = 0; i < count; i++) {
        const struct toml_value *el = v->u.array.items[i];
        char ekp[KP_MAX], fkp[KP_MAX];
        kp_index(ekp, sizeof(ekp), kp, i);
        if (el->type != TOML_TABLE)
            return perr(p, el->line, el->column, ekp,
                        "expected a table { port = GUEST_PORT, addr = \"IP:PORT\" }, got %s",
                        toml_type_name(el->type));
        struct section m;
        if (sec_open(p, &m, el, ekp, el->line, el->column))
            return -1;
        struct config_port_mapping *pm = &d->vsock.port_mappings[i];
        int64_t port = 0;
        const struct toml_value *addr = NULL;
        if (sec_int(&m, "port", true, 0, UINT32_MAX, &port) == 1 &&
            sec_get(&m, "addr", true, &addr, fkp) == 1 &&
            check_mapping_addr(p, addr, fkp, pm) == 0) {
            pm->port = (uint32_t)port;
            d->vsock.port_mapping_count = i + 1;
            for (size_t j = 0; j < i; j++) {
                if (d->vsock.port_mappings[j].port == pm->port) {
                    const struct toml_value *pv = sec_find(&m, "port")->value;
                    char pkp[KP_MAX];
                    kp_key(pkp, sizeof(pkp), ekp, "port");
                    perr(p, pv->line, pv->column, pkp,
                         "guest port %" PRIu32 " is already mapped by %s[%zu]", pm->port, kp, j);
                    break;
                }
            }
        }
        sec_close(&m);
        if (p->failed)
            return -1;
    }
    return 1;
}

static int parse_pci_path(struct parser *p, struct section *s, struct config_device *d,
                          bool required)
{
    char kp[KP_MAX], why[256];
    const struct toml_value *v = NULL;
    int r = sec_get(s, "pci-path", required, &v, kp);
    if (r <= 0)
        return r;
    if (check_str(p, v, kp, STR_NO_NUL))
        return -1;
    if (config_parse_bdf(v->u.string.ptr, &d->pci, why, sizeof(why)))
        return perr(p, v->line, v->column, kp, "%s", why);
    d->has_pci = true;
    d->pci_pos.line = v->line;
    d->pci_pos.column = v->column;
    if (d->pci.bus == 0 && d->pci.dev <= 1)
        return perr(p, v->line, v->column, kp,
                    "%s is reserved for the chipset (host bridge 0.0.0, PIIX3 0.1.0, "
                    "PIIX4 PM 0.1.3); use a device number from 2 to 31",
                    v->u.string.ptr);
    const struct config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->device_count; i++) {
        const struct config_device *o = &cfg->devices[i];
        if (o != d && o->has_pci && o->pci.bus == d->pci.bus && o->pci.dev == d->pci.dev &&
            o->pci.func == d->pci.func) {
            char okp[KP_MAX];
            kp_key(okp, sizeof(okp), "dev", o->name);
            return perr(p, v->line, v->column, kp, "%s is already used by %s (line %u)",
                        v->u.string.ptr, okp, o->pci_pos.line);
        }
    }
    return 1;
}

static int parse_device(struct parser *p, const struct toml_keyval *kv, const char *kp,
                        struct config_device *d)
{
    struct config *cfg = p->cfg;
    struct section s;
    if (sec_open(p, &s, kv->value, kp, kv->line, kv->column))
        return -1;
    char vkp[KP_MAX];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    int driver, r;

    if (sec_enum(&s, "driver", true, driver_names, ARRAY_LEN(driver_names), "driver", &driver,
                 NULL) < 0)
        goto out;
    d->driver = (enum config_driver)driver;

    /* qemu-pvpanic with enable_isa is an ISA device; every other device is PCI. */
    if (d->driver == CONFIG_DRIVER_QEMU_PVPANIC &&
        sec_bool(&s, "enable_isa", &d->pvpanic.enable_isa) < 0)
        goto out;
    bool isa_only = d->driver == CONFIG_DRIVER_QEMU_PVPANIC && d->pvpanic.enable_isa;
    if (parse_pci_path(p, &s, d, !isa_only) < 0)
        goto out;

    switch (d->driver) {
    case CONFIG_DRIVER_VIRTIO_BLOCK:
    case CONFIG_DRIVER_NVME: {
        if (sec_get(&s, "block_dev", true, &v, vkp) != 1 ||
            check_str(p, v, vkp, STR_NONEMPTY | STR_NO_NUL) ||
            !(d->blk.block_dev = value_strdup(p, v)))
            goto out;
        const struct config_block_dev *bd = config_find_block_dev(cfg, d->blk.block_dev);
        if (!bd) {
            char bkp[KP_MAX];
            kp_join(bkp, sizeof(bkp), "block_dev", v->u.string.ptr, v->u.string.len);
            perr(p, v->line, v->column, vkp, "no [%s] section", bkp);
            goto out;
        }
        d->blk.block_dev_index = (size_t)(bd - cfg->block_devs);
        break;
    }
    case CONFIG_DRIVER_VIRTIO_VIONA:
        if (sec_get(&s, "vnic", true, &v, vkp) != 1 || check_ifname(p, v, vkp) ||
            !(d->viona.vnic = value_strdup(p, v)))
            goto out;
        d->viona.vnic_pos = (struct config_pos){v->line, v->column};
        if (sec_queue_size(&s, "rx-queue-size", CONFIG_DEFAULT_RX_QUEUE_SIZE,
                           &d->viona.rx_queue_size) < 0 ||
            sec_queue_size(&s, "tx-queue-size", CONFIG_DEFAULT_TX_QUEUE_SIZE,
                           &d->viona.tx_queue_size) < 0)
            goto out;
        if ((r = sec_bool(&s, "tx_copy_data", &d->viona.tx_copy_data)) < 0)
            goto out;
        d->viona.has_tx_copy_data = r == 1;
        if ((r = sec_int(&s, "tx_header_pad", false, 0, UINT16_MAX, &n)) < 0)
            goto out;
        if (r == 1) {
            d->viona.has_tx_header_pad = true;
            d->viona.tx_header_pad = (uint16_t)n;
        }
        if ((r = sec_get(&s, "mac", false, &v, vkp)) < 0 ||
            (r == 1 && check_mac(p, v, vkp, d->viona.mac) < 0))
            goto out;
        d->viona.has_mac = r == 1;
        d->viona.vhost_net = true;
        if (sec_bool(&s, "vhost-net", &d->viona.vhost_net) < 0)
            goto out;
        break;
    case CONFIG_DRIVER_VIRTIO_SOCKET:
        /* CIDs 0-2 are reserved, the upper 32 bits must be zero and
         * 0xffffffff is VMADDR_CID_ANY. */
        if (sec_int(&s, "guest_cid", true, 3, 0xfffffffe, &n) < 0)
            goto out;
        d->vsock.guest_cid = (uint64_t)n;
        if (parse_port_mappings(p, &s, d) < 0)
            goto out;
        struct config_pos pos;
        if (sec_str(&s, "uds_path", false, STR_NONEMPTY | STR_NO_NUL, &d->vsock.uds_path, &pos) ==
                1 &&
            strlen(d->vsock.uds_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            char ukp[KP_MAX];
            kp_key(ukp, sizeof(ukp), s.kp, "uds_path");
            perr(p, pos.line, pos.column, ukp, "a UNIX socket path has at most %zu bytes",
                 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        }
        break;
    case CONFIG_DRIVER_QEMU_PVPANIC:
        break;
    }

out:
    sec_close(&s);
    return p->failed ? -1 : 0;
}

/* Checks between devices once all are read. */
static int check_devices(struct parser *p)
{
    const struct config *cfg = p->cfg;
    const struct config_device *vsock = NULL, *pvpanic_isa = NULL;
    for (size_t i = 0; i < cfg->device_count; i++) {
        const struct config_device *d = &cfg->devices[i];
        char kp[KP_MAX], okp[KP_MAX];
        kp_key(kp, sizeof(kp), "dev", d->name);
        if (d->driver == CONFIG_DRIVER_VIRTIO_SOCKET) {
            if (vsock) {
                kp_key(okp, sizeof(okp), "dev", vsock->name);
                return perr(p, d->line, d->column, kp,
                            "only one pci-virtio-socket device is supported (%s is one)", okp);
            }
            vsock = d;
        }
        if (d->driver == CONFIG_DRIVER_QEMU_PVPANIC && d->pvpanic.enable_isa) {
            if (pvpanic_isa) {
                kp_key(okp, sizeof(okp), "dev", pvpanic_isa->name);
                return perr(p, d->line, d->column, kp,
                            "only one qemu-pvpanic can have enable_isa (" PVPANIC_PORT_TEXT
                            " is already %s's)",
                            okp);
            }
            pvpanic_isa = d;
        }
        if (d->has_pci && d->pci.func != 0) {
            bool has_fn0 = false;
            for (size_t j = 0; j < cfg->device_count; j++) {
                const struct config_device *o = &cfg->devices[j];
                if (o->has_pci && o->pci.bus == d->pci.bus && o->pci.dev == d->pci.dev &&
                    o->pci.func == 0)
                    has_fn0 = true;
            }
            if (!has_fn0)
                pwarn(p, d->pci_pos.line, d->pci_pos.column,
                      "%s.pci-path: no device at function 0 of %u.%u; guests scan functions "
                      "1-7 only when function 0 exists",
                      kp, d->pci.bus, d->pci.dev);
        }
    }
    return 0;
}

static int reserve_devices(struct parser *p, size_t n)
{
    return (p->cfg->devices = xcalloc(p, n, sizeof(*p->cfg->devices))) ? 0 : -1;
}

static int add_device(struct parser *p, const struct toml_keyval *kv, const char *kp, char *name)
{
    if (p->cfg->device_count == CONFIG_MAX_DEVICES) {
        free(name);
        return perr(p, kv->line, kv->column, kp, "at most %d [dev.*] sections are supported",
                    CONFIG_MAX_DEVICES);
    }
    struct config_device *d = &p->cfg->devices[p->cfg->device_count++];
    *d = (struct config_device){.name = name, .line = kv->line, .column = kv->column};
    return parse_device(p, kv, kp, d);
}

static int parse_devices(struct parser *p, struct section *root)
{
    int r = parse_named_sections(p, root, "dev", reserve_devices, add_device);
    return r < 0 ? r : check_devices(p);
}

/* ---- references from [main] ---- */

static int resolve_main(struct parser *p, const struct main_refs *refs)
{
    struct config *cfg = p->cfg;
    struct config_main *m = &cfg->main;
    if (m->cpuid_profile) {
        const struct toml_value *v = refs->cpuid_profile;
        const struct config_cpuid_profile *prof = config_find_cpuid_profile(cfg, m->cpuid_profile);
        if (!prof) {
            char ckp[KP_MAX];
            kp_key(ckp, sizeof(ckp), "cpuid", m->cpuid_profile);
            return perr(p, v->line, v->column, "main.cpuid_profile", "no [%s] section", ckp);
        }
        m->cpuid_profile_index = (size_t)(prof - cfg->cpuid_profiles);
    }
    for (size_t i = 0; i < m->boot_order_count; i++) {
        const struct toml_value *v = refs->boot_order->u.array.items[i];
        char kp[KP_MAX], dkp[KP_MAX];
        kp_index(kp, sizeof(kp), "main.boot_order", i);
        kp_key(dkp, sizeof(dkp), "dev", m->boot_order[i]);
        if (i == CONFIG_MAX_BOOT_ORDER)
            return perr(p, v->line, v->column, kp, "at most %d boot devices can be listed",
                        CONFIG_MAX_BOOT_ORDER);
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->boot_order[j], m->boot_order[i]) == 0)
                return perr(p, v->line, v->column, kp,
                            "%s is already listed at main.boot_order[%zu]", dkp, j);
        const struct config_device *d = config_find_device(cfg, m->boot_order[i]);
        if (!d)
            return perr(p, v->line, v->column, kp, "no [%s] section", dkp);
        if (!d->has_pci)
            return perr(p, v->line, v->column, kp,
                        "%s has no pci-path, so the firmware cannot boot from it", dkp);
        m->boot_order_dev[i] = (size_t)(d - cfg->devices);
    }
    return 0;
}

static int parse_document(struct parser *p, const struct toml_value *doc)
{
    struct section root;
    struct main_refs refs = {0};
    if (sec_open(p, &root, doc, "", 0, 0))
        return -1;
    /* [cloudinit] before [block_dev] (a cloudinit disk needs it) and
     * [block_dev] before [dev] (devices name their back end). */
    if (parse_main(p, &root, &refs) == 0 && parse_cpuid(p, &root) == 0 &&
        parse_cloudinit(p, &root) == 0 && parse_block_devs(p, &root) == 0 &&
        parse_devices(p, &root) == 0)
        resolve_main(p, &refs);
    sec_close(&root);
    return p->failed ? -1 : 0;
}

/* ---- entry points ---- */

int config_parse(const char *path_for_messages, const char *text, size_t len, struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    const char *path = path_for_messages ? path_for_messages : "<config>";
    struct parser p = {.cfg = cfg, .path = path};

    if (!(cfg->path = memdup_str(&p, path, strlen(path))) ||
        !(cfg->source_text = memdup_str(&p, text, len)))
        goto fail;
    cfg->source_len = len;

    struct toml_error terr = {0};
    struct toml_value *doc = toml_parse(text, len, &terr);
    if (!doc) {
        perr(&p, terr.line, terr.column, NULL, "%s", terr.message);
        goto fail;
    }
    if (doc->type != TOML_TABLE) {
        toml_free(doc);
        perr(&p, 0, 0, NULL, "the document is not a table");
        goto fail;
    }
    int rc = parse_document(&p, doc);
    toml_free(doc);
    if (rc == 0) {
        flush_warnings(&p, true);
        return 0;
    }

fail:
    flush_warnings(&p, false);
    char err[CONFIG_ERROR_MAX];
    memcpy(err, cfg->error, sizeof(err));
    config_free(cfg);
    memcpy(cfg->error, err, sizeof(err));
    return -1;
}

int config_load(const char *path, struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int err = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        err = errno;
    } else {
        for (;;) {
            if (len == cap) {
                if (cap >= CONFIG_FILE_MAX) {
                    err = EFBIG;
                    break;
                }
                cap = cap ? cap * 2 : 8192;
                char *nb = realloc(buf, cap);
                if (!nb) {
                    err = ENOMEM;
                    break;
                }
                buf = nb;
            }
            size_t got = fread(buf + len, 1, cap - len, f);
            len += got;
            if (got == 0) {
                if (ferror(f))
                    err = errno ? errno : EIO;
                break;
            }
        }
        fclose(f);
    }
    if (err) {
        free(buf);
        int r = snprintf(cfg->error, sizeof(cfg->error), "%s: cannot read the config file: %s",
                         path, err == EFBIG ? "file is too large" : strerror(err));
        (void)r;
        fprintf(stderr, "%s\n", cfg->error);
        return -1;
    }
    int rc = config_parse(path, buf ? buf : "", len, cfg);
    free(buf);
    if (rc)
        fprintf(stderr, "%s\n", cfg->error);
    return rc;
}

static void free_block_dev(struct config_block_dev *bd)
{
    free(bd->name);
    switch (bd->type) {
    case CONFIG_BLOCK_FILE:
        free(bd->file.path);
        break;
    case CONFIG_BLOCK_NBD:
        free(bd->nbd.uri);
        break;
    case CONFIG_BLOCK_CRUCIBLE:
        free(bd->crucible.encryption_key_b64);
        free(bd->crucible.cert_pem);
        free(bd->crucible.key_pem);
        free(bd->crucible.root_cert_pem);
        break;
    default:
        break;
    }
}

static void free_device(struct config_device *d)
{
    free(d->name);
    switch (d->driver) {
    case CONFIG_DRIVER_VIRTIO_BLOCK:
    case CONFIG_DRIVER_NVME:
        free(d->blk.block_dev);
        break;
    case CONFIG_DRIVER_VIRTIO_VIONA:
        free(d->viona.vnic);
        break;
    case CONFIG_DRIVER_VIRTIO_SOCKET:
        for (size_t i = 0; i < d->vsock.port_mapping_count; i++)
            free(d->vsock.port_mappings[i].unix_path);
        free(d->vsock.port_mappings);
        free(d->vsock.uds_path);
        break;
    default:
        break;
    }
}

static void free_cloudinit_item(struct config_cloudinit_item *item)
{
    free(item->data);
    free(item->path);
}

void config_free(struct config *cfg)
{
    struct config_main *m = &cfg->main;
    free(m->name);
    free(m->bootrom);
    free(m->bootrom_version);
    free(m->cpuid_profile);
    if (m->boot_order)
        for (size_t i = 0; i < m->boot_order_count; i++)
            free(m->boot_order[i]);
    free(m->boot_order);
    free(m->boot_order_dev);
    for (size_t i = 0; i < cfg->block_dev_count; i++)
        free_block_dev(&cfg->block_devs[i]);
    free(cfg->block_devs);
    for (size_t i = 0; i < cfg->device_count; i++)
        free_device(&cfg->devices[i]);
    free(cfg->devices);
    for (size_t i = 0; i < cfg->cpuid_profile_count; i++) {
        free(cfg->cpuid_profiles[i].name);
        free(cfg->cpuid_profiles[i].leaves);
    }
    free(cfg->cpuid_profiles);
    free_cloudinit_item(&cfg->cloudinit.user_data);
    free_cloudinit_item(&cfg->cloudinit.meta_data);
    free_cloudinit_item(&cfg->cloudinit.network_config);
    for (size_t i = 0; i < cfg->warning_count; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    free(cfg->path);
    free(cfg->source_text);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- lookups ---- */

const struct config_block_dev *config_find_block_dev(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->block_dev_count; i++)
        if (strcmp(cfg->block_devs[i].name, name) == 0)
            return &cfg->block_devs[i];
    return NULL;
}

const struct config_device *config_find_device(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->device_count; i++)
        if (strcmp(cfg->devices[i].name, name) == 0)
            return &cfg->devices[i];
    return NULL;
}

const struct config_cpuid_profile *config_find_cpuid_profile(const struct config *cfg,
                                                             const char *name)
{
    for (size_t i = 0; i < cfg->cpuid_profile_count; i++)
        if (strcmp(cfg->cpuid_profiles[i].name, name) == 0)
            return &cfg->cpuid_profiles[i];
    return NULL;
}

const struct config_cpuid_profile *config_cpuid_profile(const struct config *cfg)
{
    if (!cfg->main.cpuid_profile || cfg->main.cpuid_profile_index >= cfg->cpuid_profile_count)
        return NULL;
    return &cfg->cpuid_profiles[cfg->main.cpuid_profile_index];
}

const struct config_cpuid_leaf *config_cpuid_find(const struct config_cpuid_profile *profile,
                                                  uint32_t eax, uint32_t ecx)
{
    const struct config_cpuid_leaf *plain = NULL;
    for (size_t i = 0; i < profile->leaf_count; i++) {
        const struct config_cpuid_leaf *l = &profile->leaves[i];
        if (l->func != eax)
            continue;
        if (l->has_index && l->index == ecx)
            return l;
        if (!l->has_index)
            plain = l;
    }
    return plain;
}

uint32_t config_block_size(const struct config_block_dev *bd)
{
    return bd->has_block_size ? bd->block_size : CONFIG_DEFAULT_BLOCK_SIZE;
}
