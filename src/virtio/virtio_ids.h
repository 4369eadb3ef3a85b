/* Virtio device types (VIRTIO 1.x section 5, the values of
 * <linux/virtio_ids.h>) and the PCI device IDs the transport gives them:
 * the transitional ID where one exists (spec 4.1.2.1; a transitional
 * function has revision 0 and also answers on the legacy I/O BAR), else
 * 0x1040 + type. vsock takes 0x1012, the ID QEMU and propolis give their
 * vsock functions, so guests that bind it there find it here too. */
#ifndef VIRTIO_VIRTIO_IDS_H
#define VIRTIO_VIRTIO_IDS_H

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_ENTROPY 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_SCSI 8
#define VIRTIO_ID_9P 9
#define VIRTIO_ID_VSOCK 19

#define VIRTIO_PCI_VENDOR_ID 0x1af4
#define VIRTIO_PCI_MODERN_DEVICE_ID_BASE 0x1040

/* Transitional PCI device IDs. */
#define VIRTIO_PCI_ID_NET 0x1000
#define VIRTIO_PCI_ID_BLOCK 0x1001
#define VIRTIO_PCI_ID_BALLOON 0x1002
#define VIRTIO_PCI_ID_CONSOLE 0x1003
#define VIRTIO_PCI_ID_SCSI 0x1004
#define VIRTIO_PCI_ID_ENTROPY 0x1005
#define VIRTIO_PCI_ID_9P 0x1009
#define VIRTIO_PCI_ID_VSOCK 0x1012

#endif
