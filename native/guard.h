/*
 * Memory that another process can take away: guest RAM (a client's memfd, which
 * it may shrink after DMA_MAP) and the image mapping (truncated by someone, or a
 * sparse file on a full file system, where a write fault cannot allocate). An
 * access there raises SIGBUS (or SIGSEGV); none may end the server.
 *
 * Only watched ranges (ocssd_guard_watch: the shell's DMA regions and image
 * mappings) are such memory. Two nets, one SIGBUS/SIGSEGV handler (installed
 * once, chained to the previous):
 * - a guarded call (OCSSD_GUARDED below: the shim's walks and copies, the fast
 *   path) faulting in a watched range jumps back out (thread-local
 *   sigsetjmp/siglongjmp) and returns a status for that command;
 * - any other access (Python touching guest memory or the image) that faults in
 *   a watched range gets a zero page mapped over the faulting one and goes on;
 *   the range counts it, and the shell then fails the controller (guest memory)
 *   or the image (ocssd_vfu/media/watch.py), since the page no longer shows the
 *   file.
 * A fault anywhere else (a stray pointer: a bug, which the fuzzer's guard pages
 * are there to catch) goes to the previous handler, or kills as before.
 */
#ifndef OCSSD_GUARD_H
#define OCSSD_GUARD_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

/* Kinds of range; OTHER: a fault outside every watched range. */
#define OCSSD_GUARD_GUEST 1
#define OCSSD_GUARD_IMAGE 2
#define OCSSD_GUARD_OTHER 3
#define OCSSD_GUARD_KINDS 4
#define OCSSD_GUARD_MAX_RANGES 4096

struct ocssd_guard {
    sigjmp_buf env;
    volatile int active;
    void *volatile fault; /* the faulting address, once jumped */
};

extern __thread struct ocssd_guard ocssd_guard_state;

/* 0, or -1 with errno (sigaction failed). Idempotent. */
int ocssd_guard_install(void);
/* Watch [start, start+length) as `kind`: 0, or -1 when the table is full. */
int ocssd_guard_watch(void *start, uint64_t length, int kind);
void ocssd_guard_unwatch(void *start);
/* Faults so far in ranges of `kind` (jumped out of, or patched over). */
uint64_t ocssd_guard_faults(int kind);
/* Of those, pages patched over with zeroes (faults outside a guarded call). */
uint64_t ocssd_guard_patched(int kind);
/* The kind of the watched range holding `address`, or OCSSD_GUARD_OTHER. */
int ocssd_guard_kind_of(const void *address);
/* memmove inside a guard: 0, or the kind of the watched range that faulted. */
int ocssd_guarded_copy(void *dst, const void *src, size_t n);

/*
 * Runs `call` (an expression) guarded unless a guard is already up on this thread;
 * `on_fault` is evaluated (and returned by the enclosing function) after a fault,
 * with ocssd_guard_state.fault set. Locals the caller reads after a fault must not
 * be changed by `call`.
 */
#define OCSSD_GUARDED(result, call, on_fault)                                  \
    do {                                                                       \
        if (ocssd_guard_state.active) {                                        \
            result = (call);                                                   \
            break;                                                             \
        }                                                                      \
        ocssd_guard_state.active = 1;                                          \
        if (sigsetjmp(ocssd_guard_state.env, 0)) {                             \
            result = (on_fault);                                               \
            break;                                                             \
        }                                                                      \
        result = (call);                                                       \
        ocssd_guard_state.active = 0;                                          \
    } while (0)

#endif
