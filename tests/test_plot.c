/* test_plot.c - CUnit suite "plot": every picture of ae/plot.h made from a
 * tiny model on synthetic 8x8 images and read back with libpng.
 *
 * The data: ten classes of bar patterns (four horizontal, four vertical,
 * two diagonals) with random intensity on a faint noisy background, written
 * as IDX files into a temporary folder, so that checkpoints and run folders
 * can name it as their dataset. The suite's setup trains a 64-16-64
 * autoencoder (and a denoising one) for a few hundred Adam steps with the
 * library's model and optimizer calls, saving checkpoints on the way.
 *
 * Checks: each PNG is valid and of the size the layout says; a grid's
 * tiles are the quantized inputs pixel for pixel (test images, blends,
 * the corrupted inputs of the documented ctx, decoder outputs at the
 * lattice's z); the reconstructions of the trained model beat a PSNR bound
 * that the freshly initialized model misses; the cairo plots have dark
 * axes, legend boxes holding the series' colours, and dark text pixels in
 * the title's and axis labels' ink boxes; errors name the file. */
#include <CUnit/CUnit.h>
#include <cairo.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ae/ckpt.h"
#include "ae/config.h"
#include "ae/data.h"
#include "ae/model.h"
#include "ae/optim.h"
#include "ae/plot.h"
#include "ae/rng.h"
#include "testutil.h"

#define IMG 8
#define D (IMG * IMG)
#define NCLASS 10
#define N_TRAIN 1000
#define N_TEST 200
#define BATCH 100
#define MAX_BATCH 128
#define SEED 7u
#define TRAIN_STEPS 400
#define MID_STEPS 25          /* the middle checkpoint of the epochs picture */
#define LR 1e-2f
/* PSNR (dB, peak 1) of the reconstructions: the trained model reaches about 25, a fresh one about 6 */
#define PSNR_BOUND 16.0
#define DARK 100              /* a text or axis pixel: every channel below this */
#define PATH_MAX_T 1024

static const char *const AE_INI =
    "[model]\nencoder = dense(16, relu)\ndecoder = dense(64, sigmoid)\n[loss]\nkind = bce\n"
    "[train]\nseed = 7\n[data]\ndataset = %s\n";
static const char *const DENOISE_INI =
    "[model]\nencoder = gauss(0.3), dense(16, relu)\ndecoder = dense(64, sigmoid)\n[loss]\nkind = bce\n"
    "[train]\nseed = 7\n[data]\ndataset = %s\n";
static const char *const VAE_INI =
    "[model]\nencoder = gauss(0.2), dense(16, relu), dense(4, name=stats), sample(name=code)\n"
    "decoder = dense(16, relu), dense(64, sigmoid)\n[loss]\nkind = bce\nreduction = sum\n"
    "[train]\nseed = 7\n[data]\ndataset = %s\n";

/* LeakSanitizer (the ASan build runs this binary with detect_leaks=1): fontconfig loses a few hundred
 * bytes parsing its XML configuration (FcInitLoadConfigAndFonts, on cairo's first text); not ours, and
 * no call releases it. Everything else is still checked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

/* ---- fixture: data, trained models, checkpoints --------------------------------- */

typedef struct fixture {
    char *dir;                 /* temp folder: data/, run folders, pictures */
    char data_dir[PATH_MAX_T];
    ae_dataset train, test;
    ae_model *fresh, *trained, *denoise;
    char ckpt[3][PATH_MAX_T];  /* the autoencoder after 0, MID_STEPS and TRAIN_STEPS steps */
} fixture;

static fixture fx;

static void make_images(uint64_t seed, size_t n, uint8_t *x, uint8_t *y)
{
    ae_rng r;
    ae_rng_init(&r, seed, AE_RNG_TEST, 1, 0, 0);
    for (size_t s = 0; s < n; s++) {
        int c = (int)ae_rng_below(&r, NCLASS);
        float amp = 0.6f + 0.4f * ae_rng_uniform(&r);
        y[s] = (uint8_t)c;
        for (int i = 0; i < IMG; i++)
            for (int j = 0; j < IMG; j++) {
                int on = c < 4 ? (i / 2 == c) : c < 8 ? (j / 2 == c - 4) : c == 8 ? abs(i - j) <= 1
                                                                                     : abs(i + j - 7) <= 1;
                float v = 0.08f * ae_rng_uniform(&r) + (on ? amp : 0.0f);
                x[s * D + (size_t)i * IMG + j] = (uint8_t)(v > 1.0f ? 255 : lrintf(v * 255.0f));
            }
    }
}

static int write_split(const char *dir, const char *prefix, uint64_t seed, size_t n)
{
    uint8_t *x = malloc(n * D), *y = malloc(n);
    char path[PATH_MAX_T + 64];
    int rc = x && y ? 0 : -1;
    if (!rc) {
        make_images(seed, n, x, y);
        uint32_t dims[3] = {(uint32_t)n, IMG, IMG};
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
        rc |= tu_write_idx(path, dims, 3, x, 0);
        snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
        rc |= tu_write_idx(path, dims, 1, y, 0);
    }
    free(x);
    free(y);
    return rc;
}

static ae_model *build(const char *ini_fmt, const char *dataset)
{
    char ini[1024];
    snprintf(ini, sizeof ini, ini_fmt, dataset);
    ae_spec *s = calloc(1, sizeof *s);
    ae_error err = {0};
    ae_model *m = NULL;
    ae_shape in = {1, IMG, IMG};
    ae_status st = s ? ae_config_parse_string(ini, "plot.ini", s, &err) : AE_ERR_NOMEM;
    if (!st) st = ae_config_validate(s, &err);
    if (!st) st = ae_model_create(s, &in, MAX_BATCH, &m, &err);
    if (st) fprintf(stderr, "\n    building the model failed: %s\n", err.msg);
    free(s);
    if (m) ae_model_init_params(m, SEED);
    return m;
}

typedef struct trainer {
    ae_model *m;
    float *opt, *x;
    int64_t t;
} trainer;

static int trainer_init(trainer *tr, ae_model *m)
{
    tr->m = m;
    tr->t = 0;
    tr->opt = calloc(ae_optim_state_floats(AE_OPT_ADAM, m->n_params), sizeof(float));
    tr->x = malloc(sizeof(float) * BATCH * D);
    return tr->opt && tr->x ? 0 : -1;
}

static void trainer_free(trainer *tr)
{
    free(tr->opt);
    free(tr->x);
}

