/* Keeping the BLAS single-threaded while crnn runs its own threads.
 *
 * crnn splits every large product into blocks and gives each block to one
 * of its own threads, which calls BLAS on it. A multithreaded BLAS call would
 * wake BLAS's own pool, and OpenBLAS's workers then spin for about 0.1 s
 * after each call, on the cores crnn's threads need (measured: a 2-thread
 * training step at size "medium" went from 28 ms to 62 ms after one threaded
 * sgemm). So, as scikit-learn does around its OpenMP regions, crnn limits
 * the BLAS to one thread for the duration of each call into the engine and
 * restores it after: crnn_blas_enter() / crnn_blas_leave(), both called
 * with the GIL held, so that nested and concurrent crnn calls nest properly.
 * The BLAS's own thread count, read on entry, also caps crnn's threads:
 * threadpoolctl's threadpool_limits(1) (or OPENBLAS_NUM_THREADS=1) makes
 * crnn single-threaded too.
 *
 * get/set are the BLAS's functions (openblas_get/set_num_threads or MKL's),
 * found by crnn._threads; NULL when the BLAS has no such control (e.g.
 * Accelerate), and then nothing is changed.
 */
#ifndef CRNN_BLASTHREADS_H
#define CRNN_BLASTHREADS_H

typedef int (*crnn_blas_get_fn)(void);
typedef void (*crnn_blas_set_fn)(int);

static crnn_blas_get_fn crnn_blas_get;
static crnn_blas_set_fn crnn_blas_set;
static int crnn_blas_depth, crnn_blas_saved = 1;

static void crnn_blas_control(void *get, void *set)
{
    crnn_blas_get = (crnn_blas_get_fn)get;
    crnn_blas_set = (crnn_blas_set_fn)set;
}

/* Returns the BLAS's thread count before crnn's calls began (1 when unknown). */
static int crnn_blas_enter(void)
{
    if (!crnn_blas_get || !crnn_blas_set)
        return 1 << 30;
    if (crnn_blas_depth++ == 0) {
        crnn_blas_saved = crnn_blas_get();
        if (crnn_blas_saved > 1)
            crnn_blas_set(1);
    }
    return crnn_blas_saved;
}

static void crnn_blas_leave(void)
{
    if (!crnn_blas_get || !crnn_blas_set)
        return;
    /* Restore unless someone else changed it meanwhile. */
    if (--crnn_blas_depth == 0 && crnn_blas_saved > 1 && crnn_blas_get() == 1)
        crnn_blas_set(crnn_blas_saved);
}

static int crnn_blas_threads(void)
{
    return crnn_blas_get ? crnn_blas_get() : -1;
}

#endif
