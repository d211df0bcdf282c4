/* config.c - INI config files -> ae_spec (see config.h and docs/configs.md).
 *
 * A small self-written INI reader (line numbers, includes, continuation lines)
 * driven by one table of keys: each row gives a key's section, type, field,
 * default text, allowed range and one-line doc, and the same rows drive the
 * parser, ae_config_defaults, the range checks, ae_config_dump and
 * ae_config_equal. Adding a key is one row (plus its field in ae_spec). */
#define _GNU_SOURCE /* realpath */
#include "ae/config.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
#define MAX_INCLUDE_DEPTH 16      /* includes nested below the first file */
#define SUGGEST_MAX_DIST 2        /* suggest a known name within this edit distance */
#define EDIT_MAX_LEN 64           /* names longer than this are never suggested */
#define RUN_NAME_MAX 100          /* [run] name: at most this many characters */
#define CONTEXT_CHARS 24          /* characters of a layer list quoted in an error */
#define VALUE_CHARS 64            /* characters of a bad value quoted in an error */
#define FLOAT_MAX_DIGITS 17       /* the dump tries 1.. digits until the float reads back */
#define FLOAT_PLAIN_INT_MAX 1e9f  /* whole floats below this are dumped without an exponent */
#define PROBLEM_MAX 512           /* one problem description */
#define WHERE_MAX (AE_SPEC_STR + 64) /* "file:line" or "--set section.key" */
#define SET_LHS_MAX 128           /* "section.key" of --set */
#define DUMP_INDENT "    "        /* continuation lines of layer lists in the dump */
#define READ_CHUNK 4096           /* file read size, and the first size of a growing string */
/* clang-format on */

/* ------------------------------------------------------------------ the key table */

typedef enum { T_INT, T_INT64, T_UINT64, T_FLOAT, T_BOOL, T_STRING, T_ENUM, T_KEYWORD, T_LAYERS } key_type;

/* Extra rules for string values. */
typedef enum { STR_ANY, STR_NONEMPTY, STR_TOKEN, STR_RUN_NAME } str_rule;

/* Range flags: which of lo / hi bound a number, and whether the bound itself is excluded. */
#define R_LO 1u
#define R_HI 2u
#define R_LO_OPEN 4u
#define R_HI_OPEN 8u

#define ANY_VALUE 0, 0, 0u
#define AT_LEAST(lo) (lo), 0, R_LO
#define ABOVE(lo) (lo), 0, (R_LO | R_LO_OPEN)
#define BETWEEN(lo, hi) (lo), (hi), (R_LO | R_HI)
#define LO_UPTO_EXCL(lo, hi) (lo), (hi), (R_LO | R_HI | R_HI_OPEN) /* [lo, hi) */
#define ABOVE_UPTO(lo, hi) (lo), (hi), (R_LO | R_LO_OPEN | R_HI)   /* (lo, hi] */

typedef struct key_def {
    const char *section;
    const char *key;
    key_type type;
    size_t off;               /* the value in ae_spec (layer list: the array) */
    size_t aux;               /* string: capacity; layer list: offset of the count;
                                 derived number: offset of its "was set" flag */
    const char *const *names; /* enum / keyword: the allowed values, NULL-terminated */
    const char *def;          /* default as config text; NULL: derived from other keys */
    double lo, hi;
    unsigned range; /* R_* */
    str_rule rule;
    const char *doc;
} key_def;

/* clang-format off */
/* Field offsets, checked against the C type of the field at compile time. */
#define FIELD(f) offsetof(ae_spec, f)
#define FIELD_OF(f, T) _Generic(((ae_spec *)0)->f, T: FIELD(f))
#define FIELD_INT_SIZED(f) (FIELD(f) + 0 * sizeof(char[sizeof(((ae_spec *)0)->f) == sizeof(int) ? 1 : -1]))
#define FSIZE(f) sizeof(((ae_spec *)0)->f)

#define K_INT(s, k, f, d, r, doc) {s, k, T_INT, FIELD_OF(f, int), 0, NULL, d, r, STR_ANY, doc}
#define K_I64(s, k, f, d, r, doc) {s, k, T_INT64, FIELD_OF(f, int64_t), 0, NULL, d, r, STR_ANY, doc}
#define K_U64(s, k, f, d, doc) {s, k, T_UINT64, FIELD_OF(f, uint64_t), 0, NULL, d, ANY_VALUE, STR_ANY, doc}
#define K_FLT(s, k, f, d, r, doc) {s, k, T_FLOAT, FIELD_OF(f, float), 0, NULL, d, r, STR_ANY, doc}
#define K_DERIVED(s, k, f, flag, r, doc)                                                                   \
    {s, k, T_FLOAT, FIELD_OF(f, float), FIELD_OF(flag, int), NULL, NULL, r, STR_ANY, doc}
#define K_BOOL(s, k, f, d, doc) {s, k, T_BOOL, FIELD_OF(f, int), 0, NULL, d, ANY_VALUE, STR_ANY, doc}
#define K_ENUM(s, k, f, nm, d, doc) {s, k, T_ENUM, FIELD_INT_SIZED(f), 0, nm, d, ANY_VALUE, STR_ANY, doc}
#define K_WORD(s, k, f, nm, d, doc) {s, k, T_KEYWORD, FIELD(f), FSIZE(f), nm, d, ANY_VALUE, STR_ANY, doc}
#define K_STR(s, k, f, d, rule, doc) {s, k, T_STRING, FIELD(f), FSIZE(f), NULL, d, ANY_VALUE, rule, doc}
#define K_LAYERS(s, k, f, n, d, doc) \
    {s, k, T_LAYERS, FIELD(f), FIELD_OF(n, int), NULL, d, ANY_VALUE, STR_ANY, doc}
/* clang-format on */

/* Names of enum values, in the order of the C enums. */
static const char *const model_types[] = {"autoencoder", "classifier", NULL};
static const char *const init_names[] = {"glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "torch",
                                         NULL};
static const char *const loss_kinds[] = {"mse", "bce", "ce", NULL};
static const char *const opt_kinds[] = {"sgd", "rmsprop", "adam", "adadelta", NULL};
static const char *const sched_kinds[] = {"constant", "step", "cosine", NULL};
static const char *const ckpt_error_modes[] = {"stop", "continue", NULL};
static const char *const allreduce_modes[] = {"node", "mpi", NULL};
static const char *const shard_modes[] = {"auto", "true", "false", NULL};
static const char *const reductions[] = {"mean", "sum", NULL};

/* Per-optimizer defaults of optim.rho / optim.eps (0: the optimizer does not use it). */
static const struct {
    float rho;
    float eps;
} optim_defaults[] = {
    [AE_OPT_SGD] = {0.0f, 0.0f},
    [AE_OPT_RMSPROP] = {0.9f, 1e-7f},
    [AE_OPT_ADAM] = {0.0f, 1e-8f},
    [AE_OPT_ADADELTA] = {0.95f, 1e-6f},
};
#define N_OPT_KINDS ((int)(sizeof optim_defaults / sizeof optim_defaults[0]))
_Static_assert(N_OPT_KINDS == sizeof opt_kinds / sizeof opt_kinds[0] - 1, "opt_kinds vs optim_defaults");

