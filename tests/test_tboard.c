/* test_tboard.c - CUnit suite "tboard": TensorBoard event files (ae/tboard.h).
 *
 * CRC-32C against published known answers (RFC 3720 B.4 and "123456789"),
 * the TFRecord mask against hand-computed values and the 12 bytes that begin
 * every TensorFlow event file; files written by the library read back here
 * record by record - length, both masked CRCs, then the Event decoded by a
 * small protobuf wire reader of this file (not protobuf-c) - and the bytes of
 * the first event and of one scalar event compared with protobuf bytes
 * encoded by hand. Also: the file name, new names instead of reopening,
 * every event readable before close, image checks, argument and I/O errors,
 * and a write that fails (file size limit) failing every later call. The
 * trainer's images: PNGs from the one encoder of ae/plot.h (gray and RGB,
 * pixels decoded back by libpng), and model grids made in memory (a model
 * that reconstructs exactly, so every pixel is known) written as image
 * events and read back byte for byte, leaving the model's numbers as they
 * were. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <png.h>
#include <zlib.h>

#include "ae/data.h"
#include "ae/model.h"
#include "ae/plot.h"
#include "ae/tboard.h"
#include "testutil.h"

#define PATH_MAX_T 1024
#define MAX_VALUES 4
#define MAX_RECORDS 64
#define MAX_STR 128
#define WALL_SLACK 1.0  /* s: the clock read around a call may be coarser than the library's */
#define TIME_DIGITS 10

/* ---- a minimal protobuf wire reader ---------------------------------------------------------------- */

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

typedef struct rd {
    const unsigned char *p, *end;
    int bad;
} rd;

static uint64_t rd_varint(rd *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) break;
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = 1;
    return 0;
}

static uint64_t rd_fixed(rd *r, int n)
{
    if (r->end - r->p < n) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

/* A length-delimited field's payload as a sub-reader. */
static rd rd_sub(rd *r)
{
    uint64_t n = rd_varint(r);
    rd s = {r->p, r->p, 1};
    if (r->bad || n > (uint64_t)(r->end - r->p)) {
        r->bad = 1;
        return s;
    }
    s.end = r->p + n;
    s.bad = 0;
    r->p += n;
    return s;
}

static void rd_str(rd *r, char *out)
{
    rd s = rd_sub(r);
    size_t n = (size_t)(s.end - s.p);
    if (s.bad || n >= MAX_STR) {
        r->bad = 1;
        return;
    }
    memcpy(out, s.p, n);
    out[n] = '\0';
}

typedef struct tb_value {
    char tag[MAX_STR];
    int has_simple, has_image;
    float simple;
    int64_t height, width, colorspace;
    const unsigned char *png;
    size_t npng;
} tb_value;

typedef struct tb_event {
    double wall_time;
    int64_t step;
    int has_file_version, has_summary;
    char file_version[MAX_STR];
    int nvalues;
    tb_value v[MAX_VALUES];
} tb_event;

/* Any field not in proto/tensorboard.proto, or of the wrong wire type, is an error: the writer
 * writes only those. */
static int decode_image(rd r, tb_value *v)
{
    while (r.p < r.end && !r.bad) {
        uint64_t key = rd_varint(&r);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field >= 1 && field <= 3 && wire == WIRE_VARINT) {
            int64_t x = (int64_t)rd_varint(&r);
            if (field == 1) v->height = x;
            else if (field == 2) v->width = x;
            else v->colorspace = x;
        } else if (field == 4 && wire == WIRE_LEN) {
            rd s = rd_sub(&r);
            v->png = s.p;
            v->npng = (size_t)(s.end - s.p);
        } else {
            return -1;
        }
    }
    return r.bad ? -1 : 0;
}

static int decode_value(rd r, tb_value *v)
{
    while (r.p < r.end && !r.bad) {
        uint64_t key = rd_varint(&r);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == WIRE_LEN) {
            rd_str(&r, v->tag);
        } else if (field == 2 && wire == WIRE_I32) {
            uint32_t bits = (uint32_t)rd_fixed(&r, 4);
            memcpy(&v->simple, &bits, sizeof bits);
            v->has_simple = 1;
        } else if (field == 4 && wire == WIRE_LEN) {
            if (decode_image(rd_sub(&r), v) != 0) return -1;
            v->has_image = 1;
        } else {
            return -1;
        }
    }
    return r.bad ? -1 : 0;
}

static int decode_event(const unsigned char *p, size_t n, tb_event *e)
{
    memset(e, 0, sizeof *e);
    rd r = {p, p + n, 0};
    while (r.p < r.end && !r.bad) {
        uint64_t key = rd_varint(&r);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == WIRE_I64) {
            uint64_t bits = rd_fixed(&r, 8);
            memcpy(&e->wall_time, &bits, sizeof bits);
        } else if (field == 2 && wire == WIRE_VARINT) {
            e->step = (int64_t)rd_varint(&r);
        } else if (field == 3 && wire == WIRE_LEN) {
            rd_str(&r, e->file_version);
            e->has_file_version = 1;
        } else if (field == 5 && wire == WIRE_LEN) {
            rd s = rd_sub(&r);
            e->has_summary = 1;
            while (s.p < s.end && !s.bad) {
                uint64_t k = rd_varint(&s);
                if (k != ((1u << 3) | WIRE_LEN) || e->nvalues == MAX_VALUES) return -1;
                if (decode_value(rd_sub(&s), &e->v[e->nvalues++]) != 0) return -1;
            }
            if (s.bad) return -1;
        } else {
            return -1;
        }
    }
    return r.bad ? -1 : 0;
}

/* ---- TFRecord reader -------------------------------------------------------------------------------- */

static uint64_t get_le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static uint32_t get_le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

typedef struct tb_file {
    unsigned char *bytes;
    size_t n;
    int nrec;
    size_t rec_at[MAX_RECORDS], rec_len[MAX_RECORDS]; /* offset and length of each record's data */
    int bad_len_crc, bad_data_crc;  /* count of records whose CRC did not match */
    size_t tail;                    /* bytes after the last whole record */
} tb_file;

/* Read path as records: each must have a length, its masked CRC, the data and the data's masked CRC.
 * Stops at the first record that does not fit (tail counts the rest). Returns 0, or -1 when unreadable. */
