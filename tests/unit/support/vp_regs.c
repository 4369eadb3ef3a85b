#include "support/vp_regs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

uint64_t vp_bar_read(struct virtio_pci *vp, unsigned bar, uint64_t off, unsigned size)
{
    const struct pci_bar *b = &vp->pci.bars[bar];
    return b->ops->read(b->opaque, off, size);
}

void vp_bar_write(struct virtio_pci *vp, unsigned bar, uint64_t off, unsigned size, uint64_t v)
{
    const struct pci_bar *b = &vp->pci.bars[bar];
    b->ops->write(b->opaque, off, size, v);
}

uint64_t vp_common_read(struct virtio_pci *vp, unsigned off, unsigned size)
{
    return vp_bar_read(vp, VIRTIO_PCI_BAR_MODERN, off, size);
}

void vp_common_write(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t v)
{
    vp_bar_write(vp, VIRTIO_PCI_BAR_MODERN, off, size, v);
}

uint64_t vp_device_config_read(struct virtio_pci *vp, unsigned off, unsigned size)
{
    return vp_bar_read(vp, VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET + off, size);
}

uint64_t vp_device_features(struct virtio_pci *vp)
{
    vp_common_write(vp, VIRTIO_COMMON_DFSELECT, 4, 0);
    uint64_t lo = vp_common_read(vp, VIRTIO_COMMON_DF, 4);
    vp_common_write(vp, VIRTIO_COMMON_DFSELECT, 4, 1);
    return lo | vp_common_read(vp, VIRTIO_COMMON_DF, 4) << 32;
}

void vp_negotiate(struct virtio_pci *vp, uint64_t features)
{
    vp_common_write(vp, VIRTIO_COMMON_STATUS, 1, 0);
    vp_common_write(vp, VIRTIO_COMMON_STATUS, 1, 1);
    vp_common_write(vp, VIRTIO_COMMON_STATUS, 1, 3);
    vp_common_write(vp, VIRTIO_COMMON_GFSELECT, 4, 0);
    vp_common_write(vp, VIRTIO_COMMON_GF, 4, (uint32_t)features);
    vp_common_write(vp, VIRTIO_COMMON_GFSELECT, 4, 1);
    vp_common_write(vp, VIRTIO_COMMON_GF, 4, features >> 32);
    vp_common_write(vp, VIRTIO_COMMON_STATUS, 1, 0x0b);
    assert_int_equal(vp_common_read(vp, VIRTIO_COMMON_STATUS, 1), 0x0b);
}
