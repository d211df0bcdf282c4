/* status.h - error codes and the detail message every fallible call fills.
 *
 * Every fallible library function returns an ae_status and, when it fails,
 * writes a human-readable message (naming the file, line or value that is
 * wrong) into an ae_error owned by the caller. The CLI prints the message
 * and maps the code to an exit status (ae_status_exit_code). */
#ifndef AE_STATUS_H
#define AE_STATUS_H

#include <stddef.h>

typedef enum {
    AE_OK = 0,
    AE_ERR_IO,          /* file missing, unreadable, unwritable, disk full */
    AE_ERR_FORMAT,      /* corrupt or foreign file (IDX, checkpoint) */
    AE_ERR_CONFIG,      /* bad config key or value */
    AE_ERR_SHAPE,       /* layer shapes that do not fit, arch mismatch */
    AE_ERR_NOMEM,       /* allocation failed */
    AE_ERR_NUMERIC,     /* NaN or Inf in loss or gradients */
    AE_ERR_MPI,         /* an MPI call failed, or another rank failed */
    AE_ERR_ARG,         /* bad command-line argument or API misuse */
    AE_ERR_INTERRUPTED, /* stopped by a signal after checkpointing */
    AE_STATUS_COUNT
} ae_status;

#define AE_ERROR_MSG_MAX 1024

typedef struct ae_error {
    ae_status code;
    char msg[AE_ERROR_MSG_MAX];
} ae_error;

/* Short name of a status code ("I/O error", "format error", ...). */
const char *ae_status_str(ae_status s);

/* Process exit code for a status: 0 for AE_OK; distinct non-zero codes
 * otherwise (listed by aetrain --help). AE_ERR_INTERRUPTED maps to AE_EXIT_RESUME. */
int ae_status_exit_code(ae_status s);
#define AE_EXIT_RESUME 75 /* "checkpointed, resume me" (EX_TEMPFAIL) */
#define AE_EXIT_CPU 10    /* the build's instruction sets are not this CPU's (checked before main) */

/* Set *err (if err != NULL) to code and a printf-style message; returns code
 * so that callers can write `return ae_error_set(err, AE_ERR_IO, ...)`. */
ae_status ae_error_set(ae_error *err, ae_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clear *err to AE_OK and an empty message. Accepts NULL. */
void ae_error_clear(ae_error *err);

/* Checked allocation helpers: return NULL and set *err on failure. */
void *ae_malloc(size_t n, ae_error *err);
void *ae_calloc(size_t count, size_t size, ae_error *err);
/* 64-byte aligned allocation of n floats (zeroed); free with free(). */
float *ae_alloc_floats(size_t n, ae_error *err);

#endif
