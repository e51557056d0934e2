/* SIGBUS/SIGSEGV in memory others can take away: see guard.h. The handler only
 * reads the range table and writes counters; the table's entries are published
 * by their `end` (stored last, cleared first). */
#include "guard.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

__thread struct ocssd_guard ocssd_guard_state;

struct watched {
    uintptr_t start;
    uintptr_t end; /* 0: a free slot */
    int kind;
};

static struct watched ranges[OCSSD_GUARD_MAX_RANGES];
static uint64_t faults[OCSSD_GUARD_KINDS], patched[OCSSD_GUARD_KINDS];
static struct sigaction previous_bus, previous_segv;
static int installed;

static const struct watched *find(uintptr_t address)
{
    for (size_t i = 0; i < OCSSD_GUARD_MAX_RANGES; i++) {
        uintptr_t end = __atomic_load_n(&ranges[i].end, __ATOMIC_ACQUIRE);
        if (end && ranges[i].start <= address && address < end)
            return &ranges[i];
    }
    return NULL;
}

int ocssd_guard_kind_of(const void *address)
{
    const struct watched *w = find((uintptr_t)address);
    return w ? w->kind : OCSSD_GUARD_OTHER;
}

static void chain(int sig, siginfo_t *info, void *context)
{
    const struct sigaction *old = sig == SIGBUS ? &previous_bus : &previous_segv;
    if (old->sa_flags & SA_SIGINFO && old->sa_sigaction) {
        old->sa_sigaction(sig, info, context);
        return;
    }
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    /* As if we had never been here: the access faults again and ends the process. */
    signal(sig, SIG_DFL);
}

static void on_fault(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    const struct watched *w = find((uintptr_t)info->si_addr);
    __atomic_add_fetch(&faults[w ? w->kind : OCSSD_GUARD_OTHER], 1, __ATOMIC_RELAXED);
    if (ocssd_guard_state.active && w) {
        ocssd_guard_state.active = 0;
        ocssd_guard_state.fault = info->si_addr;
        errno = saved;
        siglongjmp(ocssd_guard_state.env, 1);
    }
    if (w) {
        long page = sysconf(_SC_PAGESIZE);
        uintptr_t at = (uintptr_t)info->si_addr & ~(uintptr_t)(page - 1);
        if (mmap((void *)at, (size_t)page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
            __atomic_add_fetch(&patched[w->kind], 1, __ATOMIC_RELAXED);
            errno = saved;
            return; /* the access runs again, on the zero page */
        }
    }
    errno = saved;
    chain(sig, info, context);
}

int ocssd_guard_install(void)
{
    if (installed)
        return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    /* NODEFER: a jump out of the handler leaves the signal unblocked without
     * sigsetjmp saving the mask (a system call per guarded call). */
    action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &previous_bus) < 0)
        return -1;
    if (sigaction(SIGSEGV, &action, &previous_segv) < 0) {
        sigaction(SIGBUS, &previous_bus, NULL);
        return -1;
    }
    installed = 1;
    return 0;
}

int ocssd_guard_watch(void *start, uint64_t length, int kind)
{
    if (length == 0 || kind < OCSSD_GUARD_GUEST || kind > OCSSD_GUARD_IMAGE)
        return 0;
    for (size_t i = 0; i < OCSSD_GUARD_MAX_RANGES; i++) {
        if (ranges[i].end == 0) {
            ranges[i].start = (uintptr_t)start;
            ranges[i].kind = kind;
            __atomic_store_n(&ranges[i].end, (uintptr_t)start + length, __ATOMIC_RELEASE);
            return 0;
        }
    }
    return -1;
}

void ocssd_guard_unwatch(void *start)
{
    for (size_t i = 0; i < OCSSD_GUARD_MAX_RANGES; i++) {
        if (ranges[i].end && ranges[i].start == (uintptr_t)start) {
            __atomic_store_n(&ranges[i].end, 0, __ATOMIC_RELEASE);
            return;
        }
    }
}

static uint64_t counter(const uint64_t *counters, int kind)
{
    if (kind < 0 || kind >= OCSSD_GUARD_KINDS)
        return 0;
    return __atomic_load_n(&counters[kind], __ATOMIC_RELAXED);
}

uint64_t ocssd_guard_faults(int kind)
{
    return counter(faults, kind);
}

uint64_t ocssd_guard_patched(int kind)
{
    return counter(patched, kind);
}

static int copy(void *dst, const void *src, size_t n)
{
    memmove(dst, src, n);
    return 0;
}

int ocssd_guarded_copy(void *dst, const void *src, size_t n)
{
    int result;
    OCSSD_GUARDED(result, copy(dst, src, n), ocssd_guard_kind_of(ocssd_guard_state.fault));
    return result;
}