/* steps of Adam on consecutive batches of fx.train (the noise keyed by the step) */
static void train_steps(trainer *tr, int steps)
{
    ae_optim_conf oc = {.kind = AE_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    ae_model *m = tr->m;
    float scale = ae_model_loss_scale(m, BATCH);
    for (int k = 0; k < steps; k++) {
        tr->t++;
        size_t start = (size_t)((tr->t - 1) * BATCH) % N_TRAIN;
        ae_data_range_x(&fx.train, start, BATCH, tr->x);
        ae_ctx ctx = {.training = 1, .seed = SEED, .epoch = 0, .step = tr->t, .sample0 = 0, .batch = BATCH};
        memset(m->grads, 0, sizeof(float) * m->n_params);
        ae_loss_out lo;
        ae_model_forward(m, &ctx, tr->x, BATCH, m->n_layers);
        ae_model_loss(m, &ctx, tr->x, tr->x, NULL, BATCH, scale, 1, &lo);
        ae_optim_step(&oc, LR, tr->t, m->params, m->grads, tr->opt, m->n_params);
    }
}

static int save_ckpt(const char *path, const char *ini_fmt, const ae_model *m, int64_t epoch, int64_t step)
{
    char ini[1024];
    snprintf(ini, sizeof ini, ini_fmt, fx.data_dir);
    ae_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.arch_hash = m->arch_hash;
    meta.seed = SEED;
    meta.epoch = epoch;
    meta.step = step;
    meta.best_val = INFINITY;
    meta.nranks = 1;
    ae_error err;
    ae_status st =
        ae_ckpt_save(path, &meta, ini, m->params, m->n_params, NULL, 0, m->state, m->n_state, 0, &err);
    if (st) fprintf(stderr, "\n    saving %s failed: %s\n", path, err.msg);
    return st ? -1 : 0;
}

static int suite_init(void)
{
    memset(&fx, 0, sizeof fx);
    if (!(fx.dir = tu_tempdir())) return -1;
    snprintf(fx.data_dir, sizeof fx.data_dir, "%s/data", fx.dir);
    if (mkdir(fx.data_dir, 0777) || write_split(fx.data_dir, "train", 1, N_TRAIN) ||
        write_split(fx.data_dir, "t10k", 2, N_TEST))
        return -1;
    ae_error err;
    if (ae_data_load_named(fx.data_dir, "", 0, &fx.train, &err) ||
        ae_data_load_named(fx.data_dir, "", 1, &fx.test, &err)) {
        fprintf(stderr, "\n    loading the synthetic data failed: %s\n", err.msg);
        return -1;
    }
    fx.fresh = build(AE_INI, fx.data_dir);
    fx.trained = build(AE_INI, fx.data_dir);
    fx.denoise = build(DENOISE_INI, fx.data_dir);
    if (!fx.fresh || !fx.trained || !fx.denoise) return -1;
    trainer tr;
    if (trainer_init(&tr, fx.trained)) return -1;
    for (int k = 0; k < 3; k++) snprintf(fx.ckpt[k], sizeof fx.ckpt[k], "%s/ae-%d.aeck", fx.dir, k);
    int rc = save_ckpt(fx.ckpt[0], AE_INI, fx.trained, 0, 0);
    train_steps(&tr, MID_STEPS);
    rc |= save_ckpt(fx.ckpt[1], AE_INI, fx.trained, 1, MID_STEPS);
    train_steps(&tr, TRAIN_STEPS - MID_STEPS);
    rc |= save_ckpt(fx.ckpt[2], AE_INI, fx.trained, 2, TRAIN_STEPS);
    trainer_free(&tr);
    if (trainer_init(&tr, fx.denoise)) return -1;
    train_steps(&tr, TRAIN_STEPS);
    trainer_free(&tr);
    return rc;
}

static int suite_cleanup(void)
{
    ae_model_free(fx.fresh);
    ae_model_free(fx.trained);
    ae_model_free(fx.denoise);
    ae_data_free(&fx.train);
    ae_data_free(&fx.test);
    if (fx.dir && !getenv("AE_TEST_KEEP")) tu_rmtree(fx.dir);
    free(fx.dir);
    /* cairo's font caches (and the fontconfig patterns they hold) live until the process ends; let the
     * leak checker see them released */
    cairo_debug_reset_static_data();
    return 0;
}

/* ---- reading pictures back ---------------------------------------------------------- */

typedef struct picture {
    int w, h, ch; /* ch: 1 gray, 3 RGB */
    uint8_t *px;
} picture;

/* Read a PNG with libpng in its own format (gray or RGB, 8 bits); 0 on success. */
static int read_png(const char *path, picture *p)
{
    memset(p, 0, sizeof *p);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) {
        fprintf(stderr, "\n    %s: %s\n", path, img.message);
        return -1;
    }
    int color = (img.format & PNG_FORMAT_FLAG_COLOR) != 0;
    if ((img.format & (PNG_FORMAT_FLAG_ALPHA | PNG_FORMAT_FLAG_LINEAR | PNG_FORMAT_FLAG_COLORMAP)) != 0) {
        fprintf(stderr, "\n    %s: unexpected PNG format %#x\n", path, (unsigned)img.format);
        png_image_free(&img);
        return -1;
    }
    img.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    p->w = (int)img.width;
    p->h = (int)img.height;
    p->ch = color ? 3 : 1;
    p->px = malloc(PNG_IMAGE_SIZE(img));
    if (!p->px || !png_image_finish_read(&img, NULL, p->px, 0, NULL)) {
        fprintf(stderr, "\n    %s: %s\n", path, img.message);
        png_image_free(&img);
        free(p->px);
        p->px = NULL;
        return -1;
    }
    return 0;
}

static const uint8_t *at(const picture *p, int x, int y)
{
    return p->px + ((size_t)y * p->w + x) * p->ch;
}

static int gray_at(const picture *p, int x, int y)
{
    const uint8_t *q = at(p, x, y);
    return p->ch == 1 || (q[0] == q[1] && q[1] == q[2]) ? q[0] : -1;
}

/* Tile (r, c) of a grid of h x w tiles at scale s starting at (x0, y0), sampled at each value's
 * top-left pixel, into out (h*w gray levels); -1 if a scaled block is not uniform. */
static int tile(const picture *p, int x0, int y0, int r, int c, int h, int w, int s, int *out)
{
    int bad = 0;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            int px = x0 + AE_PLOT_SEP + c * (w * s + AE_PLOT_SEP) + j * s;
            int py = y0 + AE_PLOT_SEP + r * (h * s + AE_PLOT_SEP) + i * s;
            int g = gray_at(p, px, py);
            for (int a = 0; a < s; a++)
                for (int b = 0; b < s; b++) bad |= gray_at(p, px + b, py + a) != g;
            out[i * w + j] = g;
        }
    return bad ? -1 : 0;
}

/* Tile (r, c) equals the quantized values v (max |difference| <= tol levels). */
static int tile_matches(const picture *p, int x0, int r, int c, const float *v, int tol, int scale)
{
    int t[D];
    if (tile(p, x0, 0, r, c, IMG, IMG, scale, t)) return 0;
    for (int i = 0; i < D; i++)
        if (abs(t[i] - ae_plot_gray(v[i])) > tol) return 0;
    return 1;
}

