/*
 * PRP and SGL walks and the copy between guest memory and device buffers (the
 * I/O hot path).
 *
 * Guest memory is a table of DMA regions sorted by start, not overlapping (as
 * GuestMemory keeps them). ocssd_prp_transfer() walks PRP1/PRP2 and the PRP
 * lists (NVMe 1.4 4.3; tests/unit/test_dma_shim.py's prp_ranges is the Python
 * reference), resolves every guest address, list pages included, and only when
 * the whole walk is valid copies between the guest ranges and the device
 * segments, in one direction. ocssd_sgl_map() walks an SGL (NVMe 1.4 4.4;
 * tests/unit/test_sgl.py's sgl_ranges is its reference) into guest ranges
 * without moving a byte; ocssd_dma_copy() then moves the data.
 */
#ifndef OCSSD_DMA_H
#define OCSSD_DMA_H

#include <stddef.h>
#include <stdint.h>

/* NVMe status values (spec/status.py's Status and DNR; a unit test compares). */
#define OCSSD_STATUS_DATA_TRANSFER_ERROR 0x0004
#define OCSSD_STATUS_INVALID_SGL_SEGMENT_DESCRIPTOR 0x000D
#define OCSSD_STATUS_INVALID_NUMBER_OF_SGL_DESCRIPTORS 0x000E
#define OCSSD_STATUS_DATA_SGL_LENGTH_INVALID 0x000F
#define OCSSD_STATUS_SGL_DESCRIPTOR_TYPE_INVALID 0x0011
#define OCSSD_STATUS_INVALID_PRP_OFFSET 0x0013
#define OCSSD_STATUS_SGL_OFFSET_INVALID 0x0016
#define OCSSD_STATUS_WRITE_FAULT 0x0280
#define OCSSD_STATUS_UNRECOVERED_READ_ERROR 0x0281
#define OCSSD_STATUS_DNR 0x4000

/* Caller errors (never caused by guest data): negative returns. */
#define OCSSD_DMA_EINVAL (-1)   /* page size not a power of two >= 8, or lengths overflow */
#define OCSSD_DMA_ESCRATCH (-2) /* scratch too short (PRP: shorter than ocssd_prp_max_ranges(),
                                  SGL: than *count); no byte has moved, so the caller may
                                  grow it and retry */

struct ocssd_dma_region {
    uint64_t start;   /* guest address */
    uint64_t length;
    void *host;       /* where the region is mapped in this process */
    int writable;
};

struct ocssd_dma_segment {
    void *ptr;
    size_t len;
};

/* One resolved guest range (scratch filled by the walk); host NULL: a Bit Bucket,
 * whose bytes are not transferred. */
struct ocssd_dma_range {
    uint8_t *host;
    uint64_t len;
};

/* The region holding all of [addr, addr+len), or NULL. */
const struct ocssd_dma_region *ocssd_dma_resolve(const struct ocssd_dma_region *regions,
                                                 size_t nregions, uint64_t addr, uint64_t len);

/* Scratch ranges a transfer of `length` bytes needs at most (0 for a bad page size). */
uint64_t ocssd_prp_max_ranges(uint64_t length, uint64_t page_size);

/*
 * Moves sum(segments[].len) bytes: guest -> segments, or segments -> guest when
 * to_guest. Returns 0, an NVMe status (Invalid PRP Offset | DNR, or Data
 * Transfer Error for an unmapped range or a read-only one written to), in which
 * case no byte has moved, or a negative OCSSD_DMA_E* for a caller error.
 */
int ocssd_prp_transfer(const struct ocssd_dma_region *regions, size_t nregions,
                       uint64_t prp1, uint64_t prp2, uint64_t page_size,
                       const struct ocssd_dma_segment *segments, size_t nsegments,
                       int to_guest, struct ocssd_dma_range *scratch, size_t scratch_len);

/*
 * The guest ranges of a transfer of `length` bytes whose SGL starts with the
 * descriptor in (address, length_and_id) (an SQE's DPTR, or the descriptor at
 * MPTR): *count of them in scratch, or OCSSD_DMA_ESCRATCH with *count the
 * ranges needed. Returns 0, an NVMe status (| DNR for the SGL rules, Data
 * Transfer Error for unmapped memory), or a negative caller error. Reads the
 * guest's SGL segments, writes nothing.
 */
int ocssd_sgl_map(const struct ocssd_dma_region *regions, size_t nregions, uint64_t address,
                  uint64_t length_and_id, uint64_t length, int to_guest,
                  struct ocssd_dma_range *scratch, size_t scratch_len, size_t *count);

/* Descriptors an SGL for `length` bytes may hold (segment descriptors included):
 * a walk that reads more fails with Invalid Number of SGL Descriptors. */
uint64_t ocssd_sgl_max_descriptors(uint64_t length);

/* Moves the bytes between mapped ranges (Bit Buckets skip device bytes) and the
 * device segments; both sides must hold the same number of bytes. Returns 0, or
 * the status of a fault (guard.h): Data Transfer Error when guest memory went
 * away, Unrecovered Read Error or Write Fault (| DNR) when the image did. The
 * walks and the transfer above are guarded the same way. */
int ocssd_dma_copy(const struct ocssd_dma_range *ranges, size_t nranges,
                   const struct ocssd_dma_segment *segments, size_t nsegments, int to_guest);

/* A full memory barrier: shadow doorbells are shared with the host's CPUs. */
void ocssd_full_barrier(void);

#endif
