/* test_ckpt.c - checkpoint tests: exact round trips, the on-disk layout,
 * refusal of every truncation and every single-bit flip, foreign files,
 * and failed saves (missing directory, EFBIG) that leave the old file. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ae/ckpt.h"
#include "testutil.h"

#define PATH_CAP 1024
#define HDR AE_CKPT_HEADER_BYTES
#define TRAILER_BYTES 12
#define OFF_VERSION 8
#define OFF_HEADER_SIZE 12
#define OFF_ARCH_HASH 16
#define OFF_EPOCH 32
#define OFF_NRANKS 88
#define OFF_CONFIG_LEN 96
#define OFF_N_PARAMS 104
#define OFF_N_OPT 112
#define OFF_N_STATE 120
#define OFF_PAYLOAD_BYTES 128
#define OFF_HEADER_CRC 140
#define ZSTD_FRAME_MAGIC 0xFD2FB528u
#define EFBIG_LIMIT_BYTES (64 * 1024)
#define EFBIG_FLOATS (1u << 20) /* 4 MiB of random floats: far above the limit */
#define SMALL_CONFIG "[model]\nlayers = dense:8, relu\n"

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float float_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Any bit pattern at all, NaNs included: the checkpoint must keep them. */
static float *random_floats(size_t n, uint64_t seed)
{
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = float_bits((uint32_t)rng_next(&seed));
    return f;
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void fix_header_crc(unsigned char *buf)
{
    put_le(buf + OFF_HEADER_CRC, crc32(0, buf, OFF_HEADER_CRC), 4);
}

static void fix_trailer_crc(unsigned char *buf, size_t n)
{
    put_le(buf + n - TRAILER_BYTES, crc32(0, buf, (uInt)(n - TRAILER_BYTES)), 4);
}

static ae_ckpt_meta test_meta(void)
{
    ae_ckpt_meta m = {
        .arch_hash = 0x0123456789ABCDEFull,
        .seed = UINT64_MAX,
        .epoch = -3,
        .step = INT64_MAX,
        .step_in_epoch = 1234567,
        .bad_epochs = INT64_MIN,
        .best_val = INFINITY,
        .run_loss_sum = -0.0,
        .run_loss_count = 4.9406564584124654e-324, /* smallest denormal double */
        .nranks = 3,
        .flags = INT32_MIN,
    };
    return m;
}

static int meta_equal(const ae_ckpt_meta *a, const ae_ckpt_meta *b)
{
    return a->arch_hash == b->arch_hash && a->seed == b->seed && a->epoch == b->epoch &&
           a->step == b->step && a->step_in_epoch == b->step_in_epoch && a->bad_epochs == b->bad_epochs &&
           memcmp(&a->best_val, &b->best_val, sizeof a->best_val) == 0 &&
           memcmp(&a->run_loss_sum, &b->run_loss_sum, sizeof a->run_loss_sum) == 0 &&
           memcmp(&a->run_loss_count, &b->run_loss_count, sizeof a->run_loss_count) == 0 &&
           a->nranks == b->nranks && a->flags == b->flags;
}

/* Bitwise equality of float arrays; both NULL when n == 0. */
static int floats_equal(const float *got, const float *want, size_t n)
{
    if (n == 0) return got == NULL;
    return got != NULL && memcmp(got, want, n * sizeof *got) == 0;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    }
    closedir(d);
    return n;
}

/* The small checkpoint of the truncation and bit-flip tests: special
 * float values in every section. */
static const uint32_t small_params_bits[] = {
    0x7FC12345u, /* quiet NaN with a payload */
    0xFFA00001u, /* signalling-pattern NaN, negative */
    0x80000000u, /* -0.0 */
    0x00000001u, /* smallest denormal */
    0x807FFFFFu, /* largest negative denormal */
    0x7F800000u, /* +inf */
    0x3F800000u, /* 1.0 */
    0xC0490FDBu, /* -pi */
};
static const uint32_t small_opt_bits[] = {0x7F7FFFFFu, 0x00800000u, 0xFF800000u, 0x3DCCCCCDu};
static const uint32_t small_state_bits[] = {0x00000000u, 0x7FFFFFFFu};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef struct small_ckpt {
    float params[COUNT(small_params_bits)];
    float opt[COUNT(small_opt_bits)];
    float state[COUNT(small_state_bits)];
} small_ckpt;

