/* crnn's own worker threads: run one task split into parts, one part per thread.
 *
 * The recurrent loops of a training step are T small dependent products,
 * each a few microseconds; splitting every one of them through BLAS's thread
 * pool (or creating threads per call, ~40 µs here) costs more than it saves.
 * These workers stay alive between calls and, after a task, spin briefly
 * (CRNN_POOL_SPIN_NS) before sleeping, so the next region of the same training
 * step starts without a wake-up; parts of one task may synchronise at every
 * time step with crnn_pool_barrier(), a spinning barrier.
 *
 * crnn_pool_run(fn, ctx, n) calls fn(ctx, part, nparts) for part = 0..nparts-1,
 * part 0 on the calling thread, and returns when all have returned. nparts
 * may be smaller than n: fewer workers could be started, or another thread
 * is running a task (then the caller runs it alone, nparts = 1), so fn must
 * split its work by the nparts it is given.
 *
 * POSIX only (pthreads and GCC/Clang atomics); elsewhere every task runs on
 * the calling thread. A forked child starts with no workers.
 */
#ifndef CRNN_POOL_H
#define CRNN_POOL_H

typedef void (*crnn_task_fn)(void *ctx, int part, int nparts);

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#define CRNN_POOL_MAX 64
#define CRNN_POOL_SPIN_NS 300000L

#if defined(__x86_64__) || defined(__i386__)
#define crnn_pause() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define crnn_pause() __asm__ __volatile__("yield")
#else
#define crnn_pause() ((void)0)
#endif

#define crnn_load(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define crnn_store(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)

static struct {
    pthread_mutex_t busy;      /* held by the thread running a task */
    pthread_mutex_t mu;        /* guards sleeping workers' wake-up */
    pthread_cond_t cv;
    int started, sleeping, atfork;
    /* the current task, published by a seqlock on `seq` (odd while written) */
    unsigned long seq;
    crnn_task_fn fn;
    void *ctx;
    int nparts;
    int pending;               /* parts other than 0 still running */
    /* the barrier */
    int arrived;
    unsigned long phase;
} crnn_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

/* A worker's number (its part) and the task count when it was started: it
 * must not take a task published before it ran as new, nor miss one after. */
struct crnn_pool_arg { int id; unsigned long seq; };
static struct crnn_pool_arg crnn_pool_args[CRNN_POOL_MAX];

static long long crnn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *crnn_pool_worker(void *arg)
{
    int id = ((const struct crnn_pool_arg *)arg)->id;
    unsigned long seen = ((const struct crnn_pool_arg *)arg)->seq;
    for (;;) {
        unsigned long seq;
        crnn_task_fn fn;
        void *ctx;
        int nparts;
        long long idle_since = 0;
        for (unsigned spins = 0;; spins++) {
            seq = crnn_load(&crnn_pool.seq);
            if (seq != seen && !(seq & 1)) {
                fn = __atomic_load_n(&crnn_pool.fn, __ATOMIC_RELAXED);
                ctx = __atomic_load_n(&crnn_pool.ctx, __ATOMIC_RELAXED);
                nparts = __atomic_load_n(&crnn_pool.nparts, __ATOMIC_RELAXED);
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                if (crnn_load(&crnn_pool.seq) == seq)
                    break;
                continue;
            }
            crnn_pause();
            if ((spins & 255) == 0) {
                long long now = crnn_now_ns();
                if (!idle_since) {
                    idle_since = now;
                } else if (now - idle_since > CRNN_POOL_SPIN_NS) {
                    pthread_mutex_lock(&crnn_pool.mu);
                    crnn_pool.sleeping++;
                    while (crnn_load(&crnn_pool.seq) == seen)
                        pthread_cond_wait(&crnn_pool.cv, &crnn_pool.mu);
                    crnn_pool.sleeping--;
                    pthread_mutex_unlock(&crnn_pool.mu);
                    idle_since = 0;
                }
            }
        }
        seen = seq;
        if (id < nparts) {
            fn(ctx, id, nparts);
            __atomic_sub_fetch(&crnn_pool.pending, 1, __ATOMIC_ACQ_REL);
        }
    }
    return NULL;
}

