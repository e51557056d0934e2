/* The I/O fast path: see fastpath.h. */
#include "fastpath.h"

#include "guard.h"

#include <endian.h>
#include <string.h>

#define OPC_WRITE 0x01
#define OPC_READ 0x02
#define OPC_VECTOR_WRITE 0x91
#define OPC_VECTOR_READ 0x92
#define MAX_VECTOR_LBAS 64
#define DESCRIPTOR_SIZE 32
#define CHUNK_FREE 0x1
#define CHUNK_CLOSED 0x2
#define CHUNK_OPEN 0x4
#define CHUNK_RANDOM_WRITE 0x2
#define VECTOR_WRITES_OPEN 2 /* ocssd_vector_io.writes: writes may open a FREE chunk */
#define SQE_SIZE 64
#define CQE_SIZE 16

struct sqe_fields {
    uint8_t opc, flags;
    uint16_t cid;
    uint32_t nsid;
    uint64_t mptr, prp1, prp2, slba;
    uint32_t cdw12, cdw13, cdw14, cdw15;
};

static uint32_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return le32toh(v);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return le64toh(v);
}

static void decode(const uint8_t *e, struct sqe_fields *f)
{
    f->opc = e[0];
    f->flags = e[1];
    f->cid = (uint16_t)(e[2] | e[3] << 8);
    f->nsid = le32(e + 4);
    f->mptr = le64(e + 16);
    f->prp1 = le64(e + 24);
    f->prp2 = le64(e + 32);
    f->slba = le64(e + 40); /* CDW10 and CDW11 */
    f->cdw12 = le32(e + 48);
    f->cdw13 = le32(e + 52);
    f->cdw14 = le32(e + 56);
    f->cdw15 = le32(e + 60);
}

/* The bytes [offset, offset+len) of the namespace, if the command is ours. */
static int fast_eligible(const struct ocssd_fast_io *io, const struct sqe_fields *f,
                         uint64_t *offset, uint64_t *len)
{
    if ((f->opc != OPC_READ && f->opc != OPC_WRITE) || f->flags != 0 || f->nsid != io->nsid)
        return 0;
    if ((f->cdw12 & 0xFFFF0000u) || f->cdw13 || f->cdw14 || f->cdw15)
        return 0; /* FUA, LR, PRINFO, DSM hints...: the Python path decides */
    uint64_t nlb = (uint64_t)(f->cdw12 & 0xFFFF) + 1;
    if (f->slba >= io->nlbas || nlb > io->nlbas - f->slba)
        return 0;
    *len = nlb << io->lba_shift;
    if (*len > io->max_transfer)
        return 0;
    *offset = f->slba << io->lba_shift;
    return 1;
}

static void post(uint32_t *cqe, uint32_t dw2, uint32_t dw3)
{
    cqe[0] = 0;
    cqe[1] = 0;
    cqe[2] = htole32(dw2);
    /* The phase tag's dword last: the host takes the entry once the tag flips. */
    __atomic_store_n(&cqe[3], htole32(dw3), __ATOMIC_RELEASE);
}

/* Where the SQ's and CQ's entries are in this process; 0 when a ring is not mapped. */
static int rings(const struct ocssd_dma_region *regions, size_t nregions,
                 const struct ocssd_fast_io *io, const uint8_t **sq, uint8_t **cq)
{
    const struct ocssd_dma_region *sq_region =
        ocssd_dma_resolve(regions, nregions, io->sq_base, (uint64_t)io->sq_size * SQE_SIZE);
    const struct ocssd_dma_region *cq_region =
        ocssd_dma_resolve(regions, nregions, io->cq_base, (uint64_t)io->cq_size * CQE_SIZE);
    if (sq_region == NULL || cq_region == NULL || !cq_region->writable || io->sq_size == 0
        || io->cq_size == 0)
        return 0;
    *sq = (const uint8_t *)sq_region->host + (io->sq_base - sq_region->start);
    *cq = (uint8_t *)cq_region->host + (io->cq_base - cq_region->start);
    return 1;
}

/* The head command done: its CQE posted, the rings moved on. */
static void complete_head(struct ocssd_fast_io *io, uint8_t *cq, uint16_t cid)
{
    io->sq_head = (io->sq_head + 1) % io->sq_size;
    post((uint32_t *)(cq + (size_t)io->cq_tail * CQE_SIZE), io->sq_head | io->sqid << 16,
         cid | io->cq_phase << 16);
    if (++io->cq_tail == io->cq_size) {
        io->cq_tail = 0;
        io->cq_phase ^= 1;
    }
}

