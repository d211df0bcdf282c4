/* conv.c - the image layer kinds: conv (2-D convolution), deconv (its
 * transpose), maxpool, upsample (nearest neighbour) and reshape, all NCHW.
 * conv and deconv run as im2col / col2im over the whole local batch plus one
 * sgemm per product, with bias and activation fused into one pass. */
#include "ae/layers.h"

#include "layer_kinds.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_KSIZE 64           /* conv / deconv / pool window side */
#define MAX_STRIDE 64
#define MAX_FILTERS (1 << 16)
#define MAX_FACTOR 64          /* upsample */
#define MAX_DIM (1 << 24)      /* reshape c, h, w */
#define MAX_EXACT_INDEX (1 << 24) /* maxpool keeps argmax indices as floats: exact below 2^24 */

/* ---- shared helpers ----------------------------------------------------------- */

/* The geometry of one convolution: input c x h x w, k x k window, stride s,
 * padding pt (top) and pl (left), output oh x ow per channel. For conv the
 * input is the layer's input; for deconv it is the layer's OUTPUT (deconv is
 * the adjoint of this convolution). */
typedef struct conv_geom {
    int c, h, w, k, s, pt, pl, oh, ow;
} conv_geom;

/* For the kernel offset kk, the output positions [*lo, *hi) whose input
 * index o*s - pad + kk lies in [0, in); the rest read the zero padding. */
