/* Snapshots (-s / -r): a paused machine written to NAME-<unix-ms>.tar and
 * brought back from it. The archive (snapshot/tar.h) holds:
 *
 *   config.toml               the config the VM was started from, verbatim
 *   devices/NAME.json         one per device: its state record in JSON
 *                             (snapshot/state_json.h); NAME escaped
 *   memory/START-END.bin      guest RAM of [START, END) (hex, no 0x),
 *                             all-zero pages left as holes
 *   disks/NAME.bin            a mem-async disk's contents, likewise
 *   global.json               VM-wide: format and version, the writer,
 *                             vCPU count, memory size and ranges (with a
 *                             hash of each), time at save, the bootrom's
 *                             and every file disk's identity, the device
 *                             list, and the machine, KVM VM and vCPU
 *                             state records
 *
 * A restore rebuilds the machine from config.toml, then refuses (naming the
 * member) a snapshot of another format version, with a member missing, cut
 * short or corrupt (bad JSON, a state record its device refuses, memory
 * whose hash differs), memory ranges other than the machine's, another
 * bootrom, or a disk whose size, mtime or sampled blocks differ; only then
 * does it load memory and the machine's state. The README's "Snapshots"
 * section lists the fields. */
#ifndef SNAPSHOT_SNAPSHOT_H
#define SNAPSHOT_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "common/snap.h"

#define SNAPSHOT_FORMAT "propolis-standalone-linux-snapshot"
#define SNAPSHOT_FORMAT_VERSION 1
#define SNAPSHOT_WRITER "propolis-standalone for Linux/KVM"
#define SNAPSHOT_MAX_RANGES 4

struct block_backend;
struct config;
struct machine;

/* What a snapshot is taken from or restored into, without KVM (the unit
 * tests build one by hand). */
struct snapshot_range {
    uint64_t gpa, size;
    uint8_t *hva;
};

struct snapshot_target {
    const struct config *cfg; /* name, source_text, cpus, block_devs */
    /* One per cfg->block_devs entry: a mem-async disk's contents are
     * saved and restored through it. */
    struct block_backend *const *backends;
    struct snapshot_range ranges[SNAPSHOT_MAX_RANGES];
    unsigned range_count;
    const uint8_t *bootrom;
    uint64_t bootrom_size;
};

/* The machine's RAM ranges and bootrom. */
void snapshot_target_of_machine(struct machine *m, const struct config *cfg,
                                struct block_backend *const *backends, struct snapshot_target *t);

/* Writes a snapshot to fd (a new empty file): t's config and memory, and
 * state, a machine state as machine_save_state makes it (the machine,
 * kvm and cfg->main.cpus vCPU records first, then the devices').
 * Returns 0, or -1 with the reason in err. */
int snapshot_write(const struct snapshot_target *t, const uint8_t *state, size_t state_len, int fd,
                   char *err, size_t err_size);

/* The paused machine to NAME-<unix-ms>.tar in the working directory
 * (written under a temporary name, renamed when complete); path gets the
 * name. Returns 0, or -1 with the reason in err (no file left). */
int snapshot_save(struct machine *m, const struct config *cfg,
                  struct block_backend *const *backends, char *path, size_t path_size, char *err,
                  size_t err_size);
/* The same to path (relative to the working directory), which must not
 * exist: the partial file is .NAME.partial beside it. */
int snapshot_save_to(struct machine *m, const struct config *cfg,
                     struct block_backend *const *backends, const char *path, char *err,
                     size_t err_size);

struct snapshot;

/* Opens path, indexes the archive and reads global.json and config.toml:
 * refuses another format or version, a bad archive and a missing member.
 * Returns 0, or -1 with the reason (naming the member) in err. */
int snapshot_open(const char *path, struct snapshot **out, char *err, size_t err_size);
void snapshot_close(struct snapshot *s);
/* config.toml, NUL-terminated. */
const char *snapshot_config_text(const struct snapshot *s, size_t *len);
/* CLOCK_REALTIME when the snapshot was taken. */
uint64_t snapshot_saved_realtime_ns(const struct snapshot *s);

/* Checks s against t (vCPUs, memory ranges, bootrom, disks), reads every
 * device's record, loads memory into t's ranges (checking its hashes) and
 * appends the machine state to state. Returns 0, or -1 with err. */
int snapshot_load(struct snapshot *s, const struct snapshot_target *t, struct snap_buf *state,
                  char *err, size_t err_size);

/* snapshot_load into a machine built from the snapshot's config, then
 * machine_pause and machine_load_state: the machine is left paused, to be
 * resumed (after snapshot_catch_up) when the console client comes. */
int snapshot_restore(struct snapshot *s, struct machine *m, const struct config *cfg,
                     struct block_backend *const *backends, char *err, size_t err_size);

/* Paused, restored machine: its clocks jump forward by the time since the
 * snapshot was taken (kvm_state_advance). */
int snapshot_catch_up(struct machine *m, uint64_t saved_realtime_ns, char *err, size_t err_size);

#endif