/* PSNR (peak 1) of tile (r, c) against the quantized values v. */
static double tile_psnr(const picture *p, int x0, int r, int c, const float *v, int scale)
{
    int t[D];
    if (tile(p, x0, 0, r, c, IMG, IMG, scale, t)) return -1.0;
    double se = 0.0;
    for (int i = 0; i < D; i++) {
        double e = (t[i] - ae_plot_gray(v[i])) / 255.0;
        se += e * e;
    }
    return se > 0 ? 10.0 * log10(D / se) : 99.0;
}

static void picture_free(picture *p)
{
    free(p->px);
    p->px = NULL;
}

static void out_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", fx.dir, name);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int count_dark(const picture *p, const ae_plot_box *b)
{
    int n = 0;
    for (int y = b->y; y < b->y + b->h; y++)
        for (int x = b->x; x < b->x + b->w; x++) {
            if (x < 0 || y < 0 || x >= p->w || y >= p->h) continue;
            const uint8_t *q = at(p, x, y);
            n += q[0] < DARK && q[1] < DARK && q[2] < DARK;
        }
    return n;
}

/* pixels of exactly colour rgb in box b */
static int count_color(const picture *p, const ae_plot_box *b, const uint8_t rgb[3])
{
    int n = 0;
    for (int y = b->y; y < b->y + b->h; y++)
        for (int x = b->x; x < b->x + b->w; x++) {
            if (x < 0 || y < 0 || x >= p->w || y >= p->h) continue;
            n += memcmp(at(p, x, y), rgb, 3) == 0;
        }
    return n;
}

/* The frame of a plot box is drawn: at least 90% of its bottom row and left column are dark. */
static int axes_drawn(const picture *p, const ae_plot_box *b)
{
    ae_plot_box bottom = {b->x, b->y + b->h - 1, b->w, 1}, left = {b->x, b->y, 1, b->h};
    return count_dark(p, &bottom) >= 9 * b->w / 10 && count_dark(p, &left) >= 9 * b->h / 10;
}

/* ---- grids ------------------------------------------------------------------------------ */

static void test_plot_grid_layout(void)
{
    enum { H = 3, W = 4, N = 5, ROWS = 2, COLS = 3 };
    float img[N * H * W];
    for (int i = 0; i < N * H * W; i++) img[i] = (float)(i % 13) / 10.0f - 0.1f; /* -0.1 .. 1.1: clamped */
    img[7] = NAN;
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "grid.png");
    for (int scale = 1; scale <= 3; scale += 2) {
        ae_error err;
        CU_ASSERT_EQUAL_FATAL(ae_plot_grid_png(path, img, N, ROWS, COLS, H, W, scale, &err), AE_OK);
        int ew, eh;
        ae_plot_grid_size(ROWS, COLS, H, W, scale, &ew, &eh);
        CU_ASSERT_EQUAL(ew, COLS * W * scale + (COLS + 1) * AE_PLOT_SEP);
        CU_ASSERT_EQUAL(eh, ROWS * H * scale + (ROWS + 1) * AE_PLOT_SEP);
        picture p;
        CU_ASSERT_FATAL(read_png(path, &p) == 0);
        CU_ASSERT_EQUAL(p.w, ew);
        CU_ASSERT_EQUAL(p.h, eh);
        CU_ASSERT_EQUAL(p.ch, 1);
        int ok = 1, t[H * W];
        for (int k = 0; k < N; k++) {
            ok &= tile(&p, 0, 0, k / COLS, k % COLS, H, W, scale, t) == 0;
            for (int i = 0; i < H * W; i++) ok &= t[i] == ae_plot_gray(img[k * H * W + i]);
        }
        CU_ASSERT(ok);
        CU_ASSERT(tile(&p, 0, 0, 0, 0, H, W, scale, t) == 0 && t[0] == 0 && t[11] == 255); /* -0.1, 1.0 */
        CU_ASSERT(t[7] == 0); /* NaN */
        CU_ASSERT_EQUAL(ae_plot_gray(NAN), 0);
        CU_ASSERT_EQUAL(ae_plot_gray(1.1f), 255);
        CU_ASSERT_EQUAL(ae_plot_gray(0.5f), 128);
        /* the separators, the frame and the empty sixth cell are separator gray */
        int seps = 1;
        for (int y = 0; y < p.h; y++)
            for (int s = 0; s < AE_PLOT_SEP; s++) seps &= gray_at(&p, s, y) == AE_PLOT_SEP_GRAY;
        for (int x = 0; x < p.w; x++)
            for (int s = 0; s < AE_PLOT_SEP; s++)
                seps &= gray_at(&p, x, AE_PLOT_SEP + H * scale + s) == AE_PLOT_SEP_GRAY;
        CU_ASSERT(seps);
        CU_ASSERT(tile(&p, 0, 0, 1, 2, H, W, scale, t) == 0 && t[0] == AE_PLOT_SEP_GRAY);
        picture_free(&p);
    }
    char tmp[PATH_MAX_T + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CU_ASSERT(!file_exists(tmp));
}

