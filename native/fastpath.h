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

#endif