static long fast_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                        struct ocssd_fast_io *io, struct ocssd_dma_range *scratch,
                        size_t scratch_len)
{
    const uint8_t *sq;
    uint8_t *cq;
    if (!rings(regions, nregions, io, &sq, &cq))
        return -1;
    long done = 0;
    /* The host wrote the entries before its doorbell (read on the Python side). */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    while (io->sq_head != io->sq_tail && (io->cq_tail + 1) % io->cq_size != io->cq_head) {
        struct sqe_fields f;
        uint64_t offset, len;
        decode(sq + (size_t)io->sq_head * SQE_SIZE, &f);
        if (!fast_eligible(io, &f, &offset, &len))
            break;
        struct ocssd_dma_segment segment = {io->data + offset, len};
        int to_guest = f.opc == OPC_READ;
        if (ocssd_prp_transfer(regions, nregions, f.prp1, f.prp2, io->page_size, &segment, 1,
                               to_guest, scratch, scratch_len) != 0)
            break; /* nothing moved: the Python path walks it again and reports */
        complete_head(io, cq, f.cid);
        if (to_guest) {
            io->reads++;
            io->blocks_read += len >> io->lba_shift;
        } else {
            io->writes++;
            io->blocks_written += len >> io->lba_shift;
        }
        done++;
    }
    return done;
}

/* -- the OCSSD 2.0 vector path (fastpath.h) ------------------------------------------ */

/* Consecutive sectors of one chunk at positions first..first+count-1 of the list. */
struct vector_run {
    uint32_t chunk, start, count, first;
};

static void put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof v);
}

/* The command's address list as runs (as namespace.py's _runs groups it); 0 if the
 * list cannot be had here or an address is outside the geometry. */
static int vector_runs(const struct ocssd_dma_region *regions, size_t nregions,
                       const struct ocssd_vector_io *v, const struct sqe_fields *f,
                       struct vector_run *runs, uint32_t *nruns, uint32_t *count)
{
    uint32_t n = (f->cdw12 & 0xFFFF) + 1;
    if (n > MAX_VECTOR_LBAS)
        return 0;
    const uint8_t *list = NULL;
    if (n > 1) {
        const struct ocssd_dma_region *r =
            ocssd_dma_resolve(regions, nregions, f->slba, (uint64_t)n * 8);
        if (r == NULL)
            return 0;
        list = (const uint8_t *)r->host + (f->slba - r->start);
    }
    uint32_t made = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t lba = list ? le64(list + (size_t)i * 8) : f->slba;
        uint64_t sec = lba & v->sec_mask, chk = (lba >> v->chk_shift) & v->chk_mask;
        uint64_t pu = (lba >> v->pu_shift) & v->pu_mask, grp = lba >> v->grp_shift;
        if (grp >= v->num_grp || pu >= v->num_pu || chk >= v->num_chk || sec >= v->num_sec)
            return 0;
        uint32_t chunk = (uint32_t)((grp * v->num_pu + pu) * v->num_chk + chk);
        struct vector_run *last = made ? &runs[made - 1] : NULL;
        if (last && last->chunk == chunk && last->start + last->count == sec) {
            last->count++;
            continue;
        }
        runs[made++] = (struct vector_run){chunk, (uint32_t)sec, 1, i};
    }
    *nruns = made;
    *count = n;
    return 1;
}

static const uint8_t *descriptor(const struct ocssd_vector_io *v, uint32_t chunk)
{
    return v->log + (size_t)chunk * DESCRIPTOR_SIZE;
}

/* Sectors of the chunk the Python path certainly reads as data (chunks.py: readable). */
static uint64_t surely_readable(const struct ocssd_vector_io *v, uint32_t chunk)
{
    const uint8_t *d = descriptor(v, chunk);
    uint64_t cnlb = le64(d + 16), wp = le64(d + 24);
    uint64_t limit = wp < cnlb ? wp : cnlb;
    if (d[0] == CHUNK_CLOSED)
        return limit;
    if (d[0] == CHUNK_OPEN)
        return limit > v->mw_cunits ? limit - v->mw_cunits : 0;
    return 0;
}

/* Whether every run is a write the Python path would take as it stands. */
static int writable_runs(const struct ocssd_vector_io *v, const struct vector_run *runs,
                         uint32_t nruns)
{
    for (uint32_t i = 0; i < nruns; i++) {
        const uint8_t *d = descriptor(v, runs[i].chunk);
        uint64_t cnlb = le64(d + 16), wp = le64(d + 24);
        if ((d[0] != CHUNK_FREE && d[0] != CHUNK_OPEN) || d[1] & CHUNK_RANDOM_WRITE
            || (d[0] == CHUNK_FREE && v->writes < VECTOR_WRITES_OPEN)
            || runs[i].start != wp || runs[i].count % v->ws_min
            || runs[i].start + runs[i].count > cnlb)
            return 0;
        for (uint32_t j = 0; j < i; j++)
            if (runs[j].chunk == runs[i].chunk)
                return 0; /* a projected WP: the Python path's case */
    }
    return 1;
}