static void valid_range(int out, int in, int s, int pad, int kk, int *lo, int *hi)
{
    int off = pad - kk; /* input index = o * s - off */
    int a = off > 0 ? (off + s - 1) / s : 0;
    int b = in - 1 + off >= 0 ? (in - 1 + off) / s + 1 : 0;
    if (b > out) b = out;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* With stride 1 and output rows as wide as the input's ('same' padding), output position o = y*ow + x
 * reads input position o + delta (delta = (ki - pt) w + (kj - pl)) of the flattened plane: a window
 * offset's column row is one contiguous copy of the plane, except the wrap positions (x < xlo or
 * x >= xhi, where the flat index lands on a neighbouring row's edge instead of the padding), at most
 * |kj - pl| per row. flat_span gives the positions [*o0, *o1) whose copy stays inside the plane (the
 * first and last valid ones), and the rows [*ylo, *yhi) that have any. */
static int flat_ok(const conv_geom *g) { return g->s == 1 && g->ow == g->w; }

static void flat_span(const conv_geom *g, int ki, int kj, int *ylo, int *yhi, int *xlo, int *xhi, size_t *o0,
                      size_t *o1, ptrdiff_t *delta)
{
    valid_range(g->oh, g->h, 1, g->pt, ki, ylo, yhi);
    valid_range(g->ow, g->w, 1, g->pl, kj, xlo, xhi);
    *delta = (ptrdiff_t)(ki - g->pt) * g->w + (kj - g->pl);
    if (*yhi <= *ylo || *xhi <= *xlo) {
        *o0 = *o1 = 0;
        return;
    }
    *o0 = (size_t)*ylo * g->ow + (size_t)*xlo;
    *o1 = (size_t)(*yhi - 1) * g->ow + (size_t)*xhi;
}

/* Zero the wrap positions of rows [ylo, yhi): columns outside [xlo, xhi) (all inside the sample's
 * oh x ow; those before the first or after the last valid position are zero already or unused). */
static void zero_wraps(const conv_geom *g, float *dst, int ylo, int yhi, int xlo, int xhi)
{
    for (int y = ylo; y < yhi; y++) {
        float *r = dst + (size_t)y * g->ow;
        for (int x = 0; x < xlo; x++) r[x] = 0.0f;
        for (int x = xhi; x < g->ow; x++) r[x] = 0.0f;
    }
}

/* col [c*k*k x n*oh*ow] (row (ci*k + ki)*k + kj, column sample*oh*ow + y*ow + x)
 * from the n samples of x (n x c x h x w). */
static void im2col(const conv_geom *g, const float *x, int n, float *col)
{
    size_t ohw = (size_t)g->oh * g->ow, hw = (size_t)g->h * g->w, ld = (size_t)n * ohw;
    if (flat_ok(g)) {
        for (int ci = 0; ci < g->c; ci++)
            for (int ki = 0; ki < g->k; ki++)
                for (int kj = 0; kj < g->k; kj++) {
                    int ylo, yhi, xlo, xhi;
                    size_t o0, o1;
                    ptrdiff_t delta;
                    flat_span(g, ki, kj, &ylo, &yhi, &xlo, &xhi, &o0, &o1, &delta);
                    float *row = col + ((size_t)(ci * g->k + ki) * g->k + kj) * ld;
                    for (int smp = 0; smp < n; smp++) {
                        const float *src = x + ((size_t)smp * g->c + ci) * hw;
                        float *dst = row + (size_t)smp * ohw;
                        memset(dst, 0, sizeof(float) * o0);
                        if (o1 > o0) memcpy(dst + o0, src + ((ptrdiff_t)o0 + delta), sizeof(float) * (o1 - o0));
                        memset(dst + o1, 0, sizeof(float) * (ohw - o1));
                        zero_wraps(g, dst, ylo, yhi, xlo, xhi);
                    }
                }
        return;
    }
    for (int ci = 0; ci < g->c; ci++) {
        for (int ki = 0; ki < g->k; ki++) {
            int ylo, yhi;
            valid_range(g->oh, g->h, g->s, g->pt, ki, &ylo, &yhi);
            for (int kj = 0; kj < g->k; kj++) {
                int xlo, xhi;
                valid_range(g->ow, g->w, g->s, g->pl, kj, &xlo, &xhi);
                int xoff = kj - g->pl; /* input column = xo * s + xoff */
                float *row = col + ((size_t)(ci * g->k + ki) * g->k + kj) * ld;
                for (int smp = 0; smp < n; smp++) {
                    const float *src = x + ((size_t)smp * g->c + ci) * hw;
                    float *dst = row + (size_t)smp * ohw;
                    memset(dst, 0, sizeof(float) * (size_t)ylo * g->ow);
                    for (int y = ylo; y < yhi; y++) {
                        float *d = dst + (size_t)y * g->ow;
                        const float *srow = src + (size_t)(y * g->s - g->pt + ki) * g->w;
                        for (int xo = 0; xo < xlo; xo++) d[xo] = 0.0f;
                        if (g->s == 1 && xhi > xlo)
                            memcpy(d + xlo, srow + xlo + xoff, sizeof(float) * (size_t)(xhi - xlo));
                        else if (g->s > 1)
                            for (int xo = xlo; xo < xhi; xo++) d[xo] = srow[xo * g->s + xoff];
                        for (int xo = xhi; xo < g->ow; xo++) d[xo] = 0.0f;
                    }
                    memset(dst + (size_t)yhi * g->ow, 0, sizeof(float) * (size_t)(g->oh - yhi) * g->ow);
                }
            }
        }
    }
}

/* The adjoint of im2col: x (n x c x h x w) += the columns scattered back. In the flat case the wrap
 * positions of col are zeroed first (col is scratch), so that one contiguous add per window offset
 * adds exactly what the row-by-row scatter adds. */
static void col2im(const conv_geom *g, float *col, int n, float *x)
{
    size_t ohw = (size_t)g->oh * g->ow, hw = (size_t)g->h * g->w, ld = (size_t)n * ohw;
    if (flat_ok(g)) {
        for (int ci = 0; ci < g->c; ci++)
            for (int ki = 0; ki < g->k; ki++)
                for (int kj = 0; kj < g->k; kj++) {
                    int ylo, yhi, xlo, xhi;
                    size_t o0, o1;
                    ptrdiff_t delta;
                    flat_span(g, ki, kj, &ylo, &yhi, &xlo, &xhi, &o0, &o1, &delta);
                    float *row = col + ((size_t)(ci * g->k + ki) * g->k + kj) * ld;
                    for (int smp = 0; smp < n; smp++) {
                        float *src = row + (size_t)smp * ohw;
                        float *plane = x + ((size_t)smp * g->c + ci) * hw;
                        zero_wraps(g, src, ylo, yhi, xlo, xhi);
                        for (size_t o = o0; o < o1; o++) plane[(ptrdiff_t)o + delta] += src[o];
                    }
                }
        return;
    }
    for (int ci = 0; ci < g->c; ci++) {
        for (int ki = 0; ki < g->k; ki++) {
            int ylo, yhi;
            valid_range(g->oh, g->h, g->s, g->pt, ki, &ylo, &yhi);
            for (int kj = 0; kj < g->k; kj++) {
                int xlo, xhi;
                valid_range(g->ow, g->w, g->s, g->pl, kj, &xlo, &xhi);
                int xoff = kj - g->pl; /* input column = xo * s + xoff */
                const float *row = col + ((size_t)(ci * g->k + ki) * g->k + kj) * ld;
                for (int smp = 0; smp < n; smp++) {
                    float *dst = x + ((size_t)smp * g->c + ci) * hw;
                    const float *src = row + (size_t)smp * ohw;
                    for (int y = ylo; y < yhi; y++) {
                        const float *s = src + (size_t)y * g->ow;
                        float *drow = dst + (size_t)(y * g->s - g->pt + ki) * g->w;
                        if (g->s == 1) /* contiguous: vectorizes */
                            for (int xo = xlo; xo < xhi; xo++) drow[xo + xoff] += s[xo];
                        else
                            for (int xo = xlo; xo < xhi; xo++) drow[xo * g->s + xoff] += s[xo];
                    }
                }
            }
        }
    }
}

/* x (n x c x hw, NCHW) -> t (c x n*hw): each channel's planes side by side. */
static void to_channel_major(const float *x, int n, int c, size_t hw, float *t)
{
    for (int smp = 0; smp < n; smp++)
        for (int ci = 0; ci < c; ci++)
            memcpy(t + ((size_t)ci * n + smp) * hw, x + ((size_t)smp * c + ci) * hw, sizeof(float) * hw);
}

/* The inverse of to_channel_major. */
static void from_channel_major(const float *t, int n, int c, size_t hw, float *x)
{
    for (int smp = 0; smp < n; smp++)
        for (int ci = 0; ci < c; ci++)
            memcpy(x + ((size_t)smp * c + ci) * hw, t + ((size_t)ci * n + smp) * hw, sizeof(float) * hw);
}

/* Forward epilogue of conv and deconv: out (n x filters x hw) = act(src + bias),
 * keeping src + bias in z (l->z at this sample) when the model asks for it. src has row stride
 * src_ld between filters and hw between samples (src == out: in place). Each
 * filter plane is finished while it is in cache; softmax, which spans the
 * whole sample, runs once per sample. */
static void bias_act_planes(ae_layer *l, const float *src, size_t src_ld, size_t src_sample, float *out,
                            float *z, int n, int logits_only)
{
    int f = l->filters;
    size_t hw = l->out_size / (size_t)f;
    int per_plane = l->act != AE_ACT_SOFTMAX, act = !logits_only;
    for (int smp = 0; smp < n; smp++) {
        float *os = out + (size_t)smp * l->out_size;
        for (int fi = 0; fi < f; fi++) {
            const float *s = src + (size_t)fi * src_ld + (size_t)smp * src_sample;
            float *d = os + (size_t)fi * hw;
            float b = l->use_bias ? l->b[fi] : 0.0f;
            for (size_t p = 0; p < hw; p++) d[p] = s[p] + b;
            if (z) memcpy(z + (size_t)smp * l->out_size + (size_t)fi * hw, d, sizeof(float) * hw);
            if (act && per_plane) ae_act_forward(l->act, d, 1, hw);
        }
        if (act && !per_plane) ae_act_forward(l->act, os, 1, l->out_size);
    }
}

/* Sum of x[0..n) in SUM_LANES independent partial sums: vectorizable (one running sum waits on each
 * add's latency) and a little more accurate. */
#define SUM_LANES 8
static float sum_floats(const float *x, size_t n)
{
    float acc[SUM_LANES] = {0};
    size_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++) acc[j] += x[i + j];
    float s = 0.0f;
    for (; i < n; i++) s += x[i];
    for (int j = 0; j < SUM_LANES; j++) s += acc[j];
    return s;
}