static const key_def keys[] = {
    K_ENUM("model", "type", type, model_types, "autoencoder",
           "autoencoder (encoder + decoder, reconstructs its input) or classifier (encoder + head)"),
    K_LAYERS("model", "encoder", encoder, n_encoder, "", "encoder layers, input to code (required)"),
    K_LAYERS("model", "decoder", decoder, n_decoder, "",
             "decoder layers, code to reconstruction (required for autoencoders)"),
    K_LAYERS("model", "head", head, n_head, "dense(10, softmax)", "classifier layers after the encoder"),
    K_WORD("model", "init", init, init_names, "glorot_uniform", "weight initialisation"),
    K_STR("model", "pretrained", pretrained, "", STR_ANY,
          "checkpoint whose layers of the same name and size start this model (e.g. an autoencoder's encoder)"),
    K_INT("model", "freeze", freeze, "0", AT_LEAST(0), "the first N layers are not trained"),

    K_BOOL("pretrain", "layerwise", pretrain_layerwise, "false",
           "greedy layer-wise pretraining (one phase per encoder layer) before training the whole stack"),
    K_INT("pretrain", "epochs", pretrain_epochs, "10", AT_LEAST(0), "epochs of each pretraining phase"),

    K_ENUM("loss", "kind", loss, loss_kinds, "mse",
           "mse or bce (autoencoders), ce = softmax cross-entropy (classifiers)"),
    K_ENUM("loss", "reduction", loss_sum, reductions, "mean",
           "mean or sum of the reconstruction loss over a sample's features (then the mean over samples)"),
    K_FLT("loss", "l2", l2, "0", AT_LEAST(0), "weight decay: adds l2/2 * sum(W^2) over weights, not biases"),
    K_FLT("loss", "l1_activity", l1_activity, "0", AT_LEAST(0),
          "sparsity: adds l1_activity * sum|a| / batch over the output of activity_layer"),
    K_STR("loss", "activity_layer", activity_layer, "code", STR_TOKEN,
          "layer name for l1_activity and kl_sparsity; code = the last encoder layer"),
    K_FLT("loss", "kl_sparsity", kl_sparsity, "0", AT_LEAST(0),
          "sparsity: adds kl_sparsity * sum_j KL(kl_target || mean activation of unit j over the batch)"),
    K_FLT("loss", "kl_target", kl_target, "0.05", ABOVE_UPTO(0, 1), "the target mean activation rho"),

    K_ENUM("optim", "kind", optim.kind, opt_kinds, "adam", "optimizer"),
    K_FLT("optim", "lr", lr, "1e-3", ABOVE(0), "learning rate (after warm-up, before decay)"),
    K_FLT("optim", "momentum", optim.momentum, "0", LO_UPTO_EXCL(0, 1), "sgd momentum (0 = plain sgd)"),
    K_BOOL("optim", "nesterov", optim.nesterov, "false", "Nesterov momentum (sgd with momentum > 0 only)"),
    K_FLT("optim", "beta1", optim.beta1, "0.9", LO_UPTO_EXCL(0, 1), "adam: decay of the mean"),
    K_FLT("optim", "beta2", optim.beta2, "0.999", LO_UPTO_EXCL(0, 1), "adam: decay of the squares"),
    K_DERIVED("optim", "rho", optim.rho, optim_rho_set, LO_UPTO_EXCL(0, 1),
              "rmsprop, adadelta: decay of the squares (default by kind: rmsprop 0.9, adadelta 0.95)"),
    K_DERIVED("optim", "eps", optim.eps, optim_eps_set, ABOVE(0),
              "added to denominators (default by kind: adam 1e-8, rmsprop 1e-7, adadelta 1e-6)"),
    K_FLT("optim", "clip_norm", clip_norm, "0", AT_LEAST(0), "clip the global gradient norm (0 = off)"),
    K_BOOL("optim", "scale_lr", scale_lr, "false", "multiply lr by batch / base_batch"),
    K_INT("optim", "base_batch", base_batch, "256", AT_LEAST(1), "batch size lr is given for (scale_lr)"),

    K_ENUM("schedule", "kind", sched.kind, sched_kinds, "constant", "learning-rate decay after warm-up"),
    K_FLT("schedule", "warmup_epochs", sched.warmup_epochs, "0", AT_LEAST(0),
          "linear warm-up from 0 over this many epochs (may be fractional)"),
    K_FLT("schedule", "step_epochs", sched.step_epochs, "10", ABOVE(0),
          "step: multiply the lr by gamma every step_epochs epochs"),
    K_FLT("schedule", "gamma", sched.gamma, "0.1", ABOVE_UPTO(0, 1), "step: the factor"),
    K_FLT("schedule", "min_lr", sched.min_lr, "0", AT_LEAST(0), "cosine: the lr reached at the last step"),

    K_INT("train", "batch", batch, "256", BETWEEN(1, 1e6), "global batch size (over all ranks)"),
    K_INT("train", "accum", accum, "1", BETWEEN(1, AE_ACCUM_MAX),
          "gradient accumulation: each step's batch runs as this many global micro-batches, one optimizer step"),
    K_INT("train", "micro_batch", micro_batch, "0", BETWEEN(0, 1e6),
          "per-rank samples of one pass at most: accum = ceil(batch / (ranks x micro_batch)) (0 = off)"),
    K_INT("train", "epochs", epochs, "10", BETWEEN(0, 1e6), "passes over the training set"),
    K_I64("train", "max_steps", max_steps, "0", AT_LEAST(0), "stop after this many steps (0 = no limit)"),
    K_U64("train", "seed", seed, "0", "seed of every random stream (init, shuffling, noise, dropout)"),
    K_INT("train", "validation", validation, "5000", AT_LEAST(0), "training images held out for validation"),
    K_INT("train", "train_limit", train_limit, "0", AT_LEAST(0),
          "use only the first N training images (0 = all)"),
    K_INT("train", "patience", patience, "0", AT_LEAST(0),
          "stop after N evaluations without a better validation loss (0 = off)"),
    K_FLT("train", "target_loss", target_loss, "0", AT_LEAST(0),
          "stop once the validation loss (the training loss without a validation split) is at or below it; "
          "0 = off"),
    K_INT("train", "checkpoint_epochs", checkpoint_epochs, "1", AT_LEAST(0),
          "checkpoint every N epochs (0 = only at the end)"),
    K_I64("train", "checkpoint_steps", checkpoint_steps, "0", AT_LEAST(0), "also every N steps (0 = off)"),
    K_INT("train", "keep", keep, "3", AT_LEAST(1), "checkpoints kept"),
    K_INT("train", "threads", threads, "0", AT_LEAST(0), "threads per rank (0 = cores / ranks on the node)"),
    K_INT("train", "eval_every", eval_every, "1", AT_LEAST(0),
          "evaluate every N epochs (0 = only at the end)"),
    K_BOOL("train", "probe", probe, "true", "autoencoders: fit a linear classifier on the code at the end"),
    K_INT("train", "probe_epochs", probe_epochs, "30", AT_LEAST(0), "epochs of the probe"),
    K_FLT("train", "probe_lr", probe_lr, "1e-2", ABOVE(0), "learning rate of the probe"),
    K_INT("train", "probe_batch", probe_batch, "256", AT_LEAST(1), "batch size of the probe"),
    K_BOOL("train", "deterministic", deterministic, "false",
           "bitwise identical parameters and state for any rank count (see docs/determinism.md)"),
    K_INT("train", "micro_shards", micro_shards, "4", BETWEEN(1, 4096),
          "deterministic: each global batch is split into this many fixed micro-shards (at least the rank count)"),
    K_INT("train", "knn", knn, "0", BETWEEN(0, 64),
          "autoencoders: test accuracy of a k-nearest-neighbour classifier on the code at the end (0 = off)"),
    K_FLT("train", "bucket_mb", bucket_mb, "0", AT_LEAST(0),
          "MB of gradients per allreduce started during backward (0 = one allreduce after backward)"),
    K_ENUM("train", "allreduce", allreduce_mpi, allreduce_modes, "node",
           "bucket_mb = 0: node sums the ranks of each node through shared memory, then between nodes; mpi "
           "is one MPI_Allreduce over all ranks"),
    K_ENUM("train", "shard_optimizer", shard_optimizer, shard_modes, "auto",
           "allreduce = node: the node holds the parameters and optimizer state once, and each rank sums and steps "
           "only its chunk (not with [optim] clip_norm); auto = when the parameters hold at least 4 MB"),
    K_BOOL("train", "comm_thread", comm_thread, "true",
           "bucket_mb > 0: run the buckets' allreduces on a communication thread (needs MPI_THREAD_MULTIPLE)"),
    K_BOOL("train", "bucket_step", bucket_step, "true",
           "bucket_mb > 0, comm_thread: step each bucket's parameters once its sum is in (not with [optim] clip_norm)"),
    K_BOOL("train", "balance", balance, "false",
           "P > 1: each rank's share of every batch follows its measured speed (at most 5/4 of the equal share), "
           "so a slower rank holds up the step less; the sum is the same up to float rounding, but not bitwise "
           "the same from run to run (not with deterministic = true)"),
    K_BOOL("train", "step_times", step_times, "false",
           "every rank writes its per-step times (compute, gradient sum with its waiting, optimizer) to "
           "steps/rank-R.csv in the run folder (bench/perfutil.py steps RUN reads them)"),
    K_BOOL("train", "flush_denormals", flush_denormals, "true",
           "flush denormal floats to zero while training (x86 FTZ/DAZ): each one costs ~100 cycles on Intel"),
    K_FLT("train", "watchdog", watchdog, "600", AT_LEAST(0),
          "seconds a rank may wait in one collective before it aborts the job (0 = off)"),
    K_ENUM("train", "on_checkpoint_error", ckpt_error_continue, ckpt_error_modes, "stop",
           "a failed checkpoint write: stop the job, or warn and continue training"),

    K_STR("data", "dataset", dataset, "mnist", STR_NONEMPTY,
          "mnist, fashion-mnist, or a directory holding the four IDX files"),
    K_STR("data", "dir", data_dir, "data", STR_NONEMPTY, "directory of the named datasets"),
    K_BOOL("data", "shared", data_shared, "true",
           "keep one copy of the loaded data per node, shared by its ranks (false: one copy per rank)"),

    K_STR("run", "name", run_name, "", STR_RUN_NAME, "run name (empty: made by the trainer)"),
    K_STR("run", "dir", run_dir, "runs", STR_NONEMPTY, "directory that holds the run directories"),
    K_INT("run", "tb_images", tb_images, "8", BETWEEN(0, 100),
          "autoencoders: test images shown with their reconstructions in TensorBoard every epoch (0 = none)"),
};
#define N_KEYS (sizeof keys / sizeof keys[0])

