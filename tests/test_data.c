/* test_data.c - CUnit suite "data": IDX reading (raw and gzip, every kind of
 * corruption, truncation at every byte), dataset loading and name resolution,
 * the seeded validation split, batch gathering, and datasets packed into one
 * shared segment (with malloc standing in for the node's shared memory). */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "ae/data.h"
#include "ae/rng.h"
#include "testutil.h"

#define PATH_MAX_T 1024
#define SYS_FASHION_DIR "/usr/share/datasets/fashion-mnist"

static char *g_dir; /* one temp dir for the whole suite */

static int suite_init(void)
{
    g_dir = tu_tempdir();
    return g_dir ? 0 : 1;
}

static int suite_clean(void)
{
    tu_rmtree(g_dir);
    free(g_dir);
    g_dir = NULL;
    return 0;
}

/* buf = <dir>/<name> (buf holds PATH_MAX_T bytes) */
static const char *jpath(char *buf, const char *dir, const char *name)
{
    int n = snprintf(buf, PATH_MAX_T, "%s/%s", dir, name);
    CU_ASSERT_FATAL(n > 0 && n < PATH_MAX_T);
    return buf;
}

/* buf = <suite dir>/<name> */
static const char *tpath(char *buf, const char *name) { return jpath(buf, g_dir, name); }

static int write_gz_bytes(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb");
    if (!g) return -1;
    int ok = gzwrite(g, data, (unsigned)n) == (int)n;
    return (gzclose(g) == Z_OK && ok) ? 0 : -1;
}

/* Reading path must fail with code `want` (or FORMAT/IO when want < 0),
 * leave *out empty and name the path in the message. Returns the status. */
static ae_status expect_idx_fail(const char *path, int want, ae_error *err)
{
    ae_idx idx;
    memset(&idx, 0xAB, sizeof idx);
    ae_error_clear(err);
    ae_status st = ae_data_read_idx(path, &idx, err);
    if (want < 0) {
        CU_ASSERT(st == AE_ERR_FORMAT || st == AE_ERR_IO);
    } else {
        CU_ASSERT_EQUAL((int)st, want);
    }
    CU_ASSERT_EQUAL(err->code, st);
    CU_ASSERT_PTR_NULL(idx.data);
    CU_ASSERT_EQUAL(idx.count, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err->msg, path));
    ae_data_idx_free(&idx);
    return st;
}

/* A uint8 dataset built by hand: sample i has id i encoded in its first two
 * pixels (little-endian), the rest i*7+j; label i % nclass. */
static void make_id_dataset(ae_dataset *ds, size_t n, size_t d, int nclass)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->c = 1;
    ds->h = 1;
    ds->w = (int)d;
    ds->d = d;
    ds->x8 = malloc(n * d);
    ds->y = malloc(n);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++) ds->x8[i * d + j] = (uint8_t)(i * 7 + j);
        ds->x8[i * d] = (uint8_t)(i & 0xff);
        ds->x8[i * d + 1] = (uint8_t)(i >> 8);
        ds->y[i] = (uint8_t)(i % (size_t)nclass);
    }
    ds->nclass = nclass;
    snprintf(ds->name, sizeof ds->name, "ids");
}

static size_t sample_id(const ae_dataset *ds, size_t i)
{
    return (size_t)ds->x8[i * ds->d] | (size_t)ds->x8[i * ds->d + 1] << 8;
}

/* ------------------------------------------------------------ reading -- */

static void check_read_exact(int gz)
{
    char p[PATH_MAX_T];
    /* the name says nothing: gzip must be detected by content */
    tpath(p, gz ? "exact-gz.bin" : "exact-raw.gz");
    uint32_t dims[3] = {3, 2, 5};
    uint8_t data[30];
    for (int i = 0; i < 30; i++) data[i] = (uint8_t)(i * 37 + 11);
    CU_ASSERT_EQUAL_FATAL(tu_write_idx(p, dims, 3, data, gz), 0);
    size_t flen = 0;
    unsigned char *bytes = tu_read_file(p, &flen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    if (gz) {
        CU_ASSERT(bytes[0] == 0x1f && bytes[1] == 0x8b);
    } else {
        CU_ASSERT_EQUAL(flen, 4 + 3 * 4 + 30);
    }
    free(bytes);

    ae_idx idx;
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_data_read_idx(p, &idx, &err), AE_OK);
    CU_ASSERT_EQUAL(idx.ndims, 3);
    CU_ASSERT_EQUAL(idx.dims[0], 3);
    CU_ASSERT_EQUAL(idx.dims[1], 2);
    CU_ASSERT_EQUAL(idx.dims[2], 5);
    CU_ASSERT_EQUAL(idx.count, 30);
    CU_ASSERT_EQUAL(memcmp(idx.data, data, 30), 0);
    ae_data_idx_free(&idx);
    CU_ASSERT_PTR_NULL(idx.data);
    CU_ASSERT_EQUAL(idx.count, 0);
}

static void test_data_read_raw_exact(void) { check_read_exact(0); }
static void test_data_read_gz_exact(void) { check_read_exact(1); }

