/* Cloud-init disks: the NoCloud datasource's FAT volume labelled `cidata`
 * holding `user-data`, `meta-data` and (when configured) `network-config`.
 *
 * cloudinit_build() is a pure function from the three files to the bytes of
 * the whole volume (no partition table, 512-byte sectors), the same bytes
 * every run for the same files: the volume serial is a hash of the content
 * and every timestamp is 2000-01-01 00:00:00.
 *
 * Layout (facts from Microsoft's FAT specification, fatgen103): boot sector,
 * two copies of the FAT, the fixed root directory, then the data clusters.
 * The root directory holds the volume-label entry `cidata` and, per file,
 * its VFAT long-name entries followed by a short 8.3 entry; each file's
 * clusters are one contiguous chain, an empty file has no cluster.
 *
 * FAT type: FAT12 with one sector per cluster while the files fit in at most
 * CLOUDINIT_FAT12_MAX_CLUSTERS clusters; the data area is then at least
 * CLOUDINIT_FAT12_MIN_CLUSTERS sectors (propolis' 512-sector volume), so
 * small content gives the volume propolis builds. Larger content gets FAT16
 * with the smallest cluster size (1, 2, 4 ... sectors) that keeps the count
 * of clusters at most CLOUDINIT_FAT16_MAX_CLUSTERS, padded up to at least
 * CLOUDINIT_FAT16_MIN_CLUSTERS. The limits keep 16 clusters away from the
 * counts where the specification switches FAT type (4085 and 65525), as it
 * advises. */
#ifndef BLOCK_CLOUDINIT_H
#define BLOCK_CLOUDINIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLOUDINIT_SECTOR_SIZE 512u
/* The files together: more is refused, naming the key that went past it. */
#define CLOUDINIT_MAX_CONTENT (64u << 20)

#define CLOUDINIT_FAT12_MIN_CLUSTERS 512u
#define CLOUDINIT_FAT12_MAX_CLUSTERS (4085u - 1 - 16)
#define CLOUDINIT_FAT16_MIN_CLUSTERS (4085u + 16)
#define CLOUDINIT_FAT16_MAX_CLUSTERS (65525u - 1 - 16)

/* The [cloudinit] keys, in the order their files appear on the volume. */
enum cloudinit_key {
    CLOUDINIT_USER_DATA,
    CLOUDINIT_META_DATA,
    CLOUDINIT_NETWORK_CONFIG,
    CLOUDINIT_KEY_COUNT,
};

/* One file. user-data and meta-data are always on the volume (empty when
 * not present); network-config only when present. data may hold NULs. */
struct cloudinit_file {
    bool present;
    const void *data;
    size_t len;
};

struct cloudinit_image {
    uint8_t *bytes;               /* malloc'ed; cloudinit_image_free() */
    size_t size;                  /* a multiple of CLOUDINIT_SECTOR_SIZE */
    unsigned fat_bits;            /* 12 or 16 */
    uint32_t sectors_per_cluster; /* 1, 2, 4 ... */
    uint32_t clusters;            /* data clusters */
};

/* "user-data", "meta-data", "network-config": the file names on the volume
 * and the config keys. */
const char *cloudinit_key_name(enum cloudinit_key key);

/* Builds the volume holding files[CLOUDINIT_KEY_COUNT]. Returns 0, or -1 with
 * *out zeroed, a reason in err[errlen] and *bad_key set to the key whose file
 * took the content past CLOUDINIT_MAX_CONTENT (or CLOUDINIT_KEY_COUNT when
 * no key is to blame: out of memory). */
int cloudinit_build(const struct cloudinit_file files[CLOUDINIT_KEY_COUNT],
                    struct cloudinit_image *out, enum cloudinit_key *bad_key, char *err,
                    size_t errlen);

void cloudinit_image_free(struct cloudinit_image *img);

#endif
