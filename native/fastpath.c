/* The I/O fast path: see fastpath.h. */
#include "fastpath.h"

#include "guard.h"

#include <endian.h>
#include <string.h>

#define OPC_WRITE 0x01
#define OPC_READ 0x02
#define SQE_SIZE 64
#define CQE_SIZE 16

struct sqe_fields {
    uint8_t opc, flags;
    uint16_t cid;
    uint32_t nsid;
    uint64_t prp1, prp2, slba;
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

static long fast_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                        struct ocssd_fast_io *io, struct ocssd_dma_range *scratch,
                        size_t scratch_len)
{
    const struct ocssd_dma_region *sq_region =
        ocssd_dma_resolve(regions, nregions, io->sq_base, (uint64_t)io->sq_size * SQE_SIZE);
    const struct ocssd_dma_region *cq_region =
        ocssd_dma_resolve(regions, nregions, io->cq_base, (uint64_t)io->cq_size * CQE_SIZE);
    if (sq_region == NULL || cq_region == NULL || !cq_region->writable || io->sq_size == 0
        || io->cq_size == 0)
        return -1;
    const uint8_t *sq = (const uint8_t *)sq_region->host + (io->sq_base - sq_region->start);
    uint8_t *cq = (uint8_t *)cq_region->host + (io->cq_base - cq_region->start);
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
        io->sq_head = (io->sq_head + 1) % io->sq_size;
        post((uint32_t *)(cq + (size_t)io->cq_tail * CQE_SIZE), io->sq_head | io->sqid << 16,
             f.cid | io->cq_phase << 16);
        if (++io->cq_tail == io->cq_size) {
            io->cq_tail = 0;
            io->cq_phase ^= 1;
        }
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

long ocssd_fast_io_run(const struct ocssd_dma_region *regions, size_t nregions,
                       struct ocssd_fast_io *io, struct ocssd_dma_range *scratch,
                       size_t scratch_len)
{
    /* A fault (guard.h) stops the run: the commands completed so far are counted in
     * `io`, the one that faulted stays at the head for the Python path to fail. */
    long done;
    OCSSD_GUARDED(done, fast_io_run(regions, nregions, io, scratch, scratch_len),
                  (long)(io->reads + io->writes));
    return done;
}