/* Backward prologue of conv and deconv: d/dz from dout (unless the loss already gave d/dz), db += its
 * sums per filter. dout becomes d/dz in place; with dst != NULL, dst (filters x n*hw) also receives
 * it channel-major, filled row by row (one sequential write stream). */
static void act_bias_grad(ae_layer *l, const float *out, float *dout, int n, float *dst)
{
    int f = l->filters;
    size_t hw = l->out_size / (size_t)f, ld = (size_t)n * hw;
    /* one pass over the whole batch: per-plane calls cost more than the work on small planes */
    if (!l->fused_out) ae_act_backward(l->act, out, dout, (size_t)n, l->out_size);
    if (!dst && !l->use_bias) return;
    for (int fi = 0; fi < f; fi++) {
        for (int smp = 0; smp < n; smp++) {
            float *d = dout + (size_t)smp * l->out_size + (size_t)fi * hw;
            if (dst) d = memcpy(dst + (size_t)fi * ld + (size_t)smp * hw, d, sizeof(float) * hw);
            if (l->use_bias) l->db[fi] += sum_floats(d, hw);
        }
    }
}

/* A switch given as 1/0/true/false. */
static ae_status arg_bool(const ae_layer_spec *ls, const char *key, int def, int *out, ae_error *err)
{
    const char *v = ae_layer_spec_arg(ls, -1, key);
    if (!v) *out = def;
    else if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) *out = 1;
    else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0) *out = 0;
    else
        return ae_error_set(err, AE_ERR_CONFIG, "%s: %s: %s = '%s' must be true or false", ls->origin,
                            ls->kind, key, v);
    return AE_OK;
}

/* ---- conv and deconv: arguments and shapes ------------------------------------ */

static const char *const conv_keys[] = {"filters", "ksize", "act", "stride", "pad", "init", "bias", "algo",
                                        "name", NULL};
static const char *const deconv_keys[] = {"filters", "ksize", "act", "stride", "pad", "init", "bias", "name",
                                          NULL};

/* conv's algorithms (l->flag): im2col + sgemm, or direct loops (few filters, see conv_setup). */
enum { CONV_IM2COL, CONV_DIRECT };
/* auto picks the direct loops up to this many filters: a conv with one or two output channels
 * (an autoencoder's last layer) does little arithmetic per column, so im2col's column matrix, c k^2
 * times its input, costs more to write and read (and col2im to scatter back) than the products */
#define DIRECT_MAX_FILTERS 2

/* Arguments shared by conv and deconv; returns *valid (1: pad=valid, 0: same). */
static ae_status conv_args(ae_layer *l, const ae_layer_spec *ls, const char *const *keys, int *valid,
                           ae_error *err)
{
    ae_status st;
    if ((st = ae_layer_check_args(ls, 3, keys, err))) return st;
    if ((st = ae_layer_arg_int(ls, 0, "filters", -1, 1, MAX_FILTERS, &l->filters, err))) return st;
    if ((st = ae_layer_arg_int(ls, 1, "ksize", -1, 1, MAX_KSIZE, &l->ksize, err))) return st;
    if ((st = ae_layer_arg_act(ls, 2, AE_ACT_LINEAR, &l->act, err))) return st;
    if ((st = ae_layer_arg_int(ls, -1, "stride", 1, 1, MAX_STRIDE, &l->stride, err))) return st;
    if ((st = ae_layer_arg_int(ls, -1, "bias", 1, 0, 1, &l->use_bias, err))) return st;
    const char *pad = ae_layer_spec_arg(ls, -1, "pad");
    if (!pad || strcmp(pad, "same") == 0) *valid = 0;
    else if (strcmp(pad, "valid") == 0) *valid = 1;
    else
        return ae_error_set(err, AE_ERR_CONFIG, "%s: %s: pad must be same or valid, not '%s'", ls->origin,
                            ls->kind, pad);
    const char *init = ae_layer_spec_arg(ls, -1, "init");
    if (init) {
        int i = ae_init_parse(init);
        if (i < 0)
            return ae_error_set(err, AE_ERR_CONFIG,
                                "%s: %s: unknown init '%s' (allowed: " AE_INIT_NAMES ")", ls->origin, ls->kind,
                                init);
        l->init = (ae_init)i;
    }
    l->units = l->filters; /* the model splits the parameters as weights, then `units` biases */
    return AE_OK;
}