static void test_data_read_ndims_range(void)
{
    char p[PATH_MAX_T];
    ae_error err;
    ae_idx idx;
    uint32_t d1[1] = {5};
    uint8_t v1[5] = {9, 8, 7, 6, 5};
    CU_ASSERT_EQUAL_FATAL(tu_write_idx(tpath(p, "nd1"), d1, 1, v1, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ae_data_read_idx(p, &idx, &err), AE_OK);
    CU_ASSERT_EQUAL(idx.ndims, 1);
    CU_ASSERT_EQUAL(idx.count, 5);
    CU_ASSERT_EQUAL(idx.data[4], 5);
    ae_data_idx_free(&idx);

    uint32_t d4[4] = {2, 1, 3, 2};
    uint8_t v4[12];
    for (int i = 0; i < 12; i++) v4[i] = (uint8_t)(200 + i);
    CU_ASSERT_EQUAL_FATAL(tu_write_idx(tpath(p, "nd4"), d4, 4, v4, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ae_data_read_idx(p, &idx, &err), AE_OK);
    CU_ASSERT_EQUAL(idx.ndims, 4);
    CU_ASSERT_EQUAL(idx.dims[3], 2);
    CU_ASSERT_EQUAL(idx.count, 12);
    CU_ASSERT_EQUAL(memcmp(idx.data, v4, 12), 0);
    ae_data_idx_free(&idx);

    /* 0 and 5 dimensions are refused */
    const unsigned char nd0[] = {0, 0, 8, 0, 1};
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "nd0"), nd0, sizeof nd0), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "0 dimensions"));
    unsigned char nd5[4 + 5 * 4 + 1] = {0, 0, 8, 5};
    for (int i = 0; i < 5; i++) nd5[7 + 4 * i] = 1;
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "nd5"), nd5, sizeof nd5), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "5 dimensions"));
}

static void test_data_read_wrong_magic(void)
{
    char p[PATH_MAX_T];
    ae_error err;
    const unsigned char bad1[] = {1, 0, 8, 1, 0, 0, 0, 1, 42};
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "magic1"), bad1, sizeof bad1), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "magic"));
    const unsigned char bad2[] = {0, 7, 8, 1, 0, 0, 0, 1, 42};
    CU_ASSERT_EQUAL_FATAL(write_gz_bytes(tpath(p, "magic2"), bad2, sizeof bad2), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "magic"));
    /* a text file */
    const char *txt = "hello, world\n";
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "magic3.txt"), txt, strlen(txt)), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
}

static void test_data_read_wrong_type_code(void)
{
    char p[PATH_MAX_T];
    ae_error err;
    const unsigned char f32[] = {0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3f, 0x80, 0, 0};
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "float.idx"), f32, sizeof f32), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "0x0d"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "float"));
    const unsigned char i16[] = {0, 0, 0x0B, 1, 0, 0, 0, 1, 0, 1};
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "short.idx"), i16, sizeof i16), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "0x0b"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "short"));
}

static void test_data_read_zero_dim(void)
{
    char p[PATH_MAX_T];
    ae_error err;
    const unsigned char z[] = {0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 0};
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "zerodim"), z, sizeof z), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "dimension 1 is 0"));
}

static void test_data_read_dims_overflow(void)
{
    char p[PATH_MAX_T];
    ae_error err;
    unsigned char ov[4 + 4 * 4] = {0, 0, 8, 4};
    memset(ov + 4, 0xff, 16);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "overflow"), ov, sizeof ov), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "overflow"));
    /* huge but representable (2^48 bytes): refused as truncated, without
     * trying to allocate what the header promises */
    unsigned char big[4 + 3 * 4 + 3] = {0, 0, 8, 3, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff,
                                        1, 2, 3};
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "huge"), big, sizeof big), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "truncated: expected 281462092005375 bytes of data, got 3"));
}

static void test_data_read_trailing_garbage(void)
{
    char p[PATH_MAX_T];
    ae_error err;
    const unsigned char t[] = {0, 0, 8, 1, 0, 0, 0, 2, 10, 20, 99};
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tpath(p, "trail.raw"), t, sizeof t), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "trailing"));
    CU_ASSERT_EQUAL_FATAL(write_gz_bytes(tpath(p, "trail.gz"), t, sizeof t), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "trailing"));
    /* the same bytes less the extra one are fine (the test is not vacuous) */
    ae_idx idx;
    CU_ASSERT_EQUAL_FATAL(write_gz_bytes(p, t, sizeof t - 1), 0);
    CU_ASSERT_EQUAL_FATAL(ae_data_read_idx(p, &idx, &err), AE_OK);
    CU_ASSERT_EQUAL(idx.count, 2);
    CU_ASSERT(idx.data[0] == 10 && idx.data[1] == 20);
    ae_data_idx_free(&idx);
}

static void test_data_read_missing_file(void)
{
    char p[PATH_MAX_T];
    ae_error err;
    expect_idx_fail(tpath(p, "no-such-file-idx3-ubyte"), AE_ERR_IO, &err);
    /* a directory is not a file */
    expect_idx_fail(g_dir, AE_ERR_IO, &err);
}

/* Every proper prefix of a good file (raw bytes, or the gzip file's bytes)
 * is refused cleanly; the full file loads. */
static void check_truncated_every_length(int gz)
{
    char full[PATH_MAX_T], cut[PATH_MAX_T];
    tpath(full, gz ? "trunc-full.gz" : "trunc-full");
    tpath(cut, gz ? "trunc-cut.gz" : "trunc-cut");
    uint32_t dims[3] = {2, 3, 2};
    uint8_t data[12];
    for (int i = 0; i < 12; i++) data[i] = (uint8_t)(255 - 13 * i);
    CU_ASSERT_EQUAL_FATAL(tu_write_idx(full, dims, 3, data, gz), 0);
    size_t len = 0;
    unsigned char *bytes = tu_read_file(full, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    CU_ASSERT_FATAL(len > 16);

    ae_error err;
    ae_idx idx;
    CU_ASSERT_EQUAL(ae_data_read_idx(full, &idx, &err), AE_OK);
    CU_ASSERT_EQUAL(memcmp(idx.data, data, sizeof data), 0);
    ae_data_idx_free(&idx);

    int refused = 0;
    for (size_t n = 0; n < len; n++) {
        CU_ASSERT_EQUAL_FATAL(tu_write_file(cut, bytes, n), 0);
        ae_status st = expect_idx_fail(cut, -1, &err);
        refused += st == AE_ERR_FORMAT || st == AE_ERR_IO;
        if (!gz && n >= 16) {
            char want[128];
            snprintf(want, sizeof want, "truncated: expected 12 bytes of data, got %zu", n - 16);
            CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want));
        }
    }
    CU_ASSERT_EQUAL(refused, (int)len);
    free(bytes);
}

