/* Waiting for another thread without sleeping and without the GIL (engine.parallel).
 *
 * On the 2-vCPU VM every wake-up of a sleeping thread costs ~30 us of latency and ~17 us of
 * the waker's time (futex wake, IPI), and a Python thread can only wait by sleeping: for a
 * job, or for the GIL. These functions release the GIL and poll a 64-bit word that another
 * thread writes, for a bounded time, so that a worker can see the next job of an op chain
 * (and a caller the end of a worker's last chunk) within a microsecond, no one woken.
 * Optional: parallel.py falls back to blocking waits where this module was not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t load(uintptr_t address) {
    return __atomic_load_n((int64_t *)address, __ATOMIC_ACQUIRE);
}

/* Poll until the word's value is (equal) or is not (!equal) ``value``, at most spin_ns. Every
 * few microseconds the CPU is offered to another runnable thread: on a busy machine the thread
 * this one waits for may be queued behind it (yielding every ~50 us instead made a loaded
 * machine's chain a third slower than blocking waits). */
static int poll(uintptr_t address, int64_t value, int equal, uint64_t spin_ns) {
    uint64_t start = now_ns();
    for (unsigned i = 1;; i++) {
        if ((load(address) == value) == equal) {
            return 1;
        }
        relax();
        if (i % 32 == 0) {
            if (now_ns() - start > spin_ns) {
                return 0;
            }
            if (i % 128 == 0) {
                sched_yield();
            }
        }
    }
}

PyDoc_STRVAR(wait_change_doc,
"wait_change(address, value, spin_ns, settle_ns, store_address, store_value) -> bool\n\n"
"Without the GIL: write store_value to store_address (if not 0), then poll the word at\n"
"address until it is no longer value, for at most spin_ns; once it changed, let settle_ns\n"
"more pass before taking the GIL back. True if it changed.");

static PyObject *wait_change(PyObject *self, PyObject *args) {
    unsigned long long address, store_address, spin_ns, settle_ns;
    long long value, store_value;
    int changed;
    if (!PyArg_ParseTuple(args, "KLKKKL", &address, &value, &spin_ns, &settle_ns, &store_address,
                          &store_value)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (store_address) {
        __atomic_store_n((int64_t *)(uintptr_t)store_address, (int64_t)store_value,
                         __ATOMIC_RELEASE);
    }
    changed = poll((uintptr_t)address, (int64_t)value, 0, spin_ns);
    if (changed && settle_ns) {
        uint64_t start = now_ns();
        while (now_ns() - start < settle_ns) {
            relax();
        }
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(changed);
}

PyDoc_STRVAR(wait_equal_doc,
"wait_equal(address, value, spin_ns) -> bool\n\n"
"Without the GIL: poll the word at address until it is value, for at most spin_ns.\n"
"True if it is.");

static PyObject *wait_equal(PyObject *self, PyObject *args) {
    unsigned long long address, spin_ns;
    long long value;
    int equal;
    if (!PyArg_ParseTuple(args, "KLK", &address, &value, &spin_ns)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    equal = poll((uintptr_t)address, (int64_t)value, 1, spin_ns);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(equal);
}

static PyMethodDef methods[] = {
    {"wait_change", wait_change, METH_VARARGS, wait_change_doc},
    {"wait_equal", wait_equal, METH_VARARGS, wait_equal_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "engine._spin", "Bounded waits that poll memory without the GIL.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__spin(void) { return PyModule_Create(&module); }
