/*
 * I/O queue doorbells in C: a doorbell write libvfio-user hands over, handled from
 * its BAR0 callback without entering Python when the fast path (fastpath.h) serves
 * every command it brings.
 *
 * The queues' positions live in `struct ocssd_queue`, which each Python
 * SubmissionQueue / CompletionQueue owns and reads through properties
 * (ocssd_vfu/nvme/queues.py): the two paths share them, never copy them. The
 * table below names the queues C may serve; Python fills it and sets `enabled`
 * at the end of its processing, and clears `enabled` before it does anything
 * else (ocssd_vfu/nvme/native_doorbells.py says when, and why each rule holds).
 *
 * ocssd_doorbell_write() takes a doorbell write of an I/O queue in the table:
 * - an SQ tail: the fast path runs the SQ from its head (with shadow doorbells,
 *   after reading the SQ's shadow tail and its CQ's shadow head, as Python's
 *   processing does);
 * - a CQ head: the head moves, and an SQ that waited for room runs as above.
 * With shadow doorbells the EventIdx is left as it is until the wake-up's
 * messages are all handled: the host's next submissions meanwhile ring nothing,
 * as they rang nothing while Python's processing waited for the end of the
 * wake-up. Then ocssd_doorbell_finish() (the server loop, once per wake-up) runs
 * what the shadow tails brought, arms each SQ's EventIdx at its tail (its CQ's at
 * "never"), and after a full barrier reads the shadow tails again (the re-arm
 * race, doorbells.py): a moved one runs again.
 * When the fast path leaves a command at the head (one it does not serve, a CQ
 * full, a fault), the SQ is marked `python`, the table disabled, and the write is
 * still handled: Python's processing takes the queue from there. Anything else
 * (the admin queue, a queue not in the table, an invalid value, a disabled table)
 * is OCSSD_DOORBELL_PYTHON, with nothing changed: Python takes the write as before.
 */
#ifndef OCSSD_DOORBELL_H
#define OCSSD_DOORBELL_H

#include <stddef.h>
#include <stdint.h>

#include "dma.h"
#include "fastpath.h"

#define OCSSD_DOORBELL_QUEUES 65     /* the admin queue pair and 64 I/O queue pairs */
#define OCSSD_DOORBELL_BASE 0x1000   /* BAR0 offset of SQ 0's tail doorbell (DSTRD 0) */
#define OCSSD_DOORBELL_PYTHON (-1)   /* not handled: the Python callback takes the write */
#define OCSSD_DOORBELL_QUIET (-2)    /* handled, no interrupt to raise */
#define OCSSD_RUNNER_PLAIN 1         /* ocssd_fast_io_run on table->fast_io */
#define OCSSD_RUNNER_VECTOR 2        /* ocssd_vector_io_run on table->vector_io */
#define OCSSD_EVENTIDX_NEVER 0xFFFFFFFFu

struct ocssd_queue {
    uint64_t base;               /* guest address of the ring */
    uint32_t qid, size;
    uint32_t head, tail;
    uint32_t phase;              /* CQ: the phase tag of the next entry */
    uint32_t vector;             /* CQ */
    uint32_t interrupts_enabled; /* CQ */
    uint32_t python;             /* SQ: C stopped before its head command: Python's turn */
};

/* What GuestMemory keeps current for C: its region table (replaced on every map and
 * unmap, so C reads it through this struct and never keeps a stale pointer). */
struct ocssd_dma_map {
    const struct ocssd_dma_region *regions;
    size_t count;
};

struct ocssd_doorbell_table {
    int enabled;                 /* 0: every write is Python's */
    int runner;                  /* OCSSD_RUNNER_* */
    struct ocssd_fast_io *fast_io;
    struct ocssd_vector_io *vector_io;
    const struct ocssd_dma_map *map;
    struct ocssd_dma_range *scratch;
    size_t scratch_len;
    uint64_t shadow, eventidx;   /* guest addresses of the pages; 0: no shadow doorbells */
    uint32_t shadow_entries;     /* dwords of each page in use */
    int rearm;                   /* a write was taken: ocssd_doorbell_finish has work */
    /* The I/O queues C may serve: each SQ with its CQ, whose only SQ it is. */
    struct ocssd_queue *sqs[OCSSD_DOORBELL_QUEUES];
    struct ocssd_queue *cqs[OCSSD_DOORBELL_QUEUES];
    uint16_t cq_of_sq[OCSSD_DOORBELL_QUEUES], sq_of_cq[OCSSD_DOORBELL_QUEUES];
    /* Out, folded into Python's counters and zeroed by Python. */
    uint64_t doorbell_writes;    /* handled here */
    uint64_t irq_errors;         /* interrupts the BAR0 callback could not deliver */
    int irq_errno;               /* the last one's errno */
};

/* The queue pair into `io` before a run (counters untouched), and where the run left
 * it back into the queues: the Python-driven runs use them too (nvme/native_run.py). */
void ocssd_fast_io_load(struct ocssd_fast_io *io, const struct ocssd_queue *sq,
                        const struct ocssd_queue *cq);
void ocssd_fast_io_store(const struct ocssd_fast_io *io, struct ocssd_queue *sq,
                         struct ocssd_queue *cq);

/* OCSSD_DOORBELL_PYTHON, OCSSD_DOORBELL_QUIET, or the vector to interrupt. */
int ocssd_doorbell_write(struct ocssd_doorbell_table *table, uint64_t offset, uint32_t value);

/* After a wake-up's messages, with shadow doorbells (see above): the vectors to
 * interrupt are stored in `vectors` (at most `max`), their count returned. An SQ it
 * cannot empty is left to Python as in ocssd_doorbell_write. */
uint32_t ocssd_doorbell_finish(struct ocssd_doorbell_table *table, uint32_t *vectors,
                               uint32_t max);

typedef int (*ocssd_doorbell_handler)(struct ocssd_doorbell_table *, uint64_t, uint32_t);

#endif
