/* The propolis-standalone configuration file, parsed into typed structures.
 *
 * Every section and key of config-reference.md is read here, checked and
 * given its default, so that later layers never look at TOML. Errors name the
 * file, line, column and key path ("PATH:LINE:COL: block_dev.x.path: problem");
 * unknown keys are warned about and ignored, as propolis does.
 *
 * Sections are kept in document order. Names of sections ([dev.NAME] etc.)
 * are unique because TOML forbids defining a table twice.
 */
#ifndef CONFIG_CONFIG_H
#define CONFIG_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_NAME_MAX 64 /* bytes in [main].name */
#define CONFIG_ERROR_MAX 512
#define CONFIG_DEFAULT_BOOTROM_VERSION "v0.0.1-alpha 1"
#define CONFIG_MAX_CPUS 255
#define CONFIG_MAX_MEMORY_MIB (UINT64_C(1) << 24) /* 16 TiB */
#define CONFIG_DEFAULT_BLOCK_SIZE 512
#define CONFIG_MIN_BLOCK_SIZE 512
#define CONFIG_MAX_BLOCK_SIZE 65536
#define CONFIG_DEFAULT_WORKERS 8
#define CONFIG_MAX_WORKERS 32
#define CONFIG_MAX_DEVICES 64                     /* [dev.*] sections */
#define CONFIG_MAX_BOOT_ORDER 32                  /* main.boot_order entries */
#define CONFIG_DEFAULT_FLUSH_TIMEOUT 5.0          /* seconds */
#define CONFIG_DEFAULT_NBD_RECONNECT_TIMEOUT 30.0 /* seconds: the guest's I/O waits this long */
#define CONFIG_MAX_NBD_RECONNECT_TIMEOUT 604800   /* seconds */
#define CONFIG_DEFAULT_RX_QUEUE_SIZE 2048
#define CONFIG_DEFAULT_TX_QUEUE_SIZE 256
#define CONFIG_MAX_QUEUE_SIZE 32768
#define CONFIG_CRUCIBLE_TARGETS 3
#define CONFIG_CRUCIBLE_KEY_LEN 32 /* bytes of a decoded encryption_key */
#define CONFIG_SOCKADDR_TEXT_MAX 80

/* Where a value or section header was written (1-based; 0 = not written). */
struct config_pos {
    unsigned line, column;
};

/* An "IP:PORT" or "[IPv6%SCOPE]:PORT" socket address (no host names). */
struct config_sockaddr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len;                       /* sizeof the family's sockaddr */
    char text[CONFIG_SOCKADDR_TEXT_MAX]; /* as written in the file */
};

/* ---- [main] ---- */

enum cpu_binding {
    CPU_BINDING_ANY,
    CPU_BINDING_UPPER_HALF, /* vCPU i pinned to host CPU (ncpus - nvcpus + i) */
};

enum acpi_variant {
    ACPI_VARIANT_V0,
};

struct config_main {
    char *name;            /* non-empty, <= 64 bytes, no '/' or NUL, not "." or ".." */
    unsigned cpus;         /* 1..=255 */
    char *bootrom;         /* path */
    char *bootrom_version; /* default "v0.0.1-alpha 1" */
    uint64_t memory_mib;   /* 1..=CONFIG_MAX_MEMORY_MIB */
    bool use_reservoir;
    char *cpuid_profile;        /* NULL if unset; names a [cpuid.X] section */
    size_t cpuid_profile_index; /* index into config.cpuid_profiles if cpuid_profile */
    enum cpu_binding cpu_binding;
    int exit_on_halt; /* 0..=255, default 0 */
    bool has_exit_on_reboot;
    int exit_on_reboot; /* 0..=255 if has_exit_on_reboot */
    bool has_boot_order;
    char **boot_order;      /* each names a [dev.X] that has a pci-path */
    size_t *boot_order_dev; /* index into config.devices, per boot_order entry */
    size_t boot_order_count;
    enum acpi_variant acpi_variant;
    unsigned line, column; /* of the [main] header */
    struct config_pos bootrom_pos;
    struct config_pos memory_pos;
};