static void test_plot_grid_errors(void)
{
    float img[4] = {0};
    ae_error err;
    const char *bad = "/nonexistent-dir/grid.png";
    CU_ASSERT_EQUAL(ae_plot_grid_png(bad, img, 1, 1, 1, 2, 2, 1, &err), AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad));
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "bad.png");
    CU_ASSERT_EQUAL(ae_plot_grid_png(path, img, 2, 1, 1, 2, 2, 1, &err), AE_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
    CU_ASSERT_EQUAL(ae_plot_grid_png(path, img, 1, 1, 1, 2, 2, 0, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_plot_grid_png(path, img, 1, 1, 1, 0, 2, 1, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_plot_grid_png(path, img, 1, 100000, 1, 2, 2, 1, &err), AE_ERR_ARG);
    CU_ASSERT(!file_exists(path));
}

static void test_plot_norm_ppf(void)
{
    CU_ASSERT_DOUBLE_EQUAL(ae_plot_norm_ppf(0.5), 0.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(ae_plot_norm_ppf(0.975), 1.959963984540054, 1e-13);
    CU_ASSERT_DOUBLE_EQUAL(ae_plot_norm_ppf(0.025), -1.959963984540054, 1e-13);
    CU_ASSERT_DOUBLE_EQUAL(ae_plot_norm_ppf(0.8413447460685429), 1.0, 1e-13);
    CU_ASSERT_DOUBLE_EQUAL(ae_plot_norm_ppf(1e-10), -6.361340902404056, 1e-11);
    CU_ASSERT(isinf(ae_plot_norm_ppf(0.0)) && ae_plot_norm_ppf(0.0) < 0);
    CU_ASSERT(isinf(ae_plot_norm_ppf(1.0)) && ae_plot_norm_ppf(1.0) > 0);
    CU_ASSERT(isnan(ae_plot_norm_ppf(1.5)));
    double worst = 0.0;
    for (int k = 1; k < 1000; k++) {
        double p = k / 1000.0, x = ae_plot_norm_ppf(p);
        worst = fmax(worst, fabs(0.5 * erfc(-x / sqrt(2.0)) - p));
    }
    CU_ASSERT(worst < 1e-15);
}

static void test_plot_pick(void)
{
    uint32_t idx[25];
    CU_ASSERT_EQUAL(ae_plot_pick(&fx.test, 25, idx), 25);
    int first_of[NCLASS];
    for (int c = 0; c < NCLASS; c++) {
        first_of[c] = -1;
        for (int i = N_TEST - 1; i >= 0; i--)
            if (fx.test.y[i] == c) first_of[c] = i;
    }
    for (int k = 0; k < NCLASS; k++) CU_ASSERT_EQUAL(idx[k], (uint32_t)first_of[k]);
    for (int k = 0; k < 25; k++) CU_ASSERT_EQUAL(fx.test.y[idx[k]], k % NCLASS);
    for (int k = NCLASS; k < 25; k++) CU_ASSERT(idx[k] > idx[k - NCLASS]);
    ae_dataset unl = fx.test;
    unl.y = NULL;
    CU_ASSERT_EQUAL(ae_plot_pick(&unl, 5, idx), 5);
    for (int k = 0; k < 5; k++) CU_ASSERT_EQUAL(idx[k], (uint32_t)k);
    uint32_t many[N_TEST + 5];
    CU_ASSERT_EQUAL(ae_plot_pick(&fx.test, N_TEST + 5, many), N_TEST);
}

/* ---- model pictures -------------------------------------------------------------------- */

/* the models' outputs for samples idx[0..n) */
static void reconstruct(ae_model *m, const uint32_t *idx, int n, float *x, float *y)
{
    ae_data_gather_x(&fx.test, idx, (size_t)n, x);
    ae_ctx ctx = {0};
    const float *out = ae_model_forward(m, &ctx, x, n, m->n_layers);
    memcpy(y, out, sizeof(float) * (size_t)n * D);
}

static void check_recon(ae_model *m, const char *name, int trained)
{
    enum { N = 14, COLS = 5 };
    uint32_t idx[N];
    CU_ASSERT_EQUAL_FATAL(ae_plot_pick(&fx.test, N, idx), N);
    char path[PATH_MAX_T];
    out_path(path, sizeof path, name);
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_plot_recon_png(path, m, &fx.test, idx, N, COLS, 2, &err), AE_OK);
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    int ew, eh;
    ae_plot_grid_size(2 * 3, COLS, IMG, IMG, 2, &ew, &eh); /* 3 groups of 5: 6 rows */
    CU_ASSERT(p.w == ew && p.h == eh && p.ch == 1);
    float x[N * D], y[N * D];
    reconstruct(m, idx, N, x, y);
    int same = 1;
    double psnr = 0.0;
    for (int k = 0; k < N; k++) {
        int r = 2 * (k / COLS), c = k % COLS;
        same &= tile_matches(&p, 0, r, c, x + k * D, 0, 2);
        /* the uint8 test image itself, pixel for pixel */
        int t[D];
        tile(&p, 0, 0, r, c, IMG, IMG, 2, t);
        for (int i = 0; i < D; i++) same &= t[i] == fx.test.x8[(size_t)idx[k] * D + i];
        same &= tile_matches(&p, 0, r + 1, c, y + k * D, 1, 2);
        psnr += tile_psnr(&p, 0, r + 1, c, x + k * D, 2) / N;
    }
    CU_ASSERT(same);
    int t[D];
    CU_ASSERT(tile(&p, 0, 0, 5, 4, IMG, IMG, 2, t) == 0 && t[0] == AE_PLOT_SEP_GRAY); /* past the 14th */
    printf("\n    %s: mean PSNR of the reconstructions %.1f dB (bound %.1f)", name, psnr, PSNR_BOUND);
    if (trained) CU_ASSERT(psnr > PSNR_BOUND);
    if (!trained) CU_ASSERT(psnr < PSNR_BOUND);
    picture_free(&p);
}

static void test_plot_recon_trained(void) { check_recon(fx.trained, "recon.png", 1); }
static void test_plot_recon_untrained(void) { check_recon(fx.fresh, "recon-fresh.png", 0); }

static void test_plot_recon_errors(void)
{
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "recon-bad.png");
    uint32_t idx[1] = {N_TEST};
    ae_error err;
    CU_ASSERT_EQUAL(ae_plot_recon_png(path, fx.trained, &fx.test, idx, 1, 1, 1, &err), AE_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
    idx[0] = 0;
    CU_ASSERT_EQUAL(ae_plot_denoise_png(path, fx.trained, &fx.test, idx, 1, 1, 1, 1, &err), AE_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "corruption"));
    CU_ASSERT_EQUAL(ae_plot_manifold_png(path, fx.trained, 4, 1, &err), AE_ERR_ARG);
    CU_ASSERT(!file_exists(path));
}

static void test_plot_denoise(void)
{
    enum { N = 10 };
    ae_model *m = fx.denoise;
    CU_ASSERT_EQUAL_FATAL(ae_plot_noise_layer(m), 0);
    CU_ASSERT_EQUAL(ae_plot_noise_layer(fx.trained), -1);
    uint32_t idx[N];
    ae_plot_pick(&fx.test, N, idx);
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "denoise.png");
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_plot_denoise_png(path, m, &fx.test, idx, N, N, SEED, 2, &err), AE_OK);
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    int ew, eh;
    ae_plot_grid_size(3, N, IMG, IMG, 2, &ew, &eh);
    CU_ASSERT(p.w == ew && p.h == eh);
    /* the corruption of the documented ctx, and the reconstruction from it in evaluation mode */
    float x[N * D], xn[N * D], y[N * D];
    ae_data_gather_x(&fx.test, idx, N, x);
    ae_ctx noisy = {.training = 1, .seed = SEED, .epoch = 0, .step = 0, .sample0 = 0, .batch = N};
    ae_layer *l0 = &m->layers[0];
    l0->kind->forward(l0, &noisy, x, xn, N);
    ae_ctx eval = {0};
    const float *cur = xn;
    for (int i = 1; i < m->n_layers; i++) {
        m->layers[i].kind->forward(&m->layers[i], &eval, cur, m->act[i], N);
        cur = m->act[i];
    }
    memcpy(y, cur, sizeof y);
    int same = 1;
    double psnr_noisy = 0.0, psnr_rec = 0.0;
    for (int k = 0; k < N; k++) {
        same &= tile_matches(&p, 0, 0, k, x + k * D, 0, 2);
        same &= tile_matches(&p, 0, 1, k, xn + k * D, 0, 2);
        same &= tile_matches(&p, 0, 2, k, y + k * D, 1, 2);
        psnr_noisy += tile_psnr(&p, 0, 1, k, x + k * D, 2) / N;
        psnr_rec += tile_psnr(&p, 0, 2, k, x + k * D, 2) / N;
    }
    CU_ASSERT(same);
    printf("\n    denoise: PSNR of the corrupted inputs %.1f dB, of the reconstructions %.1f dB", psnr_noisy,
           psnr_rec);
    CU_ASSERT(psnr_noisy < PSNR_BOUND);
    CU_ASSERT(psnr_rec > PSNR_BOUND);
    CU_ASSERT(psnr_rec > psnr_noisy + 3.0);
    picture_free(&p);
}