static int read_records(const char *path, tb_file *f)
{
    memset(f, 0, sizeof *f);
    f->bytes = tu_read_file(path, &f->n);
    if (!f->bytes) return -1;
    size_t at = 0;
    while (f->nrec < MAX_RECORDS && f->n - at >= AE_TB_HEADER_BYTES + AE_TB_FOOTER_BYTES) {
        const unsigned char *h = f->bytes + at;
        uint64_t len = get_le64(h);
        if (len > f->n - at - AE_TB_HEADER_BYTES - AE_TB_FOOTER_BYTES) break; /* a partial record */
        if (get_le32(h + 8) != ae_tb_crc_mask(ae_tb_crc32c(0, h, 8))) f->bad_len_crc++;
        const unsigned char *d = h + AE_TB_HEADER_BYTES;
        if (get_le32(d + len) != ae_tb_crc_mask(ae_tb_crc32c(0, d, (size_t)len))) f->bad_data_crc++;
        f->rec_at[f->nrec] = at + AE_TB_HEADER_BYTES;
        f->rec_len[f->nrec] = (size_t)len;
        f->nrec++;
        at += AE_TB_HEADER_BYTES + (size_t)len + AE_TB_FOOTER_BYTES;
    }
    f->tail = f->n - at;
    return 0;
}

static int record_event(const tb_file *f, int i, tb_event *e)
{
    return decode_event(f->bytes + f->rec_at[i], f->rec_len[i], e);
}

/* ---- helpers ---------------------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int same_float(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void put_be32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (24 - 8 * i));
}

/* Append a PNG chunk (length, type, data, CRC-32 of type and data) at *p. */
static void png_chunk(unsigned char **p, const char *type, const unsigned char *data, uint32_t n)
{
    put_be32(*p, n);
    memcpy(*p + 4, type, 4);
    if (n) memcpy(*p + 8, data, n);
    uLong c = crc32(0L, *p + 4, 4 + n);
    put_be32(*p + 8 + n, (uint32_t)c);
    *p += 12 + n;
}

#define TPNG_W 3
#define TPNG_H 2
/* A valid 8-bit PNG of TPNG_W x TPNG_H pixels of colour type ct (0 gray, 6 RGBA: 1 or 4 bytes a pixel)
 * into out (room for 256 bytes); returns its size. */