static void small_fill(small_ckpt *s)
{
    for (size_t i = 0; i < COUNT(small_params_bits); i++) s->params[i] = float_bits(small_params_bits[i]);
    for (size_t i = 0; i < COUNT(small_opt_bits); i++) s->opt[i] = float_bits(small_opt_bits[i]);
    for (size_t i = 0; i < COUNT(small_state_bits); i++) s->state[i] = float_bits(small_state_bits[i]);
}

static ae_status save_small(const char *path, ae_error *err)
{
    small_ckpt s;
    small_fill(&s);
    ae_ckpt_meta m = test_meta();
    return ae_ckpt_save(path, &m, SMALL_CONFIG, s.params, COUNT(s.params), s.opt, COUNT(s.opt), s.state,
                        COUNT(s.state), 0, err);
}

/* Bytes of a freshly saved small checkpoint (kept at path). */
static unsigned char *small_bytes(const char *path, size_t *n)
{
    ae_error err;
    if (save_small(path, &err) != AE_OK) return NULL;
    return tu_read_file(path, n);
}

/* Load that must fail with want; checks that *out is untouched and that
 * the message names the path. */
static int load_refused(const char *path, ae_status want, ae_error *err)
{
    ae_ckpt c, before;
    memset(&c, 0x5A, sizeof c);
    memcpy(&before, &c, sizeof c);
    ae_error_clear(err);
    ae_status st = ae_ckpt_load(path, &c, err);
    if (st == AE_OK) ae_ckpt_free(&c);
    return st == want && err->code == want && memcmp(&c, &before, sizeof c) == 0 &&
           strstr(err->msg, path) != NULL;
}

static void join(char *out, const char *dir, const char *name)
{
    snprintf(out, PATH_CAP, "%s/%s", dir, name);
}

/* Per test: a fresh directory, a saved small checkpoint in it (good, its
 * bytes in b[0..n)), and a scratch path beside it. */
typedef struct fixture {
    char *dir;
    char good[PATH_CAP];
    char path[PATH_CAP];
    char tmp[PATH_CAP + 8]; /* path ".tmp" */
    unsigned char *b;
    size_t n;
} fixture;

static int fixture_open(fixture *f)
{
    memset(f, 0, sizeof *f);
    f->dir = tu_tempdir();
    if (!f->dir) return -1;
    join(f->good, f->dir, "good.ckpt");
    join(f->path, f->dir, "scratch.ckpt");
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", f->path);
    f->b = small_bytes(f->good, &f->n);
    return f->b && f->n > HDR + TRAILER_BYTES ? 0 : -1;
}

static void fixture_close(fixture *f)
{
    free(f->b);
    tu_rmtree(f->dir);
    free(f->dir);
}

/* ---- round trips -------------------------------------------------------------------------- */

static void round_trip(size_t n_params, size_t n_opt, size_t n_state, const char *config, int level)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    float *p = random_floats(n_params, 1), *o = random_floats(n_opt, 2), *s = random_floats(n_state, 3);
    ae_ckpt_meta m = test_meta();
    ae_error err;
    CU_ASSERT_EQUAL(ae_ckpt_save(f.path, &m, config, n_params ? p : NULL, n_params, n_opt ? o : NULL, n_opt,
                                 n_state ? s : NULL, n_state, level, &err),
                    AE_OK);
    ae_ckpt c = {0};
    CU_ASSERT_EQUAL_FATAL(ae_ckpt_load(f.path, &c, &err), AE_OK);
    CU_ASSERT(meta_equal(&c.meta, &m));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.config_text);
    CU_ASSERT_STRING_EQUAL(c.config_text, config ? config : "");
    CU_ASSERT_EQUAL(c.n_params, n_params);
    CU_ASSERT_EQUAL(c.n_opt, n_opt);
    CU_ASSERT_EQUAL(c.n_state, n_state);
    CU_ASSERT(floats_equal(c.params, p, n_params));
    CU_ASSERT(floats_equal(c.opt, o, n_opt));
    CU_ASSERT(floats_equal(c.state, s, n_state));
    ae_ckpt_free(&c);
    free(p);
    free(o);
    free(s);
    fixture_close(&f);
}

