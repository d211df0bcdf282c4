/* plot.c - pictures: image grids with libpng, plots with text with cairo,
 * and the two commands (`aetrain plot RUN`, `aetrain reconstruct CKPT`).
 *
 * Grids are built as one gray byte per pixel and written by libpng's
 * simplified API; plots are drawn on a cairo RGB24 surface (cairo's own
 * "toy" text API, DejaVu Sans) and written as RGB through the same writer.
 * Every PNG goes to "<path>.tmp" first and is renamed over path, so a
 * reader never sees half a picture. See ae/plot.h for what each picture is. */
#define _GNU_SOURCE
#include "ae/plot.h"

#include <cairo.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ae/ckpt.h"
#include "ae/config.h"
#include "ae/eval.h"
#include "ae/pca.h"

#define PATH_CAP 4096
#define MAX_SIDE 32768           /* largest picture side, pixels */
#define MODEL_BATCH 256          /* max_batch of the models the commands build */
#define RUN_RECON_N 20           /* test images in recon.png */
#define RUN_COLS 10              /* tiles per row of the grids */
#define RUN_MANIFOLD_GRID 20     /* lattice of manifold.png */
#define RUN_INTERP_PAIRS 4       /* pairs in interpolation.png */
#define RUN_INTERP_STEPS 10
#define RUN_FILTERS_MAX 100      /* tiles in filters.png */
#define RUN_EPOCHS_MAX 8         /* checkpoints in epochs.png */
#define FONT "DejaVu Sans"

/* ---- PNG output ------------------------------------------------------------------ */

#define PNG_FIRST_CAP 4096   /* first size of an in-memory PNG, doubled as it grows */
#define PNG_MSG_CAP 128      /* libpng's error message */

/* libpng's write callback: append to the growing ae_plot_png (its io pointer). */
static void png_mem_write(png_structp png, png_bytep data, size_t n)
{
    ae_plot_png *b = png_get_io_ptr(png);
    if (n > b->cap - b->size) {
        size_t cap = b->cap ? b->cap : PNG_FIRST_CAP;
        while (cap - b->size < n) cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p) png_error(png, "out of memory");
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->size, data, n);
    b->size += n;
}

static void png_mem_flush(png_structp png) { (void)png; }

