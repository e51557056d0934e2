/* PRP walk and copy: see dma.h. Every loop is bounded by the transfer length,
 * every guest address is checked against the region table without overflow. */
#include "dma.h"

#include <endian.h>
#include <string.h>

#define IPO_DNR (OCSSD_STATUS_INVALID_PRP_OFFSET | OCSSD_STATUS_DNR)

struct walk {
    const struct ocssd_dma_region *regions;
    size_t nregions;
    int to_guest;
    struct ocssd_dma_range *ranges;
    size_t count, capacity;
    int unmapped; /* a data range failed to resolve: reported after the walk */
};

/* The region holding all of [addr, addr+len), or NULL. The last region whose
 * start is <= addr is the only candidate (as GuestMemory.view). */
static const struct ocssd_dma_region *resolve(const struct ocssd_dma_region *regions,
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
static int add_range(struct walk *w, uint64_t addr, uint64_t len)
{
    if (w->count == w->capacity)
        return OCSSD_DMA_ESCRATCH;
    const struct ocssd_dma_region *r = resolve(w->regions, w->nregions, addr, len);
    if (r == NULL || (w->to_guest && !r->writable)) {
        w->unmapped = 1;
        return 0;
    }
    w->ranges[w->count].host = (uint8_t *)r->host + (addr - r->start);
    w->ranges[w->count].len = len;
    w->count++;
    return 0;
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
        const struct ocssd_dma_region *r = resolve(w->regions, w->nregions, list, take * 8);
        if (r == NULL)
            return OCSSD_STATUS_DATA_TRANSFER_ERROR;
        const uint8_t *entries = (const uint8_t *)r->host + (list - r->start);
        uint64_t data = chained ? take - 1 : take;
        for (uint64_t i = 0; i < data; i++) {
            uint64_t entry = load_le64(entries + 8 * i);
            if (entry & mask)
                return IPO_DNR;
            uint64_t chunk = remaining < page_size ? remaining : page_size;
            int err = add_range(w, entry, chunk);
            if (err)
                return err;
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
    int err = add_range(w, prp1, first);
    if (err)
        return err;
    uint64_t remaining = length - first;
    if (remaining == 0)
        return 0;
    if (remaining <= page_size) {
        if (prp2 & mask)
            return IPO_DNR;
        return add_range(w, prp2, remaining);
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

int ocssd_prp_transfer(const struct ocssd_dma_region *regions, size_t nregions,
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

    /* Both sides hold `length` bytes; memmove as a test may alias them. */
    size_t gi = 0, si = 0;
    uint64_t g_off = 0, s_off = 0;
    while (gi < w.count && si < nsegments) {
        uint64_t g_left = w.ranges[gi].len - g_off;
        uint64_t s_left = segments[si].len - s_off;
        uint64_t n = g_left < s_left ? g_left : s_left;
        uint8_t *guest = w.ranges[gi].host + g_off;
        uint8_t *device = (uint8_t *)segments[si].ptr + s_off;
        if (to_guest)
            memmove(guest, device, n);
        else
            memmove(device, guest, n);
        g_off += n;
        s_off += n;
        if (g_off == w.ranges[gi].len) {
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
