/* crnn's own worker threads: run one task split into parts, one part per thread.
 *
 * A training step is a sequence of parallel regions: blocks of large BLAS
 * products (each thread calls a single-threaded BLAS on its own block), the
 * time loops (split by hidden units with one barrier per step, by batch
 * rows, or by direction), and pointwise passes. Workers stay alive between
 * regions and spin briefly (CRNN_POOL_SPIN_NS) before sleeping, so the next
 * region starts without a wake-up.
 *
 * crnn_pool_run(fn, ctx, n, claimable) calls fn(ctx, part, nparts) for
 * part = 0..nparts-1, part 0 on the calling thread, and returns when all
 * have returned. nparts may be smaller than n (fewer workers, the pool busy
 * with another caller's task, or the machine contended: see below), so fn
 * splits its work by the nparts it is given. A `claimable` task's parts take
 * their work from a shared counter: a part that has not started when part 0
 * runs out of work is cancelled instead of waited for.
 *
 * Contention. When another process takes a core, crnn's threads share the
 * machine's cores with it and lose their CPU for whole scheduler slices
 * (milliseconds), while the other parts wait for them: a split task then
 * runs slower than one thread would. The pool measures, against the
 * thread-time of its split tasks, (a) the time its parts spend off the CPU
 * (wall time minus the thread's CPU time, sampled on one task in
 * CRNN_POOL_SAMPLE; spinning counts as CPU, so this is preemption alone) and
 * (b) the time they spend waiting for each other (at barriers, for a late
 * start, for the last chunk). When, over the last CRNN_POOL_WINDOW_NS of
 * split thread-time, (a) exceeds a fifth or (b) a quarter of it, the pool
 * runs every task on the caller alone for a backoff time
 * (CRNN_POOL_BACKOFF_MIN_NS, four times longer while the retries still lose
 * half as much, up to CRNN_POOL_BACKOFF_MAX_NS; halving with each calm
 * verdict), then tries
 * threads again, judged on a shorter window (CRNN_POOL_PROBE_NS) so that a
 * retry under load costs little. Within a loop, a second stall (a wait at a
 * barrier longer than CRNN_POOL_STALL_NS and than twice the waiter's own
 * work since its last barrier) makes crnn_pool_sync() tell every part, at
 * the next barrier, to stop splitting: part 0 finishes the loop alone. One
 * stall alone changes nothing: a virtual machine pauses a vCPU for a few ms
 * now and then (measured here: about one such stall a second with nothing
 * else running), and that must not cost an idle machine its second thread;
 * while with one other busy process on two cores, each of three threads is
 * off the CPU about a third of the time.
 *
 * POSIX only (pthreads and GCC/Clang atomics); elsewhere every task runs on
 * the calling thread. A forked child starts with no workers.
 */
#ifndef CRNN_POOL_H
#define CRNN_POOL_H

typedef void (*crnn_task_fn)(void *ctx, int part, int nparts);

#define CRNN_POOL_MAX 64

/* The next index of a shared counter (the chunks of a claimable task). */
#if defined(__GNUC__) || defined(__clang__)
#define crnn_claim(counter) __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED)
#else
#define crnn_claim(counter) ((*(counter))++)
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#define CRNN_POOL_SPIN_NS 1000000LL
#define CRNN_POOL_STALL_NS 2000000LL
#define CRNN_POOL_WINDOW_NS 100000000LL
#define CRNN_POOL_PROBE_NS 20000000LL
#define CRNN_POOL_SAMPLE 4      /* one task in this many measures CPU time (~0.6 µs a read) */
#define CRNN_POOL_BACKOFF_MIN_NS 200000000LL
#define CRNN_POOL_BACKOFF_MAX_NS 8000000000LL

#if defined(__x86_64__) || defined(__i386__)
#define crnn_pause() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define crnn_pause() __asm__ __volatile__("yield")
#else
#define crnn_pause() ((void)0)
#endif

#define crnn_load(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define crnn_store(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
#define crnn_relaxed_load(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define crnn_relaxed_store(p, v) __atomic_store_n(p, v, __ATOMIC_RELAXED)

