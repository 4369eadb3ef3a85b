/* What the PCI transport's three files share (virtio_pci.c: the function,
 * MSI-X, ISR and lifecycle; virtio_pci_modern.c: BAR2; virtio_pci_legacy.c:
 * BAR0). Not for device models. */
#ifndef VIRTIO_VIRTIO_PCI_INTERNAL_H
#define VIRTIO_VIRTIO_PCI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/regmap.h"
#include "core/bus.h"
#include "virtio/virtio_pci.h"

/* The register of map a write of size bytes at offset targets as a
 * natural access - the whole register, or a 32-bit half of a 64-bit one -
 * or NULL: the transport ignores other writes (reads of any width go
 * through regmap_read). */
const struct reg_def *vp_natural_register(const struct regmap *map, unsigned offset, unsigned size);

/* The selected queue's index, or -1 if queue_select is out of range. */
int vp_selected_queue(struct virtio_pci *vp);
/* A vector the device cannot use reads back as NO_VECTOR (spec 4.1.5.1.2). */
uint16_t vp_msix_vector_value(struct virtio_pci *vp, uint64_t value);
/* A driver write of queue q's vector (vdev->lock held); the device hears
 * of a change while the queue is active. */
void vp_set_queue_vector_locked(struct virtio_pci *vp, unsigned q, uint64_t value);
/* Reads and clears the ISR, dropping INTx. */
uint8_t vp_isr_read_clear(struct virtio_pci *vp);
/* A driver status write (vdev->lock held): 0 resets the device and the
 * transport's registers. */
void vp_write_status_locked(struct virtio_pci *vp, uint8_t value, bool legacy);

extern const struct io_ops vp_modern_bar_ops;
extern const struct io_ops vp_legacy_bar_ops;

#endif