/* libpng's error callback: keep the message (its error pointer), then back to the setjmp. */
static void png_on_error(png_structp png, png_const_charp msg)
{
    snprintf(png_get_error_ptr(png), PNG_MSG_CAP, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* The libpng calls, apart from ae_plot_png_encode so that nothing in this
 * setjmp frame changes before a longjmp needs it: 0, or -1 after an error. */
static int png_encode_rows(png_structp png, png_infop info, const uint8_t *px, int w, int h, int channels,
                           ae_plot_png *out)
{
    if (setjmp(png_jmpbuf(png))) return -1;
    png_set_write_fn(png, out, png_mem_write, png_mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_sRGB(png, info, PNG_sRGB_INTENT_PERCEPTUAL);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, px + (size_t)y * (size_t)channels * (size_t)w);
    png_write_end(png, NULL);
    return 0;
}

ae_status ae_plot_png_encode(const char *name, const uint8_t *px, int w, int h, int channels, ae_plot_png *out,
                             ae_error *err)
{
    memset(out, 0, sizeof *out);
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE || (channels != 1 && channels != 3) || !px)
        return ae_error_set(err, AE_ERR_ARG, "%s: cannot encode %d x %d pixels of %d channels", name, w, h,
                            channels);
    char msg[PNG_MSG_CAP] = "";
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = info ? png_encode_rows(png, info, px, w, h, channels, out) : -1;
    png_destroy_write_struct(&png, &info);
    if (rc != 0) {
        ae_plot_png_free(out);
        if (!info || strcmp(msg, "out of memory") == 0)
            return ae_error_set(err, AE_ERR_NOMEM, "%s: out of memory for a %d x %d PNG", name, w, h);
        return ae_error_set(err, AE_ERR_IO, "%s: libpng: %s", name, msg[0] ? msg : "unknown error");
    }
    out->width = w;
    out->height = h;
    return AE_OK;
}

void ae_plot_png_free(ae_plot_png *out)
{
    if (!out) return;
    free(out->data);
    memset(out, 0, sizeof *out);
}

/* Write n bytes to path via path.tmp (renamed over path: a reader never sees half a file). */
static ae_status write_file(const char *path, const unsigned char *b, size_t n, ae_error *err)
{
    char tmp[PATH_CAP + 8];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ae_error_set(err, AE_ERR_ARG, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return ae_error_set(err, AE_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    int werr = fwrite(b, 1, n, f) != n ? (errno ? errno : EIO) : 0;
    if (fclose(f) != 0 && !werr) werr = errno ? errno : EIO;
    if (werr) {
        remove(tmp);
        return ae_error_set(err, AE_ERR_IO, "%s: write failed: %s", path, strerror(werr));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return ae_error_set(err, AE_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(e));
    }
    return AE_OK;
}

/* Write w x h pixels of `channels` bytes (1 gray, 3 RGB) to path via path.tmp. */
static ae_status write_png(const char *path, const uint8_t *px, int w, int h, int channels, ae_error *err)
{
    ae_plot_png png;
    ae_status st = ae_plot_png_encode(path, px, w, h, channels, &png, err);
    if (!st) st = write_file(path, png.data, png.size, err);
    ae_plot_png_free(&png);
    return st;
}

/* ---- grids ------------------------------------------------------------------------ */

void ae_plot_grid_size(int rows, int cols, int h, int w, int scale, int *width, int *height)
{
    *width = cols * w * scale + (cols + 1) * AE_PLOT_SEP;
    *height = rows * h * scale + (rows + 1) * AE_PLOT_SEP;
}

static ae_status check_grid(const char *path, int rows, int cols, int h, int w, int scale, ae_error *err)
{
    if (rows < 1 || cols < 1 || h < 1 || w < 1 || scale < 1 || scale > 64 || rows > MAX_SIDE ||
        cols > MAX_SIDE || h > MAX_SIDE || w > MAX_SIDE)
        return ae_error_set(err, AE_ERR_ARG, "%s: bad grid: %d x %d tiles of %d x %d, scale %d", path, rows,
                            cols, h, w, scale);
    long long W = (long long)cols * w * scale + (long long)(cols + 1) * AE_PLOT_SEP;
    long long H = (long long)rows * h * scale + (long long)(rows + 1) * AE_PLOT_SEP;
    if (W > MAX_SIDE || H > MAX_SIDE)
        return ae_error_set(err, AE_ERR_ARG, "%s: a grid of %lld x %lld pixels is too large (at most %d)",
                            path, W, H, MAX_SIDE);
    return AE_OK;
}

/* Render rows x cols cells (cells[r * cols + c]: h x w floats, or NULL for an
 * empty cell) into a new gray buffer *out of *W x *H pixels; separators,
 * frame and empty cells of gray level sep. */
static ae_status grid_render(const char *path, const float *const *cells, int rows, int cols, int h, int w,
                             int scale, uint8_t sep, uint8_t **out, int *W, int *H, ae_error *err)
{
    ae_status st = check_grid(path, rows, cols, h, w, scale, err);
    if (st) return st;
    ae_plot_grid_size(rows, cols, h, w, scale, W, H);
    uint8_t *px = ae_malloc((size_t)*W * (size_t)*H, err);
    if (!px) return AE_ERR_NOMEM;
    memset(px, sep, (size_t)*W * (size_t)*H);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const float *img = cells[(size_t)r * cols + c];
            if (!img) continue;
            size_t x0 = (size_t)AE_PLOT_SEP + (size_t)c * (size_t)(w * scale + AE_PLOT_SEP);
            size_t y0 = (size_t)AE_PLOT_SEP + (size_t)r * (size_t)(h * scale + AE_PLOT_SEP);
            for (int i = 0; i < h; i++)
                for (int j = 0; j < w; j++) {
                    uint8_t g = ae_plot_gray(img[(size_t)i * w + j]);
                    for (int a = 0; a < scale; a++) {
                        size_t y = y0 + (size_t)i * scale + (size_t)a;
                        memset(px + y * (size_t)*W + x0 + (size_t)j * scale, g, (size_t)scale);
                    }
                }
        }
    *out = px;
    return AE_OK;
}

/* Render the grid and write it to path, or (mem != NULL) encode it into *mem,
 * path then only naming it in messages. */
static ae_status grid_write(const char *path, ae_plot_png *mem, const float *const *cells, int rows, int cols,
                            int h, int w, int scale, uint8_t sep, ae_error *err)
{
    uint8_t *px = NULL;
    int W, H;
    ae_status st = grid_render(path, cells, rows, cols, h, w, scale, sep, &px, &W, &H, err);
    if (!st) st = mem ? ae_plot_png_encode(path, px, W, H, 1, mem, err) : write_png(path, px, W, H, 1, err);
    free(px);
    return st;
}

static ae_status grid_images(const char *path, ae_plot_png *mem, const float *images, int n, int rows, int cols,
                              int h, int w, int scale, ae_error *err)
{
    ae_status st = check_grid(path, rows, cols, h, w, scale, err);
    if (st) return st;
    if (n < 0 || n > rows * cols || (n > 0 && !images))
        return ae_error_set(err, AE_ERR_ARG, "%s: %d images do not fit a grid of %d x %d", path, n, rows,
                            cols);
    const float **cells = ae_calloc((size_t)rows * cols, sizeof *cells, err);
    if (!cells) return AE_ERR_NOMEM;
    for (int k = 0; k < n; k++) cells[k] = images + (size_t)k * h * w;
    st = grid_write(path, mem, cells, rows, cols, h, w, scale, AE_PLOT_SEP_GRAY, err);
    free(cells);
    return st;
}

ae_status ae_plot_grid_png(const char *path, const float *images, int n, int rows, int cols, int h, int w,
                           int scale, ae_error *err)
{
    return grid_images(path, NULL, images, n, rows, cols, h, w, scale, err);
}

/* ---- small maths ------------------------------------------------------------------- */

void ae_plot_color(int k, uint8_t rgb[3])
{
    static const uint8_t tab10[AE_PLOT_NCOLORS][3] = {
        {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
        {140, 86, 75}, {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
    k %= AE_PLOT_NCOLORS;
    if (k < 0) k += AE_PLOT_NCOLORS;
    memcpy(rgb, tab10[k], 3);
}

/* Acklam's rational approximation, then one Halley step on erfc. */
double ae_plot_norm_ppf(double p)
{
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                3.754408661907416e+00};
    const double plow = 0.02425;
    if (isnan(p) || p < 0.0 || p > 1.0) return NAN;
    if (p == 0.0) return -INFINITY;
    if (p == 1.0) return INFINITY;
    double x;
    if (p < plow || p > 1.0 - plow) {
        double q = sqrt(-2.0 * log(p < plow ? p : 1.0 - p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
        if (p > 1.0 - plow) x = -x;
    } else {
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    }
    double e = 0.5 * erfc(-x / sqrt(2.0)) - p;
    double u = e * sqrt(2.0 * M_PI) * exp(0.5 * x * x);
    return x - u / (1.0 + 0.5 * x * u);
}

int ae_plot_pick(const ae_dataset *ds, int n, uint32_t *idx)
{
    int want = n < 0 ? 0 : ((size_t)n < ds->n ? n : (int)ds->n);
    if (!ds->y || ds->nclass < 1) {
        for (int k = 0; k < want; k++) idx[k] = (uint32_t)k;
        return want;
    }
    /* next[c]: where the search for the next sample of class c resumes */
    size_t *next = calloc((size_t)ds->nclass, sizeof *next);
    if (!next) {
        for (int k = 0; k < want; k++) idx[k] = (uint32_t)k;
        return want;
    }
    int got = 0;
    while (got < want) {
        int progress = 0;
        for (int c = 0; c < ds->nclass && got < want; c++) {
            size_t i = next[c];
            while (i < ds->n && ds->y[i] != c) i++;
            next[c] = i < ds->n ? i + 1 : ds->n;
            if (i < ds->n) {
                idx[got++] = (uint32_t)i;
                progress = 1;
            }
        }
        if (!progress) break;
    }
    free(next);
    return got;
}

/* ---- running parts of a model --------------------------------------------------------- */

/* Layers [from, to) on n <= max_batch samples; returns their output (in when from == to). */
static const float *run_layers(ae_model *m, const ae_ctx *ctx, const float *in, int n, int from, int to)
{
    const float *cur = in;
    for (int i = from; i < to; i++) {
        ae_layer *l = &m->layers[i];
        l->kind->forward(l, ctx, cur, m->act[i], n);
        cur = m->act[i];
    }
    return cur;
}

static size_t width_before(const ae_model *m, int layer)
{
    return layer > 0 ? m->layers[layer - 1].out_size : m->in_size;
}

/* Layers [from, to) on n samples (in: n x width_before(from)) in chunks of
 * max_batch into out (n x width_before(to)); the chunk's sample0 is ctx's
 * plus its start. */
static void run_chunks(ae_model *m, const ae_ctx *ctx, const float *in, size_t n, int from, int to,
                       float *out)
{
    size_t wi = width_before(m, from), wo = width_before(m, to);
    for (size_t s = 0; s < n; s += (size_t)m->max_batch) {
        int cn = (int)(n - s < (size_t)m->max_batch ? n - s : (size_t)m->max_batch);
        ae_ctx c = *ctx;
        c.sample0 = ctx->sample0 + (int64_t)s;
        const float *y = run_layers(m, &c, in + s * wi, cn, from, to);
        memcpy(out + s * wo, y, sizeof(float) * (size_t)cn * wo);
    }
}

static ae_status need_autoencoder(const char *path, const ae_model *m, const ae_dataset *ds, ae_error *err)
{
    if (m->type != AE_MODEL_AUTOENCODER || m->out_size != m->in_size)
        return ae_error_set(err, AE_ERR_ARG, "%s: needs an autoencoder (output as large as the input)", path);
    if (ds && ds->d != m->in_size)
        return ae_error_set(err, AE_ERR_SHAPE, "%s: the data has %zu values a sample, the model takes %zu",
                            path, ds->d, m->in_size);
    return AE_OK;
}

static ae_status check_idx(const char *path, const ae_dataset *ds, const uint32_t *idx, int n, ae_error *err)
{
    if (n < 1 || !idx) return ae_error_set(err, AE_ERR_ARG, "%s: no images to show", path);
    for (int k = 0; k < n; k++)
        if (idx[k] >= ds->n)
            return ae_error_set(err, AE_ERR_ARG, "%s: sample %u is past the end of %s (%zu samples)", path,
                                idx[k], ds->name, ds->n);
    return AE_OK;
}

/* tile shape of a sample of the model's input */
static void tile_shape(const ae_shape *s, int *h, int *w)
{
    *h = s->c * s->h;
    *w = s->w;
}

/* ---- model pictures -------------------------------------------------------------------- */

/* Grid of groups of cols samples, each group nrow rows: row r of group g shows
 * sets[r][g * cols + j]. */
static ae_status write_groups(const char *path, ae_plot_png *mem, const float *const *sets, int nrow, int n,
                              int cols, int h, int w, int scale, ae_error *err)
{
    if (cols < 1) cols = n < RUN_COLS ? n : RUN_COLS;
    if (cols > n) cols = n;
    int groups = (n + cols - 1) / cols, rows = groups * nrow;
    const float **cells = ae_calloc((size_t)rows * cols, sizeof *cells, err);
    if (!cells) return AE_ERR_NOMEM;
    size_t d = (size_t)h * w;
    for (int k = 0; k < n; k++)
        for (int r = 0; r < nrow; r++)
            cells[(size_t)((k / cols) * nrow + r) * cols + k % cols] = sets[r] + (size_t)k * d;
    ae_status st = grid_write(path, mem, cells, rows, cols, h, w, scale, AE_PLOT_SEP_GRAY, err);
    free(cells);
    return st;
}

/* What the in-memory pictures call themselves in messages. */
#define MEM_NAME "PNG in memory"

/* Empty *out before a picture is made into it (it stays empty on failure). */
static ae_status mem_start(ae_plot_png *out, ae_error *err)
{
    if (!out) return ae_error_set(err, AE_ERR_ARG, MEM_NAME ": NULL output");
    memset(out, 0, sizeof *out);
    return AE_OK;
}

static ae_status recon(const char *path, ae_plot_png *mem, ae_model *m, const ae_dataset *ds, const uint32_t *idx,
                       int n, int cols, int scale, ae_error *err)
{
    ae_status st = need_autoencoder(path, m, ds, err);
    if (!st) st = check_idx(path, ds, idx, n, err);
    if (st) return st;
    size_t d = ds->d;
    float *x = ae_alloc_floats(2 * (size_t)n * d, err);
    if (!x) return AE_ERR_NOMEM;
    float *y = x + (size_t)n * d;
    ae_data_gather_x(ds, idx, (size_t)n, x);
    ae_ctx ctx = {0};
    run_chunks(m, &ctx, x, (size_t)n, 0, m->n_layers, y);
    int h, w;
    tile_shape(&m->in, &h, &w);
    const float *sets[2] = {x, y};
    st = write_groups(path, mem, sets, 2, n, cols, h, w, scale, err);
    free(x);
    return st;
}

ae_status ae_plot_recon_png(const char *path, ae_model *m, const ae_dataset *ds, const uint32_t *idx, int n,
                            int cols, int scale, ae_error *err)
{
    return recon(path, NULL, m, ds, idx, n, cols, scale, err);
}

ae_status ae_plot_recon_mem(ae_plot_png *out, ae_model *m, const ae_dataset *ds, const uint32_t *idx, int n,
                            int cols, int scale, ae_error *err)
{
    ae_status st = mem_start(out, err);
    return st ? st : recon(MEM_NAME, out, m, ds, idx, n, cols, scale, err);
}

static int is_noise_kind(const ae_layer *l)
{
    static const char *const kinds[] = {"gauss", "mask", "saltpepper", "mult012", "dropout"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (strcmp(l->kind->name, kinds[k]) == 0) return 1;
    return 0;
}

int ae_plot_noise_layer(const ae_model *m)
{
    return m->n_encoder > 0 && m->n_layers > 1 && is_noise_kind(&m->layers[0]) ? 0 : -1;
}

static ae_status denoise(const char *path, ae_plot_png *mem, ae_model *m, const ae_dataset *ds,
                         const uint32_t *idx, int n, int cols, uint64_t seed, int scale, ae_error *err)
{
    ae_status st = need_autoencoder(path, m, ds, err);
    if (!st && ae_plot_noise_layer(m) != 0)
        st = ae_error_set(err, AE_ERR_ARG, "%s: the model does not start with a corruption layer", path);
    if (!st) st = check_idx(path, ds, idx, n, err);
    if (st) return st;
    size_t d = ds->d;
    float *x = ae_alloc_floats(3 * (size_t)n * d, err);
    if (!x) return AE_ERR_NOMEM;
    float *xn = x + (size_t)n * d, *y = xn + (size_t)n * d;
    ae_data_gather_x(ds, idx, (size_t)n, x);
    ae_ctx noisy = {.training = 1, .seed = seed, .epoch = 0, .step = 0, .sample0 = 0, .batch = n};
    ae_ctx eval = {0};
    run_chunks(m, &noisy, x, (size_t)n, 0, 1, xn);
    run_chunks(m, &eval, xn, (size_t)n, 1, m->n_layers, y);
    int h, w;
    tile_shape(&m->in, &h, &w);
    const float *sets[3] = {x, xn, y};
    st = write_groups(path, mem, sets, 3, n, cols, h, w, scale, err);
    free(x);
    return st;
}

ae_status ae_plot_denoise_png(const char *path, ae_model *m, const ae_dataset *ds, const uint32_t *idx, int n,
                              int cols, uint64_t seed, int scale, ae_error *err)
{
    return denoise(path, NULL, m, ds, idx, n, cols, seed, scale, err);
}

ae_status ae_plot_denoise_mem(ae_plot_png *out, ae_model *m, const ae_dataset *ds, const uint32_t *idx, int n,
                              int cols, uint64_t seed, int scale, ae_error *err)
{
    ae_status st = mem_start(out, err);
    return st ? st : denoise(MEM_NAME, out, m, ds, idx, n, cols, seed, scale, err);
}

int ae_plot_filter_layer(const ae_model *m)
{
    for (int i = 0; i < m->n_layers; i++) {
        const ae_layer *l = &m->layers[i];
        const char *k = l->kind->name;
        if (strcmp(k, "dense") == 0)
            return !l->tied && l->W && l->in_size == m->in_size ? i : -1;
        if (strcmp(k, "conv") == 0)
            return l->W && l->in.c == 1 && l->in.h == m->in.h && l->in.w == m->in.w && m->in.c == 1 ? i : -1;
        if (!is_noise_kind(l) && strcmp(k, "flatten") != 0 && strcmp(k, "reshape") != 0) return -1;
    }
    return -1;
}

ae_status ae_plot_filters_png(const char *path, const ae_model *m, int max_tiles, int cols, int scale,
                              ae_error *err)
{
    int li = ae_plot_filter_layer(m);
    if (li < 0)
        return ae_error_set(err, AE_ERR_ARG, "%s: the model's first layer is not dense or conv", path);
    const ae_layer *l = &m->layers[li];
    int conv = strcmp(l->kind->name, "conv") == 0;
    int nt = conv ? l->filters : l->units, h, w;
    if (conv) {
        h = w = l->ksize;
    } else {
        tile_shape(&m->in, &h, &w);
    }
    if (max_tiles > 0 && nt > max_tiles) nt = max_tiles;
    if (nt < 1) return ae_error_set(err, AE_ERR_ARG, "%s: no filters to show", path);
    size_t d = (size_t)h * w;
    float *t = ae_alloc_floats((size_t)nt * d, err);
    if (!t) return AE_ERR_NOMEM;
    for (int j = 0; j < nt; j++) {
        float *tile = t + (size_t)j * d;
        for (size_t i = 0; i < d; i++)
            tile[i] = conv ? l->W[(size_t)j * d + i] : l->W[i * (size_t)l->units + (size_t)j];
        float lo = tile[0], hi = tile[0];
        for (size_t i = 1; i < d; i++) {
            lo = tile[i] < lo ? tile[i] : lo;
            hi = tile[i] > hi ? tile[i] : hi;
        }
        for (size_t i = 0; i < d; i++) tile[i] = hi > lo ? (tile[i] - lo) / (hi - lo) : 0.5f;
    }
    if (cols < 1) cols = nt <= 64 ? 8 : 10;
    if (cols > nt) cols = nt;
    int rows = (nt + cols - 1) / cols;
    ae_status st = check_grid(path, rows, cols, h, w, scale, err);
    const float **cells = st ? NULL : ae_calloc((size_t)rows * cols, sizeof *cells, err);
    if (!st && !cells) st = AE_ERR_NOMEM;
    for (int k = 0; !st && k < nt; k++) cells[k] = t + (size_t)k * d;
    if (!st) st = grid_write(path, NULL, cells, rows, cols, h, w, scale, AE_PLOT_FILTER_SEP_GRAY, err);
    free(cells);
    free(t);
    return st;
}

int ae_plot_vae2_layer(const ae_model *m)
{
    for (int i = 0; i < m->n_encoder && i < m->n_layers; i++)
        if (strcmp(m->layers[i].kind->name, "sample") == 0 && m->layers[i].out_size == 2) return i;
    return -1;
}

static ae_status manifold(const char *path, ae_plot_png *mem, ae_model *m, int grid, int scale, ae_error *err)
{
    ae_status st = need_autoencoder(path, m, NULL, err);
    int s = ae_plot_vae2_layer(m);
    if (!st && s < 0)
        st = ae_error_set(err, AE_ERR_ARG, "%s: the model has no sample layer with 2 outputs", path);
    if (!st && (grid < 1 || grid > 1000))
        st = ae_error_set(err, AE_ERR_ARG, "%s: bad lattice size %d", path, grid);
    if (st) return st;
    size_t n = (size_t)grid * grid, d = m->out_size;
    float *z = ae_alloc_floats(2 * n, err), *y = z ? ae_alloc_floats(n * d, err) : NULL;
    if (!y) {
        free(z);
        return AE_ERR_NOMEM;
    }
    for (int r = 0; r < grid; r++)
        for (int c = 0; c < grid; c++) {
            z[2 * ((size_t)r * grid + c)] = (float)ae_plot_norm_ppf((c + 0.5) / grid);
            z[2 * ((size_t)r * grid + c) + 1] = (float)ae_plot_norm_ppf(1.0 - (r + 0.5) / grid);
        }
    ae_ctx ctx = {0};
    run_chunks(m, &ctx, z, n, s + 1, m->n_layers, y);
    int h, w;
    tile_shape(&m->in, &h, &w);
    st = grid_images(path, mem, y, (int)n, grid, grid, h, w, scale, err);
    free(z);
    free(y);
    return st;
}

ae_status ae_plot_manifold_png(const char *path, ae_model *m, int grid, int scale, ae_error *err)
{
    return manifold(path, NULL, m, grid, scale, err);
}

ae_status ae_plot_manifold_mem(ae_plot_png *out, ae_model *m, int grid, int scale, ae_error *err)
{
    ae_status st = mem_start(out, err);
    return st ? st : manifold(MEM_NAME, out, m, grid, scale, err);
}

ae_status ae_plot_interp_png(const char *path, ae_model *m, const ae_dataset *ds, const uint32_t *a,
                             const uint32_t *b, int npairs, int steps, int scale, ae_error *err)
{
    ae_status st = need_autoencoder(path, m, ds, err);
    if (!st && (steps < 2 || steps > 1000))
        st = ae_error_set(err, AE_ERR_ARG, "%s: interpolation needs 2 to 1000 steps, not %d", path, steps);
    if (!st && m->n_encoder < 1) st = ae_error_set(err, AE_ERR_ARG, "%s: the model has no encoder", path);
    if (!st) st = check_idx(path, ds, a, npairs, err);
    if (!st) st = check_idx(path, ds, b, npairs, err);
    if (st) return st;
    size_t d = ds->d, cw = m->code_size, np = (size_t)npairs, ns = (size_t)steps;
    float *x = ae_alloc_floats(2 * np * d, err);
    float *code = x ? ae_alloc_floats(2 * np * cw, err) : NULL;
    float *zl = code ? ae_alloc_floats(np * ns * cw, err) : NULL;
    float *dec = zl ? ae_alloc_floats(np * ns * d, err) : NULL;
    float *blend = dec ? ae_alloc_floats(np * ns * d, err) : NULL;
    if (!blend) {
        free(x);
        free(code);
        free(zl);
        free(dec);
        return AE_ERR_NOMEM;
    }
    ae_data_gather_x(ds, a, np, x);
    ae_data_gather_x(ds, b, np, x + np * d);
    ae_ctx ctx = {0};
    run_chunks(m, &ctx, x, 2 * np, 0, m->n_encoder, code);
    for (size_t k = 0; k < np; k++)
        for (size_t j = 0; j < ns; j++) {
            float t = (float)j / (float)(ns - 1);
            const float *ca = code + k * cw, *cb = code + (np + k) * cw;
            const float *xa = x + k * d, *xb = x + (np + k) * d;
            float *zo = zl + (k * ns + j) * cw, *bo = blend + (k * ns + j) * d;
            for (size_t i = 0; i < cw; i++) zo[i] = (1.0f - t) * ca[i] + t * cb[i];
            for (size_t i = 0; i < d; i++) bo[i] = (1.0f - t) * xa[i] + t * xb[i];
        }
    run_chunks(m, &ctx, zl, np * ns, m->n_encoder, m->n_layers, dec);
    /* rows: pair k's decoded points, then its pixel blend */
    const float **cells = ae_calloc(2 * np * ns, sizeof *cells, err);
    if (cells) {
        for (size_t k = 0; k < np; k++)
            for (size_t j = 0; j < ns; j++) {
                cells[(2 * k) * ns + j] = dec + (k * ns + j) * d;
                cells[(2 * k + 1) * ns + j] = blend + (k * ns + j) * d;
            }
        int h, w;
        tile_shape(&m->in, &h, &w);
        st = grid_write(path, NULL, cells, 2 * npairs, steps, h, w, scale, AE_PLOT_SEP_GRAY, err);
        free(cells);
    } else {
        st = AE_ERR_NOMEM;
    }
    free(x);
    free(code);
    free(zl);
    free(dec);
    free(blend);
    return st;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

/* Load a checkpoint and build its model for inputs of shape in; *spec_out (may
 * be NULL) gets the checkpoint's config. */
static ae_status load_model(const char *path, const ae_shape *in, ae_model **out, ae_ckpt_meta *meta,
                            ae_spec *spec_out, ae_error *err)
{
    *out = NULL;
    ae_ckpt ck;
    memset(&ck, 0, sizeof ck);
    ae_spec *spec = ae_malloc(sizeof *spec, err);
    ae_status st = spec ? ae_ckpt_load(path, &ck, err) : AE_ERR_NOMEM;
    if (!st) {
        ae_config_defaults(spec);
        char origin[PATH_CAP + 16];
        snprintf(origin, sizeof origin, "%s:config", path);
        st = ae_config_parse_string(ck.config_text, origin, spec, err);
        if (!st) st = ae_config_validate(spec, err);
    }
    ae_model *m = NULL;
    if (!st && in) st = ae_model_create(spec, in, MODEL_BATCH, &m, err);
    if (!st && m &&
        (ck.meta.arch_hash != m->arch_hash || ck.n_params != m->n_params || ck.n_state != m->n_state))
        st = ae_error_set(err, AE_ERR_FORMAT, "%s: its parameters do not match the model its config builds",
                          path);
    if (!st && m) {
        memcpy(m->params, ck.params, sizeof(float) * m->n_params);
        if (m->n_state) memcpy(m->state, ck.state, sizeof(float) * m->n_state);
    }
    if (!st && meta) *meta = ck.meta;
    if (!st && spec_out) *spec_out = *spec;
    if (st) ae_model_free(m);
    else *out = m;
    ae_ckpt_free(&ck);
    free(spec);
    return st;
}

/* ---- cairo figures --------------------------------------------------------------------------- */

typedef struct fig {
    cairo_surface_t *s;
    cairo_t *cr;
    int w, h;
} fig;

static ae_status fig_open(fig *f, int w, int h, const char *path, ae_error *err)
{
    f->w = w;
    f->h = h;
    f->s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    f->cr = cairo_create(f->s);
    cairo_status_t cs = cairo_status(f->cr);
    if (cs != CAIRO_STATUS_SUCCESS) {
        cairo_destroy(f->cr);
        cairo_surface_destroy(f->s);
        f->cr = NULL;
        f->s = NULL;
        return ae_error_set(err, cs == CAIRO_STATUS_NO_MEMORY ? AE_ERR_NOMEM : AE_ERR_ARG, "%s: cairo: %s",
                            path, cairo_status_to_string(cs));
    }
    cairo_set_source_rgb(f->cr, 1, 1, 1);
    cairo_paint(f->cr);
    cairo_select_font_face(f->cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    return AE_OK;
}

static void fig_close(fig *f)
{
    if (f->cr) cairo_destroy(f->cr);
    if (f->s) cairo_surface_destroy(f->s);
    f->cr = NULL;
    f->s = NULL;
}

/* Write the figure as an RGB PNG. */
static ae_status fig_save(fig *f, const char *path, ae_error *err)
{
    cairo_status_t cs = cairo_status(f->cr);
    if (cs != CAIRO_STATUS_SUCCESS)
        return ae_error_set(err, AE_ERR_ARG, "%s: cairo: %s", path, cairo_status_to_string(cs));
    cairo_surface_flush(f->s);
    const unsigned char *data = cairo_image_surface_get_data(f->s);
    int stride = cairo_image_surface_get_stride(f->s);
    uint8_t *rgb = ae_malloc((size_t)f->w * (size_t)f->h * 3, err);
    if (!rgb) return AE_ERR_NOMEM;
    for (int y = 0; y < f->h; y++) {
        const uint32_t *row = (const uint32_t *)(const void *)(data + (size_t)y * (size_t)stride);
        uint8_t *o = rgb + (size_t)y * (size_t)f->w * 3;
        for (int x = 0; x < f->w; x++) {
            o[3 * x] = (uint8_t)(row[x] >> 16);
            o[3 * x + 1] = (uint8_t)(row[x] >> 8);
            o[3 * x + 2] = (uint8_t)row[x];
        }
    }
    ae_status st = write_png(path, rgb, f->w, f->h, 3, err);
    free(rgb);
    return st;
}

static void set_rgb(cairo_t *cr, const uint8_t c[3], double alpha)
{
    cairo_set_source_rgba(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0, alpha);
}

/* Draw text anchored at (x, y): ax, ay in [0, 1] place the anchor on the ink
 * box (0 = left / top, 1 = right / bottom); rotated = 1 turns it 90 degrees
 * counter-clockwise (reading upwards), ax then runs along the text. Returns
 * the ink box in *ink (may be NULL). */
static void text_at(cairo_t *cr, double x, double y, const char *s, double size, int bold, double ax,
                    double ay, int rotated, ae_plot_box *ink)
{
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    if (rotated) cairo_rotate(cr, -M_PI / 2);
    cairo_move_to(cr, -e.x_bearing - e.width * ax, -e.y_bearing - e.height * ay);
    cairo_show_text(cr, s);
    cairo_restore(cr);
    if (!ink) return;
    double lx = -e.width * ax, ly = -e.height * ay; /* the ink box's corner in text coordinates */
    if (!rotated) {
        *ink = (ae_plot_box){(int)floor(x + lx), (int)floor(y + ly), (int)ceil(e.width), (int)ceil(e.height)};
    } else {
        /* (u, v) in text coordinates is (x + v, y - u) on the page */
        *ink = (ae_plot_box){(int)floor(x + ly), (int)floor(y - (lx + e.width)), (int)ceil(e.height),
                             (int)ceil(e.width)};
    }
}

static double text_width(cairo_t *cr, const char *s, double size)
{
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

typedef struct axis {
    double lo, hi;     /* the shown range (of log_base(value) on a log axis) */
    double first, step; /* ticks at first + k step <= hi */
    int log_base;      /* 0: linear; 2 or 10: logarithmic, lo..first..hi are exponents */
} axis;

/* The range [lo, hi] widened by pad (a fraction of it) on each side, with
 * about `ticks` ticks at multiples of 1, 2 or 5 x 10^k inside it (integers
 * only when integer). */
static void nice_axis(double lo, double hi, int ticks, int integer, double pad, axis *a)
{
    if (!isfinite(lo) || !isfinite(hi)) lo = 0.0, hi = 1.0;
    if (hi < lo) {
        double t = lo;
        lo = hi;
        hi = t;
    }
    if (hi - lo < 1e-12 * fmax(1.0, fabs(hi))) {
        double half = integer ? 1.0 : (fabs(lo) > 0 ? 0.1 * fabs(lo) : 0.5);
        lo -= half;
        hi += half;
    }
    double range = hi - lo;
    lo -= pad * range;
    hi += pad * range;
    double raw = (hi - lo) / ticks, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    double step = (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * mag;
    if (integer && step < 1.0) step = 1.0;
    a->lo = lo;
    a->hi = hi;
    a->step = step;
    a->first = ceil(lo / step - 1e-9) * step;
    a->log_base = 0;
}

/* A logarithmic axis (base 2 or 10) over [lo, hi] (both > 0), padded by pad
 * (a fraction of the exponent range) on each side, ticks at whole powers. */
static double log_in_base(int base, double v)
{
    return base == 2 ? log2(fmax(v, 1e-300)) : log10(fmax(v, 1e-300));
}

static void log_axis(double lo, double hi, int base, double pad, axis *a)
{
    double l = log_in_base(base, lo), h = log_in_base(base, hi);
    if (h - l < 1.0) l = floor(l), h = l + 1.0;
    double range = h - l;
    a->lo = l - pad * range;
    a->hi = h + pad * range;
    a->step = base == 2 && range > 12 ? 2.0 : 1.0;
    a->first = ceil(a->lo / a->step - 1e-9) * a->step;
    a->log_base = base;
}

/* A value's place on an axis: itself, or its logarithm; and back. */
static double axis_pos(const axis *a, double v)
{
    return a->log_base ? log_in_base(a->log_base, v) : v;
}

static double axis_value(const axis *a, double pos)
{
    return a->log_base ? pow(a->log_base, pos) : pos;
}

static void tick_label(double v, double step, char *buf, size_t cap)
{
    if (fabs(v) < 1e-9 * step) v = 0.0;
    int dec = step >= 1.0 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) >= 1e5 || dec > 5) snprintf(buf, cap, "%.3g", v);
    else snprintf(buf, cap, "%.*f", dec, v);
}

static double map_x(const ae_plot_box *b, const axis *a, double v)
{
    return b->x + (axis_pos(a, v) - a->lo) / (a->hi - a->lo) * b->w;
}

static double map_y(const ae_plot_box *b, const axis *a, double v)
{
    return b->y + b->h - (axis_pos(a, v) - a->lo) / (a->hi - a->lo) * b->h;
}

/* Grid lines, ticks with labels, the frame (axes) and the axis labels of one panel. */
static void draw_axes(cairo_t *cr, const ae_plot_box *b, const axis *ax, const axis *ay, const char *xlabel,
                      const char *ylabel, ae_plot_box *xl_ink, ae_plot_box *yl_ink)
{
    char buf[64];
    double tick_w = 0.0;
    cairo_set_line_width(cr, 1.0);
    for (int pass = 0; pass < 2; pass++) {
        const axis *a = pass ? ay : ax;
        int nt = (int)floor((a->hi - a->first) / a->step + 1e-9);
        for (int k = 0; k <= nt; k++) {
            double v = axis_value(a, a->first + k * a->step);
            double p = pass ? floor(map_y(b, a, v)) + 0.5 : floor(map_x(b, a, v)) + 0.5;
            cairo_set_source_rgb(cr, 0.88, 0.88, 0.88); /* grid line */
            if (pass) {
                cairo_move_to(cr, b->x, p);
                cairo_line_to(cr, b->x + b->w, p);
            } else {
                cairo_move_to(cr, p, b->y);
                cairo_line_to(cr, p, b->y + b->h);
            }
            cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0, 0, 0); /* tick and its label */
            if (pass) {
                cairo_move_to(cr, b->x - 5, p);
                cairo_line_to(cr, b->x, p);
            } else {
                cairo_move_to(cr, p, b->y + b->h);
                cairo_line_to(cr, p, b->y + b->h + 5);
            }
            cairo_stroke(cr);
            if (a->log_base && v < 1.0) snprintf(buf, sizeof buf, "%g", v);
            else tick_label(v, a->log_base ? 1.0 : a->step, buf, sizeof buf);
            if (pass) {
                text_at(cr, b->x - 8, p, buf, 11, 0, 1.0, 0.5, 0, NULL);
                double tw = text_width(cr, buf, 11);
                tick_w = tw > tick_w ? tw : tick_w;
            } else {
                text_at(cr, p, b->y + b->h + 9, buf, 11, 0, 0.5, 0.0, 0, NULL);
            }
        }
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, b->x + 0.5, b->y + 0.5, b->w - 1, b->h - 1);
    cairo_stroke(cr);
    text_at(cr, b->x + b->w / 2.0, b->y + b->h + 30, xlabel, 13, 0, 0.5, 0.0, 0, xl_ink);
    text_at(cr, b->x - 14 - tick_w, b->y + b->h / 2.0, ylabel, 13, 0, 0.5, 1.0, 1, yl_ink);
}

/* A legend box at (x, y): one row per entry with a marker (dots) or a line
 * and a marker (lines), and its name. */
typedef struct legend_entry {
    const char *name;
    uint8_t rgb[3];
} legend_entry;

static void legend_size(cairo_t *cr, const legend_entry *e, int n, const char *title, int *w, int *h)
{
    double tw = title ? text_width(cr, title, 12) - 30.0 : 0.0;
    for (int k = 0; k < n; k++) {
        double t = text_width(cr, e[k].name, 12);
        tw = t > tw ? t : tw;
    }
    *w = (int)ceil(tw) + 48;
    *h = 20 * (n + (title != NULL)) + 12;
}

static void draw_legend(cairo_t *cr, const legend_entry *e, int n, int lines, const char *title,
                        const ae_plot_box *b)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, b->x + 0.5, b->y + 0.5, b->w - 1, b->h - 1);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
    cairo_set_line_width(cr, 1.0);
    cairo_stroke(cr);
    int row0 = 0;
    if (title) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, b->x + 10, b->y + 16, title, 12, 1, 0.0, 0.5, 0, NULL);
        row0 = 1;
    }
    for (int k = 0; k < n; k++) {
        double cy = b->y + 16 + 20 * (k + row0), cx = b->x + 20;
        set_rgb(cr, e[k].rgb, 1.0);
        if (lines) {
            cairo_set_line_width(cr, 2.0);
            cairo_move_to(cr, cx - 11, cy);
            cairo_line_to(cr, cx + 11, cy);
            cairo_stroke(cr);
        }
        cairo_arc(cr, cx, cy, lines ? 3.0 : 5.0, 0, 2 * M_PI);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, b->x + 38, cy, e[k].name, 12, 0, 0.0, 0.5, 0, NULL);
    }
}

/* ---- the scatter of codes ----------------------------------------------------------------------- */

ae_status ae_plot_project2(const float *codes, size_t n, size_t d, float *xy, int *projected, ae_error *err)
{
    *projected = 0;
    if (n < 1 || d < 1) return ae_error_set(err, AE_ERR_ARG, "project: no codes (%zu of width %zu)", n, d);
    if (d <= 2) {
        for (size_t i = 0; i < n; i++) {
            xy[2 * i] = codes[i * d];
            xy[2 * i + 1] = d == 2 ? codes[i * d + 1] : 0.0f;
        }
        return AE_OK;
    }
    ae_dataset ds;
    ae_status st = ae_data_create_float(n, d, NULL, 0, &ds, err);
    if (st) return st;
    memcpy(ds.xf, codes, sizeof(float) * n * d);
    ae_pca p;
    st = ae_pca_fit(&ds, 2, &p, err);
    if (!st) {
        ae_pca_project(&p, codes, n, 2, xy);
        ae_pca_free(&p);
        *projected = 1;
    }
    ae_data_free(&ds);
    return st;
}

ae_status ae_plot_codes_png(const char *path, const float *codes, const uint8_t *labels, size_t n, size_t d,
                            const char *title, ae_plot_layout *lay, ae_error *err)
{
    if (n < 1 || d < 1 || !codes) return ae_error_set(err, AE_ERR_ARG, "%s: no codes to plot", path);
    float *xy = ae_alloc_floats(2 * n, err);
    if (!xy) return AE_ERR_NOMEM;
    int projected;
    ae_status st = ae_plot_project2(codes, n, d, xy, &projected, err);
    if (st) {
        char why[AE_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        free(xy);
        return ae_error_set(err, st, "%s: %s", path, why);
    }
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    int present[256] = {0};
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 2; k++) {
            double v = xy[2 * i + k];
            if (!isfinite(v)) continue;
            lo[k] = v < lo[k] ? v : lo[k];
            hi[k] = v > hi[k] ? v : hi[k];
        }
        if (labels) present[labels[i]] = 1;
    }
    legend_entry ents[20];
    char names[20][8];
    int nl = 0;
    for (int c = 0; labels && c < 256 && nl < 20; c++) {
        if (!present[c]) continue;
        snprintf(names[nl], sizeof names[nl], "%d", c);
        ents[nl].name = names[nl];
        ae_plot_color(c, ents[nl].rgb);
        nl++;
    }
    ae_plot_layout L;
    memset(&L, 0, sizeof L);
    L.width = 780;
    L.height = 660;
    L.npanels = 1;
    L.plot[0] = (ae_plot_box){90, 50, 540, 520};
    fig f;
    if ((st = fig_open(&f, L.width, L.height, path, err))) {
        free(xy);
        return st;
    }
    cairo_t *cr = f.cr;
    axis ax, ay;
    nice_axis(lo[0], hi[0], 6, 0, 0.04, &ax);
    nice_axis(lo[1], hi[1], 6, 0, 0.04, &ay);
    char xl[64], yl[64];
    if (projected) {
        snprintf(xl, sizeof xl, "principal component 1 of the %zu-d code", d);
        snprintf(yl, sizeof yl, "principal component 2");
    } else {
        snprintf(xl, sizeof xl, "code 0");
        snprintf(yl, sizeof yl, d == 2 ? "code 1" : "(1-d code)");
    }
    draw_axes(cr, &L.plot[0], &ax, &ay, xl, yl, &L.xlabel[0], &L.ylabel[0]);
    /* the points, in data order, clipped to the plot */
    const ae_plot_box *b = &L.plot[0];
    cairo_save(cr);
    cairo_rectangle(cr, b->x + 1, b->y + 1, b->w - 2, b->h - 2);
    cairo_clip(cr);
    /* crisp dots of the exact colours: readable and they keep the PNG small */
    cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
    double r = n > 3000 ? 1.8 : 2.6;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) continue;
        uint8_t rgb[3];
        ae_plot_color(labels ? labels[i] : 0, rgb);
        set_rgb(cr, rgb, 1.0);
        cairo_arc(cr, map_x(b, &ax, xy[2 * i]), map_y(b, &ay, xy[2 * i + 1]), r, 0, 2 * M_PI);
        cairo_fill(cr);
    }
    cairo_restore(cr);
    if (nl > 0) {
        int lw, lh;
        legend_size(cr, ents, nl, "label", &lw, &lh);
        L.legend[0] = (ae_plot_box){b->x + b->w + 16, b->y, lw, lh};
        draw_legend(cr, ents, nl, 0, "label", &L.legend[0]);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (title && title[0]) text_at(cr, b->x + b->w / 2.0, 18, title, 15, 1, 0.5, 0.0, 0, &L.title);
    st = fig_save(&f, path, err);
    fig_close(&f);
    free(xy);
    if (!st && lay) *lay = L;
    return st;
}

/* ---- curves ------------------------------------------------------------------------------------ */

enum { M_EPOCH, M_TRAIN, M_VAL, M_TEST, M_MSE, M_ACC, M_COUNT };
static const char *const metric_cols[M_COUNT] = {"epoch", "train_loss", "val_loss", "test_loss", "test_mse",
                                                 "test_acc"};

typedef struct metrics {
    size_t n, cap;
    double (*v)[M_COUNT];
} metrics;

/* Split line at commas in place (fields[] point into it); returns the count. */
static int split_csv(char *line, char **fields, int cap)
{
    int n = 0;
    char *p = line;
    while (n < cap) {
        fields[n++] = p;
        char *c = strchr(p, ',');
        if (!c) break;
        *c = '\0';
        p = c + 1;
    }
    return n;
}

static double parse_cell(const char *s, int *ok)
{
    while (*s == ' ' || *s == '\t') s++;
    *ok = 0;
    if (!*s) return NAN;
    char *end;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end) return NAN;
    *ok = 1;
    return v;
}