static size_t make_png(unsigned char *out, int ct)
{
    int bpp = ct == 6 ? 4 : 1;
    unsigned char raw[TPNG_H * (1 + TPNG_W * 4)], z[128], ihdr[13];
    size_t nraw = 0;
    for (int y = 0; y < TPNG_H; y++) {
        raw[nraw++] = 0; /* filter: none */
        for (int x = 0; x < TPNG_W * bpp; x++) raw[nraw++] = (unsigned char)(40 * y + 20 * x);
    }
    uLongf nz = sizeof z;
    if (compress(z, &nz, raw, nraw) != Z_OK) return 0;
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    unsigned char *p = out + 8;
    put_be32(ihdr, TPNG_W);
    put_be32(ihdr + 4, TPNG_H);
    ihdr[8] = 8;
    ihdr[9] = (unsigned char)ct;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    png_chunk(&p, "IHDR", ihdr, 13);
    png_chunk(&p, "IDAT", z, (uint32_t)nz);
    png_chunk(&p, "IEND", NULL, 0);
    return (size_t)(p - out);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- tests ------------------------------------------------------------------------------------------ */

static void test_tboard_crc32c_known_answers(void)
{
    CU_ASSERT_EQUAL(ae_tb_crc32c(0, "123456789", 9), 0xe3069283u);
    CU_ASSERT_EQUAL(ae_tb_crc32c(0, "", 0), 0u);
    CU_ASSERT_EQUAL(ae_tb_crc32c(0, "a", 1), 0xc1d04330u);
    /* RFC 3720 (iSCSI) appendix B.4 */
    unsigned char b[32];
    memset(b, 0, sizeof b);
    CU_ASSERT_EQUAL(ae_tb_crc32c(0, b, 32), 0x8a9136aau);
    memset(b, 0xff, sizeof b);
    CU_ASSERT_EQUAL(ae_tb_crc32c(0, b, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++) b[i] = (unsigned char)i;
    CU_ASSERT_EQUAL(ae_tb_crc32c(0, b, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++) b[i] = (unsigned char)(31 - i);
    CU_ASSERT_EQUAL(ae_tb_crc32c(0, b, 32), 0x113fdb5cu);
    /* continuing: the CRC of a split buffer is the CRC of the whole */
    for (size_t k = 0; k <= 9; k++)
        CU_ASSERT_EQUAL(ae_tb_crc32c(ae_tb_crc32c(0, "123456789", k), "123456789" + k, 9 - k), 0xe3069283u);
}

static void test_tboard_crc_mask(void)
{
    /* ((crc >> 15) | (crc << 17)) + 0xa282ead8, worked out by hand */
    CU_ASSERT_EQUAL(ae_tb_crc_mask(0), 0xa282ead8u);
    CU_ASSERT_EQUAL(ae_tb_crc_mask(1), 0xa284ead8u);      /* bit 0 rotates to bit 17 */
    CU_ASSERT_EQUAL(ae_tb_crc_mask(0x8000), 0xa282ead9u); /* bit 15 rotates to bit 0 */
    CU_ASSERT_EQUAL(ae_tb_crc_mask(0xffffffffu), 0xa282ead7u); /* the sum wraps */
    CU_ASSERT_EQUAL(ae_tb_crc_mask(0xe3069283u), 0xc78ab0e5u);
    /* every TensorFlow event file begins 18 00 00 00 00 00 00 00 a3 7f 4b 22: a 24-byte first
     * event and the masked CRC-32C of that length */
    const unsigned char len24[8] = {24, 0, 0, 0, 0, 0, 0, 0};
    CU_ASSERT_EQUAL(ae_tb_crc_mask(ae_tb_crc32c(0, len24, 8)), 0x224b7fa3u);
}

/* A writer in the folder tb/ (which ae_tb_open makes) of a fresh temporary folder, with the clock read
 * just before and after the open. */
typedef struct tb_fixture {
    char *dir;
    char tbdir[PATH_MAX_T];
    double t0, t1;
    ae_tb *tb;
} tb_fixture;

static int fx_open(tb_fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    if (!(fx->dir = tu_tempdir())) return -1;
    snprintf(fx->tbdir, sizeof fx->tbdir, "%s/tb", fx->dir);
    ae_error err = {0};
    fx->t0 = now_s();
    ae_status st = ae_tb_open(fx->tbdir, &fx->tb, &err);
    fx->t1 = now_s();
    if (st != AE_OK) fprintf(stderr, "\n    ae_tb_open: %s", err.msg);
    return st == AE_OK ? 0 : -1;
}

static void fx_close(tb_fixture *fx)
{
    ae_tb_close(fx->tb);
    tu_rmtree(fx->dir);
    free(fx->dir);
}

/* The first record: its bytes are the 12 TensorFlow ones, then 09 <wall_time> 1a 0d "brain.Event:2",
 * then the masked CRC of those 24 bytes; the name is events.out.tfevents.<10 digits>.<host>. */
static void test_tboard_open_first_record_and_name(void)
{
    tb_fixture fx;
    CU_ASSERT_FATAL(fx_open(&fx) == 0);
    ae_tb *tb = fx.tb;
    const char *path = ae_tb_path(tb);
    char host[256] = "";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    char prefix[PATH_MAX_T + sizeof AE_TB_FILE_PREFIX + 1];
    snprintf(prefix, sizeof prefix, "%s/%s", fx.tbdir, AE_TB_FILE_PREFIX);
    CU_ASSERT_FATAL(strncmp(path, prefix, strlen(prefix)) == 0);
    const char *t = path + strlen(prefix);
    char *end;
    long long secs = strtoll(t, &end, 10);
    CU_ASSERT_EQUAL(end - t, TIME_DIGITS);
    CU_ASSERT(*end == '.' && strcmp(end + 1, host) == 0);
    CU_ASSERT(secs >= (long long)fx.t0 && secs <= (long long)fx.t1);

    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    CU_ASSERT_FATAL(b != NULL);
    const unsigned char head[12] = {0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22};
    unsigned char want[40];
    memcpy(want, head, 12);
    want[12] = 0x09;          /* field 1 (wall_time), 64-bit */
    memcpy(want + 13, b + 13, 8);
    want[21] = 0x1a;          /* field 3 (file_version), length-delimited */
    want[22] = 13;
    memcpy(want + 23, "brain.Event:2", 13);
    uint32_t c = ae_tb_crc_mask(ae_tb_crc32c(0, want + 12, 24));
    for (int i = 0; i < 4; i++) want[36 + i] = (unsigned char)(c >> (8 * i));
    CU_ASSERT_EQUAL(n, sizeof want);
    CU_ASSERT(n == sizeof want && memcmp(b, want, n) == 0);
    double wall;
    memcpy(&wall, b + 13, 8);
    CU_ASSERT(wall >= fx.t0 - WALL_SLACK && wall <= fx.t1 + WALL_SLACK);
    CU_ASSERT_EQUAL((long long)wall, secs);
    free(b);

    /* the same name is never reopened: a second writer gets another file, the first stays intact */
    ae_error err = {0};
    ae_tb *tb2 = NULL;
    CU_ASSERT_EQUAL(ae_tb_open(fx.tbdir, &tb2, &err), AE_OK);
    CU_ASSERT_FATAL(tb2 != NULL);
    CU_ASSERT(strcmp(ae_tb_path(tb2), path) != 0);
    if (strncmp(ae_tb_path(tb2), path, strlen(path)) == 0) /* opened within the same second */
        CU_ASSERT_STRING_EQUAL(ae_tb_path(tb2) + strlen(path), ".1");
    CU_ASSERT_EQUAL(file_size(path), (off_t)sizeof want);
    CU_ASSERT_EQUAL(file_size(ae_tb_path(tb2)), (off_t)sizeof want);
    ae_tb_close(tb2);
    fx_close(&fx);
}

/* One scalar event, byte for byte:
 *   1b 00 00 00 00 00 00 00  <masked CRC of the length 27>
 *   09 <wall_time, 8 bytes>  10 ac 02 (step 300)  2a 0d (summary, 13 bytes)
 *     0a 0b (value, 11 bytes)  0a 04 "loss"  15 00 00 80 3e (simple_value 0.25f)
 *   <masked CRC of the 27 bytes> */
static void test_tboard_scalar_exact_bytes(void)
{
    tb_fixture fx;
    CU_ASSERT_FATAL(fx_open(&fx) == 0);
    ae_tb *tb = fx.tb;
    ae_error err = {0};
    double s0 = now_s();
    CU_ASSERT_EQUAL(ae_tb_scalar(tb, "loss", 300, 0.25f, &err), AE_OK);
    double s1 = now_s();
    size_t n;
    unsigned char *b = tu_read_file(ae_tb_path(tb), &n);
    CU_ASSERT_FATAL(b != NULL && n > 40);
    const unsigned char *got = b + 40; /* after the file_version record */
    unsigned char want[] = {
        0x1b, 0, 0, 0, 0, 0, 0, 0, 0x1a, 0x0d, 0x9e, 0x13, /* length 27 and its masked CRC */
        0x09, 0, 0, 0, 0, 0, 0, 0, 0,                      /* wall_time: copied below */
        0x10, 0xac, 0x02,                                  /* step = 300 */
        0x2a, 0x0d, 0x0a, 0x0b, 0x0a, 0x04, 'l', 'o', 's', 's', 0x15, 0x00, 0x00, 0x80, 0x3e,
        0, 0, 0, 0,                                        /* masked CRC of the data: below */
    };
    CU_ASSERT_EQUAL_FATAL(n - 40, sizeof want);
    memcpy(want + 13, got + 13, 8);
    uint32_t c = ae_tb_crc_mask(ae_tb_crc32c(0, want + 12, 27));
    for (int i = 0; i < 4; i++) want[39 + i] = (unsigned char)(c >> (8 * i));
    CU_ASSERT(memcmp(got, want, sizeof want) == 0);
    double wall;
    memcpy(&wall, want + 13, 8);
    CU_ASSERT(wall >= s0 - WALL_SLACK && wall <= s1 + WALL_SLACK);
    free(b);
    fx_close(&fx);
}

typedef struct scalar_case {
    const char *tag;
    int64_t step;
    float value;
} scalar_case;

/* A file of scalars (zero, negative, huge, NaN, Inf, big and negative steps) and images read back record
 * by record: both CRCs of each, nothing after the last record, the values and steps in order. */
static void test_tboard_parse_back(void)
{
    tb_fixture fx;
    CU_ASSERT_FATAL(fx_open(&fx) == 0);
    ae_tb *tb = fx.tb;
    char path[PATH_MAX_T];
    snprintf(path, sizeof path, "%s", ae_tb_path(tb));
    const scalar_case sc[] = {
        {"loss/train", 0, 0.0f},           {"loss/val", 0, 0.6931472f},   {"loss/train", 1, -1.5e-7f},
        {"lr", 2, 3.4e38f},                {"grad/norm", 3, NAN},         {"grad/norm", 4, INFINITY},
        {"step/big", 1LL << 40, 1.0f},     {"step/neg", -5, -0.0f},
        {"a tag with spaces/and/slashes", 127, 42.0f},
    };
    const int nsc = (int)(sizeof sc / sizeof sc[0]);
    ae_error err = {0};
    for (int i = 0; i < nsc; i++)
        CU_ASSERT_EQUAL(ae_tb_scalar(tb, sc[i].tag, sc[i].step, sc[i].value, &err), AE_OK);
    unsigned char gray[256], rgba[256];
    size_t ngray = make_png(gray, 0), nrgba = make_png(rgba, 6);
    CU_ASSERT_FATAL(ngray > 0 && nrgba > 0);
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "recon/gray", 10, gray, ngray, TPNG_H, TPNG_W, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "recon/rgba", 11, rgba, nrgba, TPNG_H, TPNG_W, &err), AE_OK);
    ae_tb_close(tb);
    fx.tb = NULL;
    double t2 = now_s();

    tb_file f;
    CU_ASSERT_FATAL(read_records(path, &f) == 0);
    CU_ASSERT_EQUAL(f.nrec, 1 + nsc + 2);
    CU_ASSERT_EQUAL(f.bad_len_crc, 0);
    CU_ASSERT_EQUAL(f.bad_data_crc, 0);
    CU_ASSERT_EQUAL(f.tail, 0);
    tb_event e;
    double last_wall = 0;
    for (int r = 0; r < f.nrec; r++) {
        CU_ASSERT_FATAL(record_event(&f, r, &e) == 0);
        CU_ASSERT(e.wall_time >= fx.t0 - WALL_SLACK && e.wall_time <= t2 + WALL_SLACK);
        CU_ASSERT(e.wall_time >= last_wall);
        last_wall = e.wall_time;
        if (r == 0) {
            CU_ASSERT(e.has_file_version && !e.has_summary && e.step == 0);
            CU_ASSERT_STRING_EQUAL(e.file_version, AE_TB_FILE_VERSION);
            continue;
        }
        CU_ASSERT_FATAL(!e.has_file_version && e.has_summary && e.nvalues == 1);
        const tb_value *v = &e.v[0];
        if (r <= nsc) {
            const scalar_case *c = &sc[r - 1];
            CU_ASSERT_STRING_EQUAL(v->tag, c->tag);
            CU_ASSERT_EQUAL(e.step, c->step);
            CU_ASSERT(v->has_simple && !v->has_image);
            CU_ASSERT(same_float(v->simple, c->value));
        } else {
            int rgb = r == nsc + 2;
            CU_ASSERT_STRING_EQUAL(v->tag, rgb ? "recon/rgba" : "recon/gray");
            CU_ASSERT_EQUAL(e.step, rgb ? 11 : 10);
            CU_ASSERT(v->has_image && !v->has_simple);
            CU_ASSERT_EQUAL(v->height, TPNG_H);
            CU_ASSERT_EQUAL(v->width, TPNG_W);
            CU_ASSERT_EQUAL(v->colorspace, rgb ? 4 : 1);
            CU_ASSERT(v->npng == (rgb ? nrgba : ngray) && memcmp(v->png, rgb ? rgba : gray, v->npng) == 0);
        }
    }
    free(f.bytes);
    fx_close(&fx);
}

/* What a live TensorBoard needs: after each call returns, the file (read by another descriptor) holds
 * exactly the records written so far, all whole. */
static void test_tboard_each_event_readable_before_close(void)
{
    tb_fixture fx;
    CU_ASSERT_FATAL(fx_open(&fx) == 0);
    ae_tb *tb = fx.tb;
    ae_error err = {0};
    unsigned char png[256];
    size_t npng = make_png(png, 0);
    for (int i = 0; i < 6; i++) {
        ae_status st = i == 3 ? ae_tb_image_png(tb, "img", i, png, npng, TPNG_H, TPNG_W, &err)
                              : ae_tb_scalar(tb, "loss", i, (float)i, &err);
        CU_ASSERT_EQUAL(st, AE_OK);
        tb_file f;
        CU_ASSERT_FATAL(read_records(ae_tb_path(tb), &f) == 0);
        CU_ASSERT_EQUAL(f.nrec, i + 2);
        CU_ASSERT_EQUAL(f.tail, 0);
        CU_ASSERT_EQUAL(f.bad_len_crc + f.bad_data_crc, 0);
        tb_event e;
        CU_ASSERT(record_event(&f, f.nrec - 1, &e) == 0 && e.step == i);
        free(f.bytes);
    }
    fx_close(&fx);
}

static void test_tboard_image_checks(void)
{
    tb_fixture fx;
    CU_ASSERT_FATAL(fx_open(&fx) == 0);
    ae_tb *tb = fx.tb;
    const char *path = ae_tb_path(tb);
    off_t size0 = file_size(path);
    ae_error err = {0};
    unsigned char png[256];
    size_t n = make_png(png, 0);
    /* height and width swapped */
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", 1, png, n, TPNG_W, TPNG_H, &err), AE_ERR_ARG);
    CU_ASSERT(strstr(err.msg, "3x2") != NULL && strstr(err.msg, "'img'") != NULL);
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", 1, png, n, 0, 0, &err), AE_ERR_ARG);
    /* not a PNG: short, wrong signature, IHDR not first */
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", 1, png, 20, TPNG_H, TPNG_W, &err), AE_ERR_ARG);
    CU_ASSERT(strstr(err.msg, "not a PNG") != NULL);
    unsigned char bad[256];
    memcpy(bad, png, n);
    bad[1] = 'J';
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", 1, bad, n, TPNG_H, TPNG_W, &err), AE_ERR_ARG);
    memcpy(bad, png, n);
    memcpy(bad + 12, "IDAT", 4);
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", 1, bad, n, TPNG_H, TPNG_W, &err), AE_ERR_ARG);
    memcpy(bad, png, n);
    bad[25] = 5; /* no such colour type */
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", 1, bad, n, TPNG_H, TPNG_W, &err), AE_ERR_ARG);
    CU_ASSERT(strstr(err.msg, "colour type 5") != NULL);
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", 1, NULL, n, TPNG_H, TPNG_W, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "", 1, png, n, TPNG_H, TPNG_W, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(file_size(path), size0); /* nothing written */
    /* colorspace from the colour type: gray + alpha 2, RGB 3, palette 3 */
    const int types[3] = {4, 2, 3}, spaces[3] = {2, 3, 3};
    for (int i = 0; i < 3; i++) {
        memcpy(bad, png, n);
        bad[25] = (unsigned char)types[i];
        CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", i, bad, n, TPNG_H, TPNG_W, &err), AE_OK);
    }
    tb_file f;
    CU_ASSERT_FATAL(read_records(path, &f) == 0);
    CU_ASSERT_FATAL(f.nrec == 4);
    for (int i = 0; i < 3; i++) {
        tb_event e;
        CU_ASSERT(record_event(&f, i + 1, &e) == 0 && e.v[0].colorspace == spaces[i]);
    }
    free(f.bytes);
    fx_close(&fx);
}

static void test_tboard_argument_errors(void)
{
    ae_error err = {0};
    static char sentinel;
    ae_tb *tb = (ae_tb *)(void *)&sentinel; /* ae_tb_open sets it to NULL on failure */
    CU_ASSERT_EQUAL(ae_tb_open(NULL, &tb, &err), AE_ERR_ARG);
    CU_ASSERT_PTR_NULL(tb);
    CU_ASSERT_EQUAL(ae_tb_open("", &tb, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_tb_open("unused", NULL, &err), AE_ERR_ARG); /* before anything is made */
    CU_ASSERT_EQUAL(ae_tb_scalar(NULL, "x", 0, 1.0f, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_tb_image_png(NULL, "x", 0, NULL, 0, 1, 1, &err), AE_ERR_ARG);
    tb_fixture fx;
    CU_ASSERT_FATAL(fx_open(&fx) == 0);
    tb = fx.tb;
    off_t size0 = file_size(ae_tb_path(tb));
    CU_ASSERT_EQUAL(ae_tb_scalar(tb, NULL, 0, 1.0f, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_tb_scalar(tb, "", 0, 1.0f, &err), AE_ERR_ARG);
    CU_ASSERT(strstr(err.msg, "non-empty tag") != NULL);
    CU_ASSERT_EQUAL(file_size(ae_tb_path(tb)), size0);
    CU_ASSERT_EQUAL(ae_tb_scalar(tb, "ok", 0, 1.0f, &err), AE_OK); /* still usable */
    ae_tb_close(NULL);
    CU_ASSERT_PTR_NULL(ae_tb_path(NULL));
    fx_close(&fx);
}

/* A directory that cannot be made (its parent is a regular file, or missing): AE_ERR_IO naming it. */
static void test_tboard_open_io_errors(void)
{
    char *dir = tu_tempdir();
    CU_ASSERT_FATAL(dir != NULL);
    char file[PATH_MAX_T], sub[PATH_MAX_T];
    snprintf(file, sizeof file, "%s/plain", dir);
    CU_ASSERT_FATAL(tu_write_file(file, "x", 1) == 0);
    snprintf(sub, sizeof sub, "%s/plain/tb", dir);
    ae_error err = {0};
    ae_tb *tb = NULL;
    CU_ASSERT_EQUAL(ae_tb_open(sub, &tb, &err), AE_ERR_IO);
    CU_ASSERT_PTR_NULL(tb);
    CU_ASSERT(strstr(err.msg, sub) != NULL);
    CU_ASSERT_EQUAL(ae_tb_open(file, &tb, &err), AE_ERR_IO); /* exists, but not a directory */
    CU_ASSERT(strstr(err.msg, file) != NULL && strstr(err.msg, "cannot create") != NULL);
    snprintf(sub, sizeof sub, "%s/missing/tb", dir);
    CU_ASSERT_EQUAL(ae_tb_open(sub, &tb, &err), AE_ERR_IO); /* one level only */
    CU_ASSERT_PTR_NULL(tb);
    tu_rmtree(dir);
    free(dir);
}

/* A write that fails half way (RLIMIT_FSIZE: EFBIG, SIGXFSZ ignored) returns AE_ERR_IO; the file keeps
 * its whole records and then a partial one; every later call fails without writing. */
static void test_tboard_write_failure_is_sticky(void)
{
    tb_fixture fx;
    CU_ASSERT_FATAL(fx_open(&fx) == 0);
    ae_tb *tb = fx.tb;
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_tb_scalar(tb, "loss", 1, 1.0f, &err), AE_OK);
    const char *path = ae_tb_path(tb);
    off_t whole = file_size(path);
    struct rlimit old, lim;
    CU_ASSERT_FATAL(getrlimit(RLIMIT_FSIZE, &old) == 0);
    if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < (rlim_t)whole + 4096) {
        fprintf(stderr, "\n    RLIMIT_FSIZE already small: skipped");
        fx_close(&fx);
        return;
    }
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)whole + 20; /* room for 20 bytes of the next record */
    CU_ASSERT_FATAL(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    ae_status st = ae_tb_scalar(tb, "loss", 2, 2.0f, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CU_ASSERT_EQUAL(st, AE_ERR_IO);
    CU_ASSERT(strstr(err.msg, path) != NULL && strstr(err.msg, "write failed") != NULL);
    CU_ASSERT_EQUAL(file_size(path), whole + 20);
    CU_ASSERT_EQUAL(ae_tb_scalar(tb, "loss", 3, 3.0f, &err), AE_ERR_IO);
    CU_ASSERT(strstr(err.msg, "earlier write failed") != NULL);
    unsigned char png[256];
    size_t n = make_png(png, 0);
    CU_ASSERT_EQUAL(ae_tb_image_png(tb, "img", 3, png, n, TPNG_H, TPNG_W, &err), AE_ERR_IO);
    CU_ASSERT_EQUAL(file_size(path), whole + 20);
    tb_file f;
    CU_ASSERT_FATAL(read_records(path, &f) == 0);
    CU_ASSERT_EQUAL(f.nrec, 2); /* file_version and the first scalar, then 20 bytes of a partial one */
    CU_ASSERT_EQUAL(f.tail, 20);
    free(f.bytes);
    fx_close(&fx);
}

/* ---- images of models, as the trainer writes them ------------------------------------------------- */

#define IMG_N 6                  /* samples of the small dataset */
#define IMG_SIDE 4               /* its images are 1 x IMG_SIDE x IMG_SIDE */
#define IMG_D (IMG_SIDE * IMG_SIDE)
#define IMG_CLASSES 3
#define IMG_SHOW 4               /* images in a grid */
#define IMG_SCALE 2
#define IMG_STEP 7
#define IMG_CELL (IMG_SIDE * IMG_SCALE + AE_PLOT_SEP) /* tile plus separator, pixels */
#define IMG_MANIFOLD 3           /* lattice of the manifold test */
#define RGB_W 5
#define RGB_H 3

static const tu_setup IMG_SETUP = {"test_tboard", 8, 11, 0.1f};

/* IMG_N labelled 1 x 4 x 4 uint8 images, pixel p of sample i (37 i + 11 p + 5) mod 256. */
static int img_dataset(ae_dataset *ds)
{
    static const uint8_t labels[IMG_N] = {2, 0, 1, 0, 2, 1};
    memset(ds, 0, sizeof *ds);
    ds->n = IMG_N;
    ds->c = 1;
    ds->h = ds->w = IMG_SIDE;
    ds->d = IMG_D;
    ds->nclass = IMG_CLASSES;
    snprintf(ds->name, sizeof ds->name, "small/test");
    ds->x8 = malloc(IMG_N * IMG_D);
    ds->y = malloc(IMG_N);
    if (!ds->x8 || !ds->y) return -1;
    for (int i = 0; i < IMG_N; i++)
        for (int p = 0; p < IMG_D; p++) ds->x8[i * IMG_D + p] = (uint8_t)((37 * i + 11 * p + 5) % 256);
    memcpy(ds->y, labels, IMG_N);
    return 0;
}

/* Decode a PNG in memory to gray (or RGB) bytes with libpng's reader: malloc'ed, or NULL. */
static uint8_t *png_decode(const unsigned char *png, size_t n, int rgb, int *w, int *h)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, png, n)) return NULL;
    img.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
    if (!px || !png_image_finish_read(&img, NULL, px, 0, NULL)) {
        free(px);
        png_image_free(&img);
        return NULL;
    }
    *w = (int)img.width;
    *h = (int)img.height;
    return px;
}