static void test_data_truncated_every_length_raw(void) { check_truncated_every_length(0); }
static void test_data_truncated_every_length_gz(void) { check_truncated_every_length(1); }

/* A complete gzip stream whose content is a truncated IDX file. */
static void test_data_truncated_gz_content(void)
{
    char p[PATH_MAX_T];
    ae_error err;
    const unsigned char t[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4};
    CU_ASSERT_EQUAL_FATAL(write_gz_bytes(tpath(p, "short-content.gz"), t, sizeof t), 0);
    expect_idx_fail(p, AE_ERR_FORMAT, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "truncated: expected 6 bytes of data, got 4"));
}

/* ----------------------------------------------------------- datasets -- */

static void write_pair(const char *img, const char *lab, uint32_t n, uint32_t h, uint32_t w,
                       uint32_t nlab, int gz)
{
    uint32_t idims[3] = {n, h, w};
    size_t cnt = (size_t)n * h * w;
    uint8_t *px = malloc(cnt);
    for (size_t i = 0; i < cnt; i++) px[i] = (uint8_t)(i * 31 + 5);
    CU_ASSERT_EQUAL(tu_write_idx(img, idims, 3, px, gz), 0);
    free(px);
    if (!lab) return;
    uint32_t ldims[1] = {nlab};
    uint8_t *ly = malloc(nlab);
    for (uint32_t i = 0; i < nlab; i++) ly[i] = (uint8_t)((i * 3) % 7);
    CU_ASSERT_EQUAL(tu_write_idx(lab, ldims, 1, ly, gz), 0);
    free(ly);
}

static void test_data_load_pair_values(void)
{
    char pi[PATH_MAX_T], pl[PATH_MAX_T];
    write_pair(tpath(pi, "pair-images"), tpath(pl, "pair-labels"), 5, 3, 4, 5, 1);
    ae_dataset ds;
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_data_load_pair(pi, pl, &ds, &err), AE_OK);
    CU_ASSERT_EQUAL(ds.n, 5);
    CU_ASSERT_EQUAL(ds.c, 1);
    CU_ASSERT_EQUAL(ds.h, 3);
    CU_ASSERT_EQUAL(ds.w, 4);
    CU_ASSERT_EQUAL(ds.d, 12);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds.x8);
    CU_ASSERT_PTR_NULL(ds.xf);
    for (size_t i = 0; i < 60; i++) CU_ASSERT_EQUAL(ds.x8[i], (uint8_t)(i * 31 + 5));
    const uint8_t want_y[5] = {0, 3, 6, 2, 5};
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds.y);
    CU_ASSERT_EQUAL(memcmp(ds.y, want_y, 5), 0);
    CU_ASSERT_EQUAL(ds.nclass, 7);
    ae_data_free(&ds);
    CU_ASSERT_PTR_NULL(ds.x8);
    CU_ASSERT_EQUAL(ds.n, 0);

    /* without labels */
    CU_ASSERT_EQUAL_FATAL(ae_data_load_pair(pi, NULL, &ds, &err), AE_OK);
    CU_ASSERT_EQUAL(ds.n, 5);
    CU_ASSERT_PTR_NULL(ds.y);
    CU_ASSERT_EQUAL(ds.nclass, 0);
    ae_data_free(&ds);
}

static void test_data_load_pair_count_mismatch(void)
{
    char pi[PATH_MAX_T], pl[PATH_MAX_T];
    write_pair(tpath(pi, "mm-images"), tpath(pl, "mm-labels"), 3, 2, 2, 4, 0);
    ae_dataset ds;
    ae_error err;
    CU_ASSERT_EQUAL(ae_data_load_pair(pi, pl, &ds, &err), AE_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, pi));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, pl));
    CU_ASSERT_PTR_NULL(ds.x8);
    CU_ASSERT_PTR_NULL(ds.y);
    ae_data_free(&ds);
}

static void test_data_load_pair_wrong_ndims(void)
{
    char pi[PATH_MAX_T], pl[PATH_MAX_T];
    ae_dataset ds;
    ae_error err;
    /* labels given as images and vice versa */
    write_pair(tpath(pi, "nd-images"), tpath(pl, "nd-labels"), 4, 2, 2, 4, 0);
    CU_ASSERT_EQUAL(ae_data_load_pair(pl, NULL, &ds, &err), AE_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, pl));
    CU_ASSERT_PTR_NULL(ds.x8);
    CU_ASSERT_EQUAL(ae_data_load_pair(pi, pi, &ds, &err), AE_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "labels file has 3 dimensions"));
    CU_ASSERT_PTR_NULL(ds.x8);
    /* a missing labels file after good images: no leak, path named */
    char missing[PATH_MAX_T];
    CU_ASSERT_EQUAL(ae_data_load_pair(pi, tpath(missing, "nd-nolabels"), &ds, &err), AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, missing));
    CU_ASSERT_PTR_NULL(ds.x8);
}