/* TensorFlow 'same' padding of one axis: out = ceil(in / s), the total padding
 * is max((out - 1) s + k - in, 0), the smaller half on top / left. */
static int same_pad(int in, int out, int k, int s)
{
    int total = (out - 1) * s + k - in;
    return total > 0 ? total / 2 : 0;
}

/* The convolution a conv layer computes. */
static conv_geom conv_geometry(const ae_layer *l)
{
    return (conv_geom){l->in.c, l->in.h, l->in.w, l->ksize, l->stride, l->pad_top, l->pad_left, l->out.h,
                       l->out.w};
}

/* The convolution whose adjoint a deconv layer computes: from the layer's
 * output (filters channels) back to its input's spatial size. */
static conv_geom deconv_geometry(const ae_layer *l)
{
    return (conv_geom){l->out.c, l->out.h, l->out.w, l->ksize, l->stride, l->pad_top, l->pad_left, l->in.h,
                       l->in.w};
}

static ae_status conv_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    int valid;
    ae_status st = conv_args(l, ls, conv_keys, &valid, err);
    if (st) return st;
    const char *algo = ae_layer_spec_arg(ls, -1, "algo");
    if (!algo || strcmp(algo, "auto") == 0) l->flag = l->filters <= DIRECT_MAX_FILTERS ? CONV_DIRECT : CONV_IM2COL;
    else if (strcmp(algo, "im2col") == 0) l->flag = CONV_IM2COL;
    else if (strcmp(algo, "direct") == 0) l->flag = CONV_DIRECT;
    else
        return ae_error_set(err, AE_ERR_CONFIG, "%s: conv: algo must be auto, im2col or direct, not '%s'",
                            ls->origin, algo);
    int k = l->ksize, s = l->stride, h = l->in.h, w = l->in.w;
    if (valid) {
        if (k > h || k > w)
            return ae_error_set(err, AE_ERR_SHAPE,
                                "%s: conv: kernel %d larger than the %dx%d input (pad=valid)", ls->origin, k,
                                h, w);
        l->out = (ae_shape){l->filters, (h - k) / s + 1, (w - k) / s + 1};
    } else {
        l->out = (ae_shape){l->filters, (h + s - 1) / s, (w + s - 1) / s};
        l->pad_top = same_pad(h, l->out.h, k, s);
        l->pad_left = same_pad(w, l->out.w, k, s);
    }
    l->out_size = ae_shape_size(&l->out);
    size_t ckk = (size_t)l->in.c * k * k, ohw = (size_t)l->out.h * l->out.w;
    l->n_params = (size_t)l->filters * ckk + (l->use_bias ? (size_t)l->filters : 0);
    l->flops = 2.0 * (double)l->filters * (double)ckk * (double)ohw;
    /* im2col columns (ckk x ohw) then the product / output gradient (filters x ohw), per sample; the
     * direct loops need none */
    l->scratch_per_sample = l->flag == CONV_DIRECT ? 0 : (ckk + (size_t)l->filters) * ohw;
    if (l->flag == CONV_DIRECT) l->ws_fixed = (size_t)l->out.w; /* backward's row of partial sums */
    return AE_OK;
}

static ae_status deconv_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    int valid;
    ae_status st = conv_args(l, ls, deconv_keys, &valid, err);
    if (st) return st;
    int k = l->ksize, s = l->stride, h = l->in.h, w = l->in.w;
    /* Keras Conv2DTranspose: same -> in * s, valid -> (in - 1) * s + k; the padding is that of the
     * 'same' convolution from the output back to the input */
    if (valid) {
        l->out = (ae_shape){l->filters, (h - 1) * s + k, (w - 1) * s + k};
    } else {
        l->out = (ae_shape){l->filters, h * s, w * s};
        l->pad_top = same_pad(l->out.h, h, k, s);
        l->pad_left = same_pad(l->out.w, w, k, s);
    }
    l->out_size = ae_shape_size(&l->out);
    size_t fkk = (size_t)l->filters * k * k, hw = (size_t)h * w;
    l->n_params = (size_t)l->in.c * fkk + (l->use_bias ? (size_t)l->filters : 0);
    l->flops = 2.0 * (double)l->in.c * (double)fkk * (double)hw;
    /* the input channel-major (in.c x hw) then the columns (fkk x hw), per sample */
    l->scratch_per_sample = ((size_t)l->in.c + fkk) * hw;
    return AE_OK;
}

/* Keras fans: conv kernel (k, k, c, filters) -> fan_in c k^2, fan_out filters k^2; deconv kernel
 * (k, k, filters, c) -> fan_in filters k^2, fan_out c k^2 (PyTorch's fan_in of either kind is the same).
 * Biases start at 0, or U(+-1/sqrt(fan_in)) with init = torch. */
