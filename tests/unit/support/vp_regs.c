#include "support/vp_regs.h"

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
