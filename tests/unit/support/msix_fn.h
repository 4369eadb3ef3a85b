/* A PCI function with MSI-X and no behaviour of its own, for tests of the
 * PCI and MSI-X code: config writes reach msix_config_write, and its state
 * is the "pci" and "msix" sections, as a real device saves them. The test
 * gives it its device_ops (kind, version, reset) and its BARs. */
#ifndef TESTS_SUPPORT_MSIX_FN_H
#define TESTS_SUPPORT_MSIX_FN_H

#include "common/snap.h"
#include "pci/msix.h"
#include "pci/pci.h"

struct msix_fn {
    struct pci_device pci;
    struct msix msix;
};

/* For pci_device_init. */
extern const struct pci_device_ops msix_fn_pci_ops;
/* device_ops.state of a struct msix_fn (or of a struct that starts with one). */
int msix_fn_state(struct device *d, struct snap *s);

#endif
