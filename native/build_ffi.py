"""cffi out-of-line API-mode build of the libvfio-user binding: ocssd_vfu.vfu._libvfio_user.

Run by setuptools at `pip install` (setup.py's cffi_modules).  It compiles
against the libvfio-user that `make setup` provisioned into the cache and
records that directory (rpath and LIBVFIO_USER_DIR) so that the module loads
it at run time without any environment variable.  Only the vfio-user shell
(ocssd_vfu/vfu/) uses it; the DMA shim is its own module (build_dma.py).

Where libvfio-user is: $OCSSD_VFU_LIBVFIO_USER, else what the provisioning
prints (`python -m ocssd_vfu.guest.provision --print libvfio-user`, stdlib
only, run as a program: the build imports nothing of the package).
"""

import os
import subprocess
import sys
from pathlib import Path

from cffi import FFI

REPO = Path(__file__).resolve().parents[1]
PRODUCTS = ("lib/libvfio-user.so.0", "include/libvfio-user.h")


def libvfio_user_dir() -> Path:
    override = os.environ.get("OCSSD_VFU_LIBVFIO_USER")
    if override:
        return Path(override)
    out = subprocess.run([sys.executable, "-m", "ocssd_vfu.guest.provision", "--print",
                          "libvfio-user"], cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"cannot tell where libvfio-user is provisioned: {out.stderr.strip()}")
    return Path(out.stdout.strip())


LIB_DIR = libvfio_user_dir()
if not all((LIB_DIR / product).exists() for product in PRODUCTS):
    sys.exit(f"libvfio-user is not provisioned at {LIB_DIR}: run `make setup` first")

CDEF = """
typedef struct vfu_ctx vfu_ctx_t;
typedef enum { VFU_TRANS_SOCK, ... } vfu_trans_t;
typedef enum { VFU_DEV_TYPE_PCI, ... } vfu_dev_type_t;
typedef enum { VFU_PCI_TYPE_EXPRESS, ... } vfu_pci_type_t;
typedef enum vfu_reset_type { VFU_RESET_DEVICE, VFU_RESET_LOST_CONN, VFU_RESET_PCI_FLR, ...
                            } vfu_reset_type_t;
enum vfu_dev_irq_type { VFU_DEV_INTX_IRQ, VFU_DEV_MSI_IRQ, VFU_DEV_MSIX_IRQ, VFU_DEV_ERR_IRQ,
                        VFU_DEV_REQ_IRQ, ... };
enum { VFU_PCI_DEV_BAR0_REGION_IDX, VFU_PCI_DEV_BAR4_REGION_IDX, VFU_PCI_DEV_CFG_REGION_IDX, ... };
#define LIBVFIO_USER_FLAG_ATTACH_NB ...
#define VFU_REGION_FLAG_RW ...
#define VFU_REGION_FLAG_MEM ...
#define PCI_HEADER_TYPE_NORMAL ...

struct iovec { void *iov_base; size_t iov_len; };
typedef struct vfu_dma_info {
    struct iovec iova;
    void *vaddr;
    struct iovec mapping;
    size_t page_size;
    uint32_t prot;
} vfu_dma_info_t;

typedef ssize_t (vfu_region_access_cb_t)(vfu_ctx_t *, char *, size_t, long, bool);
typedef void (vfu_dma_register_cb_t)(vfu_ctx_t *, vfu_dma_info_t *);
typedef void (vfu_dma_unregister_cb_t)(vfu_ctx_t *, vfu_dma_info_t *);
typedef int (vfu_reset_cb_t)(vfu_ctx_t *, vfu_reset_type_t);
typedef int (vfu_device_quiesce_cb_t)(vfu_ctx_t *);
typedef void (vfu_log_fn_t)(vfu_ctx_t *, int, const char *);

vfu_ctx_t *vfu_create_ctx(vfu_trans_t trans, const char *path, int flags, void *pvt,
                          vfu_dev_type_t dev_type);
int vfu_setup_log(vfu_ctx_t *vfu_ctx, vfu_log_fn_t *log, int level);
int vfu_pci_init(vfu_ctx_t *vfu_ctx, vfu_pci_type_t pci_type, int hdr_type, int revision);
void vfu_pci_set_id(vfu_ctx_t *vfu_ctx, uint16_t vid, uint16_t did, uint16_t ssvid,
                    uint16_t ssid);
void vfu_pci_set_class(vfu_ctx_t *vfu_ctx, uint8_t base, uint8_t sub, uint8_t pi);
void *vfu_pci_get_config_space(vfu_ctx_t *vfu_ctx);
ssize_t vfu_pci_add_capability(vfu_ctx_t *vfu_ctx, size_t pos, int flags, void *data);
int vfu_setup_region(vfu_ctx_t *vfu_ctx, int region_idx, size_t size,
                     vfu_region_access_cb_t *region_access, int flags,
                     struct iovec *mmap_areas, uint32_t nr_mmap_areas, int fd, uint64_t offset);
int vfu_setup_device_dma(vfu_ctx_t *vfu_ctx, vfu_dma_register_cb_t *dma_register,
                         vfu_dma_unregister_cb_t *dma_unregister);
int vfu_setup_device_reset_cb(vfu_ctx_t *vfu_ctx, vfu_reset_cb_t *reset);
void vfu_setup_device_quiesce_cb(vfu_ctx_t *vfu_ctx, vfu_device_quiesce_cb_t *quiesce_cb);
int vfu_setup_device_nr_irqs(vfu_ctx_t *vfu_ctx, enum vfu_dev_irq_type type, uint32_t count);
int vfu_realize_ctx(vfu_ctx_t *vfu_ctx);
int vfu_attach_ctx(vfu_ctx_t *vfu_ctx);
int vfu_get_poll_fd(vfu_ctx_t *vfu_ctx);
int vfu_run_ctx(vfu_ctx_t *vfu_ctx);
int vfu_irq_trigger(vfu_ctx_t *vfu_ctx, uint32_t subindex);
int vfu_device_quiesced(vfu_ctx_t *vfu_ctx, int quiesce_errno);
void vfu_destroy_ctx(vfu_ctx_t *vfu_ctx);
void *vfu_get_private(vfu_ctx_t *vfu_ctx);

struct ocssd_bar0 { void *python; uintptr_t handler; uintptr_t table; int irq_fd; };
ssize_t ocssd_bar0_access(vfu_ctx_t *, char *, size_t, long, bool);
extern "Python" ssize_t ocssd_bar0_access_python(vfu_ctx_t *, char *, size_t, long, bool);
extern "Python" ssize_t ocssd_msix_bar_access(vfu_ctx_t *, char *, size_t, long, bool);
extern "Python" void ocssd_dma_register(vfu_ctx_t *, vfu_dma_info_t *);
extern "Python" void ocssd_dma_unregister(vfu_ctx_t *, vfu_dma_info_t *);
extern "Python" int ocssd_reset(vfu_ctx_t *, vfu_reset_type_t);
extern "Python" void ocssd_log(vfu_ctx_t *, int, const char *);

static const char LIBVFIO_USER_DIR[];
"""