static struct {
    pthread_mutex_t busy;      /* held by the thread running a task */
    pthread_mutex_t mu;        /* guards sleeping workers' wake-up */
    pthread_cond_t cv;
    int started, sleeping, atfork;
    int threads;               /* crnn_pool_set_threads(): parts a task may use */
    /* the current task, published by a seqlock on `seq` (odd while written) */
    unsigned long seq;
    crnn_task_fn fn;
    void *ctx;
    int nparts;
    int pending;               /* parts other than 0 neither finished nor cancelled */
    /* claim[id]: 2·seq while part id of task seq is open, 2·seq + 1 once a worker took it */
    unsigned long claim[CRNN_POOL_MAX];
    /* the team of a synchronised task: its parts that started (crnn_pool_gather) */
    unsigned long team_seq, team_mask;
    /* the barrier, and the barrier phase at which every part stops splitting */
    int arrived;
    unsigned long phase, degrade_at;
    /* contention: tasks run on the caller alone until calm_until; the split
     * tasks' time and the time lost to their stalls, since the last verdict;
     * the stalls of the current task */
    long long calm_until, backoff, split_ns, lost_ns, sampled_ns, offcpu_ns;
    int task_stalls, measure;
    /* counters, for tests and the benchmarks */
    unsigned long split_tasks, stalls, degrades, cancelled, contended;
} crnn_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
               0, 0, 0, 1};

/* A worker's number (its part) and the task count when it was started: it
 * must not take a task published before it ran as new, nor miss one after. */
struct crnn_pool_arg { int id; unsigned long seq; };
static struct crnn_pool_arg crnn_pool_args[CRNN_POOL_MAX];

/* When this thread last left a barrier or started a part: its own work since. */
static __thread long long crnn_pool_mark;
/* Tests: a part other than 0 sleeps stall_ns before each of its next
 * stall_count barriers, as if its core were taken (crnn_pool_test_stall()). */
static long long crnn_pool_stall_ns, crnn_pool_stall_count;
static __thread int crnn_pool_part_id;

static long long crnn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Stalls cost too much: run on the caller alone for a while, longer each time. */
static void crnn_pool_contended(long long now)
{
    long long b = crnn_relaxed_load(&crnn_pool.backoff);
    if (b < CRNN_POOL_BACKOFF_MIN_NS)
        b = CRNN_POOL_BACKOFF_MIN_NS;
    crnn_relaxed_store(&crnn_pool.calm_until, now + b);
    __atomic_add_fetch(&crnn_pool.contended, 1, __ATOMIC_RELAXED);
    crnn_relaxed_store(&crnn_pool.backoff, b * 4 < CRNN_POOL_BACKOFF_MAX_NS ?
                                               b * 4 : CRNN_POOL_BACKOFF_MAX_NS);
}

/* The split thread-time after which the waits are judged: shorter while the
 * pool is retrying threads after a backoff. */
static long long crnn_pool_window(void)
{
    return crnn_relaxed_load(&crnn_pool.backoff) ? CRNN_POOL_PROBE_NS : CRNN_POOL_WINDOW_NS;
}

/* A part waited `ns` for the others. */
static void crnn_pool_waited(long long ns)
{
    __atomic_add_fetch(&crnn_pool.lost_ns, ns, __ATOMIC_RELAXED);
}

/* A wait that was a stall (see above). */
static void crnn_pool_stalled(void)
{
    __atomic_add_fetch(&crnn_pool.task_stalls, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&crnn_pool.stalls, 1, __ATOMIC_RELAXED);
}

static long long crnn_cpu_ns(void)
{
#ifdef CLOCK_THREAD_CPUTIME_ID
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
#else
    return crnn_now_ns();       /* no thread clock: never off the CPU */
#endif
}

static void crnn_pool_part(crnn_task_fn fn, void *ctx, int part, int nparts, int measure)
{
    long long w0, c0 = 0;
    crnn_pool_mark = w0 = crnn_now_ns();
    crnn_pool_part_id = part;
    if (measure)
        c0 = crnn_cpu_ns();
    fn(ctx, part, nparts);
    if (measure) {
        long long wall = crnn_now_ns() - w0, cpu = crnn_cpu_ns() - c0;
        __atomic_add_fetch(&crnn_pool.sampled_ns, wall, __ATOMIC_RELAXED);
        __atomic_add_fetch(&crnn_pool.offcpu_ns, wall > cpu ? wall - cpu : 0, __ATOMIC_RELAXED);
    }
}