static void test_ckpt_round_trip_exact(void)
{
    round_trip(1000, 2000, 17, SMALL_CONFIG, 0);
    round_trip(100003, 200006, 5, SMALL_CONFIG, 1);
    round_trip(777, 1554, 0, "x", 19);
}

static void test_ckpt_round_trip_empty_sections(void)
{
    round_trip(513, 0, 0, SMALL_CONFIG, 0); /* n_opt = 0, n_state = 0 */
    round_trip(0, 0, 9, "", 0);
    round_trip(0, 0, 0, NULL, 0);           /* NULL config reads back as "" */
}

static void test_ckpt_round_trip_special_values(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    small_ckpt s;
    small_fill(&s);
    ae_error err;
    ae_ckpt c = {0};
    CU_ASSERT_EQUAL_FATAL(ae_ckpt_load(f.good, &c, &err), AE_OK);
    ae_ckpt_meta m = test_meta();
    CU_ASSERT(meta_equal(&c.meta, &m));
    CU_ASSERT(signbit(c.meta.run_loss_sum) && c.meta.run_loss_sum == 0.0);
    CU_ASSERT(isinf(c.meta.best_val));
    CU_ASSERT_STRING_EQUAL(c.config_text, SMALL_CONFIG);
    CU_ASSERT_EQUAL(c.n_params, COUNT(small_params_bits));
    for (size_t i = 0; i < c.n_params && i < COUNT(small_params_bits); i++) {
        uint32_t u;
        memcpy(&u, &c.params[i], sizeof u);
        CU_ASSERT_EQUAL(u, small_params_bits[i]);
    }
    CU_ASSERT(floats_equal(c.opt, s.opt, COUNT(s.opt)));
    CU_ASSERT(floats_equal(c.state, s.state, COUNT(s.state)));
    ae_ckpt_free(&c);
    fixture_close(&f);
}

static void test_ckpt_config_text_round_trip(void)
{
    /* Multi-line text with tabs, CR LF, UTF-8, and a size well past one zstd block. */
    const char *piece = "[layer.3]\tkind = conv2d ; \xC3\xA9t\xC3\xA9 \xE2\x9C\x93\r\nfilters = 32\n";
    size_t plen = strlen(piece), reps = 5000;
    char *big = malloc(plen * reps + 1);
    for (size_t i = 0; i < reps; i++) memcpy(big + i * plen, piece, plen);
    big[plen * reps] = '\0';
    round_trip(10, 20, 0, piece, 0);
    round_trip(10, 20, 0, big, 3);
    free(big);
}

static void test_ckpt_deterministic_bytes(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    size_t n = 0;
    unsigned char *again = small_bytes(f.path, &n);
    CU_ASSERT(again != NULL && n == f.n && memcmp(again, f.b, n) == 0);
    free(again);
    fixture_close(&f);
}

static void test_ckpt_compresses(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    size_t n = 1u << 20; /* 4 MiB of zeros, as in a fresh Adam state */
    float *z = calloc(n, sizeof *z);
    ae_ckpt_meta m = test_meta();
    ae_error err;
    CU_ASSERT_EQUAL(ae_ckpt_save(f.path, &m, "", z, n, z, n, NULL, 0, 1, &err), AE_OK);
    struct stat sb;
    CU_ASSERT_EQUAL_FATAL(stat(f.path, &sb), 0);
    CU_ASSERT(sb.st_size < 16 * 1024);
    ae_ckpt c = {0};
    CU_ASSERT_EQUAL_FATAL(ae_ckpt_load(f.path, &c, &err), AE_OK);
    CU_ASSERT(floats_equal(c.params, z, n) && floats_equal(c.opt, z, n) && c.state == NULL);
    ae_ckpt_free(&c);
    free(z);
    fixture_close(&f);
}