/* ------------------------------------------------------------------ small helpers */

/* A growing NUL-terminated string. */
typedef struct strbuf {
    char *p;
    size_t len, cap;
} strbuf;

/* Makes room for n more bytes and the NUL. */
static bool sb_reserve(strbuf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : READ_CHUNK;
    while (cap < b->len + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return false;
    b->p = q;
    b->cap = cap;
    return true;
}

static bool sb_put(strbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

static bool sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sb_reserve(b, (size_t)n)) return false;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

/* Appends printf output to the NUL-terminated buf of n bytes (truncating). */
static void bufcat(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bufcat(char *buf, size_t n, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, n - used, fmt, ap);
    va_end(ap);
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static char *trim(char *s)
{
    while (is_blank(*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && is_blank(s[n - 1])) s[--n] = '\0';
    return s;
}

static bool is_token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '+' || c == '-';
}

static void *field(ae_spec *s, size_t off) { return (char *)s + off; }
static const void *cfield(const ae_spec *s, size_t off) { return (const char *)s + off; }

static int count_names(const char *const *names)
{
    int n = 0;
    while (names[n]) n++;
    return n;
}

static int find_name(const char *const *names, const char *v)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], v) == 0) return i;
    return -1;
}

static void join_names(const char *const *names, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int i = 0; names[i]; i++) bufcat(buf, n, "%s%s", i ? ", " : "", names[i]);
}

/* Levenshtein distance, for "did you mean"; large for long names. */
static int edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > EDIT_MAX_LEN || nb > EDIT_MAX_LEN) return INT_MAX;
    int row[EDIT_MAX_LEN + 1];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

/* The table's spelling of a section name, or NULL. */
static const char *find_section(const char *name)
{
    for (size_t k = 0; k < N_KEYS; k++)
        if (strcmp(keys[k].section, name) == 0) return keys[k].section;
    return NULL;
}

static int find_key(const char *section, const char *key)
{
    for (size_t k = 0; k < N_KEYS; k++)
        if (strcmp(keys[k].section, section) == 0 && strcmp(keys[k].key, key) == 0) return (int)k;
    return -1;
}

/* "unknown section [foo] (did you mean [run]? | allowed: ...)" */
static ae_status unknown_section(ae_error *err, const char *where, const char *name)
{
    char hint[PROBLEM_MAX] = "";
    const char *best = NULL;
    int best_dist = SUGGEST_MAX_DIST + 1;
    for (size_t k = 0; k < N_KEYS; k++) {
        if (k > 0 && strcmp(keys[k].section, keys[k - 1].section) == 0) continue;
        int dist = edit_distance(name, keys[k].section);
        if (dist < best_dist) {
            best_dist = dist;
            best = keys[k].section;
        }
        bufcat(hint, sizeof hint, "%s%s", k ? ", " : "", keys[k].section);
    }
    if (best)
        return ae_error_set(err, AE_ERR_CONFIG, "%s: unknown section [%.*s] (did you mean [%s]?)", where,
                            VALUE_CHARS, name, best);
    return ae_error_set(err, AE_ERR_CONFIG, "%s: unknown section [%.*s] (allowed: %s)", where, VALUE_CHARS,
                        name, hint);
}

/* "unknown key 'lrr' in [optim] (did you mean 'lr'? | it belongs in [train] | allowed: ...)" */
static ae_status unknown_key(ae_error *err, const char *where, const char *section, const char *key)
{
    char hint[PROBLEM_MAX] = "";
    const char *best = NULL, *elsewhere = NULL;
    int best_dist = SUGGEST_MAX_DIST + 1;
    for (size_t k = 0; k < N_KEYS; k++) {
        if (strcmp(keys[k].section, section) != 0) {
            if (!elsewhere && strcmp(keys[k].key, key) == 0) elsewhere = keys[k].section;
            continue;
        }
        int dist = edit_distance(key, keys[k].key);
        if (dist < best_dist) {
            best_dist = dist;
            best = keys[k].key;
        }
        bufcat(hint, sizeof hint, "%s%s", hint[0] ? ", " : "", keys[k].key);
    }
    if (best)
        return ae_error_set(err, AE_ERR_CONFIG, "%s: unknown key '%.*s' in [%s] (did you mean '%s'?)", where,
                            VALUE_CHARS, key, section, best);
    if (elsewhere)
        return ae_error_set(err, AE_ERR_CONFIG, "%s: unknown key '%.*s' in [%s] (it belongs in [%s])", where,
                            VALUE_CHARS, key, section, elsewhere);
    return ae_error_set(err, AE_ERR_CONFIG, "%s: unknown key '%.*s' in [%s] (allowed: %s)", where,
                        VALUE_CHARS, key, section, hint);
}

/* ------------------------------------------------------------------ where a value came from */

/* A value joined from continuation lines: segment i starts at byte off of the value, on line. */
typedef struct seg {
    size_t off;
    int line;
} seg;

typedef struct src_loc {
    const char *name; /* file name, "--set section.key", "default" or the spec's source */
    const seg *segs;  /* NULL: no line numbers */
    int nsegs;
    size_t base; /* offset of the parsed text within the joined value (an opening quote) */
} src_loc;

/* "name:line" of byte pos of the parsed text, or "name". */
static void loc_where(const src_loc *at, size_t pos, char *buf, size_t n)
{
    if (!at->segs || at->nsegs == 0) {
        snprintf(buf, n, "%s", at->name);
        return;
    }
    int line = at->segs[0].line;
    for (int i = 1; i < at->nsegs && at->segs[i].off <= pos + at->base; i++) line = at->segs[i].line;
    snprintf(buf, n, "%s:%d", at->name, line);
}

/* "a finite number, 0 <= momentum < 1" */
static void describe_range(const key_def *d, const char *what, char *buf, size_t n)
{
    snprintf(buf, n, "%s", what);
    const char *lo_op = (d->range & R_LO_OPEN) ? "<" : "<=";
    const char *hi_op = (d->range & R_HI_OPEN) ? "<" : "<=";
    if ((d->range & R_LO) && (d->range & R_HI))
        bufcat(buf, n, ", %.15g %s %s %s %.15g", d->lo, lo_op, d->key, hi_op, d->hi);
    else if (d->range & R_LO)
        bufcat(buf, n, ", %s %s %.15g", d->key, (d->range & R_LO_OPEN) ? ">" : ">=", d->lo);
    else if (d->range & R_HI)
        bufcat(buf, n, ", %s %s %.15g", d->key, hi_op, d->hi);
}

/* The "(allowed: ...)" text of a key. */
static void describe_allowed(const key_def *d, char *buf, size_t n)
{
    switch (d->type) {
    case T_INT:
    case T_INT64: describe_range(d, "an integer", buf, n); break;
    case T_FLOAT: describe_range(d, "a finite number", buf, n); break;
    case T_UINT64: snprintf(buf, n, "an integer from 0 to %" PRIu64, UINT64_MAX); break;
    case T_BOOL: snprintf(buf, n, "true, false, yes, no, on, off, 1, 0"); break;
    case T_ENUM:
    case T_KEYWORD: join_names(d->names, buf, n); break;
    case T_LAYERS:
        snprintf(buf, n, "kind(arg, key=value, ...), kind, ... with at most %d layers of %d arguments",
                 AE_SPEC_MAX_LAYERS, AE_SPEC_MAX_ARGS);
        break;
    case T_STRING:
        switch (d->rule) {
        case STR_TOKEN: snprintf(buf, n, "a layer name of letters, digits, '_', '.', '+', '-'"); break;
        case STR_RUN_NAME:
            snprintf(buf, n, "empty, or up to %d letters, digits, '.', '_', '-', not starting with '.'",
                     RUN_NAME_MAX);
            break;
        case STR_NONEMPTY: snprintf(buf, n, "non-empty text of at most %zu characters", d->aux - 1); break;
        case STR_ANY: snprintf(buf, n, "text of at most %zu characters", d->aux - 1); break;
        }
        break;
    }
}

/* Fails with "<where>: [section] key: <problem> (allowed: ...)"; the allowed
 * list only when with_allowed. pos is the byte of the value at fault (for its line). */
