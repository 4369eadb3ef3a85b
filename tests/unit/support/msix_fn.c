#include "support/msix_fn.h"

#include "common/bytes.h"

static void msix_fn_config_write(struct pci_device *pdev, unsigned off, unsigned size, uint32_t v)
{
    struct msix_fn *f = container_of(pdev, struct msix_fn, pci);
    msix_config_write(&f->msix, off, size);
}

const struct pci_device_ops msix_fn_pci_ops = {.config_write = msix_fn_config_write};

int msix_fn_state(struct device *d, struct snap *s)
{
    struct msix_fn *f = container_of(d, struct msix_fn, pci.dev);
    snap_enter(s, "pci");
    pci_device_state(&f->pci, s);
    snap_leave(s);
    snap_enter(s, "msix");
    msix_state(&f->msix, s);
    snap_leave(s);
    return snap_error(s);
}