static void test_data_load_named_directory(void)
{
    char dir[PATH_MAX_T], a[PATH_MAX_T], b[PATH_MAX_T];
    tpath(dir, "named");
    mkdir(dir, 0755);
    /* gz images, raw labels: each file is found with or without ".gz" */
    jpath(a, dir, "train-images-idx3-ubyte.gz");
    jpath(b, dir, "train-labels-idx1-ubyte");
    write_pair(a, b, 6, 2, 3, 6, 0);
    /* ...then the images again, really gzipped this time */
    uint32_t idims[3] = {6, 2, 3};
    uint8_t px[36];
    for (int i = 0; i < 36; i++) px[i] = (uint8_t)(i * 31 + 5);
    CU_ASSERT_EQUAL_FATAL(tu_write_idx(a, idims, 3, px, 1), 0);
    jpath(a, dir, "t10k-images-idx3-ubyte");
    jpath(b, dir, "t10k-labels-idx1-ubyte.gz");
    write_pair(a, b, 2, 2, 3, 2, 1);

    ae_dataset ds;
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_data_load_named(dir, NULL, 0, &ds, &err), AE_OK);
    CU_ASSERT_EQUAL(ds.n, 6);
    CU_ASSERT_EQUAL(ds.h, 2);
    CU_ASSERT_EQUAL(ds.w, 3);
    CU_ASSERT_EQUAL(memcmp(ds.x8, px, 36), 0);
    CU_ASSERT_EQUAL(ds.nclass, 7);
    ae_data_free(&ds);
    CU_ASSERT_EQUAL_FATAL(ae_data_load_named(dir, NULL, 1, &ds, &err), AE_OK);
    CU_ASSERT_EQUAL(ds.n, 2);
    CU_ASSERT_EQUAL(ds.y[1], 3);
    CU_ASSERT_EQUAL(ds.nclass, 4);
    ae_data_free(&ds);
}

static void test_data_load_named_mnist_prefers_raw(void)
{
    char root[PATH_MAX_T], dir[PATH_MAX_T], a[PATH_MAX_T], b[PATH_MAX_T];
    tpath(root, "root1");
    mkdir(root, 0755);
    jpath(dir, root, "mnist");
    mkdir(dir, 0755);
    jpath(a, dir, "train-images-idx3-ubyte");
    jpath(b, dir, "train-labels-idx1-ubyte");
    write_pair(a, b, 4, 1, 2, 4, 0);
    /* a different .gz beside the raw file: the raw one is first */
    jpath(a, dir, "train-images-idx3-ubyte.gz");
    write_pair(a, NULL, 9, 1, 2, 0, 1);

    ae_dataset ds;
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_data_load_named("mnist", root, 0, &ds, &err), AE_OK);
    CU_ASSERT_EQUAL(ds.n, 4);
    CU_ASSERT_STRING_EQUAL(ds.name, "mnist/train");
    ae_data_free(&ds);

    /* test split absent: the message lists what was tried and the fix */
    CU_ASSERT_EQUAL(ae_data_load_named("mnist", root, 1, &ds, &err), AE_ERR_IO);
    jpath(a, dir, "t10k-images-idx3-ubyte");
    jpath(b, dir, "t10k-images-idx3-ubyte.gz");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, a));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, b));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "scripts/fetch-data.sh"));
    CU_ASSERT_PTR_NULL(ds.x8);
}

static void test_data_load_named_missing_labels(void)
{
    char dir[PATH_MAX_T], a[PATH_MAX_T];
    tpath(dir, "nolabels");
    mkdir(dir, 0755);
    jpath(a, dir, "train-images-idx3-ubyte");
    write_pair(a, NULL, 2, 1, 1, 0, 0);
    ae_dataset ds;
    ae_error err;
    CU_ASSERT_EQUAL(ae_data_load_named(dir, NULL, 0, &ds, &err), AE_ERR_IO);
    jpath(a, dir, "train-labels-idx1-ubyte");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, a));
    CU_ASSERT_PTR_NULL(ds.x8);
    /* neither a known name nor a directory */
    tpath(a, "no-such-dataset");
    CU_ASSERT_EQUAL(ae_data_load_named(a, NULL, 0, &ds, &err), AE_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, a));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unknown dataset"));
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* fashion-mnist: <data_dir>/fashion-mnist/ first, then the system copy. */
static void test_data_load_named_fashion(void)
{
    char root[PATH_MAX_T], dir[PATH_MAX_T], a[PATH_MAX_T], b[PATH_MAX_T];
    tpath(root, "root2");
    mkdir(root, 0755);
    ae_dataset ds;
    ae_error err;
    snprintf(a, sizeof a, SYS_FASHION_DIR "/t10k-images-idx3-ubyte.gz");
    if (is_dir(SYS_FASHION_DIR)) {
        CU_ASSERT_EQUAL_FATAL(ae_data_load_named("fashion-mnist", root, 1, &ds, &err), AE_OK);
        CU_ASSERT_EQUAL(ds.n, 10000);
        CU_ASSERT_EQUAL(ds.h, 28);
        CU_ASSERT_EQUAL(ds.w, 28);
        CU_ASSERT_EQUAL(ds.nclass, 10);
        CU_ASSERT_STRING_EQUAL(ds.name, "fashion-mnist/test");
        ae_data_free(&ds);
    } else {
        CU_ASSERT_EQUAL(ae_data_load_named("fashion-mnist", root, 1, &ds, &err), AE_ERR_IO);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, a));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "dataset-fashion-mnist"));
    }
    jpath(dir, root, "fashion-mnist");
    mkdir(dir, 0755);
    jpath(a, dir, "t10k-images-idx3-ubyte");
    jpath(b, dir, "t10k-labels-idx1-ubyte");
    write_pair(a, b, 3, 2, 2, 3, 0);
    CU_ASSERT_EQUAL_FATAL(ae_data_load_named("fashion-mnist", root, 1, &ds, &err), AE_OK);
    CU_ASSERT_EQUAL(ds.n, 3);
    CU_ASSERT_EQUAL(ds.h, 2);
    ae_data_free(&ds);
}

