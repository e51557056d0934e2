"""cffi out-of-line API-mode build of the DMA shim: ocssd_vfu.dma._native.

Run by setuptools at `pip install` (setup.py's cffi_modules). It compiles
native/dma.c (PRP and SGL walks and the copy, the I/O data path) and
native/fastpath.c (plain Read and Write, OCSSD 2.0 vector Read and Write, from SQE
to CQE), native/doorbell.c (I/O queue doorbells that run the fast path) and links nothing but
libc: the NVMe controller and all its tests need a C compiler, not libvfio-user.
"""

import os
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent

CDEF = """
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
#define MAP_NORESERVE ...
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
struct ocssd_vector_io {
    struct ocssd_fast_io queue; uint8_t *oob; uint8_t *log; uint32_t md_size;
    uint32_t num_grp, num_pu, num_chk, num_sec; uint32_t chk_shift, pu_shift, grp_shift;
    uint64_t sec_mask, chk_mask, pu_mask; uint32_t ws_min, mw_cunits; int writes;
    uint32_t *touched; uint32_t touched_len, touched_cap; uint64_t *pu_operations;
};
long ocssd_vector_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                         struct ocssd_vector_io *v, struct ocssd_dma_range *scratch,
                         size_t scratch_len);

#define OCSSD_DOORBELL_QUEUES ...
#define OCSSD_DOORBELL_PYTHON ...
#define OCSSD_DOORBELL_QUIET ...
#define OCSSD_RUNNER_PLAIN ...
#define OCSSD_RUNNER_VECTOR ...
struct ocssd_queue {
    uint64_t base; uint32_t qid, size; uint32_t head, tail; uint32_t phase;
    uint32_t vector; uint32_t interrupts_enabled; uint32_t python;
};
struct ocssd_dma_map { const struct ocssd_dma_region *regions; size_t count; };
struct ocssd_doorbell_table {
    int enabled; int runner;
    struct ocssd_fast_io *fast_io; struct ocssd_vector_io *vector_io;
    const struct ocssd_dma_map *map;
    struct ocssd_dma_range *scratch; size_t scratch_len;
    uint64_t shadow, eventidx; uint32_t shadow_entries; int rearm;
    struct ocssd_queue *sqs[...]; struct ocssd_queue *cqs[...];
    uint16_t cq_of_sq[...]; uint16_t sq_of_cq[...];
    uint64_t doorbell_writes; uint64_t irq_errors; int irq_errno;
};
void ocssd_fast_io_load(struct ocssd_fast_io *io, const struct ocssd_queue *sq,
                        const struct ocssd_queue *cq);
void ocssd_fast_io_store(const struct ocssd_fast_io *io, struct ocssd_queue *sq,
                         struct ocssd_queue *cq);
int ocssd_doorbell_write(struct ocssd_doorbell_table *table, uint64_t offset, uint32_t value);
uint32_t ocssd_doorbell_finish(struct ocssd_doorbell_table *table, uint32_t *vectors,
                               uint32_t max);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "ocssd_vfu.dma._native",
    '#include <sys/mman.h>\n'
    '#include "dma.h"\n#include "fastpath.h"\n#include "guard.h"\n#include "doorbell.h"\n',
    # setuptools wants source paths relative to the directory it runs in.
    sources=[os.path.relpath(NATIVE / name)
             for name in ("dma.c", "fastpath.c", "guard.c", "doorbell.c")],
    depends=[os.path.relpath(NATIVE / name)
             for name in ("dma.h", "fastpath.h", "guard.h", "doorbell.h")],
    include_dirs=[str(NATIVE)],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
