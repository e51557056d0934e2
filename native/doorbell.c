/* I/O queue doorbells in C: see doorbell.h. */
#include "doorbell.h"

#define SHADOW_DWORD_SIZE 4

/* A shadow doorbell page as dwords, if mapped whole (writable: EventIdx is written). */
static uint32_t *page(const struct ocssd_doorbell_table *t, uint64_t address)
{
    uint64_t len = (uint64_t)t->shadow_entries * SHADOW_DWORD_SIZE;
    const struct ocssd_dma_region *r =
        ocssd_dma_resolve(t->map->regions, t->map->count, address, len);
    if (r == NULL || !r->writable)
        return NULL;
    return (uint32_t *)((uint8_t *)r->host + (address - r->start));
}

void ocssd_fast_io_load(struct ocssd_fast_io *io, const struct ocssd_queue *sq,
                        const struct ocssd_queue *cq)
{
    io->sq_base = sq->base;
    io->sq_size = sq->size;
    io->sqid = sq->qid;
    io->sq_head = sq->head;
    io->sq_tail = sq->tail;
    io->cq_base = cq->base;
    io->cq_size = cq->size;
    io->cq_head = cq->head;
    io->cq_tail = cq->tail;
    io->cq_phase = cq->phase;
}

void ocssd_fast_io_store(const struct ocssd_fast_io *io, struct ocssd_queue *sq,
                         struct ocssd_queue *cq)
{
    sq->head = io->sq_head;
    cq->tail = io->cq_tail;
    cq->phase = io->cq_phase;
}

/* The fast path on the queue pair, from the head: commands completed, or -1. */
static long run(struct ocssd_doorbell_table *t, struct ocssd_queue *sq, struct ocssd_queue *cq)
{
    struct ocssd_fast_io *io =
        t->runner == OCSSD_RUNNER_VECTOR ? &t->vector_io->queue : t->fast_io;
    ocssd_fast_io_load(io, sq, cq);
    const struct ocssd_dma_map *map = t->map;
    long done = t->runner == OCSSD_RUNNER_VECTOR
        ? ocssd_vector_io_run(map->regions, map->count, t->vector_io, t->scratch, t->scratch_len)
        : ocssd_fast_io_run(map->regions, map->count, io, t->scratch, t->scratch_len);
    if (done < 0)
        return -1; /* a ring not mapped: nothing done */
    ocssd_fast_io_store(io, sq, cq); /* also after a fault (guard.h): what completed stands */
    return done;
}

static void to_python(struct ocssd_doorbell_table *t, struct ocssd_queue *sq)
{
    sq->python = 1;
    t->enabled = 0;
}

/* Run the SQ until it is empty (and, with `eventidx`, its EventIdx armed and the
 * re-arm race checked), or it is Python's; the commands completed. */