static void test_plot_filters(void)
{
    ae_model *m = fx.trained;
    CU_ASSERT_EQUAL_FATAL(ae_plot_filter_layer(m), 0);
    CU_ASSERT_EQUAL(ae_plot_filter_layer(fx.denoise), 1); /* after the noise layer */
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "filters.png");
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_plot_filters_png(path, m, 12, 0, 3, &err), AE_OK); /* 12 of 16, 8 a row */
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    int ew, eh;
    ae_plot_grid_size(2, 8, IMG, IMG, 3, &ew, &eh);
    CU_ASSERT(p.w == ew && p.h == eh);
    const ae_layer *l = &m->layers[0];
    int ok = 1;
    for (int j = 0; j < 12; j++) {
        float col[D], lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < D; i++) {
            col[i] = l->W[i * l->units + j];
            lo = fminf(lo, col[i]);
            hi = fmaxf(hi, col[i]);
        }
        for (int i = 0; i < D; i++) col[i] = (col[i] - lo) / (hi - lo);
        int t[D], tmin = 255, tmax = 0;
        ok &= tile(&p, 0, 0, j / 8, j % 8, IMG, IMG, 3, t) == 0;
        for (int i = 0; i < D; i++) {
            ok &= abs(t[i] - ae_plot_gray(col[i])) <= 1;
            tmin = t[i] < tmin ? t[i] : tmin;
            tmax = t[i] > tmax ? t[i] : tmax;
        }
        ok &= tmin == 0 && tmax == 255; /* normalized per tile */
    }
    CU_ASSERT(ok);
    int white = 1;
    for (int y = 0; y < p.h; y++) white &= gray_at(&p, 0, y) == AE_PLOT_FILTER_SEP_GRAY;
    for (int x = 0; x < p.w; x++) white &= gray_at(&p, x, AE_PLOT_SEP + IMG * 3) == AE_PLOT_FILTER_SEP_GRAY;
    CU_ASSERT(white);
    int t12[D];
    CU_ASSERT(tile(&p, 0, 0, 1, 4, IMG, IMG, 3, t12) == 0 && t12[0] == AE_PLOT_FILTER_SEP_GRAY); /* empty */
    picture_free(&p);
    /* conv: each filter's kernel as a ksize x ksize tile */
    ae_model *cm = build("[model]\nencoder = conv(4, 3, relu), maxpool(2)\n"
                         "decoder = upsample(2), conv(1, 3, sigmoid)\n"
                         "[loss]\nkind = bce\n[data]\ndataset = %s\n",
                         fx.data_dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    CU_ASSERT_EQUAL(ae_plot_filter_layer(cm), 0);
    CU_ASSERT_EQUAL(ae_plot_filters_png(path, cm, 0, 0, 5, &err), AE_OK);
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    ae_plot_grid_size(1, 4, 3, 3, 5, &ew, &eh);
    CU_ASSERT(p.w == ew && p.h == eh);
    int t[9];
    CU_ASSERT(tile(&p, 0, 0, 0, 3, 3, 3, 5, t) == 0);
    int has0 = 0, has255 = 0;
    for (int i = 0; i < 9; i++) has0 |= t[i] == 0, has255 |= t[i] == 255;
    CU_ASSERT(has0 && has255);
    picture_free(&p);
    ae_model_free(cm);
}

static void test_plot_manifold(void)
{
    enum { G = 5 };
    ae_model *m = build(VAE_INI, fx.data_dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    int s = ae_plot_vae2_layer(m);
    CU_ASSERT_EQUAL_FATAL(s, 3);
    CU_ASSERT_EQUAL(ae_plot_vae2_layer(fx.trained), -1);
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "manifold.png");
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_plot_manifold_png(path, m, G, 2, &err), AE_OK);
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    int ew, eh;
    ae_plot_grid_size(G, G, IMG, IMG, 2, &ew, &eh);
    CU_ASSERT(p.w == ew && p.h == eh);
    /* decode the lattice's z through the layers after the sample layer */
    float z[G * G * 2];
    for (int r = 0; r < G; r++)
        for (int c = 0; c < G; c++) {
            z[2 * (r * G + c)] = (float)ae_plot_norm_ppf((c + 0.5) / G);
            z[2 * (r * G + c) + 1] = (float)ae_plot_norm_ppf(1.0 - (r + 0.5) / G);
        }
    CU_ASSERT_DOUBLE_EQUAL(z[0], -1.2815515655446004, 1e-6); /* ppf(0.1) */
    CU_ASSERT_DOUBLE_EQUAL(z[1], 1.2815515655446004, 1e-6);
    ae_ctx ctx = {0};
    const float *cur = z;
    for (int i = s + 1; i < m->n_layers; i++) {
        m->layers[i].kind->forward(&m->layers[i], &ctx, cur, m->act[i], G * G);
        cur = m->act[i];
    }
    int same = 1;
    for (int k = 0; k < G * G; k++) same &= tile_matches(&p, 0, k / G, k % G, cur + (size_t)k * D, 0, 2);
    CU_ASSERT(same);
    int a[D], b[D], differ = 0;
    tile(&p, 0, 0, 0, 0, IMG, IMG, 2, a);
    tile(&p, 0, 0, G - 1, G - 1, IMG, IMG, 2, b);
    for (int i = 0; i < D; i++) differ |= a[i] != b[i];
    CU_ASSERT(differ);
    picture_free(&p);
    ae_model_free(m);
}

static void test_plot_interpolation(void)
{
    enum { STEPS = 6, PAIRS = 2 };
    ae_model *m = fx.trained;
    uint32_t pick[NCLASS], a[PAIRS], b[PAIRS];
    ae_plot_pick(&fx.test, NCLASS, pick);
    a[0] = pick[1], b[0] = pick[6], a[1] = pick[8], b[1] = pick[9];
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "interpolation.png");
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_plot_interp_png(path, m, &fx.test, a, b, PAIRS, STEPS, 2, &err), AE_OK);
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    int ew, eh;
    ae_plot_grid_size(2 * PAIRS, STEPS, IMG, IMG, 2, &ew, &eh);
    CU_ASSERT(p.w == ew && p.h == eh);
    int ok = 1;
    for (int k = 0; k < PAIRS; k++) {
        uint32_t ab[2] = {a[k], b[k]};
        float x[2 * D], y[2 * D], mid[D];
        reconstruct(m, ab, 2, x, y);
        /* the latent row starts and ends at the reconstructions, the pixel row at the images */
        ok &= tile_matches(&p, 0, 2 * k, 0, y, 1, 2);
        ok &= tile_matches(&p, 0, 2 * k, STEPS - 1, y + D, 1, 2);
        ok &= tile_matches(&p, 0, 2 * k + 1, 0, x, 0, 2);
        ok &= tile_matches(&p, 0, 2 * k + 1, STEPS - 1, x + D, 0, 2);
        for (int i = 0; i < D; i++) mid[i] = 0.6f * x[i] + 0.4f * x[D + i]; /* t = 2/5 */
        ok &= tile_matches(&p, 0, 2 * k + 1, 2, mid, 1, 2);
        /* the decoded midpoint is neither end's reconstruction */
        ok &= !tile_matches(&p, 0, 2 * k, 3, y, 8, 2) && !tile_matches(&p, 0, 2 * k, 3, y + D, 8, 2);
    }
    CU_ASSERT(ok);
    picture_free(&p);
}