/* The documented layout: fields at fixed offsets, little-endian. */
static void test_ckpt_layout(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    const unsigned char *b = f.b;
    size_t n = f.n;
    CU_ASSERT(memcmp(b, "AETRCKPT", 8) == 0);
    CU_ASSERT_EQUAL(get_le(b + OFF_VERSION, 4), AE_CKPT_VERSION);
    CU_ASSERT_EQUAL(get_le(b + OFF_HEADER_SIZE, 4), HDR);
    CU_ASSERT_EQUAL(get_le(b + OFF_ARCH_HASH, 8), 0x0123456789ABCDEFull);
    CU_ASSERT_EQUAL(get_le(b + OFF_EPOCH, 8), (uint64_t)-3);
    CU_ASSERT_EQUAL(get_le(b + OFF_NRANKS, 4), 3);
    CU_ASSERT_EQUAL(get_le(b + OFF_CONFIG_LEN, 8), strlen(SMALL_CONFIG));
    CU_ASSERT_EQUAL(get_le(b + OFF_N_PARAMS, 8), COUNT(small_params_bits));
    CU_ASSERT_EQUAL(get_le(b + OFF_N_OPT, 8), COUNT(small_opt_bits));
    CU_ASSERT_EQUAL(get_le(b + OFF_N_STATE, 8), COUNT(small_state_bits));
    CU_ASSERT_EQUAL(get_le(b + OFF_PAYLOAD_BYTES, 8) + HDR + TRAILER_BYTES, n);
    CU_ASSERT_EQUAL(get_le(b + OFF_HEADER_CRC, 4), crc32(0, b, OFF_HEADER_CRC));
    CU_ASSERT_EQUAL(get_le(b + HDR, 4), ZSTD_FRAME_MAGIC);
    CU_ASSERT_EQUAL(get_le(b + n - TRAILER_BYTES, 4), crc32(0, b, (uInt)(n - TRAILER_BYTES)));
    CU_ASSERT(memcmp(b + n - 8, "AECKEND\0", 8) == 0);
    fixture_close(&f);
}

/* ---- corrupt and foreign files ------------------------------------------------------------ */

static void test_ckpt_truncated_every_length(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    char want[PATH_CAP + 64];
    size_t refused = 0, msg_ok = 0;
    for (size_t len = 0; len < f.n; len++) {
        CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, f.b, len), 0);
        ae_error err;
        refused += load_refused(f.path, AE_ERR_FORMAT, &err);
        if (len == 0) {
            snprintf(want, sizeof want, "%s: empty file", f.path);
        } else if (len < HDR) {
            snprintf(want, sizeof want, "%s: truncated (%zu bytes", f.path, len);
        } else {
            snprintf(want, sizeof want, "%s: truncated (%zu bytes, header says %zu)", f.path, len, f.n);
        }
        msg_ok += strstr(err.msg, want) != NULL;
    }
    CU_ASSERT_EQUAL(refused, f.n);
    CU_ASSERT_EQUAL(msg_ok, f.n);
    fixture_close(&f);
}

static void test_ckpt_every_bit_flip_refused(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    size_t refused = 0, flips = 0;
    for (size_t i = 0; i < f.n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            f.b[i] ^= (unsigned char)(1u << bit);
            CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, f.b, f.n), 0);
            ae_error err;
            refused += load_refused(f.path, AE_ERR_FORMAT, &err);
            flips++;
            f.b[i] ^= (unsigned char)(1u << bit);
        }
    }
    CU_ASSERT_EQUAL(flips, 8 * f.n);
    CU_ASSERT_EQUAL(refused, flips);
    /* and the unflipped bytes still load */
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, f.b, f.n), 0);
    ae_ckpt c = {0};
    ae_error err;
    CU_ASSERT_EQUAL(ae_ckpt_load(f.path, &c, &err), AE_OK);
    ae_ckpt_free(&c);
    fixture_close(&f);
}

/* Loaded content equal to the small checkpoint's? */
static int is_small_content(const ae_ckpt *c)
{
    small_ckpt s;
    small_fill(&s);
    return floats_equal(c->params, s.params, COUNT(s.params)) && floats_equal(c->opt, s.opt, COUNT(s.opt)) &&
           floats_equal(c->state, s.state, COUNT(s.state)) && strcmp(c->config_text, SMALL_CONFIG) == 0;
}

/* With the trailer CRC recomputed, a flipped payload bit is left to zstd's
 * own checks (frame syntax, content size, content checksum). */