static ae_status read_metrics(const char *path, metrics *mt, ae_error *err)
{
    memset(mt, 0, sizeof *mt);
    FILE *f = fopen(path, "r");
    if (!f) return ae_error_set(err, AE_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int col[M_COUNT], have_header = 0;
    for (int k = 0; k < M_COUNT; k++) col[k] = -1;
    ae_status st = AE_OK;
    while (!st && (len = getline(&line, &lcap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        char *fields[64];
        int nf = split_csv(line, fields, 64);
        int ok0;
        double first = parse_cell(fields[0], &ok0);
        if (!ok0 || !isfinite(first)) {
            /* a header (the first line, or again after a resume); any other line is skipped */
            int known = 0;
            for (int i = 0; i < nf; i++)
                for (int k = 0; k < M_COUNT; k++) known |= strcmp(fields[i], metric_cols[k]) == 0;
            if (!known) continue;
            for (int k = 0; k < M_COUNT; k++) col[k] = -1;
            for (int i = 0; i < nf; i++)
                for (int k = 0; k < M_COUNT; k++)
                    if (strcmp(fields[i], metric_cols[k]) == 0) col[k] = i;
            have_header = 1;
            continue;
        }
        if (!have_header)
            for (int k = 0; k < M_COUNT; k++) col[k] = k == M_EPOCH ? 0 : -1;
        double row[M_COUNT];
        for (int k = 0; k < M_COUNT; k++) {
            int ok;
            row[k] = col[k] >= 0 && col[k] < nf ? parse_cell(fields[col[k]], &ok) : NAN;
        }
        if (col[M_EPOCH] < 0) row[M_EPOCH] = (double)(mt->n + 1);
        /* an epoch written again (a resume) replaces the rows from it on */
        if (!isfinite(row[M_EPOCH])) continue;
        while (mt->n > 0 && !(mt->v[mt->n - 1][M_EPOCH] < row[M_EPOCH])) mt->n--;
        if (mt->n == mt->cap) {
            size_t nc = mt->cap ? 2 * mt->cap : 64;
            void *nv = realloc(mt->v, nc * sizeof *mt->v);
            if (!nv) {
                st = ae_error_set(err, AE_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            mt->v = nv;
            mt->cap = nc;
        }
        memcpy(mt->v[mt->n++], row, sizeof row);
    }
    if (!st && ferror(f)) st = ae_error_set(err, AE_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (!st && mt->n == 0) st = ae_error_set(err, AE_ERR_FORMAT, "%s: no rows of metrics", path);
    if (st) {
        free(mt->v);
        memset(mt, 0, sizeof *mt);
    }
    return st;
}

typedef struct series {
    int col;
    const char *name;
    int color;
} series;

static int column_has_values(const metrics *mt, int col)
{
    for (size_t i = 0; i < mt->n; i++)
        if (isfinite(mt->v[i][col])) return 1;
    return 0;
}

/* How many data points (and points along the lines between them) fall in box. */
static int points_in(const metrics *mt, const series *s, int ns, const ae_plot_box *p, const axis *ax,
                     const axis *ay, const ae_plot_box *box)
{
    int hits = 0;
    for (int k = 0; k < ns; k++)
        for (size_t i = 0; i < mt->n; i++) {
            double x1 = mt->v[i][M_EPOCH], y1 = mt->v[i][s[k].col];
            if (!isfinite(x1) || !isfinite(y1)) continue;
            double x0 = x1, y0 = y1;
            if (i > 0 && isfinite(mt->v[i - 1][M_EPOCH]) && isfinite(mt->v[i - 1][s[k].col])) {
                x0 = mt->v[i - 1][M_EPOCH];
                y0 = mt->v[i - 1][s[k].col];
            }
            for (int t = 0; t <= 16; t++) {
                double px = map_x(p, ax, x0 + (x1 - x0) * t / 16.0);
                double py = map_y(p, ay, y0 + (y1 - y0) * t / 16.0);
                hits += px >= box->x - 4 && px <= box->x + box->w + 4 && py >= box->y - 4 &&
                        py <= box->y + box->h + 4;
            }
        }
    return hits;
}

static void draw_panel(cairo_t *cr, const metrics *mt, const series *s, int ns, const ae_plot_box *p,
                       const char *ylabel, ae_plot_layout *L, int panel)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t i = 0; i < mt->n; i++) {
        double x = mt->v[i][M_EPOCH];
        for (int k = 0; k < ns; k++) {
            double y = mt->v[i][s[k].col];
            if (!isfinite(x) || !isfinite(y)) continue;
            xlo = x < xlo ? x : xlo;
            xhi = x > xhi ? x : xhi;
            ylo = y < ylo ? y : ylo;
            yhi = y > yhi ? y : yhi;
        }
    }
    axis ax, ay;
    nice_axis(xlo, xhi, 8, 1, 0.04, &ax);
    nice_axis(ylo, yhi, 6, 0, 0.06, &ay);
    draw_axes(cr, p, &ax, &ay, "epoch", ylabel, &L->xlabel[panel], &L->ylabel[panel]);
    cairo_save(cr);
    cairo_rectangle(cr, p->x + 1, p->y + 1, p->w - 2, p->h - 2);
    cairo_clip(cr);
    for (int k = 0; k < ns; k++) {
        uint8_t rgb[3];
        ae_plot_color(s[k].color, rgb);
        set_rgb(cr, rgb, 1.0);
        cairo_set_line_width(cr, 2.0);
        int open = 0;
        for (size_t i = 0; i < mt->n; i++) {
            double x = mt->v[i][M_EPOCH], y = mt->v[i][s[k].col];
            if (!isfinite(x) || !isfinite(y)) {
                if (open) cairo_stroke(cr);
                open = 0;
                continue;
            }
            if (open) cairo_line_to(cr, map_x(p, &ax, x), map_y(p, &ay, y));
            else cairo_move_to(cr, map_x(p, &ax, x), map_y(p, &ay, y));
            open = 1;
        }
        if (open) cairo_stroke(cr);
        for (size_t i = 0; i < mt->n; i++) {
            double x = mt->v[i][M_EPOCH], y = mt->v[i][s[k].col];
            if (!isfinite(x) || !isfinite(y)) continue;
            cairo_arc(cr, map_x(p, &ax, x), map_y(p, &ay, y), 3.0, 0, 2 * M_PI);
            cairo_fill(cr);
        }
    }
    cairo_restore(cr);
    legend_entry ents[4];
    for (int k = 0; k < ns && k < 4; k++) {
        ents[k].name = s[k].name;
        ae_plot_color(s[k].color, ents[k].rgb);
    }
    int lw, lh, best = -1, best_hits = 0;
    legend_size(cr, ents, ns, NULL, &lw, &lh);
    /* the corner the curves cross least: top right, bottom right, top left, bottom left */
    int left = p->x + 10, right = p->x + p->w - lw - 10, top = p->y + 10, bottom = p->y + p->h - lh - 10;
    ae_plot_box cand[4] = {{right, top, lw, lh}, {right, bottom, lw, lh}, {left, top, lw, lh},
                           {left, bottom, lw, lh}};
    for (int c = 0; c < 4; c++) {
        int h = points_in(mt, s, ns, p, &ax, &ay, &cand[c]);
        if (best < 0 || h < best_hits) {
            best = c;
            best_hits = h;
        }
    }
    L->legend[panel] = cand[best];
    draw_legend(cr, ents, ns, 1, NULL, &L->legend[panel]);
}

ae_status ae_plot_curves_png(const char *path, const char *metrics_csv, const char *title,
                             ae_plot_layout *lay, ae_error *err)
{
    metrics mt;
    ae_status st = read_metrics(metrics_csv, &mt, err);
    if (st) return st;
    series loss[3];
    int nloss = 0;
    static const series all_loss[3] = {{M_TRAIN, "train", 0}, {M_VAL, "validation", 1}, {M_TEST, "test", 2}};
    for (int k = 0; k < 3; k++)
        if (column_has_values(&mt, all_loss[k].col)) loss[nloss++] = all_loss[k];
    series second[1];
    const char *second_label = NULL;
    if (column_has_values(&mt, M_ACC)) {
        second[0] = (series){M_ACC, "test accuracy", 3};
        second_label = "test accuracy";
    } else if (column_has_values(&mt, M_MSE)) {
        second[0] = (series){M_MSE, "test MSE", 3};
        second_label = "test MSE per element";
    }
    if (nloss == 0 && !second_label) {
        free(mt.v);
        return ae_error_set(err, AE_ERR_FORMAT, "%s: no loss, accuracy or MSE values to plot", metrics_csv);
    }
    ae_plot_layout L;
    memset(&L, 0, sizeof L);
    int panels = (nloss > 0) + (second_label != NULL);
    L.npanels = panels;
    L.width = panels == 2 ? 1000 : 540;
    L.height = 430;
    for (int k = 0; k < panels; k++) L.plot[k] = (ae_plot_box){85 + 500 * k, 50, 395, 310};
    fig f;
    if ((st = fig_open(&f, L.width, L.height, path, err))) {
        free(mt.v);
        return st;
    }
    int panel = 0;
    if (nloss > 0) draw_panel(f.cr, &mt, loss, nloss, &L.plot[panel++], "loss", &L, 0);
    if (second_label) draw_panel(f.cr, &mt, second, 1, &L.plot[panel], second_label, &L, panel);
    cairo_set_source_rgb(f.cr, 0, 0, 0);
    if (title && title[0]) text_at(f.cr, L.width / 2.0, 16, title, 15, 1, 0.5, 0.0, 0, &L.title);
    st = fig_save(&f, path, err);
    fig_close(&f);
    free(mt.v);
    if (!st && lay) *lay = L;
    return st;
}

/* ---- scaling study ------------------------------------------------------------------------------- */

#define SCAL_MAX_SERIES 16  /* (setup, mode) pairs in one picture */
#define SCAL_NAME_CAP 25    /* a setup label: at most 24 characters */
#define SCAL_THOUSANDS 1e4  /* samples/s from which the axis counts thousands */

enum { S_SETUP, S_MODE, S_RANKS, S_SPS, S_EFF, S_COUNT };
static const char *const scal_cols[S_COUNT] = {"setup", "mode", "ranks", "samples_per_s", "efficiency"};

typedef struct scal_row {
    int series, ranks;
    double sps, eff;
} scal_row;

/* How a series is drawn (the optional column "style"): measured points (dots joined by a line),
 * a projection (a line) or a model's values at measured points (open circles). */
enum { STYLE_MEASURED, STYLE_PROJECTED, STYLE_MODEL };
static const char *const scal_styles[] = {"measured", "projected", "model"};

typedef struct scal_data {
    size_t n, cap;
    scal_row *r;
    int nseries;
    int style_col; /* the style column, -1 when there is none */
    char name[SCAL_MAX_SERIES][2 * SCAL_NAME_CAP + 8]; /* "strong, local" */
    int style[SCAL_MAX_SERIES];
    int color[SCAL_MAX_SERIES]; /* ae_plot_color index */
} scal_data;

#define SCAL_MODEL_SUFFIX " (model)"

/* Colours: one per series in order, except that a model series "MODE, SETUP (model)" takes the
 * colour of the series "MODE, SETUP" when there is one (the model drawn over its measurement). */
static void scal_colors(scal_data *sd)
{
    int match[SCAL_MAX_SERIES], next = 0;
    size_t ls = strlen(SCAL_MODEL_SUFFIX);
    for (int s = 0; s < sd->nseries; s++) {
        match[s] = -1;
        size_t n = strlen(sd->name[s]);
        if (sd->style[s] != STYLE_MODEL || n <= ls || strcmp(sd->name[s] + n - ls, SCAL_MODEL_SUFFIX)) continue;
        for (int t = 0; t < sd->nseries; t++)
            if (sd->style[t] != STYLE_MODEL && strlen(sd->name[t]) == n - ls &&
                strncmp(sd->name[t], sd->name[s], n - ls) == 0)
                match[s] = t;
    }
    for (int s = 0; s < sd->nseries; s++)
        if (match[s] < 0) sd->color[s] = next++;
    for (int s = 0; s < sd->nseries; s++)
        if (match[s] >= 0) sd->color[s] = sd->color[match[s]];
}

/* One data row of a scaling CSV into sd (fields f[0..nf), col[] their places). */
static ae_status scal_row_parse(const char *path, int lineno, char **f, const int *col, scal_data *sd,
                                ae_error *err)
{
    const char *setup = f[col[S_SETUP]], *mode = f[col[S_MODE]];
    if (strcmp(mode, "strong") && strcmp(mode, "weak"))
        return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: mode '%s' is neither strong nor weak", path, lineno, mode);
    if (!setup[0] || strlen(setup) >= SCAL_NAME_CAP)
        return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: setup '%s' is empty or longer than %d characters", path,
                            lineno, setup, SCAL_NAME_CAP - 1);
    int ok;
    double p = parse_cell(f[col[S_RANKS]], &ok);
    if (!ok || !(p >= 1 && p <= 1e6) || p != floor(p))
        return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: ranks '%s' is not a whole number from 1", path, lineno,
                            f[col[S_RANKS]]);
    double sps = parse_cell(f[col[S_SPS]], &ok);
    if (!ok || !isfinite(sps) || !(sps > 0))
        return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: samples_per_s '%s' is not a positive number", path, lineno,
                            f[col[S_SPS]]);
    double eff = parse_cell(f[col[S_EFF]], &ok);
    if (!ok || !isfinite(eff) || eff < 0)
        return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: efficiency '%s' is not a number >= 0", path, lineno,
                            f[col[S_EFF]]);
    int style = STYLE_MEASURED;
    if (sd->style_col >= 0) {
        const char *sv = f[sd->style_col];
        for (style = 0; style < 3 && strcmp(sv, scal_styles[style]); style++) {}
        if (style == 3)
            return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: style '%s' is not measured, projected or model", path,
                                lineno, sv);
    }
    char name[sizeof sd->name[0]];
    snprintf(name, sizeof name, "%s, %s", mode, setup);
    int s = 0;
    while (s < sd->nseries && strcmp(sd->name[s], name)) s++;
    if (s == sd->nseries) {
        if (s == SCAL_MAX_SERIES)
            return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: more than %d series (mode, setup)", path, lineno,
                                SCAL_MAX_SERIES);
        sd->style[sd->nseries] = style;
        snprintf(sd->name[sd->nseries++], sizeof sd->name[0], "%s", name);
    } else if (sd->style[s] != style) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: style '%s' differs from the earlier rows of %s", path,
                            lineno, scal_styles[style], name);
    }
    for (size_t i = 0; i < sd->n; i++)
        if (sd->r[i].series == s && sd->r[i].ranks == (int)p)
            return ae_error_set(err, AE_ERR_FORMAT, "%s:%d: a second row for %s at %d ranks", path, lineno, name,
                                (int)p);
    if (sd->n == sd->cap) {
        size_t nc = sd->cap ? 2 * sd->cap : 16;
        void *nr = realloc(sd->r, nc * sizeof *sd->r);
        if (!nr) return ae_error_set(err, AE_ERR_NOMEM, "%s: out of memory", path);
        sd->r = nr;
        sd->cap = nc;
    }
    sd->r[sd->n++] = (scal_row){s, (int)p, sps, eff};
    return AE_OK;
}