static void conv_kind_init(ae_layer *l, ae_rng *rng, double fan_in, double fan_out)
{
    size_t nw = l->n_params - (l->use_bias ? (size_t)l->filters : 0);
    ae_layer_init_weights(l->W, nw, fan_in, fan_out, l->init, rng);
    if (l->use_bias) ae_layer_init_bias(l->b, (size_t)l->filters, fan_in, l->init, rng);
}

static void conv_init(ae_layer *l, ae_rng *rng)
{
    double kk = (double)l->ksize * l->ksize;
    conv_kind_init(l, rng, l->in.c * kk, l->filters * kk);
}

static void deconv_init(ae_layer *l, ae_rng *rng)
{
    double kk = (double)l->ksize * l->ksize;
    conv_kind_init(l, rng, l->filters * kk, l->in.c * kk);
}

/* ---- conv: forward and backward ------------------------------------------------- */

/* conv runs over chunks of the local batch whose columns and output rows
 * (CONV_CHUNK_BYTES together) stay in a core's L2 cache between im2col, the
 * sgemm that packs them and the epilogue; a whole-batch im2col streamed
 * 14 MB column matrices through memory three times per product. The chunks
 * depend only on n and the layer, never on the rank count. */
#define CONV_CHUNK_BYTES (768u * 1024u)

static int conv_chunk(const conv_geom *g, int ckk, int f, int n)
{
    size_t per = ((size_t)ckk + (size_t)f) * (size_t)g->oh * (size_t)g->ow * sizeof(float);
    size_t cs = CONV_CHUNK_BYTES / per;
    if (cs < 1) cs = 1;
    return cs < (size_t)n ? (int)cs : n;
}

/* ---- conv: direct loops ----------------------------------------------------------- */

/* The window offset (ki, kj) of one input plane x (h x w) against one output plane (oh x ow): calls
 * row(y, the output row's valid part [xlo, xhi), the input row's element for output xo = xlo) for each
 * output row that reads inside the input. The input element of output xo is then at
 * xr[(xo - xlo) * s]. */
#define FOR_WINDOW_ROWS(g, ki, kj, x, BODY)                                                         \
    do {                                                                                            \
        int ylo_, yhi_, xlo, xhi;                                                                   \
        valid_range((g)->oh, (g)->h, (g)->s, (g)->pt, (ki), &ylo_, &yhi_);                          \
        valid_range((g)->ow, (g)->w, (g)->s, (g)->pl, (kj), &xlo, &xhi);                            \
        for (int y = ylo_; y < yhi_ && xhi > xlo; y++) {                                            \
            const float *xr = (x) + (size_t)(y * (g)->s - (g)->pt + (ki)) * (g)->w +                \
                              (xlo * (g)->s - (g)->pl + (kj));                                      \
            BODY                                                                                    \
        }                                                                                           \
    } while (0)

/* out (n x filters x oh x ow) = act(W * in + b), each output plane accumulated in place from the
 * shifted input rows, one weight at a time (vectorized along the rows). */
static void conv_direct_forward(ae_layer *l, const float *in, float *out, int n, int logits_only)
{
    conv_geom g = conv_geometry(l);
    int f = l->filters, kk = g.k * g.k;
    size_t ohw = (size_t)g.oh * g.ow, hw = (size_t)g.h * g.w;
    memset(out, 0, sizeof(float) * (size_t)n * l->out_size);
    for (int smp = 0; smp < n; smp++)
        for (int fi = 0; fi < f; fi++) {
            float *o = out + (size_t)smp * l->out_size + (size_t)fi * ohw;
            for (int ci = 0; ci < g.c; ci++) {
                const float *x = in + (size_t)smp * l->in_size + (size_t)ci * hw;
                const float *wk = l->W + ((size_t)fi * g.c + ci) * kk;
                for (int ki = 0; ki < g.k; ki++)
                    for (int kj = 0; kj < g.k; kj++) {
                        float wv = wk[ki * g.k + kj];
                        FOR_WINDOW_ROWS(&g, ki, kj, x, {
                            float *orow = o + (size_t)y * g.ow;
                            if (g.s == 1)
                                for (int xo = xlo; xo < xhi; xo++) orow[xo] += wv * xr[xo - xlo];
                            else
                                for (int xo = xlo; xo < xhi; xo++) orow[xo] += wv * xr[(xo - xlo) * g.s];
                        });
                    }
            }
        }
    bias_act_planes(l, out, ohw, l->out_size, out, l->z, n, logits_only);
}

/* dW += sum dz x over the windows, din (zeroed by the caller) += W^T-scatter of dz; dz = d/dz in place
 * of dout. The weight's sum runs in a row of partial sums (acc, ow floats, summed at the end) so that
 * it vectorizes like the scatter it shares its loads with. */
