/* ckpt.h - checkpoint files: versioned header, zstd payload, checksum,
 * atomic replace.
 *
 * Layout (all integers little-endian):
 *   header (fixed size, AE_CKPT_HEADER_BYTES): magic "AETRCKPT", format
 *     version, header size, arch hash, seed, epoch, step, step_in_epoch,
 *     training-progress fields (see ae_ckpt_meta), sizes of the four
 *     sections (uncompressed), compressed payload size, CRC-32 of the header.
 *   payload: one zstd frame (with zstd's content checksum) holding, in order,
 *     config text (config_len bytes), params, optimizer state,
 *     non-trainable state (float32 little-endian).
 *   trailer: CRC-32 of everything before it, then the magic "AECKEND\0".
 * Written to "<path>.tmp", fsync'ed, renamed over <path>, and the directory
 * fsync'ed: a reader sees the old file or the new one, never a mix. */
#ifndef AE_CKPT_H
#define AE_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "ae/status.h"

#define AE_CKPT_VERSION 1
#define AE_CKPT_HEADER_BYTES 144 /* fixed header size of format version 1 */

typedef struct ae_ckpt_meta {
    uint64_t arch_hash;     /* ae_model_arch_hash of the model */
    uint64_t seed;
    int64_t epoch;          /* epoch to continue in (0-based) */
    int64_t step;           /* global optimizer steps done so far */
    int64_t step_in_epoch;  /* steps of `epoch` already done */
    int64_t bad_epochs;     /* early-stopping counter */
    double best_val;        /* best validation loss so far (inf if none) */
    double run_loss_sum;    /* training-loss sum of the unfinished epoch */
    double run_loss_count;  /* samples in run_loss_sum */
    int32_t nranks;         /* rank count of the run that wrote it (info) */
    int32_t flags;          /* reserved, 0 */
} ae_ckpt_meta;

typedef struct ae_ckpt {
    ae_ckpt_meta meta;
    char *config_text;      /* NUL-terminated, owned */
    size_t n_params, n_opt, n_state;
    float *params;          /* owned (NULL when n == 0) */
    float *opt;
    float *state;
} ae_ckpt;

/* Write a checkpoint atomically (tmp + fsync + rename + fsync of dir).
 * On any error (including ENOSPC, EFBIG) the tmp file is removed, an
 * existing file at path is left intact and AE_ERR_IO names the path and
 * errno text. level: zstd level (1..19; 0 = default 1). */
ae_status ae_ckpt_save(const char *path, const ae_ckpt_meta *meta, const char *config_text,
                       const float *params, size_t n_params, const float *opt, size_t n_opt,
                       const float *state, size_t n_state, int level, ae_error *err);

/* Read and fully verify a checkpoint (magic, version, header CRC, sizes,
 * zstd frame, content checksum, trailer CRC). Truncated, corrupt or foreign
 * files give AE_ERR_FORMAT naming the path and what is wrong; *out is
 * untouched on error. */
ae_status ae_ckpt_load(const char *path, ae_ckpt *out, ae_error *err);

void ae_ckpt_free(ae_ckpt *c); /* accepts NULL; zeroes *c */

/* Names in a run folder's ckpt/: numbered checkpoints are
 * AE_CKPT_PREFIX <step, 10 digits> -e <epoch, 5 digits> AE_CKPT_SUFFIX, so that
 * their names sort by step; the best one is AE_CKPT_BEST. */
#define AE_CKPT_PREFIX "ckpt-s"
#define AE_CKPT_SUFFIX ".aeck"
#define AE_CKPT_BEST "best.aeck"

/* The names of the entries of dir that start with prefix and end with
 * suffix, sorted (strcmp); *out is malloc'ed (free with ae_ckpt_names_free).
 * Returns the count; 0 (and *out NULL) when dir cannot be read. */
int ae_ckpt_list(const char *dir, const char *prefix, const char *suffix, char ***out);
void ae_ckpt_names_free(char **names, int n);

#endif
