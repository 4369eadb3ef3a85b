#include "net/vhost_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The features the kernel's data path acts on; the rest (offloads,
 * control queue, MAC, status) are the TAP's or ours. */
#define VHOST_NET_RING_FEATURES                                                                    \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_ANY_LAYOUT) |                                \
     (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_RING_F_EVENT_IDX) |                   \
     (1ull << VIRTIO_NET_F_MRG_RXBUF))

int vhost_net_open(struct vhost_net *v, const struct guest_mem *mem, char *err, size_t err_size)
{
    v->fd = -1;
    v->features = 0;
    int fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, err_size, "/dev/vhost-net: %s", strerror(e));
        return -e;
    }
    struct vhost_memory *table =
        calloc(1, sizeof(*table) + GUEST_MEM_MAX_REGIONS * sizeof(table->regions[0]));
    if (!table) {
        close(fd);
        snprintf(err, err_size, "out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < mem->count; i++) {
        const struct guest_mem_region *r = &mem->regions[i];
        if (r->readonly)
            continue; /* the bootrom: nothing a NIC may read or write */
        table->regions[table->nregions++] = (struct vhost_memory_region){
            .guest_phys_addr = r->gpa,
            .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)r->hva,
        };
    }
    const char *step = "VHOST_SET_OWNER";
    int rc = ioctl(fd, VHOST_SET_OWNER);
    if (rc == 0) {
        step = "VHOST_GET_FEATURES";
        rc = ioctl(fd, VHOST_GET_FEATURES, &v->features);
    }
    if (rc == 0) {
        step = "VHOST_SET_MEM_TABLE";
        rc = ioctl(fd, VHOST_SET_MEM_TABLE, table);
    }
    int e = errno;
    free(table);
    if (rc < 0) {
        snprintf(err, err_size, "/dev/vhost-net: %s: %s", step, strerror(e));
        close(fd);
        v->features = 0;
        return -e;
    }
    v->fd = fd;
    return 0;
}

void vhost_net_close(struct vhost_net *v)
{
    if (v->fd >= 0)
        close(v->fd);
    v->fd = -1;
}

int vhost_net_set_features(struct vhost_net *v, uint64_t features)
{
    uint64_t f = features & v->features & VHOST_NET_RING_FEATURES;
    return ioctl(v->fd, VHOST_SET_FEATURES, &f) < 0 ? -errno : 0;
}

int vhost_net_start_ring(struct vhost_net *v, unsigned ring, const struct vhost_net_ring *r)
{
    struct vhost_vring_state num = {.index = ring, .num = r->size};
    struct vhost_vring_state base = {.index = ring, .num = r->last_avail};
    struct vhost_vring_addr addr = {
        .index = ring,
        .desc_user_addr = (uint64_t)(uintptr_t)r->desc,
        .avail_user_addr = (uint64_t)(uintptr_t)r->avail,
        .used_user_addr = (uint64_t)(uintptr_t)r->used,
    };
    struct vhost_vring_file kick = {.index = ring, .fd = r->kick_fd};
    struct vhost_vring_file call = {.index = ring, .fd = r->call_fd};
    struct vhost_vring_file backend = {.index = ring, .fd = r->tap_fd};
    if (ioctl(v->fd, VHOST_SET_VRING_NUM, &num) < 0 ||
        ioctl(v->fd, VHOST_SET_VRING_BASE, &base) < 0 ||
        ioctl(v->fd, VHOST_SET_VRING_ADDR, &addr) < 0 ||
        ioctl(v->fd, VHOST_SET_VRING_KICK, &kick) < 0 ||
        ioctl(v->fd, VHOST_SET_VRING_CALL, &call) < 0 ||
        ioctl(v->fd, VHOST_NET_SET_BACKEND, &backend) < 0) {
        int e = errno;
        uint16_t ignored;
        vhost_net_stop_ring(v, ring, &ignored);
        return -e;
    }
    return 0;
}

int vhost_net_set_call(struct vhost_net *v, unsigned ring, int call_fd)
{
    struct vhost_vring_file call = {.index = ring, .fd = call_fd};
    return ioctl(v->fd, VHOST_SET_VRING_CALL, &call) < 0 ? -errno : 0;
}

int vhost_net_stop_ring(struct vhost_net *v, unsigned ring, uint16_t *last_avail)
{
    struct vhost_vring_file unbind = {.index = ring, .fd = VHOST_FILE_UNBIND};
    struct vhost_vring_state base = {.index = ring};
    int rc = 0;
    /* The TAP first, so the kernel stops moving frames; then the index it
     * reached; then no more kicks taken or interrupts raised. */
    if (ioctl(v->fd, VHOST_NET_SET_BACKEND, &unbind) < 0)
        rc = -errno;
    if (ioctl(v->fd, VHOST_GET_VRING_BASE, &base) < 0 && !rc)
        rc = -errno;
    if (ioctl(v->fd, VHOST_SET_VRING_KICK, &unbind) < 0 && !rc)
        rc = -errno;
    if (ioctl(v->fd, VHOST_SET_VRING_CALL, &unbind) < 0 && !rc)
        rc = -errno;
    *last_avail = (uint16_t)base.num;
    return rc;
}