/* The IMG_D gray levels of tile (r, c) of a grid of width W (the top-left pixel of each scaled block),
 * and whether every pixel of each block has that level. */
static int grid_tile(const uint8_t *g, int W, int r, int c, uint8_t *tile)
{
    int same = 1;
    for (int i = 0; i < IMG_SIDE; i++)
        for (int j = 0; j < IMG_SIDE; j++) {
            size_t y0 = (size_t)(AE_PLOT_SEP + r * IMG_CELL + i * IMG_SCALE);
            size_t x0 = (size_t)(AE_PLOT_SEP + c * IMG_CELL + j * IMG_SCALE);
            tile[i * IMG_SIDE + j] = g[y0 * W + x0];
            for (int a = 0; a < IMG_SCALE; a++)
                for (int b = 0; b < IMG_SCALE; b++) same &= g[(y0 + a) * W + x0 + b] == g[y0 * W + x0];
        }
    return same;
}

/* Write one image event of png to a new file and read it back: the record's image fields, in *v (its png
 * pointing into *f, which the caller frees). 0, or -1 when anything failed. */
static int image_round_trip(tb_fixture *fx, const ae_plot_png *png, const char *tag, tb_file *f, tb_event *e)
{
    ae_error err = {0};
    if (fx_open(fx) != 0) return -1;
    ae_status st = ae_tb_image_png(fx->tb, tag, IMG_STEP, png->data, png->size, png->height, png->width, &err);
    if (st != AE_OK) fprintf(stderr, "\n    ae_tb_image_png: %s", err.msg);
    if (st != AE_OK || read_records(ae_tb_path(fx->tb), f) != 0) return -1;
    if (f->nrec != 2 || f->tail || f->bad_len_crc || f->bad_data_crc || record_event(f, 1, e) != 0) return -1;
    return 0;
}