/* ------------------------------------------------------------- gather -- */

static void test_data_gather_float_values(void)
{
    /* one sample holding every byte value */
    ae_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = 1;
    ds.c = 1;
    ds.h = 16;
    ds.w = 16;
    ds.d = 256;
    ds.x8 = malloc(256);
    for (int v = 0; v < 256; v++) ds.x8[v] = (uint8_t)v;
    float out[256];
    uint32_t zero = 0;
    ae_data_gather_x(&ds, &zero, 1, out);
    for (int v = 0; v < 256; v++) CU_ASSERT_EQUAL(out[v], (float)v / 255.0f);
    CU_ASSERT_EQUAL(out[0], 0.0f);
    CU_ASSERT_EQUAL(out[255], 1.0f);
    CU_ASSERT_DOUBLE_EQUAL(out[128], 128.0 / 255.0, 1e-7);
    float out2[256];
    ae_data_range_x(&ds, 0, 1, out2);
    CU_ASSERT_EQUAL(memcmp(out, out2, sizeof out), 0);
    /* unlabelled: gather_y gives zeros */
    uint8_t y = 77;
    ae_data_gather_y(&ds, &zero, 1, &y);
    CU_ASSERT_EQUAL(y, 0);
    ae_data_free(&ds);
}

static void test_data_gather_rows(void)
{
    ae_dataset ds;
    make_id_dataset(&ds, 5, 3, 4);
    const uint32_t idx[4] = {3, 0, 3, 1};
    float out[12];
    uint8_t y[4];
    ae_data_gather_x(&ds, idx, 4, out);
    ae_data_gather_y(&ds, idx, 4, y);
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 3; j++) CU_ASSERT_EQUAL(out[i * 3 + j], ds.x8[idx[i] * 3 + j] / 255.0f);
        CU_ASSERT_EQUAL(y[i], idx[i] % 4);
    }
    CU_ASSERT_EQUAL(out[0], 3.0f / 255.0f); /* sample 3's id pixel */
    float r[6];
    ae_data_range_x(&ds, 2, 2, r);
    for (int j = 0; j < 6; j++) CU_ASSERT_EQUAL(r[j], ds.x8[6 + j] / 255.0f);
    ae_data_free(&ds);

    /* float data is copied as is */
    const uint8_t labels[3] = {2, 0, 1};
    CU_ASSERT_EQUAL_FATAL(ae_data_create_float(3, 2, labels, 3, &ds, NULL), AE_OK);
    for (int i = 0; i < 6; i++) ds.xf[i] = -1.5f + 0.75f * (float)i;
    const uint32_t fidx[2] = {2, 0};
    ae_data_gather_x(&ds, fidx, 2, out);
    CU_ASSERT_EQUAL(out[0], ds.xf[4]);
    CU_ASSERT_EQUAL(out[1], ds.xf[5]);
    CU_ASSERT_EQUAL(out[2], -1.5f);
    CU_ASSERT_EQUAL(out[3], -0.75f);
    ae_data_range_x(&ds, 1, 2, r);
    CU_ASSERT_EQUAL(memcmp(r, ds.xf + 2, 4 * sizeof(float)), 0);
    ae_data_gather_y(&ds, fidx, 2, y);
    CU_ASSERT(y[0] == 1 && y[1] == 2);
    ae_data_free(&ds);
}

static void test_data_create_float_and_truncate(void)
{
    ae_dataset ds;
    ae_error err;
    const uint8_t labels[4] = {1, 4, 1, 0};
    CU_ASSERT_EQUAL_FATAL(ae_data_create_float(4, 5, labels, 5, &ds, &err), AE_OK);
    CU_ASSERT_EQUAL(ds.n, 4);
    CU_ASSERT_EQUAL(ds.d, 5);
    CU_ASSERT_EQUAL((size_t)ds.c * ds.h * ds.w, 5);
    CU_ASSERT_PTR_NULL(ds.x8);
    CU_ASSERT_EQUAL(ds.nclass, 5);
    for (int i = 0; i < 20; i++) CU_ASSERT_EQUAL(ds.xf[i], 0.0f);
    CU_ASSERT_EQUAL(memcmp(ds.y, labels, 4), 0);
    ae_data_truncate(&ds, 2);
    CU_ASSERT_EQUAL(ds.n, 2);
    ae_data_truncate(&ds, 9); /* larger: no change */
    CU_ASSERT_EQUAL(ds.n, 2);
    ae_data_free(&ds);
    ae_data_free(&ds); /* zeroed: safe twice */
    ae_data_free(NULL);
    ae_data_idx_free(NULL);

    CU_ASSERT_EQUAL_FATAL(ae_data_create_float(3, 2, NULL, 0, &ds, &err), AE_OK);
    CU_ASSERT_PTR_NULL(ds.y);
    CU_ASSERT_EQUAL(ds.nclass, 0);
    ae_data_free(&ds);
}

/* -------------------------------------------------------------- split -- */