static void test_plot_epochs(void)
{
    enum { N = 8, SCALE = 2 };
    uint32_t idx[N];
    ae_plot_pick(&fx.test, N, idx);
    const char *ck[3] = {fx.ckpt[0], fx.ckpt[1], fx.ckpt[2]};
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "epochs.png");
    ae_error err;
    int gx = -1;
    CU_ASSERT_EQUAL_FATAL(ae_plot_epochs_png(path, ck, 3, &fx.test, idx, N, SCALE, &gx, &err), AE_OK);
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    int gw, gh;
    ae_plot_grid_size(4, N, IMG, IMG, SCALE, &gw, &gh);
    CU_ASSERT(gx > 10 && p.w == gx + gw && p.h == gh);
    float x[N * D];
    ae_data_gather_x(&fx.test, idx, N, x);
    double psnr[3] = {0};
    int same = 1;
    for (int k = 0; k < N; k++) {
        same &= tile_matches(&p, gx, 0, k, x + k * D, 0, SCALE);
        for (int r = 0; r < 3; r++) psnr[r] += tile_psnr(&p, gx, r + 1, k, x + k * D, SCALE) / N;
    }
    CU_ASSERT(same);
    printf("\n    epochs: PSNR after 0, %d, %d steps: %.1f, %.1f, %.1f dB", MID_STEPS, TRAIN_STEPS, psnr[0],
           psnr[1], psnr[2]);
    CU_ASSERT(psnr[0] < PSNR_BOUND && psnr[2] > PSNR_BOUND);
    CU_ASSERT(psnr[0] < psnr[1] && psnr[1] < psnr[2]);
    /* the last row holds the trained model's reconstructions */
    float xr[N * D], yr[N * D];
    reconstruct(fx.trained, idx, N, xr, yr);
    for (int k = 0; k < N; k++) same &= tile_matches(&p, gx, 3, k, yr + k * D, 1, SCALE);
    CU_ASSERT(same);
    /* a label left of every row */
    for (int r = 0; r < 4; r++) {
        ae_plot_box lab = {0, AE_PLOT_SEP + r * (IMG * SCALE + AE_PLOT_SEP), gx, IMG * SCALE};
        CU_ASSERT(count_dark(&p, &lab) > 5);
    }
    picture_free(&p);
    const char *missing[1] = {"/nonexistent/ck.aeck"};
    CU_ASSERT_NOT_EQUAL(ae_plot_epochs_png(path, missing, 1, &fx.test, idx, N, SCALE, NULL, &err), AE_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, missing[0]));
}

/* ---- plots ------------------------------------------------------------------------------- */

static void test_plot_project2(void)
{
    enum { N = 500 };
    float *c3 = malloc(sizeof(float) * N * 3), *xy = malloc(sizeof(float) * N * 2);
    CU_ASSERT_FATAL(c3 && xy);
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 3, 0, 0);
    for (int i = 0; i < N; i++) {
        float u = 5.0f * ae_rng_normal(&r), v = 2.0f * ae_rng_normal(&r), e = 0.1f * ae_rng_normal(&r);
        c3[3 * i] = 1.0f + u / sqrtf(2.0f) + e;   /* u along (1, 1, 0) / sqrt 2, v along z */
        c3[3 * i + 1] = 2.0f + u / sqrtf(2.0f) - e;
        c3[3 * i + 2] = -1.0f + v;
    }
    ae_error err;
    int projected = 0;
    CU_ASSERT_EQUAL_FATAL(ae_plot_project2(c3, N, 3, xy, &projected, &err), AE_OK);
    CU_ASSERT(projected);
    double m0 = 0, m1 = 0, v0 = 0, v1 = 0, cu = 0, su = 0;
    for (int i = 0; i < N; i++) m0 += xy[2 * i] / N, m1 += xy[2 * i + 1] / N;
    for (int i = 0; i < N; i++) {
        v0 += (xy[2 * i] - m0) * (xy[2 * i] - m0) / N;
        v1 += (xy[2 * i + 1] - m1) * (xy[2 * i + 1] - m1) / N;
        double u = (c3[3 * i] + c3[3 * i + 1] - 3.0) / sqrt(2.0);
        cu += u * xy[2 * i];
        su += u * u;
    }
    CU_ASSERT(fabs(m0) < 1e-3 && fabs(m1) < 1e-3); /* centred */
    CU_ASSERT(v0 > 15.0 && v1 > 2.5 && v1 < 6.0);  /* 25 and 4 */
    CU_ASSERT(fabs(cu) / sqrt(su * v0 * N) > 0.99); /* PC 1 is the u direction (up to sign) */
    float c2[4] = {1, 2, 3, 4};
    CU_ASSERT_EQUAL(ae_plot_project2(c2, 2, 2, xy, &projected, &err), AE_OK);
    CU_ASSERT(!projected && xy[0] == 1 && xy[3] == 4);
    free(c3);
    free(xy);
}