static ae_status key_fail(ae_error *err, const src_loc *at, size_t pos, const key_def *d, bool with_allowed,
                          const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static ae_status key_fail(ae_error *err, const src_loc *at, size_t pos, const key_def *d, bool with_allowed,
                          const char *fmt, ...)
{
    char where[WHERE_MAX], problem[PROBLEM_MAX], allowed[PROBLEM_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    loc_where(at, pos, where, sizeof where);
    if (!with_allowed)
        return ae_error_set(err, AE_ERR_CONFIG, "%s: [%s] %s: %s", where, d->section, d->key, problem);
    describe_allowed(d, allowed, sizeof allowed);
    return ae_error_set(err, AE_ERR_CONFIG, "%s: [%s] %s: %s (allowed: %s)", where, d->section, d->key,
                        problem, allowed);
}

/* ------------------------------------------------------------------ values */

typedef enum { NUM_OK, NUM_SYNTAX, NUM_OVERFLOW, NUM_NOT_FINITE, NUM_NEGATIVE } num_result;

static num_result parse_int64(const char *v, int64_t *out)
{
    if (!*v || is_blank(*v)) return NUM_SYNTAX;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end) return NUM_SYNTAX;
    if (errno == ERANGE) return NUM_OVERFLOW;
    *out = (int64_t)x;
    return NUM_OK;
}

static num_result parse_uint64(const char *v, uint64_t *out)
{
    int64_t probe;
    if (v[0] == '-') return parse_int64(v, &probe) == NUM_SYNTAX ? NUM_SYNTAX : NUM_NEGATIVE;
    if (!*v || is_blank(*v)) return NUM_SYNTAX;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end) return NUM_SYNTAX;
    if (errno == ERANGE) return NUM_OVERFLOW;
    *out = (uint64_t)x;
    return NUM_OK;
}

static num_result parse_double(const char *v, double *out)
{
    if (!*v || is_blank(*v)) return NUM_SYNTAX;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end) return NUM_SYNTAX;
    if (errno == ERANGE && fabs(x) > 1.0) return NUM_OVERFLOW;
    if (!isfinite(x)) return NUM_NOT_FINITE;
    *out = x;
    return NUM_OK;
}

static bool parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0) return (*out = 1), true;
        if (strcasecmp(v, no[i]) == 0) return (*out = 0), true;
    }
    return false;
}

static bool in_range(const key_def *d, double x)
{
    if ((d->range & R_LO) && (x < d->lo || ((d->range & R_LO_OPEN) && x == d->lo))) return false;
    if ((d->range & R_HI) && (x > d->hi || ((d->range & R_HI_OPEN) && x == d->hi))) return false;
    return true;
}

/* Checks a string value against the key's rule; writes the problem to why. */
static bool string_ok(const key_def *d, const char *v, char *why, size_t n)
{
    for (const char *c = v; *c; c++) {
        if ((unsigned char)*c < ' ' || *c == '"') {
            snprintf(why, n, "'%.*s' contains %s", VALUE_CHARS, v,
                     *c == '"' ? "'\"'" : "a control character");
            return false;
        }
    }
    size_t len = strlen(v);
    switch (d->rule) {
    case STR_ANY: return true;
    case STR_NONEMPTY:
        if (len == 0) snprintf(why, n, "must not be empty");
        return len > 0;
    case STR_TOKEN:
        if (len == 0) {
            snprintf(why, n, "must not be empty");
            return false;
        }
        for (const char *c = v; *c; c++) {
            if (!is_token_char(*c)) {
                snprintf(why, n, "'%.*s' contains '%c'", VALUE_CHARS, v, *c);
                return false;
            }
        }
        return true;
    case STR_RUN_NAME:
        if (len > RUN_NAME_MAX) {
            snprintf(why, n, "'%.*s...' is too long (%zu characters)", VALUE_CHARS, v, len);
            return false;
        }
        if (v[0] == '.') {
            snprintf(why, n, "'%.*s' starts with '.'", VALUE_CHARS, v);
            return false;
        }
        for (const char *c = v; *c; c++) {
            if (!is_token_char(*c) || *c == '+') {
                snprintf(why, n, "'%.*s' contains '%c'", VALUE_CHARS, v, *c);
                return false;
            }
        }
        return true;
    }
    return true;
}

/* ---- layer lists */

typedef struct layer_parser {
    const char *v;
    size_t i;  /* next byte of v */
    int layer; /* 1-based, for messages */
    const key_def *d;
    const src_loc *at;
    ae_error *err;
} layer_parser;