static void test_ckpt_payload_flip_behind_valid_crc(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    unsigned char *t = malloc(f.n);
    size_t refused = 0, same = 0, flips = 0;
    for (size_t i = HDR; i < f.n - TRAILER_BYTES; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(t, f.b, f.n);
            t[i] ^= (unsigned char)(1u << bit);
            fix_trailer_crc(t, f.n);
            CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, t, f.n), 0);
            ae_ckpt c = {0};
            ae_error err;
            ae_status st = ae_ckpt_load(f.path, &c, &err);
            refused += st == AE_ERR_FORMAT;
            same += st == AE_OK && is_small_content(&c); /* only acceptable if nothing changed */
            ae_ckpt_free(&c);
            flips++;
        }
    }
    CU_ASSERT(flips > 0);
    CU_ASSERT_EQUAL(refused + same, flips);
    CU_ASSERT(refused * 10 >= flips * 9); /* zstd catches nearly all on its own */
    free(t);
    fixture_close(&f);
}

/* Headers that lie about sizes, with a valid header CRC: refused without
 * allocating what they claim. */
static void test_ckpt_lying_header_refused(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    char want[PATH_CAP + 64];
    size_t n = f.n;
    unsigned char *t = malloc(n + 1);
    ae_error err;
    const struct {
        int off;
        uint64_t value;
        int fix_trailer;
    } lies[] = {
        {OFF_N_PARAMS, 1ull << 60, 0},
        {OFF_N_OPT, 1ull << 62, 1},
        {OFF_CONFIG_LEN, UINT64_MAX, 1},
        {OFF_N_STATE, 1ull << 31, 1}, /* within limits: frame content size disagrees */
        {OFF_N_PARAMS, COUNT(small_params_bits) + 1, 1},
        {OFF_PAYLOAD_BYTES, 1ull << 40, 1},
        {OFF_PAYLOAD_BYTES, 0, 1},
        {OFF_HEADER_SIZE, HDR + 8, 1},
    };
    for (size_t i = 0; i < COUNT(lies); i++) {
        memcpy(t, f.b, n);
        put_le(t + lies[i].off, lies[i].value, lies[i].off == OFF_HEADER_SIZE ? 4 : 8);
        fix_header_crc(t);
        if (lies[i].fix_trailer) fix_trailer_crc(t, n);
        CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, t, n), 0);
        CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    }

    /* payload size one more / one less than the file holds */
    uint64_t payload = get_le(f.b + OFF_PAYLOAD_BYTES, 8);
    memcpy(t, f.b, n);
    put_le(t + OFF_PAYLOAD_BYTES, payload + 1, 8);
    fix_header_crc(t);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, t, n), 0);
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    snprintf(want, sizeof want, "%s: truncated (%zu bytes, header says %zu)", f.path, n, n + 1);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    put_le(t + OFF_PAYLOAD_BYTES, payload - 1, 8);
    fix_header_crc(t);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, t, n), 0);
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "trailing data"));

    /* a byte appended to a good file */
    memcpy(t, f.b, n);
    t[n] = 0;
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, t, n + 1), 0);
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    free(t);
    fixture_close(&f);
}

static void test_ckpt_unsupported_version(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    char want[PATH_CAP + 96];
    put_le(f.b + OFF_VERSION, 7, 4);
    fix_header_crc(f.b);
    fix_trailer_crc(f.b, f.n);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, f.b, f.n), 0);
    ae_error err;
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    snprintf(want, sizeof want, "%s: format version 7 is not supported (this build reads %d)", f.path,
             AE_CKPT_VERSION);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    fixture_close(&f);
}

static void test_ckpt_checksum_mismatch_message(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    char want[PATH_CAP + 64];
    f.b[HDR + 6] ^= 0x10; /* inside the zstd payload */
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, f.b, f.n), 0);
    ae_error err;
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    snprintf(want, sizeof want, "%s: checksum mismatch (corrupt file)", f.path);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    fixture_close(&f);
}

static void test_ckpt_foreign_files_refused(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    char want[PATH_CAP + 64];
    ae_error err;
    uint32_t dims[3] = {3, 28, 28};
    uint8_t *pixels = calloc(3 * 28 * 28, 1);
    for (int gz = 0; gz < 2; gz++) { /* an IDX file, raw and gzip'ed */
        CU_ASSERT_EQUAL_FATAL(tu_write_idx(f.path, dims, 3, pixels, gz), 0);
        CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
        snprintf(want, sizeof want, "%s: not an aetrain checkpoint (bad magic)", f.path);
        CU_ASSERT_STRING_EQUAL(err.msg, want);
    }
    free(pixels);

    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, "", 0), 0);
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));

    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, SMALL_CONFIG, strlen(SMALL_CONFIG)), 0);
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "bad magic"));

    /* random bytes, also behind a correct magic and version */
    size_t n = 4096;
    float *noise = random_floats(n / sizeof(float), 99);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, noise, n), 0);
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    memcpy(noise, "AETRCKPT\1\0\0\0", 12);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.path, noise, n), 0);
    CU_ASSERT(load_refused(f.path, AE_ERR_FORMAT, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "checksum mismatch"));
    free(noise);
    fixture_close(&f);
}

