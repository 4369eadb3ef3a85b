/* The snapshot's container: a POSIX ustar archive of regular files.
 *
 * Writing streams members to a file descriptor; a member's data can be
 * given in pieces, and runs of all-zero 4 KiB pages are skipped with lseek
 * so that the file system leaves holes (guest RAM is mostly zero). Sizes
 * of 8 GiB and more use the base-256 size field GNU tar and bsdtar read.
 *
 * Reading indexes a whole archive before anything uses it and refuses:
 * a header whose checksum, magic, size or type is wrong (regular files
 * only), a member name that is empty, absolute, holds "." or ".."
 * components or repeats, data running past the end of the file, and an
 * archive without its end-of-archive block. Errors name the member. */
#ifndef SNAPSHOT_TAR_H
#define SNAPSHOT_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAR_BLOCK 512
#define TAR_NAME_MAX 256     /* prefix (155) + "/" + name (100) */
#define TAR_MAX_MEMBERS 1024 /* a snapshot has a few dozen */
#define TAR_ERROR_SIZE 512

struct tar_writer {
    int fd;
    uint64_t pos;         /* where the next byte goes */
    uint64_t member_left; /* bytes of the open member still to come */
    const char *member;   /* the open member's name, for errors */
    char error[TAR_ERROR_SIZE];
};

/* Starts an archive at the current start of fd (a new, empty file). */
void tar_writer_init(struct tar_writer *w, int fd);
/* A whole member. Returns 0, or -1 with w->error set. */
int tar_write_member(struct tar_writer *w, const char *name, const void *data, uint64_t size);
/* A member given in pieces: begin with its size, then data calls adding
 * up to it (sparse: all-zero pages are skipped, not written), then end. */
int tar_member_begin(struct tar_writer *w, const char *name, uint64_t size);
int tar_member_data(struct tar_writer *w, const void *data, size_t len, bool sparse);
int tar_member_end(struct tar_writer *w);
/* The end-of-archive blocks; the file is then complete. */
int tar_writer_finish(struct tar_writer *w);

struct tar_member {
    char name[TAR_NAME_MAX + 1];
    uint64_t offset; /* of the data in the file */
    uint64_t size;
};

struct tar_reader {
    int fd;
    uint64_t file_size;
    struct tar_member *members;
    size_t count;
};

/* Opens and indexes path. Returns 0, or -1 with the reason in err. */
int tar_reader_open(struct tar_reader *r, const char *path, char *err, size_t err_size);
void tar_reader_close(struct tar_reader *r);
const struct tar_member *tar_find(const struct tar_reader *r, const char *name);
/* Reads a whole member of at most max bytes into a new buffer (NUL
 * appended, not counted). Returns 0, or -1 with the reason in err. */
int tar_read_member(const struct tar_reader *r, const struct tar_member *m, uint64_t max,
                    uint8_t **data, size_t *len, char *err, size_t err_size);

/* len bytes of the archive at off. Returns 0, or -1 (errno). */
int tar_read_at(const struct tar_reader *r, void *buf, size_t len, uint64_t off);

/* True if the page of len bytes is all zero. */
bool tar_all_zero(const void *p, size_t len);

#endif