static void conv_direct_backward(ae_layer *l, const float *in, const float *out, float *dout, float *din, int n)
{
    conv_geom g = conv_geometry(l);
    int f = l->filters, kk = g.k * g.k;
    size_t ohw = (size_t)g.oh * g.ow, hw = (size_t)g.h * g.w;
    float *acc = l->ws_fix; /* ow floats */
    act_bias_grad(l, out, dout, n, NULL);
    for (int smp = 0; smp < n; smp++)
        for (int fi = 0; fi < f; fi++) {
            const float *dz = dout + (size_t)smp * l->out_size + (size_t)fi * ohw;
            for (int ci = 0; ci < g.c; ci++) {
                const float *x = in + (size_t)smp * l->in_size + (size_t)ci * hw;
                float *dx = din ? din + (size_t)smp * l->in_size + (size_t)ci * hw : NULL;
                size_t wo = ((size_t)fi * g.c + ci) * kk;
                for (int ki = 0; ki < g.k; ki++)
                    for (int kj = 0; kj < g.k; kj++) {
                        float wv = l->W[wo + (size_t)(ki * g.k + kj)];
                        memset(acc, 0, sizeof(float) * (size_t)g.ow);
                        FOR_WINDOW_ROWS(&g, ki, kj, x, {
                            const float *dzr = dz + (size_t)y * g.ow;
                            int len = xhi - xlo;
                            if (g.s == 1) {
                                for (int t = 0; t < len; t++) acc[t] += dzr[xlo + t] * xr[t];
                                if (dx) {
                                    float *dxr = dx + (xr - x);
                                    for (int t = 0; t < len; t++) dxr[t] += wv * dzr[xlo + t];
                                }
                            } else {
                                for (int t = 0; t < len; t++) acc[t] += dzr[xlo + t] * xr[t * g.s];
                                if (dx) {
                                    float *dxr = dx + (xr - x);
                                    for (int t = 0; t < len; t++) dxr[t * g.s] += wv * dzr[xlo + t];
                                }
                            }
                        });
                        l->dW[wo + (size_t)(ki * g.k + kj)] += sum_floats(acc, (size_t)g.ow);
                    }
            }
        }
}

/* Per chunk of cs samples: col (ckk x cs*ohw), then y (filters x cs*ohw) = W (filters x ckk) . col,
 * then bias + act while permuting y to NCHW. */
static void conv_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    if (n <= 0) return;
    if (l->flag == CONV_DIRECT) {
        conv_direct_forward(l, in, out, n, ae_layer_logits_only(l, ctx));
        return;
    }
    conv_geom g = conv_geometry(l);
    int ckk = g.c * g.k * g.k, f = l->filters, ohw = g.oh * g.ow, cs = conv_chunk(&g, ckk, f, n);
    float *col = l->scratch, *y = l->scratch + (size_t)ckk * (size_t)cs * (size_t)ohw;
    for (int s0 = 0; s0 < n; s0 += cs) {
        int m = n - s0 < cs ? n - s0 : cs, cols = m * ohw;
        im2col(&g, in + (size_t)s0 * l->in_size, m, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, f, cols, ckk, 1.0f, l->W, ckk, col, cols, 0.0f,
                    y, cols);
        bias_act_planes(l, y, (size_t)cols, (size_t)ohw, out + (size_t)s0 * l->out_size,
                        l->z ? l->z + (size_t)s0 * l->out_size : NULL, m, ae_layer_logits_only(l, ctx));
    }
}

/* The columns are recomputed rather than kept from forward: the scratch is shared by all layers (the
 * next layer's forward overwrites it), and keeping them would hold k^2 times the layer's input per
 * sample through the whole step, while rebuilding a chunk's columns is one pass over data in cache
 * (1/filters of the sgemm work). */
static void conv_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                          float *din, int n)
{
    (void)ctx;
    if (n <= 0) return;
    if (din) memset(din, 0, sizeof(float) * (size_t)n * l->in_size);
    if (l->flag == CONV_DIRECT) {
        conv_direct_backward(l, in, out, dout, din, n);
        return;
    }
    conv_geom g = conv_geometry(l);
    int ckk = g.c * g.k * g.k, f = l->filters, ohw = g.oh * g.ow, cs = conv_chunk(&g, ckk, f, n);
    float *col = l->scratch, *dy = l->scratch + (size_t)ckk * (size_t)cs * (size_t)ohw;
    for (int s0 = 0; s0 < n; s0 += cs) {
        int m = n - s0 < cs ? n - s0 : cs, cols = m * ohw;
        size_t oo = (size_t)s0 * l->out_size, io = (size_t)s0 * l->in_size;
        act_bias_grad(l, out + oo, dout + oo, m, dy);
        im2col(&g, in + io, m, col);
        /* dW (filters x ckk) += dy . col^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, f, ckk, cols, 1.0f, dy, cols, col, cols, 1.0f,
                    l->dW, ckk);
        if (!din) continue;
        /* dcol (ckk x cols) = W^T . dy, over col (no longer needed), then scattered back */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, cols, f, 1.0f, l->W, ckk, dy, cols, 0.0f,
                    col, cols);
        col2im(&g, col, m, din + io);
    }
}

/* ---- deconv: forward and backward ------------------------------------------------ */

/* Scratch: xt (c x n*hw), then col (fkk x n*hw). col = W^T . xt with W (c x fkk), scattered
 * into out by col2im, then bias + act in place. */
static void deconv_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    if (n <= 0) return;
    conv_geom g = deconv_geometry(l);
    int c = l->in.c, fkk = g.c * g.k * g.k, cols = n * g.oh * g.ow;
    size_t hw = (size_t)g.oh * g.ow;
    float *xt = l->scratch, *col = l->scratch + (size_t)c * cols;
    to_channel_major(in, n, c, hw, xt);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, fkk, cols, c, 1.0f, l->W, fkk, xt, cols, 0.0f, col,
                cols);
    memset(out, 0, sizeof(float) * (size_t)n * l->out_size);
    col2im(&g, col, n, out);
    size_t ohw = (size_t)l->out.h * l->out.w;
    bias_act_planes(l, out, ohw, l->out_size, out, l->z, n, ae_layer_logits_only(l, ctx));
}

