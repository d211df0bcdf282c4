/* status.c - status names, exit codes, error messages, checked allocation. */
#include "ae/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[AE_STATUS_COUNT] = {
    [AE_OK] = "ok",
    [AE_ERR_IO] = "I/O error",
    [AE_ERR_FORMAT] = "format error",
    [AE_ERR_CONFIG] = "config error",
    [AE_ERR_SHAPE] = "shape error",
    [AE_ERR_NOMEM] = "out of memory",
    [AE_ERR_NUMERIC] = "numeric error",
    [AE_ERR_MPI] = "MPI error",
    [AE_ERR_ARG] = "argument error",
    [AE_ERR_INTERRUPTED] = "interrupted",
};

const char *ae_status_str(ae_status s)
{
    if ((int)s < 0 || s >= AE_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

int ae_status_exit_code(ae_status s)
{
    switch (s) {
    case AE_OK: return 0;
    case AE_ERR_ARG: return 2;
    case AE_ERR_CONFIG: return 3;
    case AE_ERR_IO: return 4;
    case AE_ERR_FORMAT: return 5;
    case AE_ERR_SHAPE: return 6;
    case AE_ERR_NOMEM: return 7;
    case AE_ERR_NUMERIC: return 8;
    case AE_ERR_MPI: return 9;
    case AE_ERR_INTERRUPTED: return AE_EXIT_RESUME;
    default: return 1;
    }
}

ae_status ae_error_set(ae_error *err, ae_status code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void ae_error_clear(ae_error *err)
{
    if (!err) return;
    err->code = AE_OK;
    err->msg[0] = '\0';
}

void *ae_malloc(size_t n, ae_error *err)
{
    void *p = malloc(n ? n : 1);
    if (!p) ae_error_set(err, AE_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *ae_calloc(size_t count, size_t size, ae_error *err)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) ae_error_set(err, AE_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

float *ae_alloc_floats(size_t n, ae_error *err)
{
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        ae_error_set(err, AE_ERR_NOMEM, "out of memory allocating %zu floats", n);
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}
