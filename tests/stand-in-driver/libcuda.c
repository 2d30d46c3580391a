/*
 * A stand-in for the NVIDIA driver library (libcuda.so.1), for testing the CUDA backend's
 * error paths on machines without a GPU (tests/stand_in_driver.rs, built and run by
 * scripts/test-stand-in-driver). It exports the driver API symbols the `cuda` feature
 * links, with the signatures of cuda.h (restated here so that no CUDA header is needed).
 *
 * LSOFTMAX_STAND_IN selects the behaviour (read on every call):
 *   no-device     cuInit returns CUDA_ERROR_NO_DEVICE (100)       [the default]
 *   zero-devices  cuInit succeeds, cuDeviceGetCount reports 0
 *   stub          every call returns CUDA_ERROR_STUB_LIBRARY (34), name lookups too
 *                 (what the toolkit's lib64/stubs/libcuda.so does)
 *   mismatch      cuInit returns CUDA_ERROR_SYSTEM_DRIVER_MISMATCH (803)
 *   no-names      cuInit returns 803 and cuGetErrorName/cuGetErrorString fail
 *   ptx-too-new   module load returns CUDA_ERROR_UNSUPPORTED_PTX_VERSION (222) with a JIT log
 *   jit-error     module load returns CUDA_ERROR_INVALID_PTX (218) with a two-line JIT log
 *   fault         everything works until the first kernel launch, which "faults": from
 *                 then on every call returns CUDA_ERROR_ILLEGAL_ADDRESS (700), as a sticky
 *                 fault does on a real device
 *   works         everything succeeds; device memory is host memory; kernels do nothing
 *                 (outputs stay as allocated: zero)
 * LSOFTMAX_STAND_IN_LOG, if set, names a file that gets one line per call (the function's
 * name), so tests can count calls.
 *
 * Error names and strings are stand-ins modelled on the real driver's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef void *CUevent;
typedef unsigned long long CUdeviceptr;

enum {
    SUCCESS = 0,
    INVALID_VALUE = 1,
    STUB_LIBRARY = 34,
    NO_DEVICE = 100,
    INVALID_PTX = 218,
    UNSUPPORTED_PTX_VERSION = 222,
    ILLEGAL_ADDRESS = 700,
    SYSTEM_DRIVER_MISMATCH = 803,
    UNKNOWN = 999,
};

/* CUjit_option values of the logs (cuda.h). */
enum { JIT_INFO_LOG = 3, JIT_INFO_LOG_SIZE = 4, JIT_ERROR_LOG = 5, JIT_ERROR_LOG_SIZE = 6 };

static int sticky_fault = 0;
static int handle_counter = 0;

static const char *mode(void) {
    const char *m = getenv("LSOFTMAX_STAND_IN");
    return m ? m : "no-device";
}

static int is(const char *m) { return strcmp(mode(), m) == 0; }

static void log_call(const char *name) {
    const char *path = getenv("LSOFTMAX_STAND_IN_LOG");
    if (!path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "%s\n", name);
    fclose(f);
}

/* The answer of every call before it does its work: 34 in stub mode, 700 after a fault. */
static CUresult common(const char *name) {
    log_call(name);
    if (is("stub")) return STUB_LIBRARY;
    if (sticky_fault) return ILLEGAL_ADDRESS;
    return SUCCESS;
}

#define COMMON()                                   \
    do {                                           \
        CUresult r_ = common(__func__);            \
        if (r_ != SUCCESS) return r_;              \
    } while (0)

static void *new_handle(void) { return (void *)(uintptr_t)(0x1000 + 16 * ++handle_counter); }

/* ---- errors ---------------------------------------------------------------------------- */