static void test_ckpt_missing_file_io_error(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    ae_error err;
    CU_ASSERT(load_refused(f.path, AE_ERR_IO, &err)); /* never written */
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, strerror(ENOENT)));
    CU_ASSERT(load_refused(f.dir, AE_ERR_IO, &err)); /* a directory */
    fixture_close(&f);
}

/* ---- saving ------------------------------------------------------------------------------- */

static void test_ckpt_overwrite_leaves_no_tmp(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(f.tmp, "stale", 5), 0); /* left by a crashed save */
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(save_small(f.path, &err), AE_OK);
    float *p = random_floats(300, 7);
    ae_ckpt_meta m = test_meta();
    m.step = 42;
    CU_ASSERT_EQUAL_FATAL(ae_ckpt_save(f.path, &m, "second", p, 300, NULL, 0, NULL, 0, 0, &err), AE_OK);
    CU_ASSERT(!file_exists(f.tmp));
    CU_ASSERT_EQUAL(dir_entries(f.dir), 2); /* good.ckpt, scratch.ckpt */
    ae_ckpt c = {0};
    CU_ASSERT_EQUAL_FATAL(ae_ckpt_load(f.path, &c, &err), AE_OK);
    CU_ASSERT_EQUAL(c.meta.step, 42);
    CU_ASSERT_STRING_EQUAL(c.config_text, "second");
    CU_ASSERT(floats_equal(c.params, p, 300) && c.opt == NULL && c.state == NULL);
    ae_ckpt_free(&c);
    free(p);
    fixture_close(&f);
}

static void test_ckpt_save_missing_dir_fails(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    char path[PATH_CAP];
    join(path, f.dir, "no/such/dir/x.ckpt");
    ae_error err;
    CU_ASSERT_EQUAL(save_small(path, &err), AE_ERR_IO);
    CU_ASSERT_EQUAL(err.code, AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, strerror(ENOENT)));
    CU_ASSERT_EQUAL(dir_entries(f.dir), 1);
    fixture_close(&f);
}

/* The final rename fails (path is a directory): tmp removed, dir intact. */
static void test_ckpt_save_rename_failure_cleans_up(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    CU_ASSERT_EQUAL_FATAL(mkdir(f.path, 0755), 0);
    ae_error err;
    CU_ASSERT_EQUAL(save_small(f.path, &err), AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, f.path));
    CU_ASSERT(!file_exists(f.tmp));
    struct stat sb;
    CU_ASSERT(stat(f.path, &sb) == 0 && S_ISDIR(sb.st_mode));
    fixture_close(&f);
}

/* Disk full in effect: the new checkpoint hits RLIMIT_FSIZE (EFBIG). */
static void test_ckpt_save_efbig_keeps_old_file(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    char tmp[PATH_CAP + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", f.good);
    CU_ASSERT_FATAL(f.n < EFBIG_LIMIT_BYTES);
    float *big = random_floats(EFBIG_FLOATS, 5);
    ae_ckpt_meta m = test_meta();
    ae_error err;
    struct rlimit saved, lim;
    CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*saved_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = EFBIG_LIMIT_BYTES;
    int limited = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    ae_status st = ae_ckpt_save(f.good, &m, "big", big, EFBIG_FLOATS, big, EFBIG_FLOATS, NULL, 0, 1, &err);
    int restored = setrlimit(RLIMIT_FSIZE, &saved) == 0;
    signal(SIGXFSZ, saved_handler);
    CU_ASSERT_FATAL(limited && restored);

    CU_ASSERT_EQUAL(st, AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, f.good));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, strerror(EFBIG)));
    CU_ASSERT(!file_exists(tmp));
    size_t n_now = 0;
    unsigned char *now = tu_read_file(f.good, &n_now);
    CU_ASSERT(now != NULL && n_now == f.n && memcmp(now, f.b, f.n) == 0);
    ae_ckpt c = {0};
    CU_ASSERT_EQUAL_FATAL(ae_ckpt_load(f.good, &c, &err), AE_OK);
    CU_ASSERT(is_small_content(&c));
    ae_ckpt_free(&c);
    free(now);
    free(big);
    fixture_close(&f);
}