/* One vector command run, 1; or 0 with nothing changed: it is the Python path's. */
static int vector_command(const struct ocssd_dma_region *regions, size_t nregions,
                          struct ocssd_vector_io *v, const struct sqe_fields *f,
                          struct ocssd_dma_range *scratch, size_t scratch_len)
{
    struct ocssd_fast_io *io = &v->queue;
    int to_guest = f->opc == OPC_VECTOR_READ;
    if ((f->opc != OPC_VECTOR_READ && f->opc != OPC_VECTOR_WRITE) || f->flags != 0
        || f->nsid != io->nsid || (!to_guest && !v->writes))
        return 0;
    struct vector_run runs[MAX_VECTOR_LBAS];
    uint32_t nruns, count;
    if (!vector_runs(regions, nregions, v, f, runs, &nruns, &count))
        return 0;
    if (!to_guest && v->touched_len + nruns > v->touched_cap)
        return 0;
    if (to_guest) {
        for (uint32_t i = 0; i < nruns; i++)
            if (runs[i].start + runs[i].count > surely_readable(v, runs[i].chunk))
                return 0;
    } else if (!writable_runs(v, runs, nruns)) {
        return 0;
    }
    uint8_t *oob_buffer = NULL; /* the host's OOB, resolved before any byte moves */
    uint64_t oob_len = (uint64_t)count * v->md_size;
    if (oob_len && f->mptr) {
        const struct ocssd_dma_region *r = ocssd_dma_resolve(regions, nregions, f->mptr, oob_len);
        if (r == NULL || (to_guest && !r->writable))
            return 0;
        oob_buffer = (uint8_t *)r->host + (f->mptr - r->start);
    }
    struct ocssd_dma_segment segments[MAX_VECTOR_LBAS];
    uint32_t sec_size = 1u << io->lba_shift;
    for (uint32_t i = 0; i < nruns; i++) {
        uint64_t sector = (uint64_t)runs[i].chunk * v->num_sec + runs[i].start;
        segments[i] = (struct ocssd_dma_segment){io->data + sector * sec_size,
                                                 (size_t)runs[i].count * sec_size};
    }
    if (ocssd_prp_transfer(regions, nregions, f->prp1, f->prp2, io->page_size, segments, nruns,
                           to_guest, scratch, scratch_len) != 0)
        return 0; /* nothing moved: the Python path walks it again and reports */
    for (uint32_t i = 0; i < nruns; i++) {
        const struct vector_run *run = &runs[i];
        uint64_t sector = (uint64_t)run->chunk * v->num_sec + run->start;
        uint8_t *oob = v->oob + sector * v->md_size;
        size_t oob_run = (size_t)run->count * v->md_size;
        v->pu_operations[run->chunk / v->num_chk]++;
        if (to_guest) {
            if (oob_buffer)
                memcpy(oob_buffer + (size_t)run->first * v->md_size, oob, oob_run);
            continue;
        }
        if (oob_buffer)
            memcpy(oob, oob_buffer + (size_t)run->first * v->md_size, oob_run);
        else
            memset(oob, 0xFF, oob_run); /* erased flash: the host sent none */
        uint8_t *d = v->log + (size_t)run->chunk * DESCRIPTOR_SIZE;
        uint64_t wp = (uint64_t)run->start + run->count;
        put_le64(d + 24, wp);
        d[0] = wp >= le64(d + 16) ? CHUNK_CLOSED : CHUNK_OPEN; /* FILL closes, WRITE opens */
        v->touched[v->touched_len++] = run->chunk;
    }
    if (to_guest) {
        io->reads++;
        io->blocks_read += count;
    } else {
        io->writes++;
        io->blocks_written += count;
    }
    return 1;
}

static long vector_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                          struct ocssd_vector_io *v, struct ocssd_dma_range *scratch,
                          size_t scratch_len)
{
    struct ocssd_fast_io *io = &v->queue;
    const uint8_t *sq;
    uint8_t *cq;
    if (!rings(regions, nregions, io, &sq, &cq))
        return -1;
    long done = 0;
    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* as ocssd_fast_io_run */
    while (io->sq_head != io->sq_tail && (io->cq_tail + 1) % io->cq_size != io->cq_head) {
        struct sqe_fields f;
        decode(sq + (size_t)io->sq_head * SQE_SIZE, &f);
        if (!vector_command(regions, nregions, v, &f, scratch, scratch_len))
            break;
        complete_head(io, cq, f.cid);
        done++;
    }
    return done;
}

/* A fault (guard.h) stops a run: the commands completed so far are counted in the
 * queue's counters, the one that faulted stays at the head for the Python path to fail. */
long ocssd_fast_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                       struct ocssd_fast_io *io, struct ocssd_dma_range *scratch,
                       size_t scratch_len)
{
    long done;
    OCSSD_GUARDED(done, fast_io_run(regions, nregions, io, scratch, scratch_len),
                  (long)(io->reads + io->writes));
    return done;
}

long ocssd_vector_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                         struct ocssd_vector_io *v, struct ocssd_dma_range *scratch,
                         size_t scratch_len)
{
    long done;
    OCSSD_GUARDED(done, vector_io_run(regions, nregions, v, scratch, scratch_len),
                  (long)(v->queue.reads + v->queue.writes));
    return done;
}