static void test_plot_codes_scatter(void)
{
    enum { N = 600, NC = 3 };
    float codes[N * 2];
    uint8_t lab[N];
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 4, 0, 0);
    for (int i = 0; i < N; i++) {
        lab[i] = (uint8_t)(i % NC);
        codes[2 * i] = 3.0f * lab[i] + 0.4f * ae_rng_normal(&r);
        codes[2 * i + 1] = (lab[i] == 1 ? 2.0f : 0.0f) + 0.4f * ae_rng_normal(&r);
    }
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "codes.png");
    ae_error err;
    ae_plot_layout L;
    CU_ASSERT_EQUAL_FATAL(ae_plot_codes_png(path, codes, lab, N, 2, "three clusters", &L, &err), AE_OK);
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    CU_ASSERT(p.w == L.width && p.h == L.height && p.ch == 3);
    CU_ASSERT_EQUAL(L.npanels, 1);
    CU_ASSERT(axes_drawn(&p, &L.plot[0]));
    CU_ASSERT(L.legend[0].w > 0 && L.legend[0].x >= L.plot[0].x + L.plot[0].w); /* right of the plot */
    ae_plot_box inner = {L.plot[0].x + 2, L.plot[0].y + 2, L.plot[0].w - 4, L.plot[0].h - 4};
    for (int c = 0; c < NCLASS; c++) {
        uint8_t rgb[3];
        ae_plot_color(c, rgb);
        int in_legend = count_color(&p, &L.legend[0], rgb), in_plot = count_color(&p, &inner, rgb);
        if (c < NC) CU_ASSERT(in_legend > 10 && in_plot > 100);
        if (c >= NC) CU_ASSERT(in_legend == 0); /* only the labels present */
    }
    /* cairo drew the text: dark pixels in the title's and the axis labels' ink boxes */
    CU_ASSERT(L.title.w > 50 && count_dark(&p, &L.title) > 30);
    CU_ASSERT(L.xlabel[0].w > 20 && count_dark(&p, &L.xlabel[0]) > 20);
    CU_ASSERT(L.ylabel[0].h > 20 && L.ylabel[0].w < 25 && count_dark(&p, &L.ylabel[0]) > 20);
    ae_plot_box corner = {0, L.height - 20, 20, 20};
    CU_ASSERT_EQUAL(count_dark(&p, &corner), 0);
    picture_free(&p);
    /* a wider code is projected; no labels: no legend */
    float c4[N * 4];
    for (int i = 0; i < N * 4; i++) c4[i] = codes[(i / 4) * 2 + (i % 2)] * (1.0f + 0.1f * (float)(i % 4));
    CU_ASSERT_EQUAL(ae_plot_codes_png(path, c4, NULL, N, 4, NULL, &L, &err), AE_OK);
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    CU_ASSERT(L.legend[0].w == 0 && L.title.w == 0 && axes_drawn(&p, &L.plot[0]));
    uint8_t c0[3];
    ae_plot_color(0, c0);
    CU_ASSERT(count_color(&p, &inner, c0) > 200);
    picture_free(&p);
    CU_ASSERT_EQUAL(ae_plot_codes_png(path, codes, lab, 0, 2, NULL, NULL, &err), AE_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
}

static int write_text(const char *path, const char *text) { return tu_write_file(path, text, strlen(text)); }

static void test_plot_curves(void)
{
    char csv[PATH_MAX_T], path[PATH_MAX_T];
    out_path(csv, sizeof csv, "metrics.csv");
    out_path(path, sizeof path, "curves.png");
    /* a classifier's metrics: empty and nan cells, epoch 3 written again after a resume, junk lines */
    const char *text =
        "epoch,step,train_loss,val_loss,test_loss,test_mse,test_bce,test_acc,test_kl,lr,samples_per_s,"
        "allreduce_frac,epoch_s\n"
        "1,100,0.9,0.7,0.72,,,0.80,,0.001,1000,0.1,1.0\n"
        "2,200,0.5,nan,0.45,,,0.88,,0.001,1000,0.1,1.0\n"
        "3,300,0.4,0.38,0.39,,,0.90,,0.001,1000,0.1,1.0\n"
        "3,300,0.41,0.37,0.38,,,0.91,,0.001,1000,0.1,1.0\n"
        "not a row\n"
        ",350,9,9,9,,,0.1,,0.001,1000,0.1,1.0\n" /* no epoch: skipped */
        "\n"
        "4,400,0.3,0.33,0.34,,,0.93,,0.001,1000,0.1,1.0\n";
    CU_ASSERT_FATAL(write_text(csv, text) == 0);
    ae_error err;
    ae_plot_layout L;
    CU_ASSERT_EQUAL_FATAL(ae_plot_curves_png(path, csv, "a run", &L, &err), AE_OK);
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    CU_ASSERT(p.w == L.width && p.h == L.height && p.ch == 3);
    CU_ASSERT_EQUAL_FATAL(L.npanels, 2);
    const int want[2][4] = {{0, 1, 2, -1}, {3, -1, -1, -1}}; /* train, validation, test; accuracy */
    for (int k = 0; k < 2; k++) {
        CU_ASSERT(axes_drawn(&p, &L.plot[k]));
        CU_ASSERT(L.legend[k].w > 0);
        CU_ASSERT(L.legend[k].x >= L.plot[k].x && L.legend[k].x + L.legend[k].w <= L.plot[k].x + L.plot[k].w);
        CU_ASSERT(count_dark(&p, &L.legend[k]) > 20); /* the names */
        for (int s = 0; s < 4 && want[k][s] >= 0; s++) {
            uint8_t rgb[3];
            ae_plot_color(want[k][s], rgb);
            CU_ASSERT(count_color(&p, &L.legend[k], rgb) > 10);
            CU_ASSERT(count_color(&p, &L.plot[k], rgb) > 40);
        }
        CU_ASSERT(count_dark(&p, &L.xlabel[k]) > 10);
        CU_ASSERT(count_dark(&p, &L.ylabel[k]) > 10);
    }
    CU_ASSERT(count_dark(&p, &L.title) > 20);
    picture_free(&p);
    /* an autoencoder's: the second panel shows the test MSE (colour 3) */
    const char *ae_text = "epoch,step,train_loss,val_loss,test_loss,test_mse,test_acc\n"
                          "1,10,0.3,0.25,0.26,0.05,\n2,20,0.2,0.19,0.2,0.04,nan\n";
    CU_ASSERT_FATAL(write_text(csv, ae_text) == 0);
    CU_ASSERT_EQUAL_FATAL(ae_plot_curves_png(path, csv, NULL, &L, &err), AE_OK);
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    uint8_t red[3];
    ae_plot_color(3, red);
    CU_ASSERT(L.npanels == 2 && count_color(&p, &L.legend[1], red) > 10 && L.title.w == 0);
    picture_free(&p);
    /* errors name the file */
    CU_ASSERT_FATAL(write_text(csv, "epoch,step,train_loss\n") == 0);
    CU_ASSERT_EQUAL(ae_plot_curves_png(path, csv, NULL, NULL, &err), AE_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, csv));
    CU_ASSERT_EQUAL(ae_plot_curves_png(path, "/nonexistent/metrics.csv", NULL, NULL, &err), AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "/nonexistent/metrics.csv"));
}

/* ---- the commands --------------------------------------------------------------------------- */

static void make_run(const char *run, const char *ini_fmt, ae_model *m, int best)
{
    char path[PATH_MAX_T + 64], ini[1024];
    mkdir(run, 0777);
    snprintf(path, sizeof path, "%s/ckpt", run);
    mkdir(path, 0777);
    snprintf(ini, sizeof ini, ini_fmt, fx.data_dir);
    snprintf(path, sizeof path, "%s/config.ini", run);
    CU_ASSERT(write_text(path, ini) == 0);
    snprintf(path, sizeof path, "%s/metrics.csv", run);
    CU_ASSERT(write_text(path, "epoch,step,train_loss,val_loss,test_loss,test_mse,test_bce,test_acc,test_kl,"
                               "lr,samples_per_s,allreduce_frac,epoch_s\n"
                               "1,10,0.5,0.4,0.4,0.05,0.4,nan,nan,0.01,1,0,1\n"
                               "2,20,0.3,0.3,0.3,0.03,0.3,nan,nan,0.01,1,0,1\n") == 0);
    for (int e = 1; e <= 2; e++) {
        snprintf(path, sizeof path, "%s/ckpt/ckpt-s%010d-e%05d.aeck", run, 10 * e, e);
        CU_ASSERT(save_ckpt(path, ini_fmt, m, e, 10 * e) == 0);
    }
    if (best) {
        snprintf(path, sizeof path, "%s/ckpt/best.aeck", run);
        CU_ASSERT(save_ckpt(path, ini_fmt, m, 2, 20) == 0);
    }
}