static ae_status lp_fail(layer_parser *lp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ae_status lp_fail(layer_parser *lp, const char *fmt, ...)
{
    char problem[PROBLEM_MAX], ctx[CONTEXT_CHARS + 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    if (lp->v[lp->i])
        snprintf(ctx, sizeof ctx, "at '%.*s'", CONTEXT_CHARS, lp->v + lp->i);
    else
        snprintf(ctx, sizeof ctx, "at the end of the list");
    return key_fail(lp->err, lp->at, lp->i, lp->d, true, "layer %d: %s %s", lp->layer, problem, ctx);
}

static void lp_skip_ws(layer_parser *lp)
{
    while (is_blank(lp->v[lp->i])) lp->i++;
}

/* Reads a [A-Za-z0-9_.+-] token into out (cap bytes); what names it in errors. */
static ae_status lp_token(layer_parser *lp, char *out, size_t cap, const char *what)
{
    size_t n = 0;
    while (is_token_char(lp->v[lp->i + n])) n++;
    if (n == 0) return lp_fail(lp, "expected %s", what);
    if (n >= cap) return lp_fail(lp, "%s is too long (max %zu characters)", what, cap - 1);
    memcpy(out, lp->v + lp->i, n);
    out[n] = '\0';
    lp->i += n;
    return AE_OK;
}

/* Reads "(arg, key=value, ...)" after a layer kind; lp->i is at the '('. */
static ae_status lp_args(layer_parser *lp, ae_layer_spec *ls)
{
    lp->i++;
    lp_skip_ws(lp);
    if (lp->v[lp->i] == ')') {
        lp->i++;
        return AE_OK;
    }
    for (;;) {
        char c = lp->v[lp->i];
        if (c == ',' || c == ')') return lp_fail(lp, "empty argument");
        if (c == '\0') return lp_fail(lp, "'(' without a matching ')'");
        if (ls->nargs == AE_SPEC_MAX_ARGS) return lp_fail(lp, "more than %d arguments", AE_SPEC_MAX_ARGS);
        ae_layer_arg *a = &ls->args[ls->nargs];
        char tok[sizeof a->val];
        size_t start = lp->i;
        ae_status st = lp_token(lp, tok, sizeof tok, "an argument");
        if (st != AE_OK) return st;
        lp_skip_ws(lp);
        if (lp->v[lp->i] == '=') {
            if (strlen(tok) >= sizeof a->key) {
                lp->i = start;
                return lp_fail(lp, "argument name is too long (max %zu characters)", sizeof a->key - 1);
            }
            memcpy(a->key, tok, strlen(tok) + 1);
            lp->i++;
            lp_skip_ws(lp);
            st = lp_token(lp, a->val, sizeof a->val, "a value after '='");
            if (st != AE_OK) return st;
            for (int j = 0; j < ls->nargs; j++) {
                if (strcmp(ls->args[j].key, a->key) == 0) {
                    lp->i = start;
                    return lp_fail(lp, "argument '%s' given twice", a->key);
                }
            }
        } else {
            if (ls->nargs > 0 && ls->args[ls->nargs - 1].key[0]) {
                lp->i = start;
                return lp_fail(lp, "positional argument after a key=value argument");
            }
            memcpy(a->val, tok, strlen(tok) + 1);
        }
        ls->nargs++;
        lp_skip_ws(lp);
        c = lp->v[lp->i];
        if (c == ')') {
            lp->i++;
            return AE_OK;
        }
        if (c == ',') {
            lp->i++;
            lp_skip_ws(lp);
            continue;
        }
        if (c == '\0') return lp_fail(lp, "'(' without a matching ')'");
        if (c == '(') return lp_fail(lp, "unexpected '(' (parentheses do not nest)");
        return lp_fail(lp, "expected ',' or ')'");
    }
}

/* Splits "kind(arg, key=value), kind, ..." into the key's layer array and count. */
static ae_status parse_layers(ae_spec *s, const key_def *d, const char *v, const src_loc *at, ae_error *err)
{
    ae_layer_spec *arr = field(s, d->off);
    int *count = field(s, d->aux);
    memset(arr, 0, sizeof *arr * AE_SPEC_MAX_LAYERS);
    *count = 0;
    layer_parser lp = {v, 0, 1, d, at, err};
    lp_skip_ws(&lp);
    if (!v[lp.i]) return AE_OK; /* an empty list */
    for (;; lp.layer++) {
        if (lp.layer > AE_SPEC_MAX_LAYERS) return lp_fail(&lp, "more than %d layers", AE_SPEC_MAX_LAYERS);
        ae_layer_spec *ls = &arr[lp.layer - 1];
        char c = v[lp.i];
        if (c == ',' || c == '\0') return lp_fail(&lp, "empty item (a stray ',')");
        if (c == ')') return lp_fail(&lp, "')' without a matching '('");
        loc_where(at, lp.i, ls->origin, sizeof ls->origin);
        ae_status st = lp_token(&lp, ls->kind, sizeof ls->kind, "a layer kind");
        if (st != AE_OK) return st;
        lp_skip_ws(&lp);
        if (v[lp.i] == '(') {
            st = lp_args(&lp, ls);
            if (st != AE_OK) return st;
            lp_skip_ws(&lp);
        }
        c = v[lp.i];
        if (c == '\0') break;
        if (c == ')') return lp_fail(&lp, "')' without a matching '('");
        if (c != ',') return lp_fail(&lp, "expected ',' between layers");
        lp.i++;
        lp_skip_ws(&lp);
    }
    *count = lp.layer;
    return AE_OK;
}

static bool token_ok(const char *s, size_t cap, bool may_be_empty)
{
    const char *end = memchr(s, '\0', cap);
    if (!end || (!may_be_empty && end == s)) return false;
    for (const char *c = s; c < end; c++)
        if (!is_token_char(*c)) return false;
    return true;
}

/* Checks a stored layer (which code may have built by hand) against the list syntax. */
static bool layer_ok(const ae_layer_spec *ls, char *why, size_t n)
{
    if (!token_ok(ls->kind, sizeof ls->kind, false)) return snprintf(why, n, "bad kind"), false;
    if (ls->nargs < 0 || ls->nargs > AE_SPEC_MAX_ARGS)
        return snprintf(why, n, "bad nargs %d", ls->nargs), false;
    for (int j = 0; j < ls->nargs; j++) {
        const ae_layer_arg *a = &ls->args[j];
        if (!token_ok(a->key, sizeof a->key, true) || !token_ok(a->val, sizeof a->val, false))
            return snprintf(why, n, "'%s': bad argument %d", ls->kind, j + 1), false;
        if (!a->key[0] && j > 0 && ls->args[j - 1].key[0])
            return snprintf(why, n, "'%s': positional argument after a key=value argument", ls->kind), false;
        for (int i = 0; a->key[0] && i < j; i++)
            if (strcmp(ls->args[i].key, a->key) == 0)
                return snprintf(why, n, "'%s': argument '%s' given twice", ls->kind, a->key), false;
    }
    return true;
}

/* ---- one value */

/* Parses text v as the value of key d and stores it into *s. */
static ae_status set_value(ae_spec *s, const key_def *d, const char *v, const src_loc *at, ae_error *err)
{
    void *p = field(s, d->off);
    char why[PROBLEM_MAX];
    switch (d->type) {
    case T_INT:
    case T_INT64: {
        int64_t x = 0;
        num_result r = parse_int64(v, &x);
        if (r == NUM_SYNTAX) return key_fail(err, at, 0, d, true, "'%.*s' is not an integer", VALUE_CHARS, v);
        if (r == NUM_OVERFLOW || (d->type == T_INT && (x < INT_MIN || x > INT_MAX)))
            return key_fail(err, at, 0, d, true, "'%.*s' overflows", VALUE_CHARS, v);
        if (!in_range(d, (double)x)) return key_fail(err, at, 0, d, true, "%s is out of range", v);
        if (d->type == T_INT)
            *(int *)p = (int)x;
        else
            *(int64_t *)p = x;
        return AE_OK;
    }
    case T_UINT64: {
        uint64_t x = 0;
        num_result r = parse_uint64(v, &x);
        if (r == NUM_SYNTAX) return key_fail(err, at, 0, d, true, "'%.*s' is not an integer", VALUE_CHARS, v);
        if (r == NUM_OVERFLOW) return key_fail(err, at, 0, d, true, "'%.*s' overflows", VALUE_CHARS, v);
        if (r == NUM_NEGATIVE) return key_fail(err, at, 0, d, true, "%.*s is out of range", VALUE_CHARS, v);
        *(uint64_t *)p = x;
        return AE_OK;
    }
    case T_FLOAT: {
        double x = 0;
        num_result r = parse_double(v, &x);
        if (r == NUM_SYNTAX) return key_fail(err, at, 0, d, true, "'%.*s' is not a number", VALUE_CHARS, v);
        if (r == NUM_NOT_FINITE)
            return key_fail(err, at, 0, d, true, "'%.*s' is not a finite number", VALUE_CHARS, v);
        if (r == NUM_OVERFLOW || fabs(x) > FLT_MAX)
            return key_fail(err, at, 0, d, true, "'%.*s' overflows a float", VALUE_CHARS, v);
        float f = (float)x;
        if (!in_range(d, (double)f)) return key_fail(err, at, 0, d, true, "%s is out of range", v);
        *(float *)p = f;
        if (!d->def) *(int *)field(s, d->aux) = 1;
        return AE_OK;
    }
    case T_BOOL:
        if (!parse_bool(v, (int *)p))
            return key_fail(err, at, 0, d, true, "'%.*s' is not a boolean", VALUE_CHARS, v);
        return AE_OK;
    case T_ENUM: {
        int i = find_name(d->names, v);
        if (i < 0) return key_fail(err, at, 0, d, true, "unknown value '%.*s'", VALUE_CHARS, v);
        *(int *)p = i;
        return AE_OK;
    }
    case T_KEYWORD:
        if (find_name(d->names, v) < 0)
            return key_fail(err, at, 0, d, true, "unknown value '%.*s'", VALUE_CHARS, v);
        memcpy(p, v, strlen(v) + 1); /* every name fits: checked by the tests of the defaults */
        return AE_OK;
    case T_STRING: {
        size_t len = strlen(v);
        if (len >= d->aux) return key_fail(err, at, 0, d, true, "value is too long (%zu characters)", len);
        if (!string_ok(d, v, why, sizeof why)) return key_fail(err, at, 0, d, true, "%s", why);
        memcpy(p, v, len + 1);
        return AE_OK;
    }
    case T_LAYERS: return parse_layers(s, d, v, at, err);
    }
    return AE_OK;
}

/* Checks the value of key d as stored in *s (built by the parser or by code). */
static ae_status check_stored(const ae_spec *s, const key_def *d, const src_loc *at, ae_error *err)
{
    const void *p = cfield(s, d->off);
    char why[PROBLEM_MAX];
    switch (d->type) {
    case T_INT:
        if (!in_range(d, *(const int *)p))
            return key_fail(err, at, 0, d, true, "%d is out of range", *(const int *)p);
        return AE_OK;
    case T_INT64: {
        int64_t x = *(const int64_t *)p;
        if (!in_range(d, (double)x)) return key_fail(err, at, 0, d, true, "%" PRId64 " is out of range", x);
        return AE_OK;
    }
    case T_UINT64: return AE_OK;
    case T_FLOAT: {
        float x = *(const float *)p;
        if (!d->def && !*(const int *)cfield(s, d->aux)) return AE_OK; /* follows other keys */
        if (!isfinite(x)) return key_fail(err, at, 0, d, true, "%g is not a finite number", (double)x);
        if (!in_range(d, x)) return key_fail(err, at, 0, d, true, "%.9g is out of range", (double)x);
        return AE_OK;
    }
    case T_BOOL: {
        int x = *(const int *)p;
        if (x != 0 && x != 1) return key_fail(err, at, 0, d, true, "%d is not a boolean", x);
        return AE_OK;
    }
    case T_ENUM: {
        int x = *(const int *)p;
        if (x < 0 || x >= count_names(d->names)) return key_fail(err, at, 0, d, true, "invalid value %d", x);
        return AE_OK;
    }
    case T_KEYWORD:
        if (!memchr(p, '\0', d->aux) || find_name(d->names, p) < 0)
            return key_fail(err, at, 0, d, true, "unknown value '%.*s'", VALUE_CHARS, (const char *)p);
        return AE_OK;
    case T_STRING:
        if (!memchr(p, '\0', d->aux)) return key_fail(err, at, 0, d, true, "value is not NUL-terminated");
        if (!string_ok(d, p, why, sizeof why)) return key_fail(err, at, 0, d, true, "%s", why);
        return AE_OK;
    case T_LAYERS: {
        int n = *(const int *)cfield(s, d->aux);
        if (n < 0 || n > AE_SPEC_MAX_LAYERS) return key_fail(err, at, 0, d, true, "bad layer count %d", n);
        const ae_layer_spec *arr = p;
        for (int i = 0; i < n; i++)
            if (!layer_ok(&arr[i], why, sizeof why))
                return key_fail(err, at, 0, d, true, "layer %d: %s", i + 1, why);
        return AE_OK;
    }
    }
    return AE_OK;
}

/* Keys whose defaults follow other keys: optim.rho / optim.eps (by optim.kind) and sched.base_lr. */
static void resolve_derived(ae_spec *s)
{
    int kind = (int)s->optim.kind;
    if (kind >= 0 && kind < N_OPT_KINDS) {
        if (!s->optim_rho_set) s->optim.rho = optim_defaults[kind].rho;
        if (!s->optim_eps_set) s->optim.eps = optim_defaults[kind].eps;
    }
    double lr = s->lr;
    if (s->scale_lr && s->base_batch > 0) lr *= (double)s->batch / s->base_batch;
    s->sched.base_lr = fabs(lr) <= FLT_MAX ? (float)lr : (float)INFINITY; /* validate rejects inf */
}

/* ------------------------------------------------------------------ files */

typedef struct parser {
    ae_spec *spec;
    ae_error *err;
    int depth;                                /* includes nested below the first text */
    int nfiles;                               /* files on the include stack */
    char *real[MAX_INCLUDE_DEPTH + 1];        /* their real paths, for cycles */
    const char *shown[MAX_INCLUDE_DEPTH + 1]; /* and their names as written */
} parser;

typedef struct file_state {
    const char *name;       /* in messages and origins */
    const char *dir;        /* includes are relative to it; NULL: the current directory */
    const char *section;    /* current section (the table's string), NULL before the first */
    int first_line[N_KEYS]; /* where each key was set in this file; 0: not yet */
} file_state;

/* A key = value whose continuation lines may still follow. */
typedef struct entry {
    int line; /* of the key; 0: nothing pending */
    const char *key;
    strbuf val;
    seg *segs;
    int nsegs, cap;
} entry;

static bool entry_add(entry *e, const char *text, int line)
{
    if (e->nsegs == e->cap) {
        int cap = e->cap ? 2 * e->cap : 4;
        seg *q = realloc(e->segs, (size_t)cap * sizeof *q);
        if (!q) return false;
        e->segs = q;
        e->cap = cap;
    }
    if (e->val.len > 0 && !sb_put(&e->val, " ", 1)) return false;
    e->segs[e->nsegs++] = (seg){e->val.len, line};
    return sb_put(&e->val, text, strlen(text));
}

/* Strips one pair of double quotes around the whole value (in place: the closing
 * one is cut, *start skips the opening one). False if another '"' remains. */
static bool unquote(char *v, size_t *start)
{
    size_t n = strlen(v);
    *start = 0;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v[n - 1] = '\0';
        *start = 1;
    }
    return strchr(v + *start, '"') == NULL;
}

static ae_status read_text(const char *path, const char *from, char **out, ae_error *err)
{
    char prefix[WHERE_MAX];
    snprintf(prefix, sizeof prefix, "%s%s", from ? from : "", from ? ": include" : "config");
    FILE *f = fopen(path, "rb");
    if (!f) return ae_error_set(err, AE_ERR_IO, "%s '%s': cannot open: %s", prefix, path, strerror(errno));
    strbuf b = {0};
    char chunk[READ_CHUNK];
    size_t n;
    ae_status st = AE_OK;
    while (st == AE_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (memchr(chunk, '\0', n))
            st = ae_error_set(err, AE_ERR_FORMAT, "%s '%s': contains a NUL byte (not a text file)", prefix,
                              path);
        else if (!sb_put(&b, chunk, n))
            st = ae_error_set(err, AE_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    if (st == AE_OK && ferror(f)) st = ae_error_set(err, AE_ERR_IO, "%s '%s': read error", prefix, path);
    fclose(f);
    if (st == AE_OK && !b.p && !sb_put(&b, "", 0))
        st = ae_error_set(err, AE_ERR_NOMEM, "out of memory reading '%s'", path);
    if (st != AE_OK) {
        free(b.p);
        return st;
    }
    *out = b.p;
    return AE_OK;
}

/* dir/rel (rel as is when absolute or dir is NULL); malloc'ed. */
static char *join_path(const char *dir, const char *rel, ae_error *err)
{
    size_t nd = (dir && rel[0] != '/') ? strlen(dir) : 0, nr = strlen(rel);
    char *p = ae_malloc(nd + nr + 2, err);
    if (!p) return NULL;
    if (nd)
        snprintf(p, nd + nr + 2, "%s%s%s", dir, dir[nd - 1] == '/' ? "" : "/", rel);
    else
        memcpy(p, rel, nr + 1);
    return p;
}

/* The directory part of path (malloc'ed), or NULL in *out when path has none. */
static ae_status dir_of(const char *path, char **out, ae_error *err)
{
    const char *slash = strrchr(path, '/');
    *out = NULL;
    if (!slash) return AE_OK;
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = ae_malloc(n + 1, err);
    if (!d) return AE_ERR_NOMEM;
    memcpy(d, path, n);
    d[n] = '\0';
    *out = d;
    return AE_OK;
}

static ae_status parse_text(parser *ps, char *text, const char *name, const char *dir);

/* Parses the file at path into ps->spec; from is "file:line" of the include (NULL: the first file). */
static ae_status parse_path(parser *ps, const char *path, const char *from)
{
    ae_error *err = ps->err;
    char *real = realpath(path, NULL);
    if (!real) {
        if (from) return ae_error_set(err, AE_ERR_IO, "%s: include '%s': %s", from, path, strerror(errno));
        return ae_error_set(err, AE_ERR_IO, "config '%s': cannot open: %s", path, strerror(errno));
    }
    for (int i = 0; i < ps->nfiles; i++) {
        if (strcmp(ps->real[i], real) == 0) {
            char chain[AE_ERROR_MSG_MAX] = "";
            for (int j = i; j < ps->nfiles; j++) bufcat(chain, sizeof chain, "%s -> ", ps->shown[j]);
            bufcat(chain, sizeof chain, "%s", path);
            free(real);
            return ae_error_set(err, AE_ERR_CONFIG, "%s: include cycle: %s", from ? from : path, chain);
        }
    }
    char *text = NULL, *dir = NULL;
    ae_status st = read_text(path, from, &text, err);
    if (st == AE_OK) st = dir_of(path, &dir, err);
    if (st == AE_OK) {
        ps->real[ps->nfiles] = real;
        ps->shown[ps->nfiles] = path;
        ps->nfiles++;
        st = parse_text(ps, text, path, dir);
        ps->nfiles--;
    }
    free(real);
    free(text);
    free(dir);
    return st;
}

static ae_status do_include(parser *ps, file_state *fs, entry *e, const char *where)
{
    size_t start;
    if (!unquote(e->val.p, &start))
        return ae_error_set(ps->err, AE_ERR_CONFIG, "%s: include: a '\"' inside the path", where);
    const char *rel = e->val.p + start;
    if (!*rel) return ae_error_set(ps->err, AE_ERR_CONFIG, "%s: include: empty path", where);
    if (ps->depth >= MAX_INCLUDE_DEPTH)
        return ae_error_set(ps->err, AE_ERR_CONFIG, "%s: include '%s': includes nested deeper than %d", where,
                            rel, MAX_INCLUDE_DEPTH);
    char *path = join_path(fs->dir, rel, ps->err);
    if (!path) return AE_ERR_NOMEM;
    ps->depth++;
    ae_status st = parse_path(ps, path, where);
    ps->depth--;
    free(path);
    return st;
}

/* Applies a complete key = value (continuation lines joined). */
static ae_status process_entry(parser *ps, file_state *fs, entry *e)
{
    char where[WHERE_MAX];
    snprintf(where, sizeof where, "%s:%d", fs->name, e->line);
    if (strcmp(e->key, "include") == 0) return do_include(ps, fs, e, where);
    if (!fs->section)
        return ae_error_set(ps->err, AE_ERR_CONFIG,
                            "%s: key '%.*s' outside any section (put it after a "
                            "[section] line)",
                            where, VALUE_CHARS, e->key);
    int k = find_key(fs->section, e->key);
    if (k < 0) return unknown_key(ps->err, where, fs->section, e->key);
    const key_def *d = &keys[k];
    src_loc at = {fs->name, e->segs, e->nsegs, 0};
    if (fs->first_line[k])
        return key_fail(ps->err, &at, 0, d, false, "duplicate key, first set at %s:%d", fs->name,
                        fs->first_line[k]);
    if (!unquote(e->val.p, &at.base))
        return key_fail(ps->err, &at, 0, d, false,
                        "a '\"' inside the value (quotes may only enclose it all)");
    ae_status st = set_value(ps->spec, d, e->val.p + at.base, &at, ps->err);
    if (st == AE_OK) fs->first_line[k] = e->line;
    return st;
}

/* Cuts an inline comment: ';' or '#' after whitespace, outside double quotes. */
static void strip_comment(char *t)
{
    bool quoted = false;
    for (size_t i = 0; t[i]; i++) {
        if (t[i] == '"')
            quoted = !quoted;
        else if (!quoted && (t[i] == ';' || t[i] == '#') && i > 0 && is_blank(t[i - 1])) {
            t[i] = '\0';
            return;
        }
    }
}

static ae_status flush_entry(parser *ps, file_state *fs, entry *e)
{
    if (!e->line) return AE_OK;
    ae_status st = process_entry(ps, fs, e);
    e->line = 0;
    e->val.len = 0;
    e->nsegs = 0;
    return st;
}

static ae_status handle_line(parser *ps, file_state *fs, entry *e, char *s, int line)
{
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '\r') s[--n] = '\0';
    bool indented = is_blank(s[0]);
    char *t = s;
    while (is_blank(*t)) t++;
    if (*t == '\0' || *t == ';' || *t == '#') return AE_OK; /* blank or comment: a value may go on */
    strip_comment(t);
    t = trim(t);
    if (indented && e->line) {
        if (!entry_add(e, t, line)) return ae_error_set(ps->err, AE_ERR_NOMEM, "out of memory");
        return AE_OK;
    }
    ae_status st = flush_entry(ps, fs, e);
    if (st != AE_OK) return st;
    char where[WHERE_MAX];
    snprintf(where, sizeof where, "%s:%d", fs->name, line);
    size_t len = strlen(t);
    char *eq = strchr(t, '=');
    if (t[0] == '[' && t[len - 1] == ']') {
        t[len - 1] = '\0';
        char *name = trim(t + 1);
        fs->section = find_section(name);
        return fs->section ? AE_OK : unknown_section(ps->err, where, name);
    }
    if (t[0] != '[' && eq && eq != t) {
        *eq = '\0';
        char *key = trim(t);
        e->line = line;
        e->key = key;
        if (!entry_add(e, trim(eq + 1), line)) return ae_error_set(ps->err, AE_ERR_NOMEM, "out of memory");
        return AE_OK;
    }
    return ae_error_set(ps->err, AE_ERR_CONFIG,
                        "%s: line is neither a section, a key = value, nor a comment: '%.*s'", where,
                        VALUE_CHARS, t);
}

/* Parses one file's text (modified in place); name is used in messages, dir for includes. */
static ae_status parse_text(parser *ps, char *text, const char *name, const char *dir)
{
    static const char bom[] = "\xEF\xBB\xBF";
    file_state fs = {.name = name, .dir = dir};
    entry e = {0};
    ae_status st = AE_OK;
    char *p = strncmp(text, bom, sizeof bom - 1) == 0 ? text + sizeof bom - 1 : text;
    for (int line = 1; p && st == AE_OK; line++) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        st = handle_line(ps, &fs, &e, p, line);
        p = nl ? nl + 1 : NULL;
    }
    if (st == AE_OK) st = flush_entry(ps, &fs, &e);
    free(e.val.p);
    free(e.segs);
    return st;
}

/* ------------------------------------------------------------------ public */

void ae_config_defaults(ae_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    src_loc at = {"default", NULL, 0, 0};
    ae_error err;
    for (size_t k = 0; k < N_KEYS; k++) {
        if (!keys[k].def) continue;
        if (set_value(spec, &keys[k], keys[k].def, &at, &err) != AE_OK) {
            fprintf(stderr, "aetrain: bad built-in default: %s\n", err.msg);
            abort();
        }
    }
    resolve_derived(spec);
}

/* Runs parse_path (path != NULL) or parse_text over a fresh default spec; commits on success. */
static ae_status parse_top(const char *path, const char *text, const char *origin, ae_spec *spec,
                           ae_error *err)
{
    ae_error_clear(err);
    ae_spec *tmp = ae_malloc(sizeof *tmp, err);
    if (!tmp) return AE_ERR_NOMEM;
    ae_config_defaults(tmp);
    snprintf(tmp->source, sizeof tmp->source, "%s", origin);
    parser ps = {.spec = tmp, .err = err};
    ae_status st;
    if (path) {
        st = parse_path(&ps, path, NULL);
    } else {
        char *copy = ae_malloc(strlen(text) + 1, err);
        st = copy ? AE_OK : AE_ERR_NOMEM;
        if (copy) {
            memcpy(copy, text, strlen(text) + 1);
            st = parse_text(&ps, copy, origin, NULL);
            free(copy);
        }
    }
    if (st == AE_OK) {
        resolve_derived(tmp);
        memcpy(spec, tmp, sizeof *spec);
    }
    free(tmp);
    return st;
}

ae_status ae_config_parse_file(const char *path, ae_spec *spec, ae_error *err)
{
    return parse_top(path, NULL, path, spec, err);
}

ae_status ae_config_parse_string(const char *text, const char *origin, ae_spec *spec, ae_error *err)
{
    return parse_top(NULL, text, origin ? origin : "<string>", spec, err);
}

ae_status ae_config_set(ae_spec *spec, const char *assignment, ae_error *err)
{
    ae_error_clear(err);
    const char *eq = strchr(assignment, '=');
    char lhs[SET_LHS_MAX];
    size_t nl = eq ? (size_t)(eq - assignment) : 0;
    if (!eq || nl >= sizeof lhs || !memchr(assignment, '.', nl))
        return ae_error_set(err, AE_ERR_CONFIG, "--set '%.*s': expected section.key=value", VALUE_CHARS,
                            assignment);
    memcpy(lhs, assignment, nl);
    lhs[nl] = '\0';
    char *dot = strchr(lhs, '.');
    *dot = '\0';
    const char *section = trim(lhs), *key = trim(dot + 1);
    char where[WHERE_MAX];
    snprintf(where, sizeof where, "--set %s.%s", section, key);
    const char *sec = find_section(section);
    if (!sec) return unknown_section(err, where, section);
    int k = find_key(sec, key);
    if (k < 0) return unknown_key(err, where, sec, key);
    const key_def *d = &keys[k];
    src_loc at = {where, NULL, 0, 0};
    char *val = ae_malloc(strlen(eq + 1) + 1, err);
    if (!val) return AE_ERR_NOMEM;
    memcpy(val, eq + 1, strlen(eq + 1) + 1);
    ae_spec *tmp = NULL;
    size_t start;
    char *v = trim(val);
    ae_status st = AE_OK;
    if (!unquote(v, &start))
        st = key_fail(err, &at, 0, d, false, "a '\"' inside the value (quotes may only enclose it all)");
    if (st == AE_OK && !(tmp = ae_malloc(sizeof *tmp, err))) st = AE_ERR_NOMEM;
    if (st == AE_OK) {
        memcpy(tmp, spec, sizeof *tmp);
        st = set_value(tmp, d, v + start, &at, err);
    }
    if (st == AE_OK) {
        resolve_derived(tmp);
        memcpy(spec, tmp, sizeof *spec);
    }
    free(tmp);
    free(val);
    return st;
}

/* A cross-key check failed: "<source>: [section] key: problem". */
static ae_status cross_fail(ae_error *err, const src_loc *at, const char *section, const char *key,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static ae_status cross_fail(ae_error *err, const src_loc *at, const char *section, const char *key,
                            const char *fmt, ...)
{
    char problem[PROBLEM_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return ae_error_set(err, AE_ERR_CONFIG, "%s: [%s] %s: %s", at->name, section, key, problem);
}

/* spec->source, if it is a string, for messages. */
static const char *source_name(const ae_spec *spec)
{
    return (memchr(spec->source, '\0', sizeof spec->source) && spec->source[0]) ? spec->source : "config";
}

ae_status ae_config_validate(ae_spec *spec, ae_error *err)
{
    src_loc at = {source_name(spec), NULL, 0, 0};
    for (size_t k = 0; k < N_KEYS; k++) {
        ae_status st = check_stored(spec, &keys[k], &at, err);
        if (st != AE_OK) return st;
    }
    resolve_derived(spec);
    bool autoencoder = spec->type == AE_MODEL_AUTOENCODER;
    if (spec->n_encoder == 0)
        return cross_fail(err, &at, "model", "encoder", "required (a non-empty layer list)");
    if (autoencoder && spec->n_decoder == 0)
        return cross_fail(err, &at, "model", "decoder",
                          "required for type = autoencoder (a non-empty layer list)");
    if (autoencoder && spec->loss == AE_LOSS_CE)
        return cross_fail(err, &at, "loss", "kind",
                          "ce needs type = classifier (autoencoders use mse or bce)");
    if (!autoencoder && spec->loss != AE_LOSS_CE)
        return cross_fail(err, &at, "loss", "kind", "%s is for autoencoders (type = classifier needs ce)",
                          loss_kinds[spec->loss]);
    if (spec->pretrain_layerwise && (!autoencoder || spec->n_decoder != spec->n_encoder))
        return cross_fail(err, &at, "pretrain", "layerwise",
                          "needs an autoencoder whose decoder has as many layers as its encoder (%d vs %d)",
                          spec->n_decoder, spec->n_encoder);
    if (spec->accum > 1 && spec->micro_batch > 0)
        return cross_fail(err, &at, "train", "accum",
                          "%d together with [train] micro_batch = %d: both choose the passes per step, set only one",
                          spec->accum, spec->micro_batch);
    if (spec->accum > spec->batch)
        return cross_fail(err, &at, "train", "accum", "%d is more than batch = %d (a micro-batch would be empty)",
                          spec->accum, spec->batch);
    if (spec->deterministic && (spec->accum > 1 || spec->micro_batch > 0))
        return cross_fail(err, &at, "train", spec->accum > 1 ? "accum" : "micro_batch",
                          "%d does not combine with [train] deterministic = true: micro_shards already bounds the "
                          "per-pass batch (a pass computes batch / micro_shards samples; raise micro_shards instead)",
                          spec->accum > 1 ? spec->accum : spec->micro_batch);
    if (spec->deterministic && spec->balance)
        return cross_fail(err, &at, "train", "balance",
                          "true does not combine with [train] deterministic = true: the ranks' shares would follow "
                          "their timing, which deterministic mode keeps out of the result");
    if (spec->optim.nesterov && (spec->optim.kind != AE_OPT_SGD || !(spec->optim.momentum > 0)))
        return cross_fail(err, &at, "optim", "nesterov", "needs kind = sgd and momentum > 0");
    if (!isfinite(spec->sched.base_lr) || !(spec->sched.base_lr > 0))
        return cross_fail(err, &at, "optim", "lr", "the scaled learning rate %g is not usable",
                          (double)spec->sched.base_lr);
    if (spec->sched.kind == AE_SCHED_COSINE && spec->sched.min_lr > spec->sched.base_lr)
        return cross_fail(err, &at, "schedule", "min_lr", "%g is above the learning rate %g",
                          (double)spec->sched.min_lr, (double)spec->sched.base_lr);
    return AE_OK;
}

/* The shortest %g text that reads back (as the parser reads it) to exactly f. */
static void format_float(float f, char *buf, size_t n)
{
    if (f == floorf(f) && fabsf(f) < FLOAT_PLAIN_INT_MAX) { /* 10, not 1e+01 */
        snprintf(buf, n, "%.0f", (double)f);
        return;
    }
    for (int digits = 1; digits <= FLOAT_MAX_DIGITS; digits++) {
        snprintf(buf, n, "%.*g", digits, (double)f);
        if ((float)strtod(buf, NULL) == f) return;
    }
}

/* Strings that would not read back as they are get quotes. */
static bool needs_quotes(const char *v)
{
    size_t n = strlen(v);
    return n == 0 || is_blank(v[0]) || is_blank(v[n - 1]) || strpbrk(v, ";#");
}

static bool dump_layers(strbuf *b, const ae_layer_spec *arr, int n)
{
    bool ok = true;
    if (n == 0) return sb_printf(b, "\"\"");
    for (int i = 0; i < n && ok; i++) {
        const ae_layer_spec *ls = &arr[i];
        ok = sb_printf(b, "%s%s", i ? ",\n" DUMP_INDENT : "", ls->kind);
        for (int j = 0; j < ls->nargs && ok; j++) {
            const ae_layer_arg *a = &ls->args[j];
            ok = sb_printf(b, "%s%s%s%s", j ? ", " : "(", a->key, a->key[0] ? "=" : "", a->val);
        }
        if (ok && ls->nargs) ok = sb_printf(b, ")");
    }
    return ok;
}

static bool dump_key(strbuf *b, const ae_spec *s, const key_def *d)
{
    const void *p = cfield(s, d->off);
    char num[64];
    if (!sb_printf(b, "; %s\n", d->doc)) return false;
    if (d->type == T_FLOAT && !d->def && !*(const int *)cfield(s, d->aux)) {
        format_float(*(const float *)p, num, sizeof num);
        return sb_printf(b, "; %s = %s (not set: the default for kind = %s%s)\n", d->key, num,
                         opt_kinds[s->optim.kind], *(const float *)p == 0 ? ", which does not use it" : "");
    }
    if (!sb_printf(b, "%s = ", d->key)) return false;
    bool ok = true;
    switch (d->type) {
    case T_INT: ok = sb_printf(b, "%d", *(const int *)p); break;
    case T_INT64: ok = sb_printf(b, "%" PRId64, *(const int64_t *)p); break;
    case T_UINT64: ok = sb_printf(b, "%" PRIu64, *(const uint64_t *)p); break;
    case T_FLOAT:
        format_float(*(const float *)p, num, sizeof num);
        ok = sb_printf(b, "%s", num);
        break;
    case T_BOOL: ok = sb_printf(b, "%s", *(const int *)p ? "true" : "false"); break;
    case T_ENUM: ok = sb_printf(b, "%s", d->names[*(const int *)p]); break;
    case T_KEYWORD:
    case T_STRING: ok = sb_printf(b, needs_quotes(p) ? "\"%s\"" : "%s", (const char *)p); break;
    case T_LAYERS: ok = dump_layers(b, p, *(const int *)cfield(s, d->aux)); break;
    }
    return ok && sb_printf(b, "\n");
}

char *ae_config_dump(const ae_spec *spec, ae_error *err)
{
    src_loc at = {source_name(spec), NULL, 0, 0};
    for (size_t k = 0; k < N_KEYS; k++)
        if (check_stored(spec, &keys[k], &at, err) != AE_OK) return NULL;
    strbuf b = {0};
    bool ok = sb_printf(&b, "; aetrain config: every key, resolved (docs/configs.md)\n");
    for (size_t k = 0; k < N_KEYS && ok; k++) {
        if (k == 0 || strcmp(keys[k].section, keys[k - 1].section) != 0)
            ok = sb_printf(&b, "%s[%s]\n", k ? "\n" : "", keys[k].section);
        ok = ok && dump_key(&b, spec, &keys[k]);
    }
    if (!ok) {
        free(b.p);
        ae_error_set(err, AE_ERR_NOMEM, "out of memory writing the config dump");
        return NULL;
    }
    return b.p;
}

static bool layers_equal(const ae_layer_spec *a, const ae_layer_spec *b, int n)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(a[i].kind, b[i].kind) != 0 || a[i].nargs != b[i].nargs) return false;
        for (int j = 0; j < a[i].nargs && j < AE_SPEC_MAX_ARGS; j++)
            if (strcmp(a[i].args[j].key, b[i].args[j].key) != 0 ||
                strcmp(a[i].args[j].val, b[i].args[j].val) != 0)
                return false;
    }
    return true;
}

