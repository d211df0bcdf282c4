/* plot.h - pictures of a model and of its run: image grids written with
 * libpng (test images, reconstructions, corrupted inputs, first-layer
 * filters, a VAE's latent manifold, latent interpolations, reconstructions
 * across epochs) and plots with text drawn with cairo (a scatter of the
 * codes coloured by label, loss and accuracy curves from metrics.csv).
 *
 * Grids: every tile is a grayscale image whose values in [0, 1] map to
 * 0..255 by ae_plot_gray (clamped; NaN is black), upscaled `scale` times by
 * pixel repetition, and tiles are separated (and framed) by AE_PLOT_SEP
 * pixels of AE_PLOT_SEP_GRAY. A sample of c channels is shown as a tile of
 * c*h rows (its planes one above the other).
 *
 * Nothing here is collective or keeps global state; model pictures run the
 * model in evaluation mode (except the corruption of the denoising picture)
 * in chunks of m->max_batch, and overwrite its activations. Every function
 * returns an ae_status and fills err with a message naming the file. */
#ifndef AE_PLOT_H
#define AE_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "ae/data.h"
#include "ae/model.h"
#include "ae/status.h"

#define AE_PLOT_SEP 2          /* separator and frame width of grids, pixels */
#define AE_PLOT_SEP_GRAY 128   /* its gray level */
#define AE_PLOT_FILTER_SEP_GRAY 255 /* ... in the filters picture (white: its tiles are mostly mid gray) */
#define AE_PLOT_NCOLORS 10     /* distinct label colours (label k uses colour k mod 10) */