/* ae_plot_png_encode, gray and RGB: the IHDR says the size and colour type, libpng decodes the very
 * pixels, and an image event carries the bytes intact with height, width and colorspace 1 / 3. Bad
 * sizes and channel counts are refused with nothing allocated. */
static void test_tboard_png_encode_round_trip(void)
{
    uint8_t gray[RGB_H * RGB_W], rgb[RGB_H * RGB_W * 3];
    for (int i = 0; i < RGB_H * RGB_W; i++) gray[i] = (uint8_t)(53 * i + 7);
    for (int i = 0; i < RGB_H * RGB_W * 3; i++) rgb[i] = (uint8_t)(29 * i + 250);
    for (int k = 0; k < 2; k++) {
        int channels = k ? 3 : 1;
        const uint8_t *px = k ? rgb : gray;
        ae_plot_png png;
        ae_error err = {0};
        CU_ASSERT_EQUAL_FATAL(ae_plot_png_encode("t", px, RGB_W, RGB_H, channels, &png, &err), AE_OK);
        CU_ASSERT(png.width == RGB_W && png.height == RGB_H && png.size <= png.cap);
        CU_ASSERT_FATAL(png.size > 33);
        CU_ASSERT_EQUAL(png.data[25], k ? 2 : 0); /* IHDR colour type: RGB, gray */
        int w = 0, h = 0;
        uint8_t *back = png_decode(png.data, png.size, k, &w, &h);
        CU_ASSERT_FATAL(back != NULL);
        CU_ASSERT(w == RGB_W && h == RGB_H && memcmp(back, px, (size_t)(RGB_W * RGB_H * channels)) == 0);
        free(back);
        tb_fixture fx;
        tb_file f;
        tb_event e;
        CU_ASSERT_FATAL(image_round_trip(&fx, &png, k ? "rgb" : "gray", &f, &e) == 0);
        const tb_value *v = &e.v[0];
        CU_ASSERT(e.has_summary && e.nvalues == 1 && e.step == IMG_STEP && v->has_image && !v->has_simple);
        CU_ASSERT_STRING_EQUAL(v->tag, k ? "rgb" : "gray");
        CU_ASSERT(v->height == RGB_H && v->width == RGB_W && v->colorspace == (k ? 3 : 1));
        CU_ASSERT(v->npng == png.size && memcmp(v->png, png.data, png.size) == 0);
        free(f.bytes);
        fx_close(&fx);
        ae_plot_png_free(&png);
        CU_ASSERT(png.data == NULL && png.size == 0);
    }
    ae_plot_png png;
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_plot_png_encode("pic", gray, RGB_W, RGB_H, 2, &png, &err), AE_ERR_ARG);
    CU_ASSERT(png.data == NULL && png.size == 0 && strstr(err.msg, "pic") != NULL);
    CU_ASSERT_EQUAL(ae_plot_png_encode("pic", gray, 0, RGB_H, 1, &png, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_plot_png_encode("pic", NULL, RGB_W, RGB_H, 1, &png, &err), AE_ERR_ARG);
    CU_ASSERT(png.data == NULL);
    ae_plot_png_free(NULL);
}