static long drain(struct ocssd_doorbell_table *t, struct ocssd_queue *sq, struct ocssd_queue *cq,
                  uint32_t *shadow, uint32_t *eventidx)
{
    uint32_t sq_slot = 2 * sq->qid, cq_slot = 2 * cq->qid + 1;
    long posted = 0;
    for (;;) {
        if (shadow) { /* as Python's processing: the shadow values are the host's latest */
            uint32_t tail = __atomic_load_n(&shadow[sq_slot], __ATOMIC_RELAXED);
            uint32_t head = __atomic_load_n(&shadow[cq_slot], __ATOMIC_RELAXED);
            if (tail >= sq->size || head >= cq->size) {
                to_python(t, sq); /* an invalid value: Python reports it */
                break;
            }
            sq->tail = tail;
            cq->head = head;
        }
        long done = run(t, sq, cq);
        if (done < 0) {
            to_python(t, sq);
            break;
        }
        posted += done;
        if (sq->head != sq->tail) {
            to_python(t, sq); /* a command C does not serve, or the CQ full */
            break;
        }
        if (!eventidx)
            break;
        __atomic_store_n(&eventidx[sq_slot], sq->tail, __ATOMIC_RELAXED);
        __atomic_store_n(&eventidx[cq_slot], OCSSD_EVENTIDX_NEVER, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        /* The re-arm race: a tail written before our EventIdx may have skipped the MMIO. */
        if (__atomic_load_n(&shadow[sq_slot], __ATOMIC_RELAXED) == sq->tail)
            break;
    }
    return posted;
}

int ocssd_doorbell_write(struct ocssd_doorbell_table *t, uint64_t offset, uint32_t value)
{
    if (!t->enabled || offset < OCSSD_DOORBELL_BASE || offset & 3)
        return OCSSD_DOORBELL_PYTHON;
    uint64_t index = (offset - OCSSD_DOORBELL_BASE) >> 2, qid = index >> 1;
    int is_cq = index & 1;
    if (qid == 0 || qid >= OCSSD_DOORBELL_QUEUES)
        return OCSSD_DOORBELL_PYTHON;
    struct ocssd_queue *sq, *cq;
    if (is_cq) {
        cq = t->cqs[qid];
        if (cq == NULL)
            return OCSSD_DOORBELL_PYTHON;
        sq = t->sqs[t->sq_of_cq[qid]];
    } else {
        sq = t->sqs[qid];
        if (sq == NULL)
            return OCSSD_DOORBELL_PYTHON;
        cq = t->cqs[t->cq_of_sq[qid]];
    }
    if (sq == NULL || cq == NULL || value >= (is_cq ? cq->size : sq->size))
        return OCSSD_DOORBELL_PYTHON;
    uint32_t *shadow = NULL;
    if (t->shadow) {
        uint32_t top = sq->qid > cq->qid ? sq->qid : cq->qid;
        if (2 * top + 1 >= t->shadow_entries)
            return OCSSD_DOORBELL_PYTHON;
        shadow = page(t, t->shadow);
        if (shadow == NULL)
            return OCSSD_DOORBELL_PYTHON; /* Python falls back to MMIO doorbells */
    }
    t->doorbell_writes++;
    if (is_cq) {
        cq->head = value;
        if (!shadow && sq->head == sq->tail)
            return OCSSD_DOORBELL_QUIET;
    } else {
        sq->tail = value;
    }
    if (shadow)
        t->rearm = 1; /* EventIdx: ocssd_doorbell_finish, once the wake-up's messages are done */
    long posted = drain(t, sq, cq, shadow, NULL);
    if (posted > 0 && cq->interrupts_enabled && cq->head != cq->tail)
        return (int)cq->vector;
    return OCSSD_DOORBELL_QUIET;
}

uint32_t ocssd_doorbell_finish(struct ocssd_doorbell_table *t, uint32_t *vectors, uint32_t max)
{
    if (!t->enabled || !t->rearm || !t->shadow)
        return 0;
    t->rearm = 0;
    uint32_t *shadow = page(t, t->shadow), *eventidx = page(t, t->eventidx);
    if (shadow == NULL || eventidx == NULL) {
        t->enabled = 0; /* Python's processing falls back to MMIO doorbells */
        return 0;
    }
    uint32_t count = 0;
    for (uint32_t qid = 1; qid < OCSSD_DOORBELL_QUEUES && t->enabled; qid++) {
        struct ocssd_queue *sq = t->sqs[qid];
        if (sq == NULL)
            continue;
        struct ocssd_queue *cq = t->cqs[t->cq_of_sq[qid]];
        if (2 * (sq->qid > cq->qid ? sq->qid : cq->qid) + 1 >= t->shadow_entries) {
            to_python(t, sq);
            break;
        }
        long posted = drain(t, sq, cq, shadow, eventidx);
        if (posted > 0 && cq->interrupts_enabled && cq->head != cq->tail && count < max)
            vectors[count++] = cq->vector;
    }
    return count;
}