static void crnn_pool_atfork_child(void)
{
    /* The workers do not exist in the child; state is reset, the mutexes too. */
    pthread_mutex_init(&crnn_pool.busy, NULL);
    pthread_mutex_init(&crnn_pool.mu, NULL);
    pthread_cond_init(&crnn_pool.cv, NULL);
    crnn_pool.started = 0;
    crnn_pool.sleeping = 0;
}

/* Starts workers up to n − 1 (under `busy`); returns how many parts can run. */
static int crnn_pool_grow(int n)
{
    if (n > CRNN_POOL_MAX)
        n = CRNN_POOL_MAX;
    if (!crnn_pool.atfork) {
        pthread_atfork(NULL, NULL, crnn_pool_atfork_child);
        crnn_pool.atfork = 1;
    }
    while (crnn_pool.started < n - 1) {
        pthread_t t;
        pthread_attr_t attr;
        int ok;
        int id = crnn_pool.started + 1;
        crnn_pool_args[id].id = id;
        crnn_pool_args[id].seq = crnn_pool.seq;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&t, &attr, crnn_pool_worker, &crnn_pool_args[id]) == 0;
        pthread_attr_destroy(&attr);
        if (!ok)
            break;
        crnn_pool.started++;
    }
    return crnn_pool.started + 1 < n ? crnn_pool.started + 1 : n;
}

static void crnn_pool_run(crnn_task_fn fn, void *ctx, int n)
{
    if (n <= 1 || pthread_mutex_trylock(&crnn_pool.busy) != 0) {
        fn(ctx, 0, 1);
        return;
    }
    n = crnn_pool_grow(n);
    if (n <= 1) {
        pthread_mutex_unlock(&crnn_pool.busy);
        fn(ctx, 0, 1);
        return;
    }
    crnn_pool.arrived = 0;
    crnn_store(&crnn_pool.pending, n - 1);
    /* seqlock write: odd, fields, even (a worker that read a torn task retries) */
    crnn_store(&crnn_pool.seq, crnn_pool.seq + 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&crnn_pool.fn, fn, __ATOMIC_RELAXED);
    __atomic_store_n(&crnn_pool.ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&crnn_pool.nparts, n, __ATOMIC_RELAXED);
    crnn_store(&crnn_pool.seq, crnn_pool.seq + 1);
    pthread_mutex_lock(&crnn_pool.mu);
    if (crnn_pool.sleeping)
        pthread_cond_broadcast(&crnn_pool.cv);
    pthread_mutex_unlock(&crnn_pool.mu);
    fn(ctx, 0, n);
    for (unsigned spins = 1; crnn_load(&crnn_pool.pending) != 0; spins++) {
        crnn_pause();
        if ((spins & 4095) == 0)
            sched_yield();   /* a worker was descheduled: let it run */
    }
    pthread_mutex_unlock(&crnn_pool.busy);
}

/* Every part of the running task waits here until all nparts have arrived. */
static void crnn_pool_barrier(int nparts)
{
    unsigned long phase;
    if (nparts <= 1)
        return;
    phase = crnn_load(&crnn_pool.phase);
    if (__atomic_add_fetch(&crnn_pool.arrived, 1, __ATOMIC_ACQ_REL) == nparts) {
        __atomic_store_n(&crnn_pool.arrived, 0, __ATOMIC_RELAXED);
        crnn_store(&crnn_pool.phase, phase + 1);
        return;
    }
    for (unsigned spins = 1; crnn_load(&crnn_pool.phase) == phase; spins++) {
        crnn_pause();
        if ((spins & 4095) == 0)
            sched_yield();
    }
}

#else /* no POSIX threads: every task runs on the calling thread */

static void crnn_pool_run(crnn_task_fn fn, void *ctx, int n)
{
    (void)n;
    fn(ctx, 0, 1);
}

static void crnn_pool_barrier(int nparts) { (void)nparts; }

#endif

#endif