static void test_ckpt_save_bad_args(void)
{
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    ae_ckpt_meta m = test_meta();
    float p[4] = {1, 2, 3, 4};
    ae_error err;
    CU_ASSERT_EQUAL(ae_ckpt_save(f.path, &m, "", p, 4, NULL, 0, NULL, 0, 20, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_ckpt_save(f.path, &m, "", p, 4, NULL, 0, NULL, 0, -1, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_ckpt_save(f.path, &m, "", p, 4, NULL, 3, NULL, 0, 0, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_ckpt_save(f.path, NULL, "", p, 4, NULL, 0, NULL, 0, 0, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_ckpt_save(NULL, &m, "", p, 4, NULL, 0, NULL, 0, 0, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(dir_entries(f.dir), 1);
    ae_ckpt c = {0};
    CU_ASSERT_EQUAL(ae_ckpt_load(NULL, &c, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_ckpt_load(f.good, NULL, &err), AE_ERR_ARG);
    fixture_close(&f);
}

static void test_ckpt_free_zeroes(void)
{
    ae_ckpt_free(NULL);
    fixture f;
    CU_ASSERT_FATAL(fixture_open(&f) == 0);
    ae_ckpt c, zero;
    memset(&zero, 0, sizeof zero);
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_ckpt_load(f.good, &c, &err), AE_OK);
    ae_ckpt_free(&c);
    CU_ASSERT(memcmp(&c, &zero, sizeof c) == 0);
    ae_ckpt_free(&c); /* twice is harmless */
    fixture_close(&f);
}

void ae_test_register_ckpt(void)
{
    CU_pSuite s = CU_add_suite("ckpt", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_ckpt_round_trip_exact", test_ckpt_round_trip_exact);
    CU_add_test(s, "test_ckpt_round_trip_empty_sections", test_ckpt_round_trip_empty_sections);
    CU_add_test(s, "test_ckpt_round_trip_special_values", test_ckpt_round_trip_special_values);
    CU_add_test(s, "test_ckpt_config_text_round_trip", test_ckpt_config_text_round_trip);
    CU_add_test(s, "test_ckpt_deterministic_bytes", test_ckpt_deterministic_bytes);
    CU_add_test(s, "test_ckpt_compresses", test_ckpt_compresses);
    CU_add_test(s, "test_ckpt_layout", test_ckpt_layout);
    CU_add_test(s, "test_ckpt_truncated_every_length", test_ckpt_truncated_every_length);
    CU_add_test(s, "test_ckpt_every_bit_flip_refused", test_ckpt_every_bit_flip_refused);
    CU_add_test(s, "test_ckpt_payload_flip_behind_valid_crc", test_ckpt_payload_flip_behind_valid_crc);
    CU_add_test(s, "test_ckpt_lying_header_refused", test_ckpt_lying_header_refused);
    CU_add_test(s, "test_ckpt_unsupported_version", test_ckpt_unsupported_version);
    CU_add_test(s, "test_ckpt_checksum_mismatch_message", test_ckpt_checksum_mismatch_message);
    CU_add_test(s, "test_ckpt_foreign_files_refused", test_ckpt_foreign_files_refused);
    CU_add_test(s, "test_ckpt_missing_file_io_error", test_ckpt_missing_file_io_error);
    CU_add_test(s, "test_ckpt_overwrite_leaves_no_tmp", test_ckpt_overwrite_leaves_no_tmp);
    CU_add_test(s, "test_ckpt_save_missing_dir_fails", test_ckpt_save_missing_dir_fails);
    CU_add_test(s, "test_ckpt_save_rename_failure_cleans_up", test_ckpt_save_rename_failure_cleans_up);
    CU_add_test(s, "test_ckpt_save_efbig_keeps_old_file", test_ckpt_save_efbig_keeps_old_file);
    CU_add_test(s, "test_ckpt_save_bad_args", test_ckpt_save_bad_args);
    CU_add_test(s, "test_ckpt_free_zeroes", test_ckpt_free_zeroes);
}
