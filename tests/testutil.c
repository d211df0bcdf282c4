/* testutil.c - see testutil.h. */
#define _GNU_SOURCE
#include "testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "ae/config.h"

char *tu_tempdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/aetest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) return NULL;
    return strdup(tmpl);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

void tu_rmtree(const char *dir)
{
    if (dir) nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

unsigned char *tu_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) *n = (size_t)len;
    return buf;
}

int tu_write_idx(const char *path, const uint32_t *dims, int ndims, const uint8_t *data, int gz)
{
    size_t count = 1;
    unsigned char hdr[4 + 4 * 4];
    hdr[0] = 0; hdr[1] = 0; hdr[2] = 0x08; hdr[3] = (unsigned char)ndims;
    for (int i = 0; i < ndims; i++) {
        hdr[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        hdr[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        hdr[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        hdr[7 + 4 * i] = (unsigned char)dims[i];
        count *= dims[i];
    }
    size_t hn = 4 + 4 * (size_t)ndims;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        if (!g) return -1;
        int ok = gzwrite(g, hdr, (unsigned)hn) == (int)hn &&
                 (count == 0 || gzwrite(g, data, (unsigned)count) == (int)count);
        return (gzclose(g) == Z_OK && ok) ? 0 : -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(hdr, 1, hn, f) == hn && (count == 0 || fwrite(data, 1, count, f) == count);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* ---- models and data ------------------------------------------------------------------------------- */

ae_status tu_build_status(const tu_setup *s, const char *ini, ae_shape in, ae_model **m, ae_error *err)
{
    *m = NULL;
    ae_spec *spec = calloc(1, sizeof *spec);
    if (!spec) return AE_ERR_NOMEM;
    ae_status st = ae_config_parse_string(ini, s->origin, spec, err);
    if (!st) st = ae_config_validate(spec, err);
    if (!st) st = ae_model_create(spec, &in, s->max_batch, m, err);
    free(spec);
    return st;
}

ae_model *tu_build(const tu_setup *s, const char *ini, ae_shape in)
{
    ae_model *m;
    ae_error err = {0};
    if (tu_build_status(s, ini, in, &m, &err))
        fprintf(stderr, "\n    building '%s' failed: %s\n", ini, err.msg);
    return m;
}

void tu_fill_uniform(ae_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ae_rng_uniform(r);
}

void tu_init_params(const tu_setup *s, ae_model *m, ae_rng *r)
{
    ae_rng own;
    if (!r) r = &own;
    ae_model_init_params(m, s->seed);
    ae_rng_init(r, s->seed, AE_RNG_TEST, 1, 0, 0);
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        if (l->b) tu_fill_uniform(r, l->b, (size_t)l->units, -s->jitter, s->jitter);
        if (strcmp(l->kind->name, "bn") == 0)
            tu_fill_uniform(r, l->W, (size_t)l->units, 1.0f - s->jitter, 1.0f + s->jitter);
    }
}

int tu_make_data(const ae_model *m, int n, ae_rng *r, float **x, float **t)
{
    size_t nx = (size_t)n * m->in_size, nt = (size_t)n * m->out_size;
    *x = malloc(sizeof(float) * nx);
    *t = malloc(sizeof(float) * nt);
    if (!*x || !*t) {
        free(*x);
        free(*t);
        *x = *t = NULL;
        return -1;
    }
    tu_fill_uniform(r, *x, nx, -1.0f, 1.0f);
    tu_fill_uniform(r, *t, nt, 0.0f, 1.0f);
    return 0;
}

int tu_fixture_make(tu_fixture *f, const tu_setup *s, const char *ini, ae_shape in, uint32_t stream, int n,
                    ae_rng *r)
{
    ae_rng own;
    if (!r) r = &own;
    f->x = f->t = NULL;
    if (!(f->m = tu_build(s, ini, in))) return TU_NO_MODEL;
    tu_init_params(s, f->m, r);
    if (stream != 1) ae_rng_init(r, s->seed, AE_RNG_TEST, stream, 0, 0);
    return tu_make_data(f->m, n, r, &f->x, &f->t) ? TU_NO_DATA : 0;
}

void tu_fixture_free(tu_fixture *f)
{
    free(f->x);
    free(f->t);
    ae_model_free(f->m);
}

/* ---- gradient checks ------------------------------------------------------------------------------- */

int tu_verbose(void) { return getenv("AE_GRADCHECK_VERBOSE") != NULL; }

void tu_gradcheck_report(const char *what, const ae_gradcheck_result *r)
{
    if (!tu_verbose()) return;
    char desc[256];
    ae_gradcheck_format(r, desc, sizeof desc);
    fprintf(stderr, "\n    %-24s %s", what, desc);
}

void tu_gradcheck_judge(tu_gradcheck_verdict *v, const char *what, ae_status st, const ae_error *err,
                        const ae_gradcheck_result *r, size_t n, double max_skipped, double max_floored)
{
    char desc[256];
    tu_gradcheck_report(what, r);
    ae_gradcheck_format(r, desc, sizeof desc);
    v->ran = st == AE_OK;
    snprintf(v->ran_msg, sizeof v->ran_msg, "%s: gradcheck status %d (%s)", what, (int)st, err->msg);
    v->within = r->max_rel_err <= AE_GRADCHECK_TOL && r->n_failed == 0;
    snprintf(v->within_msg, sizeof v->within_msg, "%s: %s; want max rel err <= %g", what, desc,
             AE_GRADCHECK_TOL);
    v->enough = r->n_checked + r->n_skipped == n && (double)r->n_skipped <= max_skipped * (double)n &&
                (max_floored < 0.0 || (double)r->n_floored <= max_floored * (double)n);
    char floored[64] = "";
    if (max_floored >= 0.0) snprintf(floored, sizeof floored, ", %g floored", max_floored);
    snprintf(v->enough_msg, sizeof v->enough_msg,
             "%s: %s; of %zu coordinates, want all checked or skipped, at most a fraction %g skipped%s", what,
             desc, n, max_skipped, floored);
}

const char *tu_gradcheck_passed_msg(const tu_gradcheck_verdict *v)
{
    return v->within ? v->enough_msg : v->within_msg;
}

void tu_gradcheck_model(tu_gradcheck_verdict *v, const char *what, ae_model *m, const float *x,
                        const float *t, const uint8_t *labels, int n, const ae_gradcheck_opts *o,
                        double max_skipped, double max_floored)
{
    ae_gradcheck_result r;
    ae_error err = {0};
    ae_status st = ae_gradcheck_model(m, x, t, labels, n, o, &r, &err);
    size_t checkable = m->n_params;
    if (o && o->max_per_layer) {
        checkable = 0;
        for (int i = 0; i < m->n_layers; i++) {
            size_t np = m->layers[i].n_params;
            checkable += np < o->max_per_layer ? np : o->max_per_layer;
        }
    }
    tu_gradcheck_judge(v, what, st, &err, &r, checkable, max_skipped, max_floored);
}