/* ---- [block_dev.NAME] ---- */

struct config_cloudinit;

enum config_block_type {
    CONFIG_BLOCK_FILE,
    CONFIG_BLOCK_MEM_ASYNC,
    CONFIG_BLOCK_CRUCIBLE,
    CONFIG_BLOCK_CRUCIBLE_MEM,
    CONFIG_BLOCK_CLOUDINIT,
    CONFIG_BLOCK_NBD, /* our extension: a disk on an NBD server, through libnbd */
};

struct config_crucible {
    /* block_size is the common config_block_dev.block_size (required here). */
    uint64_t blocks_per_extent; /* >= 1 */
    uint32_t extent_count;      /* >= 1 */
    struct config_sockaddr targets[CONFIG_CRUCIBLE_TARGETS];
    uint64_t generation;
    bool generation_auto; /* generation = "auto": set from the downstairs at activation */
    bool has_upstairs_id; /* unset: the back end picks a random v4 UUID */
    uint8_t upstairs_id[16];
    bool lossy;
    double flush_timeout; /* seconds, > 0; CONFIG_DEFAULT_FLUSH_TIMEOUT unless set */
    bool has_flush_timeout;
    bool has_encryption_key;
    uint8_t encryption_key[CONFIG_CRUCIBLE_KEY_LEN];
    char *encryption_key_b64;                 /* as written, NULL if unset */
    char *cert_pem, *key_pem, *root_cert_pem; /* NULL if unset */
    bool has_control_addr;
    struct config_sockaddr control_addr;
    /* Where each key was written ({0, 0}: not written), for the back
     * end's errors. */
    struct {
        struct config_pos block_size, blocks_per_extent, extent_count, targets, generation,
            upstairs_id, lossy, encryption_key, cert_pem, key_pem, root_cert_pem, control_addr,
            read_only;
    } pos;
};

struct config_block_dev {
    char *name;
    enum config_block_type type;
    /* Common options; has_* says whether the key was written. */
    bool has_block_size;
    uint32_t block_size; /* power of two in 512..=65536 */
    bool has_read_only;
    bool read_only;
    bool has_skip_flush;
    bool skip_flush;
    union {
        struct {
            char *path;
            unsigned workers; /* 1..=32, default 8 */
            struct config_pos path_pos;
            /* Linux extension: open with O_DIRECT (QEMU's cache=none). */
            bool direct;
            struct config_pos direct_pos; /* {0, 0} when not written */
        } file;
        struct {
            uint64_t size; /* bytes, > 0, multiple of the block size */
            unsigned workers;
        } mem_async;
        struct config_crucible crucible;
        struct {
            uint64_t size;
        } crucible_mem;
        struct {
            char *uri; /* nbd://, nbds://, nbd+unix://, ... as libnbd reads them */
            struct config_pos uri_pos;
            /* Seconds the guest's I/O waits for a lost server to come back
             * before failing with EIO; 0 fails at once. */
            double reconnect_timeout;
        } nbd;
        struct {
            /* The owning config's [cloudinit] (the parser points it into the
             * struct config it fills, which is therefore not to be moved). */
            const struct config_cloudinit *data;
        } cloudinit;
    };
    unsigned line, column; /* of the section header */
    const char *source;    /* the config file's name for messages (owned by config) */
};

/* ---- [dev.NAME] ---- */

enum config_driver {
    CONFIG_DRIVER_VIRTIO_BLOCK,  /* pci-virtio-block */
    CONFIG_DRIVER_NVME,          /* pci-nvme */
    CONFIG_DRIVER_VIRTIO_VIONA,  /* pci-virtio-viona */
    CONFIG_DRIVER_VIRTIO_SOCKET, /* pci-virtio-socket */
    CONFIG_DRIVER_QEMU_PVPANIC,  /* qemu-pvpanic */
};