static void test_data_split_sizes_disjoint(void)
{
    ae_dataset src, tr, va;
    ae_error err;
    make_id_dataset(&src, 200, 4, 10);
    CU_ASSERT_EQUAL_FATAL(ae_data_split(&src, 30, 7, &tr, &va, &err), AE_OK);
    CU_ASSERT_EQUAL(tr.n, 170);
    CU_ASSERT_EQUAL(va.n, 30);
    CU_ASSERT(tr.d == 4 && va.d == 4 && tr.w == 4 && va.nclass == 10 && tr.nclass == 10);
    int seen[200] = {0};
    const ae_dataset *parts[2] = {&tr, &va};
    for (int k = 0; k < 2; k++) {
        const ae_dataset *p = parts[k];
        size_t prev = 0;
        for (size_t i = 0; i < p->n; i++) {
            size_t id = sample_id(p, i);
            CU_ASSERT_FATAL(id < 200);
            if (i) {
                CU_ASSERT(id > prev); /* src order kept */
            }
            prev = id;
            seen[id]++;
            CU_ASSERT_EQUAL(p->y[i], id % 10); /* label travels with its sample */
            CU_ASSERT_EQUAL(memcmp(p->x8 + i * 4, src.x8 + id * 4, 4), 0);
        }
    }
    for (int i = 0; i < 200; i++) CU_ASSERT_EQUAL(seen[i], 1); /* disjoint and complete */
    /* the val set is the first nval of the (seed, AE_RNG_SPLIT) permutation */
    uint32_t perm[200];
    ae_rng r;
    ae_rng_init(&r, 7, AE_RNG_SPLIT, 0, 0, 0);
    ae_rng_permutation(&r, perm, 200);
    int inval[200] = {0};
    for (int i = 0; i < 30; i++) inval[perm[i]] = 1;
    for (size_t i = 0; i < va.n; i++) CU_ASSERT(inval[sample_id(&va, i)]);
    ae_data_free(&tr);
    ae_data_free(&va);
    ae_data_free(&src);
}

static void test_data_split_multiset(void)
{
    /* duplicate samples: train + val is exactly the original multiset */
    enum { N = 90, NX = 7, NY = 3 };
    ae_dataset src, tr, va;
    make_id_dataset(&src, N, 2, NY);
    for (size_t i = 0; i < N; i++) {
        src.x8[2 * i] = (uint8_t)(i % NX);
        src.x8[2 * i + 1] = (uint8_t)(i % 2);
    }
    int want[NX][2][NY] = {{{0}}}, got[NX][2][NY] = {{{0}}};
    for (size_t i = 0; i < N; i++) want[src.x8[2 * i]][src.x8[2 * i + 1]][src.y[i]]++;
    CU_ASSERT_EQUAL_FATAL(ae_data_split(&src, 25, 123, &tr, &va, NULL), AE_OK);
    CU_ASSERT_EQUAL(tr.n + va.n, N);
    const ae_dataset *parts[2] = {&tr, &va};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < parts[k]->n; i++)
            got[parts[k]->x8[2 * i]][parts[k]->x8[2 * i + 1]][parts[k]->y[i]]++;
    CU_ASSERT_EQUAL(memcmp(want, got, sizeof want), 0);
    ae_data_free(&tr);
    ae_data_free(&va);
    ae_data_free(&src);
}

static void test_data_split_seed_determinism(void)
{
    ae_dataset src, t1, v1, t2, v2, t3, v3;
    make_id_dataset(&src, 100, 2, 5);
    CU_ASSERT_EQUAL_FATAL(ae_data_split(&src, 20, 1, &t1, &v1, NULL), AE_OK);
    CU_ASSERT_EQUAL_FATAL(ae_data_split(&src, 20, 1, &t2, &v2, NULL), AE_OK);
    CU_ASSERT_EQUAL_FATAL(ae_data_split(&src, 20, 2, &t3, &v3, NULL), AE_OK);
    CU_ASSERT_EQUAL(memcmp(v1.x8, v2.x8, 40), 0);
    CU_ASSERT_EQUAL(memcmp(t1.x8, t2.x8, 160), 0);
    CU_ASSERT_EQUAL(memcmp(v1.y, v2.y, 20), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(v1.x8, v3.x8, 40), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(t1.x8, t3.x8, 160), 0);
    ae_data_free(&t1);
    ae_data_free(&v1);
    ae_data_free(&t2);
    ae_data_free(&v2);
    ae_data_free(&t3);
    ae_data_free(&v3);
    ae_data_free(&src);
}

static void test_data_split_edges(void)
{
    ae_dataset src, tr, va;
    ae_error err;
    make_id_dataset(&src, 10, 2, 2);
    CU_ASSERT_EQUAL_FATAL(ae_data_split(&src, 0, 5, &tr, &va, &err), AE_OK);
    CU_ASSERT_EQUAL(va.n, 0);
    CU_ASSERT_EQUAL(tr.n, 10);
    CU_ASSERT_EQUAL(memcmp(tr.x8, src.x8, 20), 0);
    CU_ASSERT_EQUAL(memcmp(tr.y, src.y, 10), 0);
    ae_data_free(&tr);
    ae_data_free(&va);
    CU_ASSERT_EQUAL_FATAL(ae_data_split(&src, 10, 5, &tr, &va, &err), AE_OK);
    CU_ASSERT_EQUAL(tr.n, 0);
    CU_ASSERT_EQUAL(va.n, 10);
    CU_ASSERT_EQUAL(memcmp(va.x8, src.x8, 20), 0);
    ae_data_free(&tr);
    ae_data_free(&va);
    CU_ASSERT_EQUAL(ae_data_split(&src, 11, 5, &tr, &va, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(err.code, AE_ERR_ARG);
    CU_ASSERT(tr.x8 == NULL && va.x8 == NULL && tr.n == 0 && va.n == 0);
    ae_data_free(&src);
}

static void test_data_split_float(void)
{
    ae_dataset src, tr, va;
    const uint8_t labels[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    CU_ASSERT_EQUAL_FATAL(ae_data_create_float(8, 3, labels, 8, &src, NULL), AE_OK);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 3; j++) src.xf[i * 3 + j] = (float)i + 0.25f * (float)j;
    CU_ASSERT_EQUAL_FATAL(ae_data_split(&src, 3, 9, &tr, &va, NULL), AE_OK);
    CU_ASSERT(tr.n == 5 && va.n == 3);
    CU_ASSERT(tr.x8 == NULL && tr.xf != NULL && va.xf != NULL);
    int seen[8] = {0};
    const ae_dataset *parts[2] = {&tr, &va};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < parts[k]->n; i++) {
            int id = parts[k]->y[i];
            seen[id]++;
            for (int j = 0; j < 3; j++) CU_ASSERT_EQUAL(parts[k]->xf[i * 3 + j], src.xf[id * 3 + j]);
        }
    for (int i = 0; i < 8; i++) CU_ASSERT_EQUAL(seen[i], 1);
    ae_data_free(&tr);
    ae_data_free(&va);
    ae_data_free(&src);
}

/* ---------------------------------------------------- shared segment -- */

/* Three sets as the trainer shares them: uint8 with labels, float without,
 * and an empty one (eval without training data). */
static void make_share_sets(ae_dataset sets[3])
{
    make_id_dataset(&sets[0], 37, 5, 3);
    ae_data_truncate(&sets[0], 33); /* only the kept rows travel */
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_data_create_float(4, 3, NULL, 0, &sets[1], &err), AE_OK);
    for (size_t i = 0; i < 12; i++) sets[1].xf[i] = (float)i * 0.25f - 1.0f;
    memset(&sets[2], 0, sizeof sets[2]);
}