/* The identity autoencoder: a gauss layer (identity in evaluation), flatten, two dense layers whose
 * weights are the identity and biases 0, reshape. Its reconstruction is its input, exactly. */
static ae_model *identity_model(void)
{
    char ini[256];
    snprintf(ini, sizeof ini,
             "[model]\nencoder = gauss(0.5), flatten, dense(%d, name=code)\ndecoder = dense(%d), reshape(1, %d, %d)\n",
             IMG_D, IMG_D, IMG_SIDE, IMG_SIDE);
    ae_model *m = tu_build(&IMG_SETUP, ini, (ae_shape){1, IMG_SIDE, IMG_SIDE});
    if (!m) return NULL;
    for (int k = 0; k < m->n_layers; k++) {
        ae_layer *l = &m->layers[k];
        if (strcmp(l->kind->name, "dense") != 0) continue;
        for (int i = 0; i < IMG_D; i++) {
            l->b[i] = 0.0f;
            for (int j = 0; j < IMG_D; j++) l->W[i * IMG_D + j] = i == j ? 1.0f : 0.0f;
        }
    }
    return m;
}

/* The reconstruction grid as the trainer writes it: made in memory, one image event whose PNG bytes are
 * those made in memory and those ae_plot_recon_png writes to a file; decoded, it is the grid of the
 * picked test images (one of each class in turn: samples 1, 2, 0, 3) above the same images (the
 * model reconstructs exactly; in evaluation mode its gauss layer adds nothing), every pixel as
 * expected, separators included. The parameters are untouched. */