struct config_bdf {
    uint8_t bus;  /* 0..=255 */
    uint8_t dev;  /* 0..=31 */
    uint8_t func; /* 0..=7 */
};

/* A guest vsock port forwarded to a host TCP address (propolis'
 * VsockPortMapping): port_mappings = [{ port = 605, addr = "127.0.0.1:6050" }] */
struct config_port_mapping {
    uint32_t port;
    struct config_sockaddr addr; /* unset (len 0) with unix_path */
    /* addr = "unix:/path" (our extension): a UNIX stream socket; NULL
     * for an IP:PORT address. */
    char *unix_path;
};

struct config_device {
    char *name;
    enum config_driver driver;
    /* Required for every device except a qemu-pvpanic with enable_isa, which
     * is an ISA device; a pvpanic that has a pci-path is (also) a PCI pvpanic
     * function (QEMU's pvpanic-pci) at that address. */
    bool has_pci;
    struct config_bdf pci;
    struct config_pos pci_pos;
    union {
        struct {
            char *block_dev;        /* [block_dev.X] name */
            size_t block_dev_index; /* index into config.block_devs */
        } blk;                      /* pci-virtio-block, pci-nvme */
        struct {
            char *vnic;             /* Linux interface (TAP) name, 1..=15 bytes */
            unsigned rx_queue_size; /* power of two, 2..=32768, default 2048 */
            unsigned tx_queue_size; /* power of two, 2..=32768, default 256 */
            bool has_tx_copy_data;
            bool tx_copy_data;
            bool has_tx_header_pad;
            uint16_t tx_header_pad;
            /* `mac` (our extension): a unicast, non-zero address; without
             * it the wiring derives a stable one from the names. */
            bool has_mac;
            uint8_t mac[6];
            /* `vhost-net` (our extension, default true): false keeps the
             * data path in our process even where /dev/vhost-net opens. */
            bool vhost_net;
            struct config_pos vnic_pos; /* for errors about the interface */
        } viona;
        struct {
            uint64_t guest_cid; /* 3..=0xfffffffe */
            struct config_port_mapping *port_mappings;
            size_t port_mapping_count;
            /* `uds_path` (our extension): the UNIX socket where host
             * clients open connections into the guest; NULL: none. */
            char *uds_path;
        } vsock;
        struct {
            bool enable_isa; /* I/O port 0x505 */
        } pvpanic;
    };
    unsigned line, column; /* of the section header */
};

/* ---- [cpuid.NAME] ---- */

enum config_cpu_vendor {
    CONFIG_CPU_VENDOR_AMD,
    CONFIG_CPU_VENDOR_INTEL,
};

struct config_cpuid_leaf {
    uint32_t func; /* eax */
    bool has_index;
    uint32_t index;        /* ecx, if has_index ("LEAF-INDEX" key) */
    uint32_t regs[4];      /* eax, ebx, ecx, edx */
    unsigned line, column; /* of the key */
};

struct config_cpuid_profile {
    char *name;
    enum config_cpu_vendor vendor;
    struct config_cpuid_leaf *leaves; /* document order; no two share (func, index) */
    size_t leaf_count;
    unsigned line, column;
};

/* ---- [cloudinit] ---- */

/* Exactly one of data (the inline string, may hold NULs) or path is set, or
 * neither when the item is absent. The file is read when the disk is built
 * (block/cloudinit.c), which reports a problem with it at pos. */
struct config_cloudinit_item {
    char *data;
    size_t len;
    char *path;
    struct config_pos pos; /* of the value written: the -path one when path is set */
};

struct config_cloudinit {
    struct config_cloudinit_item user_data, meta_data, network_config;
    unsigned line, column;
};

/* ---- the whole file ---- */