/* The gray level of a value: clamp to [0, 1], round to 0..255; NaN -> 0. */
static inline uint8_t ae_plot_gray(float v)
{
    if (!(v > 0.0f)) return 0;
    if (v >= 1.0f) return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

/* Width and height in pixels of a grid of rows x cols tiles of h x w
 * values upscaled scale times: cols*w*scale + (cols+1)*AE_PLOT_SEP, ... */
void ae_plot_grid_size(int rows, int cols, int h, int w, int scale, int *width, int *height);

/* Write n images (n x h x w floats, row-major, filling the grid row by row;
 * n <= rows*cols, cells past n are separator gray) as a grayscale PNG. */
ae_status ae_plot_grid_png(const char *path, const float *images, int n, int rows, int cols, int h, int w,
                           int scale, ae_error *err);

/* A PNG in memory, for pictures that go elsewhere than a file (TensorBoard):
 * the *_mem variants fill it with the bytes the file variant would write. */
typedef struct ae_plot_png {
    unsigned char *data; /* size bytes (malloc'ed; ae_plot_png_free) */
    size_t size, cap;
    int width, height;   /* pixels */
} ae_plot_png;

/* Encode w x h pixels of `channels` bytes each (1 gray, 3 RGB; rows of
 * channels * w bytes, top first) as an 8-bit PNG into *out (emptied first);
 * every picture, file or memory, goes through this one encoder. On failure
 * *out is empty and err names `name`: AE_ERR_ARG (bad size or channels),
 * AE_ERR_NOMEM, AE_ERR_IO (libpng's message). */
ae_status ae_plot_png_encode(const char *name, const uint8_t *px, int w, int h, int channels, ae_plot_png *out,
                             ae_error *err);

/* Free out's bytes and empty it. Accepts NULL and an empty ae_plot_png. */
void ae_plot_png_free(ae_plot_png *out);

/* Scale the pictures of a dataset use: 2 for images up to 32 x 32 (a
 * sample's c*h x w tile), else 1. */
int ae_plot_tile_scale(const ae_dataset *ds);

/* Colour k (mod AE_PLOT_NCOLORS) of the label palette (Tableau 10) as RGB. */
void ae_plot_color(int k, uint8_t rgb[3]);

/* Inverse of the standard normal CDF, for 0 < p < 1 (relative error about
 * 1e-15 after a Halley step); -inf / +inf at 0 / 1, NaN outside. */
double ae_plot_norm_ppf(double p);

/* Choose up to n sample indices of ds for the pictures: with labels, one of
 * each class in turn (the first unused sample of class 0, of class 1, ...,
 * then the second of each, ..., classes that ran out skipped); without
 * labels 0, 1, ... Returns the count chosen (min(n, ds->n)). */
int ae_plot_pick(const ae_dataset *ds, int n, uint32_t *idx);

/* ---- model pictures (grids) ------------------------------------------------ */

/* Reconstruction grid: the n samples idx[] of ds in groups of cols, each
 * group a row of test images above a row of their reconstructions (2 *
 * ceil(n / cols) rows). Needs an autoencoder. */
ae_status ae_plot_recon_png(const char *path, ae_model *m, const ae_dataset *ds, const uint32_t *idx, int n,
                            int cols, int scale, ae_error *err);

/* The same grid as a PNG in memory (*out as ae_plot_png_encode leaves it). */
ae_status ae_plot_recon_mem(ae_plot_png *out, ae_model *m, const ae_dataset *ds, const uint32_t *idx, int n,
                            int cols, int scale, ae_error *err);

/* Index of a corruption layer (gauss, mask, saltpepper, mult012, dropout)
 * the encoder starts with (layer 0), or -1. */
int ae_plot_noise_layer(const ae_model *m);

/* Denoising grid: groups of cols images in three rows - clean, corrupted
 * (layer 0 in training mode with the ctx {training = 1, seed, epoch 0, step
 * 0, sample0 = position in idx[], batch n}), and the reconstruction of the
 * corrupted input (the other layers in evaluation mode). Needs an
 * autoencoder that starts with a corruption layer. */
ae_status ae_plot_denoise_png(const char *path, ae_model *m, const ae_dataset *ds, const uint32_t *idx, int n,
                              int cols, uint64_t seed, int scale, ae_error *err);

/* The same grid as a PNG in memory. */
ae_status ae_plot_denoise_mem(ae_plot_png *out, ae_model *m, const ae_dataset *ds, const uint32_t *idx, int n,
                              int cols, uint64_t seed, int scale, ae_error *err);

/* Index of the first layer with filters over the input image: a dense layer
 * (untied) or a conv layer on a 1-channel image, preceded only by layers
 * that keep the input as it is (noise, flatten, reshape); -1 if none. */
int ae_plot_filter_layer(const ae_model *m);

/* First-layer filters as tiles, at most max_tiles: dense - column j of W
 * (in x units) as an image of the input's shape; conv - filter j's kernel
 * (ksize x ksize). Each tile is normalized on its own to [0, 1] (min ->
 * black, max -> white; a constant tile is mid gray); the separators are
 * AE_PLOT_FILTER_SEP_GRAY. cols = 0 picks it (8 up to 64 tiles, else 10;
 * fewer when there are fewer tiles). */
ae_status ae_plot_filters_png(const char *path, const ae_model *m, int max_tiles, int cols, int scale,
                              ae_error *err);

/* Index of a VAE `sample` layer with 2 outputs in the encoder, or -1. */
int ae_plot_vae2_layer(const ae_model *m);

/* VAE manifold: the decoder's outputs (layers after the 2-output sample
 * layer) over a grid x grid lattice of z; tile (r, c) decodes
 * z = (ppf((c + 0.5) / grid), ppf(1 - (r + 0.5) / grid)) (z0 grows to the
 * right, z1 upwards). */
ae_status ae_plot_manifold_png(const char *path, ae_model *m, int grid, int scale, ae_error *err);

/* The same lattice as a PNG in memory. */
ae_status ae_plot_manifold_mem(ae_plot_png *out, ae_model *m, int grid, int scale, ae_error *err);

/* Latent interpolation: for each pair (a[k], b[k]) two rows of steps tiles
 * (steps >= 2): the decoded points (1 - t) code(a) + t code(b) (code = the
 * output of layer n_encoder-1 in evaluation mode, decoded by the layers
 * after it), then the pixel blend (1 - t) x(a) + t x(b); t = j / (steps - 1).
 * Needs an autoencoder. */
ae_status ae_plot_interp_png(const char *path, ae_model *m, const ae_dataset *ds, const uint32_t *a,
                             const uint32_t *b, int npairs, int steps, int scale, ae_error *err);

/* Reconstructions of the same images across checkpoints: a row of the test
 * images idx[0..n) of ds, then one row per checkpoint (each loaded, its
 * model built from its own config for ds's shape), with a label column on
 * the left ("test", "epoch E", or "step S" for a checkpoint within an
 * epoch). The grid (as ae_plot_grid_png would draw it, rows 1 + nck) starts
 * at x = *grid_x (may be NULL), y = 0. */
ae_status ae_plot_epochs_png(const char *path, const char *const *ckpts, int nck, const ae_dataset *ds,
                             const uint32_t *idx, int n, int scale, int *grid_x, ae_error *err);

/* ---- plots (cairo) ---------------------------------------------------------------- */

typedef struct ae_plot_box {
    int x, y, w, h; /* pixels; w = 0: absent */
} ae_plot_box;

#define AE_PLOT_MAX_PANELS 2

/* Where a plot put its parts (for checks and for callers that annotate). */
typedef struct ae_plot_layout {
    int width, height;
    int npanels;
    ae_plot_box plot[AE_PLOT_MAX_PANELS];   /* each panel's data area; its frame lines are the axes */
    ae_plot_box legend[AE_PLOT_MAX_PANELS]; /* each panel's legend box */
    ae_plot_box xlabel[AE_PLOT_MAX_PANELS]; /* ink boxes of the axis labels */
    ae_plot_box ylabel[AE_PLOT_MAX_PANELS];
    ae_plot_box title;                      /* ink box of the title */
} ae_plot_layout;

/* 2-D coordinates of n codes of width d into xy (n x 2): d == 2 as they
 * are; d > 2 the projection on their first 2 principal components
 * (*projected = 1); d == 1 the code against 0. */
ae_status ae_plot_project2(const float *codes, size_t n, size_t d, float *xy, int *projected, ae_error *err);

/* Scatter of the codes (projected by ae_plot_project2) coloured by label
 * (labels may be NULL: one colour, no legend), with axes, ticks, axis
 * labels, a legend of the labels present (right of the plot) and a title
 * (may be NULL). lay may be NULL. */
ae_status ae_plot_codes_png(const char *path, const float *codes, const uint8_t *labels, size_t n, size_t d,
                            const char *title, ae_plot_layout *lay, ae_error *err);

/* Curves from a run's metrics.csv (columns found by the header's names;
 * empty or NaN cells are gaps; an epoch written again after a resume
 * replaces the rows from that epoch on): panel 1 the train / validation /
 * test loss against the epoch; panel 2 the test accuracy when the file has
 * one, else the test MSE per element (absent when neither has a value).
 * Each panel has axes, ticks, labels and a legend; title may be NULL. */
ae_status ae_plot_curves_png(const char *path, const char *metrics_csv, const char *title,
                             ae_plot_layout *lay, ae_error *err);

#define AE_PLOT_SCALING_W 1180 /* size of the scaling picture, pixels */
#define AE_PLOT_SCALING_H 440

/* Scaling picture (AE_PLOT_SCALING_W x _H) from the CSV of
 * cluster/scaling-study: panel 1 samples/s against the ranks P, with a
 * dashed ideal line P x (the 1-rank samples/s) per series; panel 2 the
 * efficiency with the ideal 1; one series per (mode, setup) in order of
 * first appearance (at most 16), one legend right of panel 2. The CSV is
 * read strictly: a header with at least the columns setup, mode, ranks,
 * samples_per_s, efficiency (any order, others ignored); then rows of as
 * many fields, mode strong or weak, setup 1-24 characters, ranks a whole
 * number >= 1, samples_per_s > 0, efficiency >= 0, one row per series and
 * P; no blank lines. An optional column "style" says how a series is
 * drawn: measured (dots joined by a line, the default), projected (a line,
 * no dots) or model (open circles: a model's values at measured points);
 * every row of a series has the same style. flags AE_PLOT_SCALING_LOG: P on
 * a log2 axis and samples/s on a log10 axis (for projections to many ranks).
 * Errors (AE_ERR_FORMAT) name the file and line. title may be NULL; lay may
 * be NULL. */
#define AE_PLOT_SCALING_LOG 1
ae_status ae_plot_scaling_png(const char *path, const char *scaling_csv, const char *title, int flags,
                              ae_plot_layout *lay, ae_error *err);

/* ---- commands ------------------------------------------------------------------- */

/* Draw every picture that applies to a run folder (RUN/config.ini,
 * RUN/metrics.csv, RUN/ckpt/best.aeck or else the newest
 * RUN/ckpt/ckpt-s*.aeck) into RUN/images/: curves.png (metrics.csv),
 * recon.png, codes.png, interpolation.png (autoencoders), filters.png
 * (dense or conv first layer), manifold.png (a 2-output sample layer),
 * denoise.png (a leading corruption layer), epochs.png (up to 8 numbered
 * checkpoints, spread over all of them). The test set comes from the
 * checkpoint's [data] keys; a relative data dir is looked up from the current
 * directory, then from RUN/../.. . Prints one line per file written. */
ae_status ae_plot_run(const char *run_dir, ae_error *err);

/* Reconstruction grid of n test images (chosen by ae_plot_pick) by a
 * checkpoint's model, to out_png (a relative data dir is looked up from the
 * current directory, then from the checkpoint's folder's ../../.., the
 * project of runs/NAME/ckpt/). */
ae_status ae_plot_reconstruct(const char *ckpt, const char *out_png, int n, ae_error *err);

#endif
