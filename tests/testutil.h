/* testutil.h - helpers shared by the CUnit tests: temp dirs, small files, models
 * built from INI text, seeded random data and the verdicts of gradient checks.
 * testutil.c does not call CUnit (ae_testtool links it too); the TU_ASSERT_*
 * macros below expand to CUnit calls where a test uses them. */
#ifndef AE_TESTUTIL_H
#define AE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ae/gradcheck.h"
#include "ae/model.h"
#include "ae/rng.h"

/* Create a fresh temporary directory; returns a static-lifetime string
 * owned by the caller (free it). */
char *tu_tempdir(void);
/* Recursively remove a directory made by tu_tempdir. */
void tu_rmtree(const char *dir);
/* Write bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
/* Read a whole file; returns malloc'ed bytes (size in *n) or NULL. */
unsigned char *tu_read_file(const char *path, size_t *n);
/* Write an IDX file of uint8 with the given dims (gzip when gz != 0). */
int tu_write_idx(const char *path, const uint32_t *dims, int ndims, const uint8_t *data, int gz);

/* ---- models and data ------------------------------------------------------------------------------- */

/* How a suite builds its models and draws their parameters. */
typedef struct tu_setup {
    const char *origin; /* the name of the INI texts, in error messages */
    int max_batch;      /* models take batches of up to this many samples */
    uint64_t seed;      /* of the init and of the test streams */
    float jitter;       /* tu_init_params: biases drawn in [-jitter, jitter), bn scales in 1 +- jitter */
} tu_setup;

/* Parse, validate and build ini for inputs of shape in: the failing step's status (*m NULL, err says why). */
ae_status tu_build_status(const tu_setup *s, const char *ini, ae_shape in, ae_model **m, ae_error *err);
/* tu_build_status, printing a failure to stderr: the model, or NULL. */
ae_model *tu_build(const tu_setup *s, const char *ini, ae_shape in);
/* Fill x[0..n) with draws from r, uniform in [lo, hi). */
void tu_fill_uniform(ae_rng *r, float *x, size_t n, float lo, float hi);
/* Init with s->seed, then biases and bn scales drawn (jitter) from test stream 1; r (if any) goes on. */
void tu_init_params(const tu_setup *s, ae_model *m, ae_rng *r);
/* Allocate and draw from r n samples: inputs in [-1, 1), then targets in [0, 1); 0, or -1 (none kept). */
int tu_make_data(const ae_model *m, int n, ae_rng *r, float **x, float **t);

/* A model built from INI text, its parameters drawn, and data for it. */
typedef struct tu_fixture {
    ae_model *m;
    float *x, *t;
} tu_fixture;

#define TU_NO_MODEL (-1) /* tu_fixture_make: the model cannot be built */
#define TU_NO_DATA (-2)  /* tu_fixture_make: no memory for the data */

/* tu_build, tu_init_params, tu_make_data from test stream `stream` (1: goes on, as does r): 0 or TU_NO_*. */
int tu_fixture_make(tu_fixture *f, const tu_setup *s, const char *ini, ae_shape in, uint32_t stream, int n,
                    ae_rng *r);
/* Free the model and data of f, whatever tu_fixture_make returned. */
void tu_fixture_free(tu_fixture *f);

/* ---- gradient checks ------------------------------------------------------------------------------- */

#define TU_MSG_MAX (AE_ERROR_MSG_MAX + 512) /* room for an error message and context */

/* What one ae_gradcheck run over n coordinates showed; each verdict with its message for a failure. */
typedef struct tu_gradcheck_verdict {
    int ran;    /* the check returned AE_OK */
    int within; /* no checked coordinate beyond AE_GRADCHECK_TOL */
    int enough; /* all n checked or skipped, few skipped at kinks or judged on the noise floor alone */
    char ran_msg[TU_MSG_MAX], within_msg[TU_MSG_MAX], enough_msg[TU_MSG_MAX];
} tu_gradcheck_verdict;

/* Whether AE_GRADCHECK_VERBOSE is set in the environment: print every check's numbers. */
int tu_verbose(void);
/* Print what and r to stderr when tu_verbose(). */
void tu_gradcheck_report(const char *what, const ae_gradcheck_result *r);
/* Report and judge a run over n coordinates: skipped <= max_skipped n, floored <= max_floored n (if >= 0). */
void tu_gradcheck_judge(tu_gradcheck_verdict *v, const char *what, ae_status st, const ae_error *err,
                        const ae_gradcheck_result *r, size_t n, double max_skipped, double max_floored);
/* The message of a failed "within and enough": the first of the two that failed. */
const char *tu_gradcheck_passed_msg(const tu_gradcheck_verdict *v);
/* ae_gradcheck_model judged over what o lets it check: every parameter, or max_per_layer of each layer's. */
void tu_gradcheck_model(tu_gradcheck_verdict *v, const char *what, ae_model *m, const float *x,
                        const float *t, const uint8_t *labels, int n, const ae_gradcheck_opts *o,
                        double max_skipped, double max_floored);

/* ---- CUnit assertions at a caller's line (for helpers that take __LINE__; need <CUnit/CUnit.h>) ------- */

/* Assert ok; a failure names msg, line and the file the macro is used in. */
#define TU_ASSERT_AT(ok, line, msg) \
    CU_assertImplementation((ok) ? CU_TRUE : CU_FALSE, (unsigned)(line), (msg), __FILE__, "", CU_FALSE)
/* The same, ending the test on failure. */
#define TU_ASSERT_FATAL_AT(ok, line, msg) \
    CU_assertImplementation((ok) ? CU_TRUE : CU_FALSE, (unsigned)(line), (msg), __FILE__, "", CU_TRUE)
/* Two fatal asserts on what tu_fixture_make returned: the model builds, its data are allocated. */
#define TU_ASSERT_FIXTURE_AT(line, rc)                                                      \
    do {                                                                                    \
        TU_ASSERT_FATAL_AT((rc) != TU_NO_MODEL, (line), "model builds");                    \
        TU_ASSERT_FATAL_AT((rc) != TU_NO_DATA, (line), "data allocated");                   \
    } while (0)
/* Three asserts on a gradcheck verdict *v: it ran, it is within tol, it rests on enough evidence. */
#define TU_ASSERT_GRADCHECK_AT(line, v)                                                     \
    do {                                                                                    \
        TU_ASSERT_AT((v)->ran, (line), (v)->ran_msg);                                       \
        TU_ASSERT_AT((v)->within, (line), (v)->within_msg);                                 \
        TU_ASSERT_AT((v)->enough, (line), (v)->enough_msg);                                 \
    } while (0)
/* Two asserts on a gradcheck verdict *v: it ran, and it passed (within tol on enough evidence). */
#define TU_ASSERT_GRADCHECK_PASSED_AT(line, v)                                              \
    do {                                                                                    \
        TU_ASSERT_AT((v)->ran, (line), (v)->ran_msg);                                       \
        TU_ASSERT_AT((v)->within && (v)->enough, (line), tu_gradcheck_passed_msg(v));       \
    } while (0)

#endif