/* The input is re-permuted in backward for the same reason conv recomputes its columns. */
static void deconv_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                            float *din, int n)
{
    (void)ctx;
    if (n <= 0) return;
    conv_geom g = deconv_geometry(l);
    int c = l->in.c, fkk = g.c * g.k * g.k, cols = n * g.oh * g.ow;
    size_t hw = (size_t)g.oh * g.ow;
    float *xt = l->scratch, *col = l->scratch + (size_t)c * cols;
    act_bias_grad(l, out, dout, n, NULL);
    im2col(&g, dout, n, col);
    to_channel_major(in, n, c, hw, xt);
    /* dW (c x fkk) += xt . col^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c, fkk, cols, 1.0f, xt, cols, col, cols, 1.0f, l->dW,
                fkk);
    if (!din) return;
    /* dxt (c x cols) = W . col, over xt */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c, cols, fkk, 1.0f, l->W, fkk, col, cols, 0.0f, xt,
                cols);
    from_channel_major(xt, n, c, hw, din);
}

/* ---- maxpool ---------------------------------------------------------------------- */

static const char *const pool_keys[] = {"size", "stride", "ceil", "name", NULL};

/* Output length of one axis; ceil mode (PyTorch, no padding) adds a last,
 * clipped window when it starts inside the input. */
static int pool_out(int in, int k, int s, int ceil_mode)
{
    int out = (in - k + (ceil_mode ? s - 1 : 0)) / s + 1;
    if (ceil_mode && (out - 1) * s >= in) out--;
    return out;
}

static ae_status maxpool_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    if ((st = ae_layer_check_args(ls, 2, pool_keys, err))) return st;
    if ((st = ae_layer_arg_int(ls, 0, "size", -1, 1, MAX_KSIZE, &l->ksize, err))) return st;
    if ((st = ae_layer_arg_int(ls, 1, "stride", l->ksize, 1, MAX_STRIDE, &l->stride, err))) return st;
    if ((st = arg_bool(ls, "ceil", 0, &l->ceil_mode, err))) return st;
    int k = l->ksize, h = l->in.h, w = l->in.w;
    if (k > h || k > w)
        return ae_error_set(err, AE_ERR_SHAPE, "%s: maxpool: pool size %d larger than the %dx%d input",
                            ls->origin, k, h, w);
    if (l->in_size > MAX_EXACT_INDEX)
        return ae_error_set(err, AE_ERR_SHAPE, "%s: maxpool: input of %zu values, at most %d supported",
                            ls->origin, l->in_size, MAX_EXACT_INDEX);
    l->out = (ae_shape){l->in.c, pool_out(h, k, l->stride, l->ceil_mode),
                        pool_out(w, k, l->stride, l->ceil_mode)};
    l->out_size = ae_shape_size(&l->out);
    l->ws_per_sample = l->out_size; /* argmax: index into the sample's input */
    return AE_OK;
}

static void maxpool_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    (void)ctx;
    int c = l->in.c, h = l->in.h, w = l->in.w, oh = l->out.h, ow = l->out.w, k = l->ksize, s = l->stride;
    /* 2 x 2 windows at stride 2: the full windows by pairs of rows (selects that vectorize, the same
     * first-maximum-in-row-major-order rule), the clipped ones of ceil mode by the general loop */
    int fast = k == 2 && s == 2, fh = fast ? h / 2 : 0, fw = fast ? w / 2 : 0;
    for (int smp = 0; smp < n; smp++) {
        const float *x = in + (size_t)smp * l->in_size;
        float *y = out + (size_t)smp * l->out_size, *arg = l->ws + (size_t)smp * l->out_size;
        for (int ci = 0; ci < c; ci++) {
            for (int yo = 0; yo < fh; yo++) {
                size_t r0 = ((size_t)ci * h + 2 * (size_t)yo) * w, r1 = r0 + (size_t)w;
                float *yr = y + ((size_t)ci * oh + yo) * ow, *ar = arg + ((size_t)ci * oh + yo) * ow;
                /* 32-bit offsets within the plane (in_size < 2^24: the argmax is stored as a float) so
                 * that the selects and the conversion vectorize */
                const float *restrict x0 = x + r0, *restrict x1 = x + r1;
                int base = (int)r0, wi = w;
                for (int xo = 0; xo < fw; xo++) {
                    int j = 2 * xo, b = j;
                    float m = x0[j], v = x0[j + 1];
                    b = v > m ? j + 1 : b;
                    m = v > m ? v : m;
                    v = x1[j];
                    b = v > m ? wi + j : b;
                    m = v > m ? v : m;
                    v = x1[j + 1];
                    b = v > m ? wi + j + 1 : b;
                    m = v > m ? v : m;
                    yr[xo] = m;
                    ar[xo] = (float)(base + b);
                }
            }
            for (int yo = 0; yo < oh; yo++) {
                int y0 = yo * s, y1 = y0 + k < h ? y0 + k : h;
                for (int xo = yo < fh ? fw : 0; xo < ow; xo++) {
                    int x0 = xo * s, x1 = x0 + k < w ? x0 + k : w;
                    size_t best = ((size_t)ci * h + y0) * w + x0;
                    for (int yi = y0; yi < y1; yi++)
                        for (int xi = x0; xi < x1; xi++) {
                            size_t i = ((size_t)ci * h + yi) * w + xi;
                            if (x[i] > x[best]) best = i;
                        }
                    size_t o = ((size_t)ci * oh + yo) * ow + xo;
                    y[o] = x[best];
                    arg[o] = (float)best;
                }
            }
        }
    }
}