/* The views in got hold what want held. */
static void check_same_sets(const ae_dataset *want, const ae_dataset *got, int n)
{
    for (int i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(got[i].n, want[i].n);
        CU_ASSERT_EQUAL(got[i].d, want[i].d);
        CU_ASSERT_EQUAL(got[i].c, want[i].c);
        CU_ASSERT_EQUAL(got[i].h, want[i].h);
        CU_ASSERT_EQUAL(got[i].w, want[i].w);
        CU_ASSERT_EQUAL(got[i].nclass, want[i].nclass);
        CU_ASSERT_STRING_EQUAL(got[i].name, want[i].name);
        CU_ASSERT_EQUAL(got[i].x8 != NULL, want[i].x8 != NULL);
        CU_ASSERT_EQUAL(got[i].xf != NULL, want[i].xf != NULL);
        CU_ASSERT_EQUAL(got[i].y != NULL, want[i].y != NULL);
        size_t nd = want[i].n * want[i].d;
        if (want[i].x8 && got[i].x8) CU_ASSERT_EQUAL(memcmp(got[i].x8, want[i].x8, nd), 0);
        if (want[i].xf && got[i].xf) CU_ASSERT_EQUAL(memcmp(got[i].xf, want[i].xf, nd * sizeof(float)), 0);
        if (want[i].y && got[i].y) CU_ASSERT_EQUAL(memcmp(got[i].y, want[i].y, want[i].n), 0);
    }
}

static void test_data_pack_roundtrip(void)
{
    ae_dataset want[3], sets[3], views[3];
    make_share_sets(want);
    make_share_sets(sets);
    size_t bytes = ae_data_pack_size(sets, 3);
    CU_ASSERT(bytes >= 33 * 5 + 33 + 12 * sizeof(float));
    unsigned char *seg = malloc(bytes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seg);
    ae_data_pack(sets, 3, seg);
    /* the packed sets are views of seg now (ASan: their arrays were freed once) */
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(sets[i].borrowed, 1);
    CU_ASSERT(sets[0].x8 >= seg && sets[0].x8 < seg + bytes);
    check_same_sets(want, sets, 3);
    CU_ASSERT_EQUAL(ae_data_pack_size(sets, 3), bytes);
    /* a second process's views of the same segment */
    ae_error err;
    CU_ASSERT_EQUAL_FATAL(ae_data_unpack(seg, bytes, views, 3, &err), AE_OK);
    check_same_sets(want, views, 3);
    /* gathering from a view is the same as from the private copy */
    const uint32_t idx[3] = {32, 0, 7};
    float a[15], b[15];
    ae_data_gather_x(&want[0], idx, 3, a);
    ae_data_gather_x(&views[0], idx, 3, b);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    for (int i = 0; i < 3; i++) {
        ae_data_free(&views[i]); /* leaves the segment alone */
        ae_data_free(&sets[i]);
        ae_data_free(&want[i]);
    }
    free(seg);
}

static void test_data_unpack_rejects(void)
{
    ae_dataset sets[3], views[3];
    make_share_sets(sets);
    size_t bytes = ae_data_pack_size(sets, 3);
    unsigned char *seg = malloc(bytes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seg);
    ae_data_pack(sets, 3, seg);
    ae_error err;
    CU_ASSERT_EQUAL(ae_data_unpack(seg, bytes, views, 2, &err), AE_ERR_FORMAT); /* wrong count */
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "does not hold 2 datasets"));
    CU_ASSERT_EQUAL(ae_data_unpack(seg, 8, views, 3, &err), AE_ERR_FORMAT); /* smaller than its table */
    CU_ASSERT_EQUAL(ae_data_unpack(NULL, 0, views, 3, &err), AE_ERR_FORMAT);
    CU_ASSERT_EQUAL(ae_data_unpack(seg, bytes - 64, views, 3, &err), AE_ERR_FORMAT); /* an array cut off */
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "out of range"));
    seg[0] ^= 1; /* magic */
    CU_ASSERT_EQUAL(ae_data_unpack(seg, bytes, views, 3, &err), AE_ERR_FORMAT);
    for (int i = 0; i < 3; i++) ae_data_free(&sets[i]);
    free(seg);
}

/* A node of two processes played by one: the leader's call allocates, the
 * other's call gets the same segment. */
static struct {
    void *seg;
    size_t bytes;
    int allocs, syncs, releases, fail_alloc, no_room;
} fake_node;

