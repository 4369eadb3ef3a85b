#include "common/iov.h"

#include <stdint.h>
#include <string.h>

size_t iov_copy(const struct iovec *iov, unsigned cnt, size_t skip, void *buf, size_t len,
                bool to_iov)
{
    uint8_t *p = buf;
    size_t done = 0;
    for (unsigned i = 0; i < cnt && done < len; i++) {
        size_t n = iov[i].iov_len;
        if (skip >= n) {
            skip -= n;
            continue;
        }
        size_t take = n - skip;
        if (take > len - done)
            take = len - done;
        uint8_t *base = (uint8_t *)iov[i].iov_base + skip;
        if (to_iov)
            memcpy(base, p + done, take);
        else
            memcpy(p + done, base, take);
        done += take;
        skip = 0;
    }
    return done;
}

struct iovec *iov_skip(struct iovec *iov, unsigned *cnt, size_t skip)
{
    while (*cnt && skip >= iov->iov_len) {
        skip -= iov->iov_len;
        iov++;
        (*cnt)--;
    }
    if (*cnt && skip) {
        iov->iov_base = (uint8_t *)iov->iov_base + skip;
        iov->iov_len -= skip;
    }
    return iov;
}