/* Read a scaling CSV strictly: a header naming at least the scal_cols, then
 * rows of exactly as many fields; no blank lines. Rows come out sorted by
 * series (in order of first appearance), then ranks. */
static ae_status read_scaling(const char *path, scal_data *sd, ae_error *err)
{
    memset(sd, 0, sizeof *sd);
    FILE *fp = fopen(path, "r");
    if (!fp) return ae_error_set(err, AE_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int col[S_COUNT], ncols = 0, lineno = 0;
    ae_status st = AE_OK;
    sd->style_col = -1;
    while (!st && (len = getline(&line, &lcap, fp)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) {
            st = ae_error_set(err, AE_ERR_FORMAT, "%s:%d: empty line", path, lineno);
            break;
        }
        char *f[64];
        int nf = split_csv(line, f, 64);
        if (lineno == 1) {
            ncols = nf;
            for (int k = 0; k < S_COUNT; k++) {
                col[k] = -1;
                for (int i = 0; i < nf; i++)
                    if (strcmp(f[i], scal_cols[k]) == 0) col[k] = i;
                if (col[k] < 0)
                    st = ae_error_set(err, AE_ERR_FORMAT,
                                      "%s:1: the header has no column '%s' (needs setup, mode, ranks, "
                                      "samples_per_s, efficiency)",
                                      path, scal_cols[k]);
            }
            for (int i = 0; i < nf; i++)
                if (strcmp(f[i], "style") == 0) sd->style_col = i;
            continue;
        }
        if (nf != ncols)
            st = ae_error_set(err, AE_ERR_FORMAT, "%s:%d: %d fields, the header has %d", path, lineno, nf, ncols);
        else
            st = scal_row_parse(path, lineno, f, col, sd, err);
    }
    if (!st && ferror(fp)) st = ae_error_set(err, AE_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    free(line);
    fclose(fp);
    if (!st && lineno == 0) st = ae_error_set(err, AE_ERR_FORMAT, "%s: empty file", path);
    if (!st && sd->n == 0) st = ae_error_set(err, AE_ERR_FORMAT, "%s: no data rows after the header", path);
    if (st) {
        free(sd->r);
        memset(sd, 0, sizeof *sd);
        return st;
    }
    scal_colors(sd);
    for (size_t i = 1; i < sd->n; i++) /* insertion sort: a few rows */
        for (size_t j = i; j > 0; j--) {
            scal_row *a = &sd->r[j - 1], *b = &sd->r[j];
            if (a->series < b->series || (a->series == b->series && a->ranks <= b->ranks)) break;
            scal_row t = *a;
            *a = *b;
            *b = t;
        }
    return AE_OK;
}

/* The points of one series as a line with dots (value: 0 samples/s over div, 1 efficiency). */
static void scal_series(cairo_t *cr, const scal_data *sd, int s, int value, double div, const ae_plot_box *b,
                        const axis *ax, const axis *ay)
{
    uint8_t rgb[3];
    ae_plot_color(sd->color[s], rgb);
    set_rgb(cr, rgb, 1.0);
    cairo_set_line_width(cr, 2.0);
    int open = 0, style = sd->style[s];
    for (size_t i = 0; style != STYLE_MODEL && i < sd->n; i++) {
        if (sd->r[i].series != s) continue;
        double x = map_x(b, ax, sd->r[i].ranks), y = map_y(b, ay, value ? sd->r[i].eff : sd->r[i].sps / div);
        if (open) cairo_line_to(cr, x, y);
        else cairo_move_to(cr, x, y);
        open = 1;
    }
    cairo_stroke(cr);
    for (size_t i = 0; style != STYLE_PROJECTED && i < sd->n; i++) {
        if (sd->r[i].series != s) continue;
        double y = value ? sd->r[i].eff : sd->r[i].sps / div;
        cairo_new_sub_path(cr);
        cairo_arc(cr, map_x(b, ax, sd->r[i].ranks), map_y(b, ay, y), style == STYLE_MODEL ? 6.0 : 4.0, 0, 2 * M_PI);
        if (style == STYLE_MODEL) cairo_stroke(cr);
        else cairo_fill(cr);
    }
}

/* A dashed line from (x0, y0) to (x1, y1) in data units. */
static void scal_dashed(cairo_t *cr, const uint8_t rgb[3], const ae_plot_box *b, const axis *ax, const axis *ay,
                        double x0, double y0, double x1, double y1)
{
    static const double dash[2] = {6.0, 4.0};
    set_rgb(cr, rgb, 1.0);
    cairo_set_line_width(cr, 1.5);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, map_x(b, ax, x0), map_y(b, ay, y0));
    cairo_line_to(cr, map_x(b, ax, x1), map_y(b, ay, y1));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
}

ae_status ae_plot_scaling_png(const char *path, const char *scaling_csv, const char *title, int flags,
                              ae_plot_layout *lay, ae_error *err)
{
    int logs = flags & AE_PLOT_SCALING_LOG;
    scal_data sd;
    ae_status st = read_scaling(scaling_csv, &sd, err);
    if (st) return st;
    int pmax = 1;
    double smax = 0, emax = 1.0, base[SCAL_MAX_SERIES] = {0}; /* samples/s at 1 rank, per series */
    for (size_t i = 0; i < sd.n; i++) {
        const scal_row *r = &sd.r[i];
        pmax = r->ranks > pmax ? r->ranks : pmax;
        smax = fmax(smax, r->sps);
        emax = fmax(emax, r->eff);
        if (r->ranks == 1) base[r->series] = r->sps;
    }
    for (size_t i = 0; i < sd.n; i++) /* the ideal lines end at P x (1-rank samples/s) */
        smax = fmax(smax, base[sd.r[i].series] * pmax);
    double div = smax >= SCAL_THOUSANDS ? 1e3 : 1.0, smin = smax;
    for (size_t i = 0; i < sd.n; i++) smin = fmin(smin, sd.r[i].sps);
    ae_plot_layout L;
    memset(&L, 0, sizeof L);
    L.width = AE_PLOT_SCALING_W;
    L.height = AE_PLOT_SCALING_H;
    L.npanels = 2;
    int pw = logs ? 340 : 380; /* projections have more series: room for a wider legend */
    L.plot[0] = (ae_plot_box){85, 50, pw, 330};
    L.plot[1] = (ae_plot_box){85 + pw + 115, 50, pw, 330};
    fig f;
    if ((st = fig_open(&f, L.width, L.height, path, err))) {
        free(sd.r);
        return st;
    }
    cairo_t *cr = f.cr;
    axis ax, ay[2];
    if (logs) {
        log_axis(1, pmax, 2, 0.04, &ax);
        log_axis(smin / div, smax / div, 10, 0.04, &ay[0]);
    } else {
        nice_axis(1, pmax, 8, 1, 0.06, &ax);
        nice_axis(0, smax / div * 1.06, 6, 0, 0.0, &ay[0]);
    }
    nice_axis(0, emax * 1.1, 6, 0, 0.0, &ay[1]);
    static const char *const ylabel[2] = {"samples/s (dashed: ideal, P x 1 rank)", "efficiency (speedup / P)"};
    static const uint8_t black[3] = {0, 0, 0};
    for (int p = 0; p < 2; p++) {
        const ae_plot_box *b = &L.plot[p];
        const char *yl = p == 0 && div > 1 ? "thousand samples/s (dashed: ideal, P x 1 rank)" : ylabel[p];
        draw_axes(cr, b, &ax, &ay[p], logs ? "ranks P (log scale)" : "ranks P", yl, &L.xlabel[p], &L.ylabel[p]);
        cairo_save(cr);
        cairo_rectangle(cr, b->x + 1, b->y + 1, b->w - 2, b->h - 2);
        cairo_clip(cr);
        for (int s = 0; s < sd.nseries; s++) {
            uint8_t rgb[3];
            ae_plot_color(sd.color[s], rgb);
            if (p == 0 && base[s] > 0 && sd.style[s] != STYLE_MODEL)
                scal_dashed(cr, rgb, b, &ax, &ay[0], 1, base[s] / div, pmax, base[s] * pmax / div);
        }
        if (p == 1) scal_dashed(cr, black, b, &ax, &ay[1], axis_value(&ax, ax.lo), 1.0, axis_value(&ax, ax.hi), 1.0);
        for (int s = 0; s < sd.nseries; s++) scal_series(cr, &sd, s, p, div, b, &ax, &ay[p]);
        cairo_restore(cr);
    }
    legend_entry ents[SCAL_MAX_SERIES + 1];
    int ne = 0;
    char names[SCAL_MAX_SERIES][sizeof sd.name[0] + 16];
    for (int s = 0; s < sd.nseries; s++, ne++) {
        snprintf(names[s], sizeof names[s], "%s%s", sd.name[s], sd.style[s] == STYLE_PROJECTED ? " (proj)" : "");
        ents[ne].name = names[s];
        ae_plot_color(sd.color[s], ents[ne].rgb);
    }
    ents[ne].name = "ideal (dashed)";
    memcpy(ents[ne++].rgb, black, 3);
    int lw, lh;
    legend_size(cr, ents, ne, "mode, setup", &lw, &lh);
    L.legend[1] = (ae_plot_box){L.plot[1].x + L.plot[1].w + 16, L.plot[1].y, lw, lh};
    draw_legend(cr, ents, ne, 1, "mode, setup", &L.legend[1]);
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (title && title[0]) text_at(cr, L.width / 2.0, 16, title, 15, 1, 0.5, 0.0, 0, &L.title);
    st = fig_save(&f, path, err);
    fig_close(&f);
    free(sd.r);
    if (!st && lay) *lay = L;
    return st;
}

/* ---- epochs ------------------------------------------------------------------------------------- */

ae_status ae_plot_epochs_png(const char *path, const char *const *ckpts, int nck, const ae_dataset *ds,
                             const uint32_t *idx, int n, int scale, int *grid_x, ae_error *err)
{
    if (nck < 1) return ae_error_set(err, AE_ERR_ARG, "%s: no checkpoints", path);
    ae_status st = check_idx(path, ds, idx, n, err);
    if (st) return st;
    size_t d = ds->d;
    int rows = nck + 1, h = ds->c * ds->h, w = ds->w;
    if ((st = check_grid(path, rows, n, h, w, scale, err))) return st;
    float *x = ae_alloc_floats((size_t)rows * n * d, err);
    char (*labels)[48] = x ? ae_calloc((size_t)rows, sizeof *labels, err) : NULL;
    if (!labels) {
        free(x);
        return AE_ERR_NOMEM;
    }
    ae_data_gather_x(ds, idx, (size_t)n, x);
    snprintf(labels[0], sizeof labels[0], "test");
    ae_shape in = {ds->c, ds->h, ds->w};
    for (int k = 0; !st && k < nck; k++) {
        ae_model *m = NULL;
        ae_ckpt_meta meta;
        st = load_model(ckpts[k], &in, &m, &meta, NULL, err);
        if (!st) st = need_autoencoder(ckpts[k], m, ds, err);
        if (!st) {
            ae_ctx ctx = {0};
            run_chunks(m, &ctx, x, (size_t)n, 0, m->n_layers, x + (size_t)(k + 1) * n * d);
            if (meta.step_in_epoch == 0 && meta.epoch > 0)
                snprintf(labels[k + 1], sizeof labels[k + 1], "epoch %lld", (long long)meta.epoch);
            else
                snprintf(labels[k + 1], sizeof labels[k + 1], "step %lld", (long long)meta.step);
        }
        ae_model_free(m);
    }
    const float **cells = st ? NULL : ae_calloc((size_t)rows * n, sizeof *cells, err);
    uint8_t *px = NULL;
    int GW = 0, GH = 0;
    if (!st && !cells) st = AE_ERR_NOMEM;
    for (int k = 0; !st && k < rows * n; k++) cells[k] = x + (size_t)k * d;
    if (!st) st = grid_render(path, cells, rows, n, h, w, scale, AE_PLOT_SEP_GRAY, &px, &GW, &GH, err);
    fig f = {0};
    int margin = 0;
    if (!st) {
        /* measure the labels on a scratch surface, then draw the labelled figure */
        cairo_surface_t *s0 = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
        cairo_t *c0 = cairo_create(s0);
        double tw = 0.0;
        for (int r = 0; r < rows; r++) {
            double t = text_width(c0, labels[r], 12);
            tw = t > tw ? t : tw;
        }
        cairo_destroy(c0);
        cairo_surface_destroy(s0);
        margin = (int)ceil(tw) + 16;
        st = fig_open(&f, margin + GW, GH, path, err);
    }
    if (!st) {
        cairo_surface_flush(f.s);
        unsigned char *data = cairo_image_surface_get_data(f.s);
        int stride = cairo_image_surface_get_stride(f.s);
        for (int yy = 0; yy < GH; yy++) {
            uint32_t *row = (uint32_t *)(void *)(data + (size_t)yy * (size_t)stride) + margin;
            for (int xx = 0; xx < GW; xx++) {
                uint32_t g = px[(size_t)yy * GW + xx];
                row[xx] = (g << 16) | (g << 8) | g;
            }
        }
        cairo_surface_mark_dirty(f.s);
        cairo_set_source_rgb(f.cr, 0, 0, 0);
        for (int r = 0; r < rows; r++) {
            double cy = AE_PLOT_SEP + r * (h * scale + AE_PLOT_SEP) + h * scale / 2.0;
            text_at(f.cr, margin - 8, cy, labels[r], 12, 0, 1.0, 0.5, 0, NULL);
        }
        st = fig_save(&f, path, err);
    }
    fig_close(&f);
    if (!st && grid_x) *grid_x = margin;
    free(px);
    free(cells);
    free(labels);
    free(x);
    return st;
}

/* ---- commands ------------------------------------------------------------------------------------- */

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The checkpoint's test set: the data paths as written (from the current
 * directory), then, when relative, from base. */