static bool key_equal(const ae_spec *a, const ae_spec *b, const key_def *d)
{
    const void *pa = cfield(a, d->off), *pb = cfield(b, d->off);
    switch (d->type) {
    case T_INT:
    case T_BOOL:
    case T_ENUM: return *(const int *)pa == *(const int *)pb;
    case T_INT64: return *(const int64_t *)pa == *(const int64_t *)pb;
    case T_UINT64: return *(const uint64_t *)pa == *(const uint64_t *)pb;
    case T_FLOAT: return *(const float *)pa == *(const float *)pb;
    case T_KEYWORD:
    case T_STRING: return strncmp(pa, pb, d->aux) == 0;
    case T_LAYERS: {
        int n = *(const int *)cfield(a, d->aux);
        return n == *(const int *)cfield(b, d->aux) && n >= 0 && n <= AE_SPEC_MAX_LAYERS &&
               layers_equal(pa, pb, n);
    }
    }
    return true;
}

int ae_config_equal(const ae_spec *a, const ae_spec *b, char *diff, size_t diff_size)
{
    for (size_t k = 0; k < N_KEYS; k++) {
        if (!key_equal(a, b, &keys[k])) {
            if (diff && diff_size) snprintf(diff, diff_size, "%s.%s", keys[k].section, keys[k].key);
            return 0;
        }
    }
    if (a->sched.base_lr != b->sched.base_lr) {
        if (diff && diff_size) snprintf(diff, diff_size, "schedule.base_lr");
        return 0;
    }
    if (diff && diff_size) diff[0] = '\0';
    return 1;
}

const char *ae_layer_spec_arg(const ae_layer_spec *ls, int pos, const char *key)
{
    int positional = 0;
    if (key)
        for (int j = 0; j < ls->nargs; j++)
            if (strcmp(ls->args[j].key, key) == 0) return ls->args[j].val;
    for (int j = 0; pos >= 0 && j < ls->nargs; j++) {
        if (ls->args[j].key[0]) continue;
        if (positional++ == pos) return ls->args[j].val;
    }
    return NULL;
}