static void test_tboard_recon_image_event(void)
{
    ae_dataset ds;
    CU_ASSERT_FATAL(img_dataset(&ds) == 0);
    ae_model *m = identity_model();
    CU_ASSERT_FATAL(m != NULL);
    uint32_t idx[IMG_SHOW];
    CU_ASSERT_EQUAL_FATAL(ae_plot_pick(&ds, IMG_SHOW, idx), IMG_SHOW);
    CU_ASSERT(idx[0] == 1 && idx[1] == 2 && idx[2] == 0 && idx[3] == 3);
    float *before = malloc(sizeof(float) * m->n_params);
    CU_ASSERT_FATAL(before != NULL);
    memcpy(before, m->params, sizeof(float) * m->n_params);

    ae_plot_png png;
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(ae_plot_recon_mem(&png, m, &ds, idx, IMG_SHOW, 0, IMG_SCALE, &err), AE_OK);
    int W, H;
    ae_plot_grid_size(2, IMG_SHOW, IMG_SIDE, IMG_SIDE, IMG_SCALE, &W, &H);
    CU_ASSERT(png.width == W && png.height == H);
    CU_ASSERT(W == IMG_SHOW * IMG_CELL + AE_PLOT_SEP && H == 2 * IMG_CELL + AE_PLOT_SEP);
    CU_ASSERT(memcmp(before, m->params, sizeof(float) * m->n_params) == 0);

    /* the same bytes as the file picture */
    char *dir = tu_tempdir();
    CU_ASSERT_FATAL(dir != NULL);
    char file[PATH_MAX_T];
    snprintf(file, sizeof file, "%s/recon.png", dir);
    CU_ASSERT_EQUAL(ae_plot_recon_png(file, m, &ds, idx, IMG_SHOW, 0, IMG_SCALE, &err), AE_OK);
    size_t nfile = 0;
    unsigned char *fbytes = tu_read_file(file, &nfile);
    CU_ASSERT(fbytes && nfile == png.size && memcmp(fbytes, png.data, nfile) == 0);
    free(fbytes);
    tu_rmtree(dir);
    free(dir);

    /* the event */
    tb_fixture fx;
    tb_file f;
    tb_event e;
    CU_ASSERT_FATAL(image_round_trip(&fx, &png, "reconstructions", &f, &e) == 0);
    const tb_value *v = &e.v[0];
    CU_ASSERT_STRING_EQUAL(v->tag, "reconstructions");
    CU_ASSERT(e.step == IMG_STEP && v->has_image && v->height == H && v->width == W && v->colorspace == 1);
    CU_ASSERT_FATAL(v->npng == png.size && memcmp(v->png, png.data, png.size) == 0);

    /* every pixel of the decoded grid */
    int dw = 0, dh = 0;
    uint8_t *g = png_decode(v->png, v->npng, 0, &dw, &dh);
    CU_ASSERT_FATAL(g != NULL);
    CU_ASSERT_FATAL(dw == W && dh == H);
    uint8_t *want = malloc((size_t)W * H);
    CU_ASSERT_FATAL(want != NULL);
    memset(want, AE_PLOT_SEP_GRAY, (size_t)W * H);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < IMG_SHOW; c++)
            for (int y = 0; y < IMG_SIDE * IMG_SCALE; y++)
                for (int x = 0; x < IMG_SIDE * IMG_SCALE; x++)
                    want[(size_t)(AE_PLOT_SEP + r * IMG_CELL + y) * W + AE_PLOT_SEP + c * IMG_CELL + x] =
                        ds.x8[idx[c] * IMG_D + (y / IMG_SCALE) * IMG_SIDE + x / IMG_SCALE];
    CU_ASSERT(memcmp(g, want, (size_t)W * H) == 0);
    free(want);
    free(g);
    free(f.bytes);
    fx_close(&fx);
    ae_plot_png_free(&png);
    free(before);
    ae_model_free(m);
    ae_data_free(&ds);
}

/* The denoising grid in memory (the identity model): rows clean / corrupted / reconstructed, clean the
 * test images, corrupted different from them, reconstructed equal to corrupted; made twice, the same
 * bytes (the corruption's draws come from a fixed context, not from a stream that moves on). */
static void test_tboard_denoise_image(void)
{
    ae_dataset ds;
    CU_ASSERT_FATAL(img_dataset(&ds) == 0);
    ae_model *m = identity_model();
    CU_ASSERT_FATAL(m != NULL);
    CU_ASSERT_EQUAL(ae_plot_noise_layer(m), 0);
    uint32_t idx[IMG_SHOW];
    CU_ASSERT_EQUAL_FATAL(ae_plot_pick(&ds, IMG_SHOW, idx), IMG_SHOW);
    ae_plot_png a, b;
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(ae_plot_denoise_mem(&a, m, &ds, idx, IMG_SHOW, 0, IMG_SETUP.seed, IMG_SCALE, &err),
                          AE_OK);
    CU_ASSERT_EQUAL_FATAL(ae_plot_denoise_mem(&b, m, &ds, idx, IMG_SHOW, 0, IMG_SETUP.seed, IMG_SCALE, &err),
                          AE_OK);
    CU_ASSERT(a.size == b.size && memcmp(a.data, b.data, a.size) == 0);
    int W, H, dw = 0, dh = 0;
    ae_plot_grid_size(3, IMG_SHOW, IMG_SIDE, IMG_SIDE, IMG_SCALE, &W, &H);
    uint8_t *g = png_decode(a.data, a.size, 0, &dw, &dh);
    CU_ASSERT_FATAL(g != NULL);
    CU_ASSERT_FATAL(dw == W && dh == H && a.width == W && a.height == H);
    int clean_ok = 1, differs = 0, recon_ok = 1, blocks = 1;
    for (int c = 0; c < IMG_SHOW; c++) {
        uint8_t t0[IMG_D], t1[IMG_D], t2[IMG_D];
        blocks &= grid_tile(g, W, 0, c, t0) & grid_tile(g, W, 1, c, t1) & grid_tile(g, W, 2, c, t2);
        clean_ok &= memcmp(t0, ds.x8 + idx[c] * IMG_D, IMG_D) == 0;
        differs += memcmp(t0, t1, IMG_D) != 0;
        recon_ok &= memcmp(t1, t2, IMG_D) == 0;
    }
    CU_ASSERT(blocks);
    CU_ASSERT(clean_ok);
    CU_ASSERT_EQUAL(differs, IMG_SHOW);
    CU_ASSERT(recon_ok);
    free(g);
    ae_plot_png_free(&a);
    ae_plot_png_free(&b);
    ae_model_free(m);
    ae_data_free(&ds);
}