static ae_status load_test(const ae_spec *spec, const char *base, ae_dataset *ds, ae_error *err)
{
    ae_status st = ae_data_load_named(spec->dataset, spec->data_dir, 1, ds, err);
    if (!st || !base) return st;
    int named = strcmp(spec->dataset, "mnist") == 0 || strcmp(spec->dataset, "fashion-mnist") == 0;
    char dir[PATH_CAP], name[PATH_CAP];
    int abs_dir = spec->data_dir[0] == '/', keep_name = named || spec->dataset[0] == '/';
    snprintf(dir, sizeof dir, "%s%s%s", abs_dir ? "" : base, abs_dir ? "" : "/", spec->data_dir);
    snprintf(name, sizeof name, "%s%s%s", keep_name ? "" : base, keep_name ? "" : "/", spec->dataset);
    ae_error e2;
    if (ae_data_load_named(name, dir, 1, ds, &e2) == AE_OK) {
        ae_error_clear(err);
        return AE_OK;
    }
    char first[AE_ERROR_MSG_MAX];
    snprintf(first, sizeof first, "%s", err->msg);
    return ae_error_set(err, st, "%s; nor from %s: %s", first, base, e2.msg);
}

/* Pairs for the interpolation: (1, 7), (3, 8), (4, 9), (0, 6) when those
 * classes exist, else consecutive picks. */