static void maxpool_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                             float *din, int n)
{
    (void)ctx; (void)in; (void)out;
    if (!din) return;
    memset(din, 0, sizeof(float) * (size_t)n * l->in_size);
    for (int smp = 0; smp < n; smp++) {
        const float *arg = l->ws + (size_t)smp * l->out_size, *d = dout + (size_t)smp * l->out_size;
        float *dx = din + (size_t)smp * l->in_size;
        for (size_t o = 0; o < l->out_size; o++) dx[(size_t)arg[o]] += d[o];
    }
}

/* ---- upsample ------------------------------------------------------------------------ */

static const char *const upsample_keys[] = {"factor", "name", NULL};

static ae_status upsample_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    if ((st = ae_layer_check_args(ls, 1, upsample_keys, err))) return st;
    if ((st = ae_layer_arg_int(ls, 0, "factor", -1, 1, MAX_FACTOR, &l->factor, err))) return st;
    l->out = (ae_shape){l->in.c, l->in.h * l->factor, l->in.w * l->factor};
    l->out_size = ae_shape_size(&l->out);
    return AE_OK;
}

/* Each input pixel becomes a factor x factor block (Keras UpSampling2D, nearest). */
static void upsample_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    (void)ctx;
    int f = l->factor, w = l->in.w, ow = l->out.w;
    size_t rows = (size_t)n * l->in.c * l->in.h; /* input rows of all channels and samples */
    for (size_t r = 0; r < rows; r++) {
        const float *x = in + r * (size_t)w;
        float *y = out + r * (size_t)f * ow;
        for (int xi = 0; xi < w; xi++)
            for (int j = 0; j < f; j++) y[xi * f + j] = x[xi];
        for (int i = 1; i < f; i++) memcpy(y + (size_t)i * ow, y, sizeof(float) * (size_t)ow);
    }
}

static void upsample_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                              float *din, int n)
{
    (void)ctx; (void)in; (void)out;
    if (!din) return;
    int f = l->factor, w = l->in.w, ow = l->out.w;
    size_t rows = (size_t)n * l->in.c * l->in.h;
    for (size_t r = 0; r < rows; r++) {
        float *dx = din + r * (size_t)w;
        const float *dy = dout + r * (size_t)f * ow;
        if (f == 2) { /* the common factor, unrolled: the same additions in the same order */
            for (int xi = 0; xi < w; xi++)
                dx[xi] = ((dy[2 * xi] + dy[2 * xi + 1]) + dy[ow + 2 * xi]) + dy[ow + 2 * xi + 1];
            continue;
        }
        for (int xi = 0; xi < w; xi++) {
            float sum = 0.0f;
            for (int i = 0; i < f; i++)
                for (int j = 0; j < f; j++) sum += dy[(size_t)i * ow + xi * f + j];
            dx[xi] = sum;
        }
    }
}

/* ---- reshape (data layout unchanged) ----------------------------------------------------- */

static const char *const reshape_keys[] = {"c", "h", "w", "name", NULL};

static ae_status reshape_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    int c, h, w;
    if ((st = ae_layer_check_args(ls, 3, reshape_keys, err))) return st;
    if ((st = ae_layer_arg_int(ls, 0, "c", -1, 1, MAX_DIM, &c, err))) return st;
    if ((st = ae_layer_arg_int(ls, 1, "h", -1, 1, MAX_DIM, &h, err))) return st;
    if ((st = ae_layer_arg_int(ls, 2, "w", -1, 1, MAX_DIM, &w, err))) return st;
    size_t size = (size_t)c * h * w;
    if (size != l->in_size)
        return ae_error_set(err, AE_ERR_SHAPE,
                            "%s: reshape(%d, %d, %d) has %zu values, the %dx%dx%d input has %zu",
                            ls->origin, c, h, w, size, l->in.c, l->in.h, l->in.w, l->in_size);
    l->out = (ae_shape){c, h, w};
    l->out_size = size;
    return AE_OK;
}

static void reshape_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    (void)ctx;
    if (out != in) memcpy(out, in, sizeof(float) * (size_t)n * l->out_size);
}

static void reshape_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                             float *din, int n)
{
    (void)ctx; (void)in; (void)out;
    if (din && din != dout) memcpy(din, dout, sizeof(float) * (size_t)n * l->in_size);
}

/* ---- the kinds ----------------------------------------------------------------------------- */

const ae_layer_kind ae_kind_conv = {"conv", conv_setup, conv_init, conv_forward, conv_backward, NULL};
const ae_layer_kind ae_kind_deconv = {"deconv", deconv_setup, deconv_init, deconv_forward, deconv_backward,
                                      NULL};
const ae_layer_kind ae_kind_maxpool = {"maxpool", maxpool_setup, NULL, maxpool_forward, maxpool_backward,
                                       NULL};
const ae_layer_kind ae_kind_upsample = {"upsample", upsample_setup, NULL, upsample_forward, upsample_backward,
                                        NULL};
const ae_layer_kind ae_kind_reshape = {"reshape", reshape_setup, NULL, reshape_forward, reshape_backward,
                                       NULL};