static void *crnn_pool_worker(void *arg)
{
    int id = ((const struct crnn_pool_arg *)arg)->id;
    unsigned long seen = ((const struct crnn_pool_arg *)arg)->seq;
    for (;;) {
        unsigned long seq;
        crnn_task_fn fn;
        void *ctx;
        int nparts, measure;
        long long idle_since = 0;
        for (unsigned spins = 0;; spins++) {
            seq = crnn_load(&crnn_pool.seq);
            if (seq != seen && !(seq & 1)) {
                fn = crnn_relaxed_load(&crnn_pool.fn);
                ctx = crnn_relaxed_load(&crnn_pool.ctx);
                nparts = crnn_relaxed_load(&crnn_pool.nparts);
                measure = crnn_relaxed_load(&crnn_pool.measure);
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
            /* Take the part unless part 0 cancelled it (or the task is gone). */
            unsigned long open = 2 * seq;
            if (__atomic_compare_exchange_n(&crnn_pool.claim[id], &open, open + 1, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                crnn_pool_part(fn, ctx, id, nparts, measure);
                __atomic_sub_fetch(&crnn_pool.pending, 1, __ATOMIC_ACQ_REL);
            }
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

/* The parts a task started now would get: 1 while the machine is contended. */
static int crnn_pool_available(void)
{
    int n = crnn_relaxed_load(&crnn_pool.threads);
    if (n > 1 && crnn_now_ns() < crnn_relaxed_load(&crnn_pool.calm_until))
        return 1;
    return n;
}

static void crnn_pool_run(crnn_task_fn fn, void *ctx, int n, int claimable)
{
    int threads = crnn_pool_available(), measure;
    long long t0, t1, t2;
    if (n > threads)
        n = threads;
    if (n <= 1 || pthread_mutex_trylock(&crnn_pool.busy) != 0) {
        crnn_pool_part(fn, ctx, 0, 1, 0);
        return;
    }
    n = crnn_pool_grow(n);
    if (n <= 1) {
        pthread_mutex_unlock(&crnn_pool.busy);
        crnn_pool_part(fn, ctx, 0, 1, 0);
        return;
    }
    /* Every task of a retry is measured; otherwise one in CRNN_POOL_SAMPLE. */
    measure = crnn_relaxed_load(&crnn_pool.backoff) != 0 ||
              (crnn_pool.seq / 2) % CRNN_POOL_SAMPLE == 0;
    crnn_pool.arrived = 0;
    crnn_relaxed_store(&crnn_pool.degrade_at, 0);
    crnn_relaxed_store(&crnn_pool.task_stalls, 0);
    crnn_store(&crnn_pool.pending, n - 1);
    /* seqlock write: odd, fields, even (a worker that read a torn task retries) */
    crnn_store(&crnn_pool.seq, crnn_pool.seq + 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    crnn_relaxed_store(&crnn_pool.fn, fn);
    crnn_relaxed_store(&crnn_pool.ctx, ctx);
    crnn_relaxed_store(&crnn_pool.nparts, n);
    crnn_relaxed_store(&crnn_pool.measure, measure);
    for (int id = 1; id < n; id++)
        crnn_store(&crnn_pool.claim[id], 2 * (crnn_pool.seq + 1));
    crnn_store(&crnn_pool.seq, crnn_pool.seq + 1);
    pthread_mutex_lock(&crnn_pool.mu);
    if (crnn_pool.sleeping)
        pthread_cond_broadcast(&crnn_pool.cv);
    pthread_mutex_unlock(&crnn_pool.mu);
    crnn_relaxed_store(&crnn_pool.split_tasks, crnn_pool.split_tasks + 1);
    t0 = crnn_now_ns();
    crnn_pool_part(fn, ctx, 0, n, measure);
    t1 = crnn_now_ns();
    if (claimable) {
        /* Parts not started yet have nothing left to take: do not wait for them. */
        for (int id = 1; id < n; id++) {
            unsigned long open = 2 * crnn_pool.seq;
            if (__atomic_compare_exchange_n(&crnn_pool.claim[id], &open, 0, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                __atomic_sub_fetch(&crnn_pool.pending, 1, __ATOMIC_ACQ_REL);
                __atomic_add_fetch(&crnn_pool.cancelled, 1, __ATOMIC_RELAXED);
            }
        }
    }
    for (unsigned spins = 1; crnn_load(&crnn_pool.pending) != 0; spins++) {
        crnn_pause();
        if ((spins & 4095) == 0)
            sched_yield();   /* a worker was descheduled: let it run */
    }
    t2 = crnn_now_ns();
    crnn_pool_waited(t2 - t1);
    /* A worker that started late may hold one chunk: only a wait much longer
     * than that, and than part 0's own work, means it lost its core. */
    if (t2 - t1 > 2 * CRNN_POOL_STALL_NS && t2 - t1 > 2 * (t1 - t0))
        crnn_pool_stalled();
    /* The verdict, once enough split thread-time has run since the last one. */
    if (__atomic_add_fetch(&crnn_pool.split_ns, (t2 - t0) * n, __ATOMIC_RELAXED) >=
            crnn_pool_window()) {
        long long split = __atomic_exchange_n(&crnn_pool.split_ns, 0, __ATOMIC_RELAXED);
        long long lost = __atomic_exchange_n(&crnn_pool.lost_ns, 0, __ATOMIC_RELAXED);
        long long sampled = __atomic_exchange_n(&crnn_pool.sampled_ns, 0, __ATOMIC_RELAXED);
        long long off = __atomic_exchange_n(&crnn_pool.offcpu_ns, 0, __ATOMIC_RELAXED);
        /* Hysteresis: a retry must be clearly calm (half the losses) to count as calm. */
        int retry = crnn_relaxed_load(&crnn_pool.backoff) != 0;
        if ((retry ? 8 : 4) * lost > split || (retry ? 10 : 5) * off > sampled) {
            crnn_pool_contended(t2);
        } else {        /* calm: forget old contention, slowly */
            long long b = crnn_relaxed_load(&crnn_pool.backoff) / 2;
            crnn_relaxed_store(&crnn_pool.backoff, b < CRNN_POOL_BACKOFF_MIN_NS ? 0 : b);
        }
    }
    pthread_mutex_unlock(&crnn_pool.busy);
}

/* The first call of every part of a task that uses crnn_pool_sync(): the parts
 * that have started form the team. Part 0 waits (at most CRNN_POOL_STALL_NS)
 * for the others to start, cancels those that have not (a worker asleep on a
 * core that is slow to wake, or taken by another process), and publishes who
 * is in; each member gets its rank in the team (*rank) and the team's size
 * (returned), by which it splits its work. */
static int crnn_pool_gather(int part, int nparts, int *rank)
{
    unsigned long seq = crnn_load(&crnn_pool.seq), mask = 1, open;
    int n = 0;
    *rank = part;
    if (nparts <= 1)
        return nparts;
    if (part == 0) {
        long long t0 = crnn_now_ns();
        for (unsigned spins = 1;; spins++) {
            int waiting = 0;
            for (int id = 1; id < nparts; id++)
                waiting += crnn_load(&crnn_pool.claim[id]) == 2 * seq;
            if (!waiting)
                break;
            crnn_pause();
            /* A late start is a worker slow to wake (an idle vCPU can take
             * milliseconds), not a busy machine: run without it, but do not
             * count it as contention (barrier stalls do that). */
            if ((spins & 255) == 0 && crnn_now_ns() - t0 > CRNN_POOL_STALL_NS)
                break;
        }
        crnn_pool_waited(crnn_now_ns() - t0);
        for (int id = 1; id < nparts; id++) {
            open = 2 * seq;
            if (__atomic_compare_exchange_n(&crnn_pool.claim[id], &open, 0, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                __atomic_sub_fetch(&crnn_pool.pending, 1, __ATOMIC_ACQ_REL);
                __atomic_add_fetch(&crnn_pool.cancelled, 1, __ATOMIC_RELAXED);
            } else {
                mask |= 1UL << id;
            }
        }
        crnn_relaxed_store(&crnn_pool.team_mask, mask);
        crnn_store(&crnn_pool.team_seq, seq);
    } else {
        while (crnn_load(&crnn_pool.team_seq) != seq)
            crnn_pause();
        mask = crnn_relaxed_load(&crnn_pool.team_mask);
    }
    for (int id = 0; id < nparts; id++)
        if (mask & (1UL << id)) {
            if (id == part)
                *rank = n;
            n++;
        }
    return n;
}

/* Every part of the running task waits here until all nparts have arrived.
 * Returns 1 to go on splitting; 0 when the task is to stop splitting (every
 * part gets the same answer at the same barrier): part 0 then does the rest
 * of the work alone and the others return. */
static int crnn_pool_sync(int nparts)
{
    unsigned long phase, stop;
    long long arrival = 0, now;
    int stalled = 0;
    if (nparts <= 1)
        return 1;
    if (crnn_pool_part_id != 0 && crnn_relaxed_load(&crnn_pool_stall_count) > 0 &&
            __atomic_sub_fetch(&crnn_pool_stall_count, 1, __ATOMIC_RELAXED) >= 0) {
        struct timespec ts = {0, (long)crnn_relaxed_load(&crnn_pool_stall_ns)};
        nanosleep(&ts, NULL);
    }
    phase = crnn_load(&crnn_pool.phase);
    if (__atomic_add_fetch(&crnn_pool.arrived, 1, __ATOMIC_ACQ_REL) == nparts) {
        crnn_relaxed_store(&crnn_pool.arrived, 0);
        crnn_store(&crnn_pool.phase, phase + 1);
    } else {
        arrival = crnn_now_ns();
        for (unsigned spins = 1; crnn_load(&crnn_pool.phase) == phase; spins++) {
            crnn_pause();
            if ((spins & 1023) == 0) {
                now = crnn_now_ns();
                if (!stalled && now - arrival > CRNN_POOL_STALL_NS &&
                        now - arrival > 2 * (arrival - crnn_pool_mark))
                    stalled = 1;
                if (stalled && crnn_load(&crnn_pool.task_stalls) >= 1) {
                    /* A second stall in this task: stop at the next barrier.
                     * Every part arrives there after this store, so all of
                     * them read it. */
                    unsigned long zero = 0;
                    __atomic_compare_exchange_n(&crnn_pool.degrade_at, &zero, phase + 2, 0,
                                                __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
                }
                if ((spins & 4095) == 0)
                    sched_yield();
            }
        }
    }
    now = crnn_now_ns();
    if (arrival) {
        crnn_pool_waited(now - arrival);
        if (stalled)
            crnn_pool_stalled();
    }
    crnn_pool_mark = now;
    stop = crnn_load(&crnn_pool.degrade_at);
    if (stop != 0 && stop <= phase + 1) {
        if (crnn_pool_part_id == 0)
            __atomic_add_fetch(&crnn_pool.degrades, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return 1;
}

static void crnn_pool_set_threads(int n)
{
    crnn_relaxed_store(&crnn_pool.threads, n < 1 ? 1 : n > CRNN_POOL_MAX ? CRNN_POOL_MAX : n);
}

static int crnn_pool_threads(void) { return crnn_relaxed_load(&crnn_pool.threads); }

/* counters: 0 split tasks, 1 stalls, 2 degraded loops, 3 cancelled parts,
 * 4 verdicts of contention */
static unsigned long crnn_pool_counter(int which)
{
    switch (which) {
    case 0: return crnn_relaxed_load(&crnn_pool.split_tasks);
    case 1: return crnn_relaxed_load(&crnn_pool.stalls);
    case 2: return crnn_relaxed_load(&crnn_pool.degrades);
    case 3: return crnn_relaxed_load(&crnn_pool.cancelled);
    default: return crnn_relaxed_load(&crnn_pool.contended);
    }
}

static void crnn_pool_test_stall(long long ns, long long count)
{
    crnn_relaxed_store(&crnn_pool_stall_ns, ns);
    crnn_relaxed_store(&crnn_pool_stall_count, count);
}

/* Forget contention (tests, benchmarks): threads are used again at once. */
static void crnn_pool_calm(void)
{
    crnn_relaxed_store(&crnn_pool.calm_until, 0);
    crnn_relaxed_store(&crnn_pool.backoff, 0);
    crnn_relaxed_store(&crnn_pool.lost_ns, 0);
    crnn_relaxed_store(&crnn_pool.split_ns, 0);
    crnn_relaxed_store(&crnn_pool.sampled_ns, 0);
    crnn_relaxed_store(&crnn_pool.offcpu_ns, 0);
}

#define CRNN_HAVE_POOL 1

#else /* no POSIX threads: every task runs on the calling thread */

static void crnn_pool_run(crnn_task_fn fn, void *ctx, int n, int claimable)
{
    (void)n;
    (void)claimable;
    fn(ctx, 0, 1);
}

static int crnn_pool_sync(int nparts) { (void)nparts; return 1; }
static int crnn_pool_gather(int part, int nparts, int *rank) { *rank = part; return nparts; }
static void crnn_pool_set_threads(int n) { (void)n; }
static int crnn_pool_threads(void) { return 1; }
static int crnn_pool_available(void) { return 1; }
static unsigned long crnn_pool_counter(int which) { (void)which; return 0; }
static void crnn_pool_calm(void) {}
static void crnn_pool_test_stall(long long ns, long long count) { (void)ns; (void)count; }
#define CRNN_HAVE_POOL 0

#endif

#endif