static int interp_pairs(const ae_dataset *ds, const uint32_t *pick, int npick, uint32_t *a, uint32_t *b)
{
    static const int cls[RUN_INTERP_PAIRS][2] = {{1, 7}, {3, 8}, {4, 9}, {0, 6}};
    int np = 0;
    if (ds->y && ds->nclass >= 10) {
        for (int k = 0; k < RUN_INTERP_PAIRS; k++) {
            int ia = -1, ib = -1;
            for (int i = 0; i < npick; i++) {
                if (ia < 0 && ds->y[pick[i]] == cls[k][0]) ia = i;
                if (ib < 0 && ds->y[pick[i]] == cls[k][1]) ib = i;
            }
            if (ia >= 0 && ib >= 0) {
                a[np] = pick[ia];
                b[np++] = pick[ib];
            }
        }
        if (np > 0) return np;
    }
    for (int i = 0; i + 1 < npick && np < RUN_INTERP_PAIRS; i += 2) {
        a[np] = pick[i];
        b[np++] = pick[i + 1];
    }
    return np;
}

int ae_plot_tile_scale(const ae_dataset *ds) { return ds->c * ds->h <= 32 && ds->w <= 32 ? 2 : 1; }

static void base_name(const char *path, char *out, size_t cap)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t s = len;
    while (s > 0 && path[s - 1] != '/') s--;
    snprintf(out, cap, "%.*s", (int)(len - s), path + s);
}