# BAR0 in C: an I/O queue doorbell goes to the DMA module's ocssd_doorbell_write
# (native/doorbell.h; the other cffi module, so reached through an address Python
# sets), which may take it whole; this callback then raises the interrupt it asks
# for. Everything else goes to the Python callback, as before. libvfio-user's
# private pointer is the struct ocssd_bar0, which also holds Python's handle.
BAR0_SOURCE = r"""
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "doorbell.h"

struct ocssd_bar0 {
    void *python;      /* the VfuDevice's handle */
    uintptr_t handler; /* ocssd_doorbell_write, or 0: every access is Python's */
    uintptr_t table;   /* its struct ocssd_doorbell_table */
    int irq_fd;        /* -1, or an eventfd for the benches with no client (vfu/host.py) */
};

static int trigger(vfu_ctx_t *ctx, const struct ocssd_bar0 *bar0, uint32_t vector)
{
    if (bar0->irq_fd < 0)
        return vfu_irq_trigger(ctx, vector);
    uint64_t one = 1; /* what vfu_irq_trigger writes to the client's eventfd */
    return write(bar0->irq_fd, &one, sizeof one) == sizeof one ? 0 : -1;
}

static ssize_t ocssd_bar0_access_python(vfu_ctx_t *, char *, size_t, long, bool);

ssize_t ocssd_bar0_access(vfu_ctx_t *ctx, char *buf, size_t count, loff_t offset,
                          bool is_write)
{
    struct ocssd_bar0 *bar0 = vfu_get_private(ctx);
    if (is_write && count == 4 && bar0->handler) {
        struct ocssd_doorbell_table *table = (struct ocssd_doorbell_table *)bar0->table;
        uint32_t value;
        memcpy(&value, buf, sizeof value); /* little-endian hosts only (queues.py) */
        int result = ((ocssd_doorbell_handler)bar0->handler)(table, (uint64_t)offset, value);
        if (result != OCSSD_DOORBELL_PYTHON) {
            /* ENOENT: the guest has not set up the vector yet (device.py's trigger). */
            if (result >= 0 && trigger(ctx, bar0, (uint32_t)result) < 0 && errno != ENOENT) {
                table->irq_errors++;
                table->irq_errno = errno;
            }
            return (ssize_t)count;
        }
    }
    return ocssd_bar0_access_python(ctx, buf, count, offset, is_write);
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "ocssd_vfu.vfu._libvfio_user",
    '#include <sys/uio.h>\n#include <linux/pci_regs.h>\n#include "libvfio-user.h"\n'
    f'static const char LIBVFIO_USER_DIR[] = "{LIB_DIR}";\n' + BAR0_SOURCE,
    include_dirs=[str(LIB_DIR / "include"), str(REPO / "native")],
    library_dirs=[str(LIB_DIR / "lib")],
    libraries=["vfio-user"],
    extra_link_args=[f"-Wl,-rpath,{LIB_DIR / 'lib'}"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