/* Snapshot of a model's parameters and non-trainable state. */
static float *model_numbers(const ae_model *m)
{
    float *s = malloc(sizeof(float) * (m->n_params + m->n_state + 1));
    if (!s) return NULL;
    memcpy(s, m->params, sizeof(float) * m->n_params);
    if (m->n_state) memcpy(s + m->n_params, m->state, sizeof(float) * m->n_state);
    return s;
}

static int same_numbers(const ae_model *m, const float *s)
{
    return memcmp(s, m->params, sizeof(float) * m->n_params) == 0 &&
           (!m->n_state || memcmp(s + m->n_params, m->state, sizeof(float) * m->n_state) == 0);
}

/* The trainer's pictures leave the model's numbers alone: a model with batch norm (running statistics
 * not at their initial values) gives its reconstruction and denoising grids, a VAE with a 2-d code its
 * manifold, and parameters and state are bitwise what they were. The manifold is a lattice of the
 * expected size. Wrong models are refused: no denoising grid without a corruption layer, no manifold
 * without a 2-d sample layer. */
static void test_tboard_images_leave_model_unchanged(void)
{
    ae_dataset ds;
    CU_ASSERT_FATAL(img_dataset(&ds) == 0);
    char ini[256];
    snprintf(ini, sizeof ini,
             "[model]\nencoder = gauss(0.2), flatten, dense(8, relu), bn\ndecoder = dense(%d, sigmoid), "
             "reshape(1, %d, %d)\n", IMG_D, IMG_SIDE, IMG_SIDE);
    ae_model *m = tu_build(&IMG_SETUP, ini, (ae_shape){1, IMG_SIDE, IMG_SIDE});
    CU_ASSERT_FATAL(m != NULL);
    tu_init_params(&IMG_SETUP, m, NULL);
    CU_ASSERT_FATAL(m->n_state > 0);
    for (size_t i = 0; i < m->n_state; i++) m->state[i] = 0.25f + 0.01f * (float)i;
    float *snap = model_numbers(m);
    CU_ASSERT_FATAL(snap != NULL);
    uint32_t idx[IMG_SHOW];
    int n = ae_plot_pick(&ds, IMG_SHOW, idx);
    ae_plot_png png;
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_plot_recon_mem(&png, m, &ds, idx, n, 0, IMG_SCALE, &err), AE_OK);
    ae_plot_png_free(&png);
    CU_ASSERT_EQUAL(ae_plot_denoise_mem(&png, m, &ds, idx, n, 0, IMG_SETUP.seed, IMG_SCALE, &err), AE_OK);
    ae_plot_png_free(&png);
    CU_ASSERT(same_numbers(m, snap));
    CU_ASSERT_EQUAL(ae_plot_manifold_mem(&png, m, IMG_MANIFOLD, 1, &err), AE_ERR_ARG);
    CU_ASSERT(png.data == NULL && strstr(err.msg, "sample layer") != NULL);
    free(snap);
    ae_model_free(m);

    snprintf(ini, sizeof ini,
             "[model]\nencoder = flatten, dense(4, name=stats), sample(name=code)\ndecoder = dense(%d, sigmoid), "
             "reshape(1, %d, %d)\n", IMG_D, IMG_SIDE, IMG_SIDE);
    m = tu_build(&IMG_SETUP, ini, (ae_shape){1, IMG_SIDE, IMG_SIDE});
    CU_ASSERT_FATAL(m != NULL);
    tu_init_params(&IMG_SETUP, m, NULL);
    snap = model_numbers(m);
    CU_ASSERT_FATAL(snap != NULL);
    CU_ASSERT_EQUAL(ae_plot_manifold_mem(&png, m, IMG_MANIFOLD, 1, &err), AE_OK);
    int W, H;
    ae_plot_grid_size(IMG_MANIFOLD, IMG_MANIFOLD, IMG_SIDE, IMG_SIDE, 1, &W, &H);
    CU_ASSERT(png.width == W && png.height == H && png.size > 33 && memcmp(png.data + 1, "PNG", 3) == 0);
    ae_plot_png_free(&png);
    CU_ASSERT(same_numbers(m, snap));
    CU_ASSERT_EQUAL(ae_plot_denoise_mem(&png, m, &ds, idx, n, 0, IMG_SETUP.seed, IMG_SCALE, &err), AE_ERR_ARG);
    CU_ASSERT(png.data == NULL && strstr(err.msg, "corruption layer") != NULL);
    free(snap);
    ae_model_free(m);
    ae_data_free(&ds);
}

void ae_test_register_tboard(void)
{
    CU_pSuite s = CU_add_suite("tboard", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_tboard_crc32c_known_answers", test_tboard_crc32c_known_answers);
    CU_add_test(s, "test_tboard_crc_mask", test_tboard_crc_mask);
    CU_add_test(s, "test_tboard_open_first_record_and_name", test_tboard_open_first_record_and_name);
    CU_add_test(s, "test_tboard_scalar_exact_bytes", test_tboard_scalar_exact_bytes);
    CU_add_test(s, "test_tboard_parse_back", test_tboard_parse_back);
    CU_add_test(s, "test_tboard_each_event_readable_before_close",
                test_tboard_each_event_readable_before_close);
    CU_add_test(s, "test_tboard_image_checks", test_tboard_image_checks);
    CU_add_test(s, "test_tboard_argument_errors", test_tboard_argument_errors);
    CU_add_test(s, "test_tboard_open_io_errors", test_tboard_open_io_errors);
    CU_add_test(s, "test_tboard_write_failure_is_sticky", test_tboard_write_failure_is_sticky);
    CU_add_test(s, "test_tboard_png_encode_round_trip", test_tboard_png_encode_round_trip);
    CU_add_test(s, "test_tboard_recon_image_event", test_tboard_recon_image_event);
    CU_add_test(s, "test_tboard_denoise_image", test_tboard_denoise_image);
    CU_add_test(s, "test_tboard_images_leave_model_unchanged", test_tboard_images_leave_model_unchanged);
}