/* img_dir/name into path; returns path */
static char *img_path(char *path, size_t cap, const char *img_dir, const char *name)
{
    snprintf(path, cap, "%s/%s", img_dir, name);
    return path;
}

static ae_status wrote(ae_status st, const char *path)
{
    if (!st) printf("wrote %s\n", path);
    return st;
}

/* Up to RUN_EPOCHS_MAX of the nck numbered checkpoints names[] (spread over all
 * of them, the first and the newest included) into epochs.png. */
static ae_status run_epochs(const char *path, const char *ck_dir, char **names, int nck, const ae_dataset *ds,
                            const uint32_t *pick, int npick, int scale, ae_error *err)
{
    int use = nck < RUN_EPOCHS_MAX ? nck : RUN_EPOCHS_MAX;
    char (*paths)[PATH_CAP + 300] = ae_calloc((size_t)use, sizeof *paths, err);
    const char **pp = paths ? ae_calloc((size_t)use, sizeof *pp, err) : NULL;
    ae_status st = pp ? AE_OK : AE_ERR_NOMEM;
    for (int k = 0; !st && k < use; k++) {
        int i = use == 1 ? nck - 1 : (int)((long long)k * (nck - 1) / (use - 1));
        snprintf(paths[k], sizeof paths[k], "%s/%s", ck_dir, names[i]);
        pp[k] = paths[k];
    }
    int ne = npick < RUN_COLS ? npick : RUN_COLS;
    if (!st) st = ae_plot_epochs_png(path, pp, use, ds, pick, ne, scale, NULL, err);
    free(pp);
    free(paths);
    return st;
}

