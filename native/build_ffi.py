"""cffi out-of-line API-mode build of the libvfio-user binding.

Run by setuptools at `pip install` (setup.py's cffi_modules).  It compiles
against the libvfio-user that `make setup` provisioned into the cache and
records that directory (rpath and LIBVFIO_USER_DIR) so that the module loads
it at run time without any environment variable.  The same module carries the
DMA shim (dma.c: PRP and SGL walks and the copy, the I/O data path) and the
I/O fast path (fastpath.c: plain Read and Write from SQE to CQE).
"""

import os
import sys
from pathlib import Path

from cffi import FFI

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ocssd_vfu.guest.provision import LIBVFIO_USER  # noqa: E402

LIB_DIR = LIBVFIO_USER.path()
if not LIBVFIO_USER.ready():
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

extern "Python" ssize_t ocssd_bar0_access(vfu_ctx_t *, char *, size_t, long, bool);
extern "Python" ssize_t ocssd_msix_bar_access(vfu_ctx_t *, char *, size_t, long, bool);
extern "Python" void ocssd_dma_register(vfu_ctx_t *, vfu_dma_info_t *);
extern "Python" void ocssd_dma_unregister(vfu_ctx_t *, vfu_dma_info_t *);
extern "Python" int ocssd_reset(vfu_ctx_t *, vfu_reset_type_t);
extern "Python" void ocssd_log(vfu_ctx_t *, int, const char *);

static const char LIBVFIO_USER_DIR[];
"""

DMA_CDEF = """
#define OCSSD_STATUS_DATA_TRANSFER_ERROR ...
#define OCSSD_STATUS_INVALID_SGL_SEGMENT_DESCRIPTOR ...
#define OCSSD_STATUS_INVALID_NUMBER_OF_SGL_DESCRIPTORS ...
#define OCSSD_STATUS_DATA_SGL_LENGTH_INVALID ...
#define OCSSD_STATUS_SGL_DESCRIPTOR_TYPE_INVALID ...
#define OCSSD_STATUS_INVALID_PRP_OFFSET ...
#define OCSSD_STATUS_SGL_OFFSET_INVALID ...
#define OCSSD_STATUS_WRITE_FAULT ...
#define OCSSD_STATUS_UNRECOVERED_READ_ERROR ...
#define OCSSD_STATUS_DNR ...
#define OCSSD_DMA_EINVAL ...
#define OCSSD_DMA_ESCRATCH ...
struct ocssd_dma_region { uint64_t start; uint64_t length; void *host; int writable; };
struct ocssd_dma_segment { void *ptr; size_t len; };
struct ocssd_dma_range { uint8_t *host; uint64_t len; };
uint64_t ocssd_prp_max_ranges(uint64_t length, uint64_t page_size);
int ocssd_prp_transfer(const struct ocssd_dma_region *regions, size_t nregions,
                       uint64_t prp1, uint64_t prp2, uint64_t page_size,
                       const struct ocssd_dma_segment *segments, size_t nsegments,
                       int to_guest, struct ocssd_dma_range *scratch, size_t scratch_len);
int ocssd_sgl_map(const struct ocssd_dma_region *regions, size_t nregions, uint64_t address,
                  uint64_t length_and_id, uint64_t length, int to_guest,
                  struct ocssd_dma_range *scratch, size_t scratch_len, size_t *count);
uint64_t ocssd_sgl_max_descriptors(uint64_t length);
int ocssd_dma_copy(const struct ocssd_dma_range *ranges, size_t nranges,
                   const struct ocssd_dma_segment *segments, size_t nsegments, int to_guest);
void ocssd_full_barrier(void);

struct ocssd_fast_io {
    uint8_t *data; uint64_t nlbas; uint32_t lba_shift; uint32_t nsid;
    uint64_t page_size; uint64_t max_transfer;
    uint64_t sq_base, cq_base; uint32_t sq_size, cq_size; uint32_t sqid; uint32_t cq_head;
    uint32_t sq_head, sq_tail; uint32_t cq_tail, cq_phase;
    uint64_t reads, writes, blocks_read, blocks_written;
};
long ocssd_fast_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                       struct ocssd_fast_io *io, struct ocssd_dma_range *scratch,
                       size_t scratch_len);

#define OCSSD_GUARD_GUEST ...
#define OCSSD_GUARD_IMAGE ...
#define OCSSD_GUARD_OTHER ...
int ocssd_guard_install(void);
int ocssd_guard_watch(void *start, uint64_t length, int kind);
void ocssd_guard_unwatch(void *start);
uint64_t ocssd_guard_faults(int kind);
uint64_t ocssd_guard_patched(int kind);
int ocssd_guarded_copy(void *dst, const void *src, size_t n);
"""

NATIVE = REPO / "native"

ffibuilder = FFI()
ffibuilder.cdef(CDEF + DMA_CDEF)
ffibuilder.set_source(
    "ocssd_vfu.vfu._libvfio_user",
    '#include <sys/uio.h>\n#include <linux/pci_regs.h>\n#include "libvfio-user.h"\n'
    '#include "dma.h"\n#include "fastpath.h"\n#include "guard.h"\n'
    f'static const char LIBVFIO_USER_DIR[] = "{LIB_DIR}";\n',
    # setuptools wants source paths relative to the directory it runs in.
    sources=[os.path.relpath(NATIVE / name) for name in ("dma.c", "fastpath.c", "guard.c")],
    depends=[os.path.relpath(NATIVE / name) for name in ("dma.h", "fastpath.h", "guard.h")],
    include_dirs=[str(LIB_DIR / "include"), str(NATIVE)],
    library_dirs=[str(LIB_DIR / "lib")],
    libraries=["vfio-user"],
    extra_link_args=[f"-Wl,-rpath,{LIB_DIR / 'lib'}"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