struct config {
    char *path;        /* the file name used in messages */
    char *source_text; /* the raw file (NUL-terminated), stored in snapshots */
    size_t source_len;
    struct config_main main;
    struct config_block_dev *block_devs;
    size_t block_dev_count;
    struct config_device *devices;
    size_t device_count;
    struct config_cpuid_profile *cpuid_profiles;
    size_t cpuid_profile_count;
    bool has_cloudinit;
    struct config_cloudinit cloudinit;
    char **warnings; /* each also logged with log_warn */
    size_t warning_count;
    char error[CONFIG_ERROR_MAX]; /* set when loading fails */
};

/* Loads and validates path. On error prints exactly one message to stderr of
 * the form "PATH:LINE:COL: KEY.PATH: problem" (or "PATH: problem" when there
 * is no position, e.g. an unreadable file), returns -1 and leaves *cfg freed
 * and zeroed except for cfg->error (the same message). Unknown keys produce
 * log_warn("PATH:LINE:COL: unknown key KEY.PATH ignored"), in file order, once
 * the whole file has loaded (a file that fails to load prints only its error);
 * they are also kept in cfg->warnings. */
int config_load(const char *path, struct config *cfg);

/* As config_load, from text in memory, without printing the error (it is left
 * in cfg->error). path_for_messages names the text in messages. */
int config_parse(const char *path_for_messages, const char *text, size_t len, struct config *cfg);

/* Frees everything config_load/config_parse allocated and zeroes *cfg. */
void config_free(struct config *cfg);

/* Prints "PATH:LINE:COL: KEY.PATH: message" to stderr for a problem found
 * later with a configured value (e.g. the bootrom cannot be opened). */
void config_report(const struct config *cfg, struct config_pos pos, const char *key_path,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The same where only the file name is at hand (e.g. a block_dev's source). */
void config_report_at(const char *source, struct config_pos pos, const char *key_path,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

const char *config_block_type_name(enum config_block_type type);
const char *config_driver_name(enum config_driver driver);
const char *config_cpu_vendor_name(enum config_cpu_vendor vendor);
const char *config_cpu_binding_name(enum cpu_binding binding);

/* Lookups by section name; NULL if there is no such section. */
const struct config_block_dev *config_find_block_dev(const struct config *cfg, const char *name);
const struct config_device *config_find_device(const struct config *cfg, const char *name);
const struct config_cpuid_profile *config_find_cpuid_profile(const struct config *cfg,
                                                             const char *name);
/* The profile named by [main].cpuid_profile, or NULL. */
const struct config_cpuid_profile *config_cpuid_profile(const struct config *cfg);
/* The entry matching (eax, ecx): a "LEAF-INDEX" entry wins over a plain
 * "LEAF" one. NULL if the profile has neither. */
const struct config_cpuid_leaf *config_cpuid_find(const struct config_cpuid_profile *profile,
                                                  uint32_t eax, uint32_t ecx);

/* The block size a back end should use: block_size if set, else 512. */
uint32_t config_block_size(const struct config_block_dev *bd);

/* ---- value syntaxes, also usable on their own ---- */
/* Each returns 0 on success, or -1 with a reason in why[whylen]. */

/* "BUS.DEV.FUNC", decimal. */
int config_parse_bdf(const char *text, struct config_bdf *out, char *why, size_t whylen);
/* "a.b.c.d:port" or "[v6addr]:port" / "[v6addr%scope]:port". */
int config_parse_sockaddr(const char *text, struct config_sockaddr *out, char *why, size_t whylen);
/* Hyphenated, simple (32 hex digits), braced or "urn:uuid:" UUID text. */
int config_parse_uuid(const char *text, uint8_t out[16], char *why, size_t whylen);
/* Standard base64 with padding; *outlen receives the decoded length. */
int config_base64_decode(const char *text, size_t textlen, uint8_t *out, size_t outmax,
                         size_t *outlen, char *why, size_t whylen);
/* A [cpuid.X] leaf key: "LEAF" or "LEAF-INDEX", hex without 0x. */
int config_parse_cpuid_key(const char *key, size_t keylen, uint32_t *func, bool *has_index,
                           uint32_t *index, char *why, size_t whylen);

#endif