static const struct { CUresult code; const char *name; const char *text; } NAMES[] = {
    {SUCCESS, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {UNSUPPORTED_PTX_VERSION, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
     "the provided PTX was compiled with an unsupported toolchain."},
    {ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {SYSTEM_DRIVER_MISMATCH, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
     "system has unsupported display driver / cuda driver combination"},
    {UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static CUresult lookup(CUresult error, const char **out, int want_name) {
    log_call(want_name ? "cuGetErrorName" : "cuGetErrorString");
    if (is("stub")) return STUB_LIBRARY;
    if (is("no-names")) return INVALID_VALUE;
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        if (NAMES[i].code == error) {
            *out = want_name ? NAMES[i].name : NAMES[i].text;
            return SUCCESS;
        }
    }
    *out = NULL;
    return INVALID_VALUE;
}

CUresult cuGetErrorName(CUresult error, const char **name) { return lookup(error, name, 1); }
CUresult cuGetErrorString(CUresult error, const char **text) { return lookup(error, text, 0); }

/* ---- init, devices, contexts --------------------------------------------------------- */

CUresult cuInit(unsigned int flags) {
    (void)flags;
    COMMON();
    if (is("no-device")) return NO_DEVICE;
    if (is("mismatch") || is("no-names")) return SYSTEM_DRIVER_MISMATCH;
    return SUCCESS;
}

CUresult cuDriverGetVersion(int *version) {
    COMMON();
    *version = 12040; /* CUDA 12.4 */
    return SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
    COMMON();
    *count = is("zero-devices") ? 0 : 1;
    return SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    COMMON();
    if (ordinal != 0) return INVALID_VALUE;
    *device = 0;
    return SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice device) {
    (void)device;
    COMMON();
    snprintf(name, (size_t)len, "Stand-in GPU (%s)", mode());
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice device) {
    (void)device;
    COMMON();
    *ctx = new_handle();
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
    (void)device;
    return common(__func__);
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
    (void)ctx;
    return common(__func__);
}

CUresult cuCtxSynchronize(void) { return common(__func__); }

/* ---- streams and events --------------------------------------------------------------- */

CUresult cuStreamCreate(CUstream *stream, unsigned int flags) {
    (void)flags;
    COMMON();
    *stream = new_handle();
    return SUCCESS;
}

CUresult cuStreamCreateWithPriority(CUstream *stream, unsigned int flags, int priority) {
    (void)flags;
    (void)priority;
    COMMON();
    *stream = new_handle();
    return SUCCESS;
}

CUresult cuStreamDestroy_v2(CUstream stream) {
    (void)stream;
    return common(__func__);
}

CUresult cuStreamSynchronize(CUstream stream) {
    (void)stream;
    return common(__func__);
}

CUresult cuEventCreate(CUevent *event, unsigned int flags) {
    (void)flags;
    COMMON();
    *event = new_handle();
    return SUCCESS;
}

CUresult cuEventRecord(CUevent event, CUstream stream) {
    (void)event;
    (void)stream;
    return common(__func__);
}

CUresult cuEventSynchronize(CUevent event) {
    (void)event;
    return common(__func__);
}

CUresult cuEventElapsedTime(float *ms, CUevent start, CUevent end) {
    (void)start;
    (void)end;
    COMMON();
    *ms = 1.0f;
    return SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent event) {
    (void)event;
    return common(__func__);
}

/* ---- memory: host memory standing in for device memory --------------------------------- */

CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
    COMMON();
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
    *ptr = (CUdeviceptr)(uintptr_t)p;
    return SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr ptr) {
    CUresult r = common(__func__);
    free((void *)(uintptr_t)ptr);
    return r;
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n) {
    COMMON();
    memset((void *)(uintptr_t)dst, value, n);
    return SUCCESS;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
    COMMON();
    memcpy((void *)(uintptr_t)dst, src, n);
    return SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
    COMMON();
    memcpy(dst, (const void *)(uintptr_t)src, n);
    return SUCCESS;
}

/* ---- modules and launches -------------------------------------------------------------- */

/* Writes `text` into the log buffer of option `buffer_opt` and its used size (with the NUL)
 * into the size option's slot, as the driver does (sizes are passed by value). */
static void write_log(unsigned n, const int *options, void **values, int buffer_opt,
                      int size_opt, const char *text) {
    char *buffer = NULL;
    size_t size = 0;
    int size_index = -1;
    for (unsigned i = 0; i < n; i++) {
        if (options[i] == buffer_opt) buffer = (char *)values[i];
        if (options[i] == size_opt) {
            size = (size_t)(uintptr_t)values[i];
            size_index = (int)i;
        }
    }
    if (!buffer || size == 0 || size_index < 0) return;
    snprintf(buffer, size, "%s", text);
    size_t used = strlen(text) + 1;
    values[size_index] = (void *)(uintptr_t)(used < size ? used : size);
}

CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int n,
                            int *options, void **values) {
    COMMON();
    if (!image || strstr((const char *)image, ".entry") == NULL) return INVALID_VALUE;
    if (is("ptx-too-new")) {
        write_log(n, options, values, JIT_ERROR_LOG, JIT_ERROR_LOG_SIZE,
                  "ptxas application ptx input, line 10; fatal   : Unsupported .version 9.9; "
                  "current version is '8.4'");
        return UNSUPPORTED_PTX_VERSION;
    }
    if (is("jit-error")) {
        write_log(n, options, values, JIT_ERROR_LOG, JIT_ERROR_LOG_SIZE,
                  "ptxas application ptx input, line 42; error   : stand-in JIT error\n"
                  "ptxas fatal   : Ptx assembly aborted due to errors\n");
        return INVALID_PTX;
    }
    write_log(n, options, values, JIT_INFO_LOG, JIT_INFO_LOG_SIZE,
              "ptxas info    : stand-in JIT compiled the module");
    *module = new_handle();
    return SUCCESS;
}

CUresult cuModuleUnload(CUmodule module) {
    (void)module;
    return common(__func__);
}

CUresult cuModuleGetFunction(CUfunction *function, CUmodule module, const char *name) {
    (void)module;
    COMMON();
    if (!name || !*name) return 500; /* CUDA_ERROR_NOT_FOUND */
    *function = new_handle();
    return SUCCESS;
}

CUresult cuFuncSetAttribute(CUfunction function, int attribute, int value) {
    (void)function;
    (void)attribute;
    (void)value;
    return common(__func__);
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, CUstream stream,
                        void **params, void **extra) {
    (void)f;
    (void)stream;
    (void)params;
    (void)extra;
    (void)shared;
    COMMON();
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) return INVALID_VALUE;
    /* The fault is reported by the launch's synchronisation, as on a device. */
    if (is("fault")) sticky_fault = 1;
    return SUCCESS;
}
