/*
 * The I/O fast path: plain Read and Write commands from SQE to CQE in C.
 *
 * A second implementation of what ocssd_vfu/nvme/io.py does for a plain
 * namespace, for the common case only: it runs an I/O SQ's commands from its
 * head while each is a Read or Write of namespace `nsid` with PRPs (CDW0 flags
 * 0), CDW12 holding only NLB, CDW13-15 zero, the range inside the namespace,
 * the length within MDTS and the PRP walk valid. The first command that is
 * anything else stays at the head, untouched, for the Python path, which gives
 * every error status: the fast path completes successful commands only. So the
 * two paths cannot disagree on a status, and the unit tests of the commands run
 * against both (tests/unit/test_fastpath.py).
 */
#ifndef OCSSD_FASTPATH_H
#define OCSSD_FASTPATH_H

#include <stddef.h>
#include <stdint.h>

#include "dma.h"

struct ocssd_fast_io {
    /* In: the namespace. */
    uint8_t *data;        /* the namespace's bytes (the mmap'd image) */
    uint64_t nlbas;
    uint32_t lba_shift;
    uint32_t nsid;
    uint64_t page_size;
    uint64_t max_transfer; /* bytes (MDTS) */
    /* In: the queue pair, guest addresses of the rings. */
    uint64_t sq_base, cq_base;
    uint32_t sq_size, cq_size;
    uint32_t sqid;
    uint32_t cq_head;
    /* In and out: where the SQ and CQ stand. */
    uint32_t sq_head, sq_tail;
    uint32_t cq_tail, cq_phase;
    /* Out: what ran (the SMART counters' raw material). */
    uint64_t reads, writes, blocks_read, blocks_written;
};

/*
 * Runs commands as described above until the SQ is empty, the CQ full, the
 * command at the head is not for the fast path, or memory faults (guard.h). Returns the number completed
 * (each with a CQE posted, DW3 stored last), or -1 when a ring is not mapped
 * (nothing done: the Python path reports it).
 */
long ocssd_fast_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                       struct ocssd_fast_io *io, struct ocssd_dma_range *scratch,
                       size_t scratch_len);

/*
 * The OCSSD 2.0 vector path: Vector Chunk Read (92h) and Write (91h) of an
 * OCSSD 2.0 namespace in C, for the common case only (a second implementation
 * of ocssd_vfu/ocssd/namespace.py's read and write): PRPs (CDW0 flags 0), at
 * most 64 addresses, every one inside the geometry; a read only of sectors the
 * Python path certainly finds readable (a CLOSED chunk below its WP, an OPEN one
 * below WP - MW_CUNITS); a write only of sequential FREE or OPEN chunks, each
 * chunk in one run of the list, starting at its WP, a multiple of WS_MIN, not
 * past CNLB, and only while no write failure is injected (`writes` 0 otherwise).
 * MPTR is a contiguous OOB buffer as on the Python path. A write stores data,
 * then OOB (erased bytes without MPTR), then the chunk descriptor's WP and
 * state (OPEN, or CLOSED when the WP reaches CNLB) in the image's chunk log,
 * and lists the chunk in `touched` so the Python copy of the table follows. Each
 * run, read or written, counts one operation of its PU in `pu_operations` (the
 * per-PU counts the control socket reports): a read changes no chunk, so a stream
 * of reads never fills `touched`.
 * Anything else stays at the head for the Python path, as above.
 */
struct ocssd_vector_io {
    struct ocssd_fast_io queue; /* data, nsid, page size, rings and counters (nlbas unused) */
    uint8_t *oob;               /* md_size bytes per sector, the image's OOB area */
    uint8_t *log;               /* the chunk log: 32-byte descriptors */
    uint32_t md_size;
    uint32_t num_grp, num_pu, num_chk, num_sec;
    uint32_t chk_shift, pu_shift, grp_shift; /* the LBA format: sector field lowest */
    uint64_t sec_mask, chk_mask, pu_mask;
    uint32_t ws_min, mw_cunits;
    int writes;                 /* 0: no writes here (an injected write failure); 1: only to
                                 * OPEN chunks (opening one reserves its space in the image:
                                 * the Python path's work); 2: to FREE chunks too */
    uint32_t *touched;          /* out: the chunk of each run written */
    uint32_t touched_len, touched_cap;
    uint64_t *pu_operations;    /* out, added to: runs per PU (group-major), reads too */
};

long ocssd_vector_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                         struct ocssd_vector_io *v, struct ocssd_dma_range *scratch,
                         size_t scratch_len);

#endif