static void check_run_images(const char *run, const char *const *names, int n, const char *const *absent,
                             int na)
{
    char path[PATH_MAX_T + 64];
    for (int k = 0; k < n; k++) {
        snprintf(path, sizeof path, "%s/images/%s", run, names[k]);
        picture p;
        int ok = read_png(path, &p) == 0;
        CU_ASSERT(ok);
        if (!ok) {
            fprintf(stderr, "\n    missing or bad: %s\n", path);
            continue;
        }
        int ew = -1, eh = -1;
        if (strcmp(names[k], "recon.png") == 0) ae_plot_grid_size(4, 10, IMG, IMG, 2, &ew, &eh);
        if (strcmp(names[k], "manifold.png") == 0) ae_plot_grid_size(20, 20, IMG, IMG, 1, &ew, &eh);
        if (strcmp(names[k], "interpolation.png") == 0) ae_plot_grid_size(8, 10, IMG, IMG, 2, &ew, &eh);
        if (strcmp(names[k], "denoise.png") == 0) ae_plot_grid_size(3, 10, IMG, IMG, 2, &ew, &eh);
        if (strcmp(names[k], "filters.png") == 0) ae_plot_grid_size(2, 8, IMG, IMG, 2, &ew, &eh);
        if (ew > 0) CU_ASSERT(p.w == ew && p.h == eh);
        if (strcmp(names[k], "epochs.png") == 0) {
            ae_plot_grid_size(3, 10, IMG, IMG, 2, &ew, &eh);
            CU_ASSERT(p.w > ew && p.h == eh);
        }
        picture_free(&p);
    }
    for (int k = 0; k < na; k++) {
        snprintf(path, sizeof path, "%s/images/%s", run, absent[k]);
        CU_ASSERT(!file_exists(path));
    }
}

static void test_plot_run_folder(void)
{
    char run[PATH_MAX_T];
    out_path(run, sizeof run, "run-ae");
    make_run(run, AE_INI, fx.trained, 1);
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_plot_run(run, &err), AE_OK);
    static const char *const ae_names[] = {"recon.png", "curves.png", "codes.png", "filters.png",
                                           "interpolation.png", "epochs.png"};
    static const char *const ae_absent[] = {"manifold.png", "denoise.png"};
    check_run_images(run, ae_names, 6, ae_absent, 2);
    /* the reconstructions in recon.png are the trained model's */
    char path[PATH_MAX_T + 64];
    snprintf(path, sizeof path, "%s/images/recon.png", run);
    picture p;
    if (read_png(path, &p) == 0) {
        uint32_t idx[20];
        ae_plot_pick(&fx.test, 20, idx);
        float x[20 * D], y[20 * D];
        reconstruct(fx.trained, idx, 20, x, y);
        int same = 1;
        for (int k = 0; k < 20; k++) {
            same &= tile_matches(&p, 0, 2 * (k / 10), k % 10, x + k * D, 0, 2);
            same &= tile_matches(&p, 0, 2 * (k / 10) + 1, k % 10, y + k * D, 1, 2);
        }
        CU_ASSERT(same);
        picture_free(&p);
    }
    /* a VAE with a 2-d latent and input noise, no best.aeck: every picture */
    ae_model *vae = build(VAE_INI, fx.data_dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(vae);
    out_path(run, sizeof run, "run-vae");
    make_run(run, VAE_INI, vae, 0);
    CU_ASSERT_EQUAL(ae_plot_run(run, &err), AE_OK);
    static const char *const vae_names[] = {"recon.png", "curves.png", "codes.png", "filters.png",
                                            "interpolation.png", "epochs.png", "manifold.png", "denoise.png"};
    check_run_images(run, vae_names, 8, NULL, 0);
    ae_model_free(vae);
    /* errors name the folder or file */
    CU_ASSERT_EQUAL(ae_plot_run("/nonexistent/run", &err), AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "/nonexistent/run"));
}

static void test_plot_reconstruct_command(void)
{
    char path[PATH_MAX_T];
    out_path(path, sizeof path, "reconstruct.png");
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_plot_reconstruct(fx.ckpt[2], path, 12, &err), AE_OK);
    picture p;
    CU_ASSERT_FATAL(read_png(path, &p) == 0);
    int ew, eh;
    ae_plot_grid_size(4, 10, IMG, IMG, 2, &ew, &eh); /* 12 images: two groups of up to 10 */
    CU_ASSERT(p.w == ew && p.h == eh);
    uint32_t idx[12];
    ae_plot_pick(&fx.test, 12, idx);
    float x[12 * D], y[12 * D];
    reconstruct(fx.trained, idx, 12, x, y);
    double psnr = 0.0;
    for (int k = 0; k < 12; k++) psnr += tile_psnr(&p, 0, 2 * (k / 10) + 1, k % 10, x + k * D, 2) / 12;
    CU_ASSERT(psnr > PSNR_BOUND);
    picture_free(&p);
    CU_ASSERT_EQUAL(ae_plot_reconstruct("/nonexistent/ck.aeck", path, 4, &err), AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "/nonexistent/ck.aeck"));
    CU_ASSERT_EQUAL(ae_plot_reconstruct(fx.ckpt[2], path, 0, &err), AE_ERR_ARG);
}

void ae_test_register_plot(void)
{
    CU_pSuite s = CU_add_suite("plot", suite_init, suite_cleanup);
    CU_add_test(s, "test_plot_grid_layout", test_plot_grid_layout);
    CU_add_test(s, "test_plot_grid_errors", test_plot_grid_errors);
    CU_add_test(s, "test_plot_norm_ppf", test_plot_norm_ppf);
    CU_add_test(s, "test_plot_pick", test_plot_pick);
    CU_add_test(s, "test_plot_recon_trained", test_plot_recon_trained);
    CU_add_test(s, "test_plot_recon_untrained", test_plot_recon_untrained);
    CU_add_test(s, "test_plot_recon_errors", test_plot_recon_errors);
    CU_add_test(s, "test_plot_denoise", test_plot_denoise);
    CU_add_test(s, "test_plot_filters", test_plot_filters);
    CU_add_test(s, "test_plot_manifold", test_plot_manifold);
    CU_add_test(s, "test_plot_interpolation", test_plot_interpolation);
    CU_add_test(s, "test_plot_epochs", test_plot_epochs);
    CU_add_test(s, "test_plot_project2", test_plot_project2);
    CU_add_test(s, "test_plot_codes_scatter", test_plot_codes_scatter);
    CU_add_test(s, "test_plot_curves", test_plot_curves);
    CU_add_test(s, "test_plot_run_folder", test_plot_run_folder);
    CU_add_test(s, "test_plot_reconstruct_command", test_plot_reconstruct_command);
}
