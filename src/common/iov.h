/* Copying between a flat buffer and the byte stream an iovec array
 * describes: shared by the device models and the block back ends. */
#ifndef COMMON_IOV_H
#define COMMON_IOV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/* Copies up to len bytes, starting skip bytes into the iovecs; to_iov:
 * buf -> iovecs, else iovecs -> buf. Returns the bytes copied. */
size_t iov_copy(const struct iovec *iov, unsigned cnt, size_t skip, void *buf, size_t len,
                bool to_iov);

static inline size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t skip, void *buf,
                                size_t len)
{
    return iov_copy(iov, cnt, skip, buf, len, false);
}

static inline size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t skip,
                                  const void *buf, size_t len)
{
    return iov_copy(iov, cnt, skip, (void *)buf, len, true);
}

/* Drops the first `skip` bytes of iov[0..*cnt), in place (the first
 * remaining element is shortened). Returns the new first element; *cnt
 * counts what is left. */
struct iovec *iov_skip(struct iovec *iov, unsigned *cnt, size_t skip);

#endif