static ae_status fake_alloc(size_t *bytes, void **ptr, void **handle, char *why, size_t why_cap, ae_error *err)
{
    if (fake_node.fail_alloc) return ae_error_set(err, AE_ERR_NOMEM, "no shared memory");
    if (fake_node.no_room) {
        snprintf(why, why_cap, "no room");
        *ptr = *handle = NULL;
        return AE_OK;
    }
    if (*bytes) {
        fake_node.seg = malloc(*bytes);
        fake_node.bytes = *bytes;
        fake_node.allocs++;
    }
    *bytes = fake_node.bytes;
    *ptr = fake_node.seg;
    *handle = &fake_node;
    return AE_OK;
}

static ae_status fake_sync(void *handle, ae_error *err)
{
    (void)err;
    CU_ASSERT_PTR_EQUAL(handle, &fake_node);
    fake_node.syncs++;
    return AE_OK;
}

static void fake_release(void *handle)
{
    if (handle) fake_node.releases++;
}

static void test_data_share_leader_and_follower(void)
{
    static const ae_data_shm_ops ops = {fake_alloc, fake_sync, fake_release};
    memset(&fake_node, 0, sizeof fake_node);
    ae_dataset want[3], leader[3], follower[3];
    make_share_sets(want);
    make_share_sets(leader);
    memset(follower, 0, sizeof follower);
    void *h1 = NULL, *h2 = NULL;
    ae_error err;
    char why[64];
    CU_ASSERT_EQUAL_FATAL(ae_data_share(leader, 3, 1, &ops, &h1, why, sizeof why, &err), AE_OK);
    CU_ASSERT_EQUAL_FATAL(ae_data_share(follower, 3, 0, &ops, &h2, why, sizeof why, &err), AE_OK);
    CU_ASSERT_EQUAL(fake_node.allocs, 1); /* one copy for the node */
    CU_ASSERT_EQUAL(fake_node.syncs, 2);
    CU_ASSERT_PTR_EQUAL(h1, &fake_node);
    check_same_sets(want, leader, 3);
    check_same_sets(want, follower, 3);
    CU_ASSERT_PTR_EQUAL(leader[0].x8, follower[0].x8);
    for (int i = 0; i < 3; i++) {
        ae_data_free(&leader[i]);
        ae_data_free(&follower[i]);
    }
    CU_ASSERT_EQUAL(fake_node.releases, 0);
    free(fake_node.seg);

    /* no shared memory: an error, no handle, the leader's sets still its own */
    fake_node.fail_alloc = 1;
    make_share_sets(leader);
    CU_ASSERT_EQUAL(ae_data_share(leader, 3, 1, &ops, &h1, why, sizeof why, &err), AE_ERR_NOMEM);
    CU_ASSERT_PTR_NULL(h1);
    CU_ASSERT_EQUAL(leader[0].borrowed, 0);
    check_same_sets(want, leader, 3);
    for (int i = 0; i < 3; i++) ae_data_free(&leader[i]);

    /* no room on the node: AE_OK, no handle, nothing packed, the reason passed on */
    fake_node.fail_alloc = 0;
    fake_node.no_room = 1;
    fake_node.allocs = 0;
    make_share_sets(leader);
    memset(follower, 0, sizeof follower);
    CU_ASSERT_EQUAL(ae_data_share(leader, 3, 1, &ops, &h1, why, sizeof why, &err), AE_OK);
    CU_ASSERT_PTR_NULL(h1);
    CU_ASSERT_STRING_EQUAL(why, "no room");
    CU_ASSERT_EQUAL(leader[0].borrowed, 0);
    check_same_sets(want, leader, 3);
    CU_ASSERT_EQUAL(ae_data_share(follower, 3, 0, &ops, &h2, why, sizeof why, &err), AE_OK);
    CU_ASSERT_PTR_NULL(h2);
    CU_ASSERT_PTR_NULL(follower[0].x8);
    CU_ASSERT_EQUAL(fake_node.allocs, 0);
    for (int i = 0; i < 3; i++) {
        ae_data_free(&leader[i]);
        ae_data_free(&want[i]);
    }
}

void ae_test_register_data(void)
{
    CU_pSuite s = CU_add_suite("data", suite_init, suite_clean);
    if (!s) return;
#define ADD(t) CU_add_test(s, #t, t)
    ADD(test_data_read_raw_exact);
    ADD(test_data_read_gz_exact);
    ADD(test_data_read_ndims_range);
    ADD(test_data_read_wrong_magic);
    ADD(test_data_read_wrong_type_code);
    ADD(test_data_read_zero_dim);
    ADD(test_data_read_dims_overflow);
    ADD(test_data_read_trailing_garbage);
    ADD(test_data_read_missing_file);
    ADD(test_data_truncated_every_length_raw);
    ADD(test_data_truncated_every_length_gz);
    ADD(test_data_truncated_gz_content);
    ADD(test_data_load_pair_values);
    ADD(test_data_load_pair_count_mismatch);
    ADD(test_data_load_pair_wrong_ndims);
    ADD(test_data_load_named_directory);
    ADD(test_data_load_named_mnist_prefers_raw);
    ADD(test_data_load_named_missing_labels);
    ADD(test_data_load_named_fashion);
    ADD(test_data_gather_float_values);
    ADD(test_data_gather_rows);
    ADD(test_data_create_float_and_truncate);
    ADD(test_data_split_sizes_disjoint);
    ADD(test_data_split_multiset);
    ADD(test_data_split_seed_determinism);
    ADD(test_data_split_edges);
    ADD(test_data_split_float);
    ADD(test_data_pack_roundtrip);
    ADD(test_data_unpack_rejects);
    ADD(test_data_share_leader_and_follower);
#undef ADD
}
