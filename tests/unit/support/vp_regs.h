/* Register access to a virtio-pci function under test, as its driver
 * would: BARs by index, the modern common and device configuration. */
#ifndef TESTS_SUPPORT_VP_REGS_H
#define TESTS_SUPPORT_VP_REGS_H

#include <stdint.h>

#include "virtio/virtio_pci.h"

uint64_t vp_bar_read(struct virtio_pci *vp, unsigned bar, uint64_t off, unsigned size);
void vp_bar_write(struct virtio_pci *vp, unsigned bar, uint64_t off, unsigned size, uint64_t v);
/* The modern interface's common configuration (VIRTIO_COMMON_*). */
uint64_t vp_common_read(struct virtio_pci *vp, unsigned off, unsigned size);
void vp_common_write(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t v);
/* The device-specific configuration through the modern BAR. */
uint64_t vp_device_config_read(struct virtio_pci *vp, unsigned off, unsigned size);
/* The 64 bits the device offers. */
uint64_t vp_device_features(struct virtio_pci *vp);
/* A driver's first steps on the modern interface: reset, ACKNOWLEDGE,
 * DRIVER, `features`, FEATURES_OK (asserted to stick). */
void vp_negotiate(struct virtio_pci *vp, uint64_t features);

#endif
