/* PRP and SGL walks and the copy: see dma.h. Every loop is bounded (by the
 * transfer length, or ocssd_sgl_max_descriptors()), every guest address is
 * checked against the region table without overflow. */
#include "dma.h"

#include "guard.h"

#include <endian.h>
#include <string.h>

#define IPO_DNR (OCSSD_STATUS_INVALID_PRP_OFFSET | OCSSD_STATUS_DNR)
#define DNR(status) (OCSSD_STATUS_##status | OCSSD_STATUS_DNR)

struct walk {
    const struct ocssd_dma_region *regions;
    size_t nregions;
    int to_guest;
    struct ocssd_dma_range *ranges;
    size_t count, capacity; /* count goes on past capacity: the ranges an SGL needs */
    int unmapped; /* a data range failed to resolve: reported after the walk */
};

/* The last region whose start is <= addr is the only candidate (as GuestMemory.view). */
const struct ocssd_dma_region *ocssd_dma_resolve(const struct ocssd_dma_region *regions,
                                                 size_t nregions, uint64_t addr, uint64_t len)
{
    size_t lo = 0, hi = nregions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (regions[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const struct ocssd_dma_region *r = &regions[lo - 1];
    uint64_t offset = addr - r->start;
    if (offset > r->length || len > r->length - offset)
        return NULL;
    return r;
}

/* Records a data range; a mapping failure waits until the walk has finished,
 * since PRP errors found later in the walk take precedence (as in the reference
 * walk). */
static void add_range(struct walk *w, uint64_t addr, uint64_t len)
{
    const struct ocssd_dma_region *r = ocssd_dma_resolve(w->regions, w->nregions, addr, len);
    if (r == NULL || (w->to_guest && !r->writable)) {
        w->unmapped = 1;
        return;
    }
    if (w->count < w->capacity) {
        w->ranges[w->count].host = (uint8_t *)r->host + (addr - r->start);
        w->ranges[w->count].len = len;
    }
    w->count++;
}

static void add_bit_bucket(struct walk *w, uint64_t len)
{
    if (w->count < w->capacity) {
        w->ranges[w->count].host = NULL;
        w->ranges[w->count].len = len;
    }
    w->count++;
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return le64toh(v);
}

/* The PRP list walk (PRP2 points to a list, more than one page remains). */
static int walk_list(struct walk *w, uint64_t list, uint64_t remaining, uint64_t page_size)
{
    const uint64_t mask = page_size - 1;
    while (remaining > 0) {
        uint64_t slots = (page_size - (list & mask)) / 8;
        uint64_t pages = remaining / page_size + (remaining % page_size != 0);
        int chained = pages > slots;
        /* A list page must hold a data entry besides its chain pointer: one that
         * does not would never end (a list chaining to itself). */
        if (chained && slots < 2)
            return IPO_DNR;
        uint64_t take = chained ? slots : pages;
        const struct ocssd_dma_region *r =
            ocssd_dma_resolve(w->regions, w->nregions, list, take * 8);
        if (r == NULL)
            return OCSSD_STATUS_DATA_TRANSFER_ERROR;
        const uint8_t *entries = (const uint8_t *)r->host + (list - r->start);
        uint64_t data = chained ? take - 1 : take;
        for (uint64_t i = 0; i < data; i++) {
            uint64_t entry = load_le64(entries + 8 * i);
            if (entry & mask)
                return IPO_DNR;
            uint64_t chunk = remaining < page_size ? remaining : page_size;
            add_range(w, entry, chunk);
            remaining -= chunk;
        }
        if (chained) {
            list = load_le64(entries + 8 * (take - 1));
            if (list & 0x3)
                return IPO_DNR;
        }
    }
    return 0;
}

static int walk(struct walk *w, uint64_t prp1, uint64_t prp2, uint64_t length,
                uint64_t page_size)
{
    const uint64_t mask = page_size - 1;
    if (prp1 & 0x3)
        return IPO_DNR;
    uint64_t first = page_size - (prp1 & mask);
    if (first > length)
        first = length;
    add_range(w, prp1, first);
    uint64_t remaining = length - first;
    if (remaining == 0)
        return 0;
    if (remaining <= page_size) {
        if (prp2 & mask)
            return IPO_DNR;
        add_range(w, prp2, remaining);
        return 0;
    }
    if (prp2 & 0x3)
        return IPO_DNR;
    return walk_list(w, prp2, remaining, page_size);
}

static int valid_page_size(uint64_t page_size)
{
    return page_size >= 8 && (page_size & (page_size - 1)) == 0;
}

uint64_t ocssd_prp_max_ranges(uint64_t length, uint64_t page_size)
{
    if (!valid_page_size(page_size))
        return 0; /* ocssd_prp_transfer() refuses it anyway */
    /* PRP1's range, then whole pages except the last. */
    return length / page_size + 2;
}

static int prp_transfer(const struct ocssd_dma_region *regions, size_t nregions,
                        uint64_t prp1, uint64_t prp2, uint64_t page_size,
                        const struct ocssd_dma_segment *segments, size_t nsegments,
                        int to_guest, struct ocssd_dma_range *scratch, size_t scratch_len)
{
    if (!valid_page_size(page_size))
        return OCSSD_DMA_EINVAL;
    uint64_t length = 0;
    for (size_t i = 0; i < nsegments; i++) {
        if (segments[i].len > UINT64_MAX - length)
            return OCSSD_DMA_EINVAL;
        length += segments[i].len;
    }
    if (length == 0)
        return 0;
    if (scratch_len < ocssd_prp_max_ranges(length, page_size))
        return OCSSD_DMA_ESCRATCH;

    struct walk w = {regions, nregions, to_guest, scratch, 0, scratch_len, 0};
    int err = walk(&w, prp1, prp2, length, page_size);
    if (err)
        return err;
    if (w.unmapped)
        return OCSSD_STATUS_DATA_TRANSFER_ERROR;

    return ocssd_dma_copy(w.ranges, w.count, segments, nsegments, to_guest);
}

/* The status of a command whose guarded walk or copy faulted: guest memory taken
 * away is a Data Transfer Error; anything else is the device side, the image. */
static int fault_status(const struct ocssd_dma_region *regions, size_t nregions, int to_guest)
{
    uintptr_t at = (uintptr_t)ocssd_guard_state.fault;
    for (size_t i = 0; i < nregions; i++) {
        uintptr_t host = (uintptr_t)regions[i].host;
        if (host <= at && at - host < regions[i].length)
            return OCSSD_STATUS_DATA_TRANSFER_ERROR;
    }
    return to_guest ? DNR(UNRECOVERED_READ_ERROR) : DNR(WRITE_FAULT);
}

int ocssd_prp_transfer(const struct ocssd_dma_region *regions, size_t nregions,
                       uint64_t prp1, uint64_t prp2, uint64_t page_size,
                       const struct ocssd_dma_segment *segments, size_t nsegments,
                       int to_guest, struct ocssd_dma_range *scratch, size_t scratch_len)
{
    int status;
    OCSSD_GUARDED(status, prp_transfer(regions, nregions, prp1, prp2, page_size, segments,
                                       nsegments, to_guest, scratch, scratch_len),
                  fault_status(regions, nregions, to_guest));
    return status;
}

static int dma_copy(const struct ocssd_dma_range *ranges, size_t nranges,
                    const struct ocssd_dma_segment *segments, size_t nsegments, int to_guest)
{
    /* Both sides hold the same length; memmove as a test may alias them. */
    size_t gi = 0, si = 0;
    uint64_t g_off = 0, s_off = 0;
    while (gi < nranges && si < nsegments) {
        uint64_t g_left = ranges[gi].len - g_off;
        uint64_t s_left = segments[si].len - s_off;
        uint64_t n = g_left < s_left ? g_left : s_left;
        uint8_t *device = (uint8_t *)segments[si].ptr + s_off;
        if (ranges[gi].host != NULL) {
            uint8_t *guest = ranges[gi].host + g_off;
            if (to_guest)
                memmove(guest, device, n);
            else
                memmove(device, guest, n);
        }
        g_off += n;
        s_off += n;
        if (g_off == ranges[gi].len) {
            gi++;
            g_off = 0;
        }
        if (s_off == segments[si].len) {
            si++;
            s_off = 0;
        }
    }
    return 0;
}

/* The guest ranges of a copy (the fault's side, as fault_status tells it). */
static int copy_fault_status(const struct ocssd_dma_range *ranges, size_t nranges, int to_guest)
{
    uintptr_t at = (uintptr_t)ocssd_guard_state.fault;
    for (size_t i = 0; i < nranges; i++) {
        uintptr_t host = (uintptr_t)ranges[i].host;
        if (ranges[i].host != NULL && host <= at && at - host < ranges[i].len)
            return OCSSD_STATUS_DATA_TRANSFER_ERROR;
    }
    return to_guest ? DNR(UNRECOVERED_READ_ERROR) : DNR(WRITE_FAULT);
}

int ocssd_dma_copy(const struct ocssd_dma_range *ranges, size_t nranges,
                   const struct ocssd_dma_segment *segments, size_t nsegments, int to_guest)
{
    int status;
    OCSSD_GUARDED(status, dma_copy(ranges, nranges, segments, nsegments, to_guest),
                  copy_fault_status(ranges, nranges, to_guest));
    return status;
}

void ocssd_full_barrier(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* -- SGL (NVMe 1.4 4.4) ------------------------------------------------------------- */

enum sgl_type { DATA_BLOCK = 0x0, BIT_BUCKET = 0x1, SEGMENT = 0x2, LAST_SEGMENT = 0x3 };
#define SUBTYPE_ADDRESS 0x0
#define SUBTYPE_OFFSET 0x1 /* NVMe over Fabrics only: SGLS bit 20 stays 0 */
#define DESCRIPTOR_SIZE 16

struct descriptor {
    uint64_t address;
    uint32_t length;
    unsigned type, subtype;
};

static struct descriptor unpack(uint64_t address, uint64_t length_and_id)
{
    struct descriptor d = {address, (uint32_t)length_and_id, (unsigned)(length_and_id >> 60),
                           (unsigned)(length_and_id >> 56) & 0xF};
    return d;
}

struct sgl_walk {
    struct walk w;
    uint64_t remaining; /* bytes the SGL has yet to describe */
    uint64_t descriptors_left;
};

/* A descriptor that is not a (Last) Segment: data, a bit bucket, or an error. */
static int data_descriptor(struct sgl_walk *s, struct descriptor d)
{
    if (d.type != DATA_BLOCK && d.type != BIT_BUCKET)
        return DNR(SGL_DESCRIPTOR_TYPE_INVALID);
    if (d.type == DATA_BLOCK && d.subtype == SUBTYPE_OFFSET)
        return DNR(SGL_OFFSET_INVALID);
    if (d.subtype != SUBTYPE_ADDRESS)
        return DNR(SGL_DESCRIPTOR_TYPE_INVALID);
    /* A Bit Bucket discards controller-to-host data; host-to-controller it is ignored. */
    if (d.type == BIT_BUCKET && !s->w.to_guest)
        return 0;
    if (d.length > s->remaining) /* SGLS bit 18 (longer SGLs) is 0 */
        return DNR(DATA_SGL_LENGTH_INVALID);
    if (d.length == 0)
        return 0;
    if (d.type == BIT_BUCKET)
        add_bit_bucket(&s->w, d.length);
    else
        add_range(&s->w, d.address, d.length);
    s->remaining -= d.length;
    return 0;
}

static int segment_descriptor_valid(struct descriptor d)
{
    if (d.subtype == SUBTYPE_OFFSET)
        return DNR(SGL_OFFSET_INVALID);
    if (d.subtype != SUBTYPE_ADDRESS)
        return DNR(SGL_DESCRIPTOR_TYPE_INVALID);
    if (d.length == 0 || d.length % DESCRIPTOR_SIZE)
        return DNR(INVALID_SGL_SEGMENT_DESCRIPTOR);
    return 0;
}

/* Walks the segment chain from `d` (a Segment or Last Segment descriptor). */
static int walk_segments(struct sgl_walk *s, struct descriptor d)
{
    for (;;) {
        int err = segment_descriptor_valid(d);
        if (err)
            return err;
        uint64_t n = d.length / DESCRIPTOR_SIZE;
        /* The bound that ends a chain looping back on itself. */
        if (n > s->descriptors_left)
            return DNR(INVALID_NUMBER_OF_SGL_DESCRIPTORS);
        s->descriptors_left -= n;
        const struct ocssd_dma_region *r =
            ocssd_dma_resolve(s->w.regions, s->w.nregions, d.address, d.length);
        if (r == NULL)
            return OCSSD_STATUS_DATA_TRANSFER_ERROR;
        const uint8_t *entries = (const uint8_t *)r->host + (d.address - r->start);
        int last = d.type == LAST_SEGMENT, chained = 0;
        for (uint64_t i = 0; i < n; i++) {
            const uint8_t *e = entries + DESCRIPTOR_SIZE * i;
            struct descriptor next = unpack(load_le64(e), load_le64(e + 8));
            if (next.type != SEGMENT && next.type != LAST_SEGMENT) {
                err = data_descriptor(s, next);
                if (err)
                    return err;
                continue;
            }
            /* Only a Segment's last descriptor may lead on (4.4: a Last Segment's
             * segment holds data descriptors only). */
            if (last || i != n - 1)
                return DNR(INVALID_SGL_SEGMENT_DESCRIPTOR);
            d = next;
            chained = 1;
        }
        if (!chained)
            return 0;
    }
}

uint64_t ocssd_sgl_max_descriptors(uint64_t length)
{
    /* Room for a segment descriptor per data descriptor and a byte per data
     * descriptor, and then some: no sane SGL comes near it. */
    return 2 * length + 256;
}

static int sgl_map(const struct ocssd_dma_region *regions, size_t nregions, uint64_t address,
                   uint64_t length_and_id, uint64_t length, int to_guest,
                   struct ocssd_dma_range *scratch, size_t scratch_len, size_t *count)
{
    *count = 0;
    if (length > UINT64_MAX / 4)
        return OCSSD_DMA_EINVAL;
    struct sgl_walk s = {{regions, nregions, to_guest, scratch, 0, scratch_len, 0}, length,
                         ocssd_sgl_max_descriptors(length)};
    struct descriptor first = unpack(address, length_and_id);
    int err = first.type == SEGMENT || first.type == LAST_SEGMENT
                  ? walk_segments(&s, first)
                  : data_descriptor(&s, first);
    if (err)
        return err;
    if (s.remaining)
        return DNR(DATA_SGL_LENGTH_INVALID);
    if (s.w.unmapped)
        return OCSSD_STATUS_DATA_TRANSFER_ERROR;
    *count = s.w.count;
    if (s.w.count > scratch_len)
        return OCSSD_DMA_ESCRATCH;
    return 0;
}

int ocssd_sgl_map(const struct ocssd_dma_region *regions, size_t nregions, uint64_t address,
                  uint64_t length_and_id, uint64_t length, int to_guest,
                  struct ocssd_dma_range *scratch, size_t scratch_len, size_t *count)
{
    int status; /* the walk reads guest memory only */
    OCSSD_GUARDED(status, sgl_map(regions, nregions, address, length_and_id, length, to_guest,
                                  scratch, scratch_len, count),
                  OCSSD_STATUS_DATA_TRANSFER_ERROR);
    return status;
}