ae_status ae_plot_run(const char *run_dir, ae_error *err)
{
    char img_dir[PATH_CAP], ck_dir[PATH_CAP], metrics_path[PATH_CAP], base[PATH_CAP];
    char path[PATH_CAP + 64], ckpt[PATH_CAP + 300], run_name[256], title[512], skipped[512] = "";
    if (!is_dir(run_dir)) return ae_error_set(err, AE_ERR_IO, "%s: no such run folder", run_dir);
    base_name(run_dir, run_name, sizeof run_name);
    snprintf(img_dir, sizeof img_dir, "%s/images", run_dir);
    snprintf(ck_dir, sizeof ck_dir, "%s/ckpt", run_dir);
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.csv", run_dir);
    snprintf(base, sizeof base, "%s/../..", run_dir);
    if (mkdir(img_dir, 0777) != 0 && errno != EEXIST)
        return ae_error_set(err, AE_ERR_IO, "%s: cannot create: %s", img_dir, strerror(errno));
    ae_status st = AE_OK;
    int drew = 0;
    if (is_file(metrics_path)) {
        snprintf(title, sizeof title, "%s: learning curves", run_name);
        img_path(path, sizeof path, img_dir, "curves.png");
        if ((st = wrote(ae_plot_curves_png(path, metrics_path, title, NULL, err), path))) return st;
        drew++;
    }
    /* the checkpoint: best, else the newest numbered one */
    char **names;
    int nck = ae_ckpt_list(ck_dir, AE_CKPT_PREFIX, AE_CKPT_SUFFIX, &names);
    snprintf(ckpt, sizeof ckpt, "%s/%s", ck_dir, AE_CKPT_BEST);
    if (!is_file(ckpt)) {
        if (nck > 0) snprintf(ckpt, sizeof ckpt, "%s/%s", ck_dir, names[nck - 1]);
        else ckpt[0] = '\0';
    }
    if (!ckpt[0]) {
        ae_ckpt_names_free(names, nck);
        if (!drew)
            return ae_error_set(err, AE_ERR_IO, "%s: no metrics.csv and no checkpoint in %s", run_dir,
                                ck_dir);
        printf("%s: no checkpoint in %s: only the curves\n", run_dir, ck_dir);
        return AE_OK;
    }
    ae_spec *spec = ae_malloc(sizeof *spec, err);
    ae_model *m = NULL;
    ae_dataset ds, codes;
    memset(&ds, 0, sizeof ds);
    memset(&codes, 0, sizeof codes);
    if (!spec) st = AE_ERR_NOMEM;
    if (!st) st = load_model(ckpt, NULL, &m, NULL, spec, err);
    if (!st) st = load_test(spec, base, &ds, err);
    if (!st) {
        ae_shape in = {ds.c, ds.h, ds.w};
        st = load_model(ckpt, &in, &m, NULL, NULL, err);
    }
    if (!st) printf("%s: pictures of %s on %s (%zu test samples)\n", run_dir, ckpt, ds.name, ds.n);
    uint32_t pick[RUN_RECON_N], pa[RUN_INTERP_PAIRS], pb[RUN_INTERP_PAIRS];
    int npick = st ? 0 : ae_plot_pick(&ds, RUN_RECON_N, pick);
    int scale = st ? 1 : ae_plot_tile_scale(&ds), nten = npick < RUN_COLS ? npick : RUN_COLS;
    int is_ae = !st && m->type == AE_MODEL_AUTOENCODER;
    if (!st && is_ae) {
        img_path(path, sizeof path, img_dir, "recon.png");
        st = wrote(ae_plot_recon_png(path, m, &ds, pick, npick, RUN_COLS, scale, err), path);
    }
    if (!st) st = ae_eval_encode(m, &ds, m->n_encoder, &codes, err);
    if (!st) {
        snprintf(title, sizeof title, "%s: %zu-d codes of %zu test samples", run_name, codes.d, codes.n);
        img_path(path, sizeof path, img_dir, "codes.png");
        st = wrote(ae_plot_codes_png(path, codes.xf, ds.y, codes.n, codes.d, title, NULL, err), path);
    }
    int fl = st ? -1 : ae_plot_filter_layer(m);
    if (!st && fl >= 0) {
        int fs = strcmp(m->layers[fl].kind->name, "conv") == 0 ? 12 : scale;
        img_path(path, sizeof path, img_dir, "filters.png");
        st = wrote(ae_plot_filters_png(path, m, RUN_FILTERS_MAX, 0, fs, err), path);
    } else if (!st) {
        strcat(skipped, " filters.png (no dense or conv first layer)");
    }
    if (!st && is_ae && ae_plot_vae2_layer(m) >= 0) {
        img_path(path, sizeof path, img_dir, "manifold.png");
        st = wrote(ae_plot_manifold_png(path, m, RUN_MANIFOLD_GRID, 1, err), path);
    } else if (!st && is_ae) {
        strcat(skipped, " manifold.png (no VAE sample layer with 2 outputs)");
    }
    if (!st && is_ae) {
        int np = interp_pairs(&ds, pick, npick, pa, pb);
        img_path(path, sizeof path, img_dir, "interpolation.png");
        if (np > 0)
            st = wrote(ae_plot_interp_png(path, m, &ds, pa, pb, np, RUN_INTERP_STEPS, scale, err), path);
    }
    if (!st && is_ae && ae_plot_noise_layer(m) == 0) {
        img_path(path, sizeof path, img_dir, "denoise.png");
        st = wrote(ae_plot_denoise_png(path, m, &ds, pick, nten, RUN_COLS, spec->seed, scale, err), path);
    } else if (!st && is_ae) {
        strcat(skipped, " denoise.png (no leading corruption layer)");
    }
    if (!st && is_ae && nck > 0) {
        img_path(path, sizeof path, img_dir, "epochs.png");
        st = wrote(run_epochs(path, ck_dir, names, nck, &ds, pick, npick, scale, err), path);
    } else if (!st && is_ae) {
        strcat(skipped, " epochs.png (no numbered checkpoints)");
    }
    if (!st && !is_ae) strcat(skipped, " recon, interpolation, manifold, denoise, epochs (a classifier)");
    if (!st && skipped[0]) printf("not drawn:%s\n", skipped);
    ae_data_free(&codes);
    ae_data_free(&ds);
    ae_model_free(m);
    free(spec);
    ae_ckpt_names_free(names, nck);
    return st;
}

ae_status ae_plot_reconstruct(const char *ckpt, const char *out_png, int n, ae_error *err)
{
    if (n < 1 || n > 10000) return ae_error_set(err, AE_ERR_ARG, "%s: bad image count %d", out_png, n);
    char base[PATH_CAP + 16];
    const char *slash = strrchr(ckpt, '/');
    if (slash) snprintf(base, sizeof base, "%.*s/../../..", (int)(slash - ckpt), ckpt);
    else snprintf(base, sizeof base, "../..");
    ae_spec *spec = ae_malloc(sizeof *spec, err);
    ae_model *m = NULL;
    ae_dataset ds;
    memset(&ds, 0, sizeof ds);
    uint32_t *idx = ae_malloc(sizeof(uint32_t) * (size_t)n, err);
    ae_status st = spec && idx ? AE_OK : AE_ERR_NOMEM;
    if (!st) st = load_model(ckpt, NULL, &m, NULL, spec, err);
    if (!st) st = load_test(spec, base, &ds, err);
    if (!st) {
        ae_shape in = {ds.c, ds.h, ds.w};
        st = load_model(ckpt, &in, &m, NULL, NULL, err);
    }
    if (!st) {
        int got = ae_plot_pick(&ds, n, idx);
        st = ae_plot_recon_png(out_png, m, &ds, idx, got, RUN_COLS, ae_plot_tile_scale(&ds), err);
        if (!st) printf("wrote %s: %d test images of %s above their reconstructions\n", out_png, got,
                        ds.name);
    }
    ae_data_free(&ds);
    ae_model_free(m);
    free(idx);
    free(spec);
    return st;
}
