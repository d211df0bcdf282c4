/* ckpt.c - checkpoint files (see ckpt.h): an explicit little-endian header
 * with its own CRC-32, one streamed zstd frame (content checksum on), a
 * trailer CRC-32 over header + payload and an end magic; atomic replace.
 *
 * Header of format version 1 (AE_CKPT_HEADER_BYTES = 144, little-endian):
 *     0  magic "AETRCKPT"        64  best_val (f64 bits)   104  n_params (u64)
 *     8  version (u32)           72  run_loss_sum (f64)    112  n_opt (u64)
 *    12  header size (u32)       80  run_loss_count (f64)  120  n_state (u64)
 *    16  arch_hash (u64)         88  nranks (i32)          128  payload bytes (u64)
 *    24  seed (u64)              92  flags (i32)           136  reserved, 0 (u32)
 *    32  epoch (i64)             96  config_len (u64)      140  CRC-32 of bytes 0..139
 *    40  step, 48 step_in_epoch, 56 bad_epochs (i64)
 * n_params, n_opt, n_state count floats; config_len counts bytes (no NUL).
 * The zstd frame records its content size; the loader checks it against
 * the header before allocating anything. */
#define _POSIX_C_SOURCE 200809L
#include "ae/ckpt.h"

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define CKPT_MAGIC "AETRCKPT"
#define CKPT_END_MAGIC "AECKEND" /* plus its NUL: 8 bytes */
#define CKPT_MAGIC_BYTES 8
#define CKPT_TRAILER_BYTES (4 + CKPT_MAGIC_BYTES) /* CRC-32, end magic */
#define CKPT_TMP_SUFFIX ".tmp"
#define CKPT_DEFAULT_LEVEL 1 /* float payloads: level 3 is ~20% slower for the same size */
#define CKPT_MIN_LEVEL 1
#define CKPT_MAX_LEVEL 19
/* Sanity limits, enforced on save and load: a corrupt or hostile header
 * must not make the loader allocate more than this. */
#define CKPT_MAX_CONFIG_BYTES ((uint64_t)64 << 20)
#define CKPT_MAX_FLOATS ((uint64_t)1 << 32) /* all three float sections: 16 GiB */
#define CKPT_FLOAT_BYTES 4
#define CKPT_CHUNK_FLOATS ((size_t)1 << 16) /* conversion chunk on save: 256 KiB */
/* zstd frame header descriptor: byte 4 of the frame, bit 2 = content checksum */
#define CKPT_ZSTD_FHD_OFFSET 4
#define CKPT_ZSTD_FHD_CHECKSUM_BIT 0x04

enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 8,
    OFF_HEADER_SIZE = 12,
    OFF_ARCH_HASH = 16,
    OFF_SEED = 24,
    OFF_EPOCH = 32,
    OFF_STEP = 40,
    OFF_STEP_IN_EPOCH = 48,
    OFF_BAD_EPOCHS = 56,
    OFF_BEST_VAL = 64,
    OFF_RUN_LOSS_SUM = 72,
    OFF_RUN_LOSS_COUNT = 80,
    OFF_NRANKS = 88,
    OFF_FLAGS = 92,
    OFF_CONFIG_LEN = 96,
    OFF_N_PARAMS = 104,
    OFF_N_OPT = 112,
    OFF_N_STATE = 120,
    OFF_PAYLOAD_BYTES = 128,
    OFF_RESERVED = 136,
    OFF_HEADER_CRC = 140,
};
_Static_assert(OFF_HEADER_CRC + 4 == AE_CKPT_HEADER_BYTES, "header layout does not add up");
_Static_assert(sizeof(float) == CKPT_FLOAT_BYTES, "float must be IEEE binary32");
_Static_assert(sizeof(double) == 8, "double must be IEEE binary64");

/* ---- little-endian encoding ---------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Same bits, other type (union punning is defined in C11): signed
 * integers and doubles travel as their unsigned bit patterns. */
typedef union word32 {
    uint32_t u;
    int32_t i;
    float f;
} word32;
typedef union word64 {
    uint64_t u;
    int64_t i;
    double d;
} word64;

/* floats -> little-endian bytes (bit patterns kept: NaN payloads, -0.0). */
static void floats_to_le(unsigned char *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) put_u32(dst + CKPT_FLOAT_BYTES * i, (word32){.f = src[i]}.u);
}

/* In place: a buffer holding little-endian float bytes -> host floats. */
static void floats_from_le(float *f, size_t n)
{
    unsigned char *b = (unsigned char *)f;
    for (size_t i = 0; i < n; i++) f[i] = (word32){.u = get_u32(b + CKPT_FLOAT_BYTES * i)}.f;
}

static uint32_t crc32_bytes(uint32_t crc, const unsigned char *p, size_t n)
{
    return (uint32_t)crc32_z(crc, p, n);
}

/* ---- header ------------------------------------------------------------------------------- */

typedef struct ckpt_sizes {
    uint64_t config_len, n_params, n_opt, n_state, payload_bytes;
} ckpt_sizes;

static void header_encode(unsigned char *h, const ae_ckpt_meta *m, const ckpt_sizes *s)
{
    memset(h, 0, AE_CKPT_HEADER_BYTES);
    memcpy(h + OFF_MAGIC, CKPT_MAGIC, CKPT_MAGIC_BYTES);
    put_u32(h + OFF_VERSION, AE_CKPT_VERSION);
    put_u32(h + OFF_HEADER_SIZE, AE_CKPT_HEADER_BYTES);
    put_u64(h + OFF_ARCH_HASH, m->arch_hash);
    put_u64(h + OFF_SEED, m->seed);
    put_u64(h + OFF_EPOCH, (word64){.i = m->epoch}.u);
    put_u64(h + OFF_STEP, (word64){.i = m->step}.u);
    put_u64(h + OFF_STEP_IN_EPOCH, (word64){.i = m->step_in_epoch}.u);
    put_u64(h + OFF_BAD_EPOCHS, (word64){.i = m->bad_epochs}.u);
    put_u64(h + OFF_BEST_VAL, (word64){.d = m->best_val}.u);
    put_u64(h + OFF_RUN_LOSS_SUM, (word64){.d = m->run_loss_sum}.u);
    put_u64(h + OFF_RUN_LOSS_COUNT, (word64){.d = m->run_loss_count}.u);
    put_u32(h + OFF_NRANKS, (word32){.i = m->nranks}.u);
    put_u32(h + OFF_FLAGS, (word32){.i = m->flags}.u);
    put_u64(h + OFF_CONFIG_LEN, s->config_len);
    put_u64(h + OFF_N_PARAMS, s->n_params);
    put_u64(h + OFF_N_OPT, s->n_opt);
    put_u64(h + OFF_N_STATE, s->n_state);
    put_u64(h + OFF_PAYLOAD_BYTES, s->payload_bytes);
    put_u32(h + OFF_RESERVED, 0);
    put_u32(h + OFF_HEADER_CRC, crc32_bytes(0, h, OFF_HEADER_CRC));
}

static void header_decode_meta(const unsigned char *h, ae_ckpt_meta *m)
{
    m->arch_hash = get_u64(h + OFF_ARCH_HASH);
    m->seed = get_u64(h + OFF_SEED);
    m->epoch = (word64){.u = get_u64(h + OFF_EPOCH)}.i;
    m->step = (word64){.u = get_u64(h + OFF_STEP)}.i;
    m->step_in_epoch = (word64){.u = get_u64(h + OFF_STEP_IN_EPOCH)}.i;
    m->bad_epochs = (word64){.u = get_u64(h + OFF_BAD_EPOCHS)}.i;
    m->best_val = (word64){.u = get_u64(h + OFF_BEST_VAL)}.d;
    m->run_loss_sum = (word64){.u = get_u64(h + OFF_RUN_LOSS_SUM)}.d;
    m->run_loss_count = (word64){.u = get_u64(h + OFF_RUN_LOSS_COUNT)}.d;
    m->nranks = (word32){.u = get_u32(h + OFF_NRANKS)}.i;
    m->flags = (word32){.u = get_u32(h + OFF_FLAGS)}.i;
}

/* Section sizes within the limits? If so, *content_bytes gets the
 * uncompressed payload size in bytes. */
static int sizes_ok(const ckpt_sizes *s, uint64_t *content_bytes)
{
    if (s->config_len > CKPT_MAX_CONFIG_BYTES) return 0;
    if (s->n_params > CKPT_MAX_FLOATS || s->n_opt > CKPT_MAX_FLOATS || s->n_state > CKPT_MAX_FLOATS) {
        return 0;
    }
    uint64_t floats = s->n_params + s->n_opt + s->n_state; /* each <= 2^32: no overflow */
    if (floats > CKPT_MAX_FLOATS) return 0;
    uint64_t bytes = s->config_len + floats * CKPT_FLOAT_BYTES;
    if (bytes > SIZE_MAX) return 0;
    *content_bytes = bytes;
    return 1;
}

/* ---- checked file I/O --------------------------------------------------------------------- */

/* Returns 0 or an errno value; retries short writes and EINTR. */
static int write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        p += w;
        off += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads up to n bytes (fewer only at end of file); returns 0 or errno. */
static int read_full(int fd, void *buf, size_t n, size_t *got)
{
    unsigned char *p = buf;
    *got = 0;
    while (*got < n) {
        ssize_t r = read(fd, p + *got, n - *got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    return 0;
}

static int open_retry(const char *path, int flags, mode_t mode)
{
    int fd;
    do {
        fd = open(path, flags, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

static int fsync_retry(int fd)
{
    int rc;
    do {
        rc = fsync(fd);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : errno;
}

/* fsync the directory holding path so that the rename is durable. File
 * systems that cannot fsync a directory (EINVAL) are accepted. */
static int fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = strdup(".");
    } else if (slash == path) {
        dir = strdup("/");
    } else {
        dir = strndup(path, (size_t)(slash - path));
    }
    if (!dir) return ENOMEM;
    int fd = open_retry(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    int e = fd < 0 ? errno : fsync_retry(fd);
    if (fd >= 0) close(fd);
    free(dir);
    return e == EINVAL ? 0 : e;
}

/* ---- save --------------------------------------------------------------------------------- */

typedef struct ckpt_writer {
    int fd;
    ZSTD_CCtx *cctx;
    unsigned char *out; /* compressed output staging */
    size_t out_cap;
    unsigned char *conv; /* floats converted to little-endian */
    uint32_t crc;        /* CRC-32 of the payload written so far */
    uint64_t payload_bytes;
    int err_no;          /* errno of a failed write, else 0 */
    size_t zerr;         /* zstd error code of a failed call, else 0 */
} ckpt_writer;

/* Compress n bytes (mode ZSTD_e_end: and close the frame), writing output
 * as it comes. Returns 0 on success. */
static int writer_feed(ckpt_writer *w, const void *src, size_t n, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {src, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->out_cap, 0};
        size_t rem = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(rem)) {
            w->zerr = rem;
            return -1;
        }
        if (out.pos > 0) {
            w->err_no = write_all(w->fd, w->out, out.pos);
            if (w->err_no) return -1;
            w->crc = crc32_bytes(w->crc, w->out, out.pos);
            w->payload_bytes += out.pos;
        }
        if (mode == ZSTD_e_end ? rem == 0 : in.pos == in.size) return 0;
    }
}

static int writer_feed_floats(ckpt_writer *w, const float *f, size_t n)
{
    for (size_t i = 0; i < n; i += CKPT_CHUNK_FLOATS) {
        size_t k = n - i < CKPT_CHUNK_FLOATS ? n - i : CKPT_CHUNK_FLOATS;
        floats_to_le(w->conv, f + i, k);
        if (writer_feed(w, w->conv, k * CKPT_FLOAT_BYTES, ZSTD_e_continue)) return -1;
    }
    return 0;
}

static ae_status writer_error(const ckpt_writer *w, const char *path, ae_error *err)
{
    if (w->zerr) {
        return ae_error_set(err, AE_ERR_IO, "%s: compression failed: %s", path, ZSTD_getErrorName(w->zerr));
    }
    return ae_error_set(err, AE_ERR_IO, "%s: write failed: %s", path, strerror(w->err_no));
}

/* Everything from the placeholder header to the trailer into w->fd. */
static ae_status write_body(ckpt_writer *w, const char *path, const ae_ckpt_meta *meta, const char *config,
                            const float *const data[3], const size_t n[3], ckpt_sizes *s, ae_error *err)
{
    unsigned char header[AE_CKPT_HEADER_BYTES] = {0};
    unsigned char trailer[CKPT_TRAILER_BYTES];
    w->err_no = write_all(w->fd, header, sizeof header); /* placeholder, rewritten below */
    if (w->err_no) return writer_error(w, path, err);
    if (writer_feed(w, config, s->config_len, ZSTD_e_continue)) return writer_error(w, path, err);
    for (int i = 0; i < 3; i++) {
        if (writer_feed_floats(w, data[i], n[i])) return writer_error(w, path, err);
    }
    if (writer_feed(w, NULL, 0, ZSTD_e_end)) return writer_error(w, path, err);

    s->payload_bytes = w->payload_bytes;
    header_encode(header, meta, s);
    w->err_no = pwrite_all(w->fd, header, sizeof header, 0);
    if (w->err_no) return writer_error(w, path, err);
    uint32_t crc = crc32_bytes(0, header, sizeof header);
    crc = (uint32_t)crc32_combine(crc, w->crc, (z_off_t)w->payload_bytes);
    put_u32(trailer, crc);
    memcpy(trailer + 4, CKPT_END_MAGIC, CKPT_MAGIC_BYTES);
    w->err_no = write_all(w->fd, trailer, sizeof trailer);
    if (w->err_no) return writer_error(w, path, err);
    return AE_OK;
}

/* Write the whole checkpoint to tmp, fsync and close it. On failure tmp
 * is removed. */
static ae_status write_tmp(ckpt_writer *w, const char *path, const char *tmp, const ae_ckpt_meta *meta,
                           const char *config, const float *const data[3], const size_t n[3], ckpt_sizes *s,
                           ae_error *err)
{
    w->fd = open_retry(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        return ae_error_set(err, AE_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    }
    ae_status st = write_body(w, path, meta, config, data, n, s, err);
    int e = st == AE_OK ? fsync_retry(w->fd) : 0;
    if (e) st = ae_error_set(err, AE_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    /* After EINTR Linux has closed the fd anyway, and the data is fsync'ed. */
    if (close(w->fd) != 0 && errno != EINTR && st == AE_OK) {
        st = ae_error_set(err, AE_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    }
    w->fd = -1;
    if (st != AE_OK) unlink(tmp);
    return st;
}

static ae_status save_check_args(const char *path, const ae_ckpt_meta *meta, const float *const data[3],
                                 const size_t n[3], const ckpt_sizes *s, uint64_t *content_bytes, int level,
                                 ae_error *err)
{
    static const char *const names[3] = {"params", "opt", "state"};
    if (!path || !*path || !meta) return ae_error_set(err, AE_ERR_ARG, "ae_ckpt_save: NULL path or meta");
    if (level != 0 && (level < CKPT_MIN_LEVEL || level > CKPT_MAX_LEVEL)) {
        return ae_error_set(err, AE_ERR_ARG, "%s: zstd level %d out of range (%d..%d, 0 = default)", path,
                            level, CKPT_MIN_LEVEL, CKPT_MAX_LEVEL);
    }
    for (int i = 0; i < 3; i++) {
        if (n[i] > 0 && !data[i]) {
            return ae_error_set(err, AE_ERR_ARG, "%s: %s is NULL but has %zu floats", path, names[i], n[i]);
        }
    }
    if (!sizes_ok(s, content_bytes)) {
        return ae_error_set(err, AE_ERR_ARG, "%s: checkpoint too large (config %llu bytes, %llu floats)",
                            path, (unsigned long long)s->config_len,
                            (unsigned long long)(s->n_params + s->n_opt + s->n_state));
    }
    return AE_OK;
}

/* Compression context and buffers for one save. */
static ae_status writer_init(ckpt_writer *w, const char *path, int level, uint64_t content_bytes,
                             ae_error *err)
{
    w->cctx = ZSTD_createCCtx();
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = malloc(w->out_cap);
    w->conv = malloc(CKPT_CHUNK_FLOATS * CKPT_FLOAT_BYTES);
    if (!w->cctx || !w->out || !w->conv) {
        return ae_error_set(err, AE_ERR_NOMEM, "%s: out of memory preparing checkpoint", path);
    }
    size_t zr = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(zr)) zr = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(zr)) zr = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
    if (!ZSTD_isError(zr)) zr = ZSTD_CCtx_setPledgedSrcSize(w->cctx, content_bytes);
    if (ZSTD_isError(zr)) {
        return ae_error_set(err, AE_ERR_IO, "%s: zstd setup failed: %s", path, ZSTD_getErrorName(zr));
    }
    return AE_OK;
}

static void writer_free(ckpt_writer *w)
{
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    free(w->conv);
}

ae_status ae_ckpt_save(const char *path, const ae_ckpt_meta *meta, const char *config_text,
                       const float *params, size_t n_params, const float *opt, size_t n_opt,
                       const float *state, size_t n_state, int level, ae_error *err)
{
    const float *const data[3] = {params, opt, state};
    const size_t n[3] = {n_params, n_opt, n_state};
    const char *config = config_text ? config_text : "";
    ckpt_sizes s = {strlen(config), n_params, n_opt, n_state, 0};
    uint64_t content_bytes = 0;
    ae_status st = save_check_args(path, meta, data, n, &s, &content_bytes, level, err);
    if (st != AE_OK) return st;

    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof CKPT_TMP_SUFFIX);
    if (!tmp) return ae_error_set(err, AE_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, CKPT_TMP_SUFFIX, sizeof CKPT_TMP_SUFFIX);

    ckpt_writer w = {.fd = -1};
    st = writer_init(&w, path, level ? level : CKPT_DEFAULT_LEVEL, content_bytes, err);
    if (st == AE_OK) st = write_tmp(&w, path, tmp, meta, config, data, n, &s, err);
    if (st == AE_OK && rename(tmp, path) != 0) {
        st = ae_error_set(err, AE_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        unlink(tmp);
    }
    int e = st == AE_OK ? fsync_parent_dir(path) : 0;
    if (e) {
        st = ae_error_set(err, AE_ERR_IO, "%s: written, but fsync of its directory failed: %s", path,
                          strerror(e));
    }
    writer_free(&w);
    free(tmp);
    return st;
}

/* ---- load --------------------------------------------------------------------------------- */

/* Checks the first got bytes of a file of file_len bytes: magic, version,
 * header CRC, header size, size limits. */
static ae_status header_check(const char *path, const unsigned char *h, size_t got, uint64_t file_len,
                              ckpt_sizes *s, uint64_t *content_bytes, ae_error *err)
{
    if (file_len == 0) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: empty file, not an aetrain checkpoint", path);
    }
    size_t m = got < CKPT_MAGIC_BYTES ? got : CKPT_MAGIC_BYTES;
    if (memcmp(h, CKPT_MAGIC, m) != 0) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: not an aetrain checkpoint (bad magic)", path);
    }
    if (got >= OFF_VERSION + 4 && get_u32(h + OFF_VERSION) != AE_CKPT_VERSION) {
        return ae_error_set(err, AE_ERR_FORMAT,
                            "%s: format version %lu is not supported (this build reads %d)", path,
                            (unsigned long)get_u32(h + OFF_VERSION), AE_CKPT_VERSION);
    }
    if (got < AE_CKPT_HEADER_BYTES) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: truncated (%llu bytes, the header alone is %d)", path,
                            (unsigned long long)file_len, AE_CKPT_HEADER_BYTES);
    }
    if (get_u32(h + OFF_HEADER_CRC) != crc32_bytes(0, h, OFF_HEADER_CRC)) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: header checksum mismatch (corrupt file)", path);
    }
    if (get_u32(h + OFF_HEADER_SIZE) != AE_CKPT_HEADER_BYTES || get_u32(h + OFF_RESERVED) != 0) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: bad header size or reserved field (corrupt file)", path);
    }
    s->config_len = get_u64(h + OFF_CONFIG_LEN);
    s->n_params = get_u64(h + OFF_N_PARAMS);
    s->n_opt = get_u64(h + OFF_N_OPT);
    s->n_state = get_u64(h + OFF_N_STATE);
    s->payload_bytes = get_u64(h + OFF_PAYLOAD_BYTES);
    if (!sizes_ok(s, content_bytes)) {
        return ae_error_set(err, AE_ERR_FORMAT,
                            "%s: section sizes out of range (config %llu bytes, %llu + %llu + %llu floats)",
                            path, (unsigned long long)s->config_len, (unsigned long long)s->n_params,
                            (unsigned long long)s->n_opt, (unsigned long long)s->n_state);
    }
    uint64_t max_payload = (uint64_t)ZSTD_compressBound((size_t)*content_bytes);
    if (s->payload_bytes == 0 || s->payload_bytes > max_payload) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: payload size %llu does not fit the section sizes", path,
                            (unsigned long long)s->payload_bytes);
    }
    uint64_t want = AE_CKPT_HEADER_BYTES + s->payload_bytes + CKPT_TRAILER_BYTES;
    if (file_len < want) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: truncated (%llu bytes, header says %llu)", path,
                            (unsigned long long)file_len, (unsigned long long)want);
    }
    if (file_len > want) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: trailing data (%llu bytes, header says %llu)", path,
                            (unsigned long long)file_len, (unsigned long long)want);
    }
    return AE_OK;
}

/* Decompress the single frame in src into the sections, which must take
 * exactly all of its content. Returns NULL or a description of the fault. */
static const char *decompress_sections(ZSTD_DCtx *d, const unsigned char *src, size_t n,
                                       void *const dst[4], const size_t len[4])
{
    ZSTD_inBuffer in = {src, n, 0};
    size_t r = 1;
    for (int i = 0; i < 4; i++) {
        ZSTD_outBuffer out = {dst[i], len[i], 0};
        while (out.pos < out.size) {
            size_t in0 = in.pos, out0 = out.pos;
            r = ZSTD_decompressStream(d, &out, &in);
            if (ZSTD_isError(r)) return ZSTD_getErrorName(r);
            if (r == 0 && out.pos < out.size) return "payload shorter than the header says";
            if (in.pos == in0 && out.pos == out0) return "compressed payload truncated";
        }
    }
    unsigned char extra;
    while (r != 0) { /* finish the frame: last block, content checksum */
        ZSTD_outBuffer out = {&extra, 1, 0};
        size_t in0 = in.pos;
        r = ZSTD_decompressStream(d, &out, &in);
        if (ZSTD_isError(r)) return ZSTD_getErrorName(r);
        if (out.pos > 0) return "payload longer than the header says";
        if (r != 0 && in.pos == in0) return "compressed payload truncated";
    }
    if (in.pos != in.size) return "data after the compressed payload";
    return NULL;
}

/* Verify trailer and frame, then decompress into a fresh ae_ckpt. buf holds
 * the payload then the trailer; header is the verified header. */
static ae_status load_payload(const char *path, const unsigned char *header, const unsigned char *buf,
                              const ckpt_sizes *s, uint64_t content_bytes, ae_ckpt *c, ae_error *err)
{
    const unsigned char *trailer = buf + s->payload_bytes;
    if (memcmp(trailer + 4, CKPT_END_MAGIC, CKPT_MAGIC_BYTES) != 0) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: bad end magic (corrupt file)", path);
    }
    uint32_t crc = crc32_bytes(crc32_bytes(0, header, AE_CKPT_HEADER_BYTES), buf, (size_t)s->payload_bytes);
    if (crc != get_u32(trailer)) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: checksum mismatch (corrupt file)", path);
    }
    unsigned long long fcs = ZSTD_getFrameContentSize(buf, (size_t)s->payload_bytes);
    if (s->payload_bytes <= CKPT_ZSTD_FHD_OFFSET || get_u32(buf) != ZSTD_MAGICNUMBER ||
        fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN ||
        !(buf[CKPT_ZSTD_FHD_OFFSET] & CKPT_ZSTD_FHD_CHECKSUM_BIT)) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: payload is not a checksummed zstd frame", path);
    }
    if (fcs != content_bytes) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: payload holds %llu bytes, header says %llu", path, fcs,
                            (unsigned long long)content_bytes);
    }

    c->n_params = (size_t)s->n_params;
    c->n_opt = (size_t)s->n_opt;
    c->n_state = (size_t)s->n_state;
    c->config_text = malloc((size_t)s->config_len + 1);
    int nomem = !c->config_text;
    float **fl[3] = {&c->params, &c->opt, &c->state};
    const size_t nf[3] = {c->n_params, c->n_opt, c->n_state};
    for (int i = 0; i < 3; i++) {
        if (nf[i] > 0 && !(*fl[i] = ae_alloc_floats(nf[i], NULL))) nomem = 1;
    }
    ZSTD_DCtx *d = nomem ? NULL : ZSTD_createDCtx();
    if (!d) {
        return ae_error_set(err, AE_ERR_NOMEM, "%s: out of memory loading %llu bytes of checkpoint", path,
                            (unsigned long long)content_bytes);
    }
    void *const dst[4] = {c->config_text, c->params, c->opt, c->state};
    const size_t len[4] = {(size_t)s->config_len, nf[0] * CKPT_FLOAT_BYTES, nf[1] * CKPT_FLOAT_BYTES,
                           nf[2] * CKPT_FLOAT_BYTES};
    const char *fault = decompress_sections(d, buf, (size_t)s->payload_bytes, dst, len);
    ZSTD_freeDCtx(d);
    if (fault) return ae_error_set(err, AE_ERR_FORMAT, "%s: corrupt payload: %s", path, fault);
    c->config_text[s->config_len] = '\0';
    if (strlen(c->config_text) != s->config_len) {
        return ae_error_set(err, AE_ERR_FORMAT, "%s: config text contains a NUL byte (corrupt file)", path);
    }
    for (int i = 0; i < 3; i++) floats_from_le(*fl[i], nf[i]);
    header_decode_meta(header, &c->meta);
    return AE_OK;
}

ae_status ae_ckpt_load(const char *path, ae_ckpt *out, ae_error *err)
{
    if (!path || !out) return ae_error_set(err, AE_ERR_ARG, "ae_ckpt_load: NULL path or output");
    int fd = open_retry(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return ae_error_set(err, AE_ERR_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));

    ae_status st;
    ae_ckpt c = {0};
    unsigned char *buf = NULL;
    unsigned char header[AE_CKPT_HEADER_BYTES];
    struct stat sb;
    ckpt_sizes s = {0};
    uint64_t content_bytes = 0;
    size_t got;
    int e;
    if (fstat(fd, &sb) != 0) {
        st = ae_error_set(err, AE_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = ae_error_set(err, AE_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    if ((e = read_full(fd, header, sizeof header, &got)) != 0) {
        st = ae_error_set(err, AE_ERR_IO, "%s: read failed: %s", path, strerror(e));
        goto done;
    }
    uint64_t file_len = got < sizeof header ? got : (uint64_t)sb.st_size;
    st = header_check(path, header, got, file_len, &s, &content_bytes, err);
    if (st != AE_OK) goto done;

    size_t rest = (size_t)s.payload_bytes + CKPT_TRAILER_BYTES;
    buf = malloc(rest);
    if (!buf) {
        st = ae_error_set(err, AE_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, rest);
        goto done;
    }
    if ((e = read_full(fd, buf, rest, &got)) != 0) {
        st = ae_error_set(err, AE_ERR_IO, "%s: read failed: %s", path, strerror(e));
        goto done;
    }
    if (got < rest) { /* shrank since fstat */
        st = ae_error_set(err, AE_ERR_FORMAT, "%s: truncated (%llu bytes, header says %llu)", path,
                          (unsigned long long)(AE_CKPT_HEADER_BYTES + got),
                          (unsigned long long)(AE_CKPT_HEADER_BYTES + rest));
        goto done;
    }
    st = load_payload(path, header, buf, &s, content_bytes, &c, err);
done:
    close(fd);
    free(buf);
    if (st == AE_OK) {
        *out = c;
    } else {
        ae_ckpt_free(&c);
    }
    return st;
}

void ae_ckpt_free(ae_ckpt *c)
{
    if (!c) return;
    free(c->config_text);
    free(c->params);
    free(c->opt);
    free(c->state);
    memset(c, 0, sizeof *c);
}

/* ---- listing a checkpoint folder -------------------------------------------------- */

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ae_ckpt_list(const char *dir, const char *prefix, const char *suffix, char ***out)
{
    *out = NULL;
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int n = 0, cap = 0;
    char **v = NULL;
    size_t pl = strlen(prefix), sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t len = strlen(e->d_name);
        if (len < pl + sl || strncmp(e->d_name, prefix, pl) || strcmp(e->d_name + len - sl, suffix)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, sizeof(char *) * (size_t)cap);
            if (!nv) break;
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(dp);
    if (n) qsort(v, (size_t)n, sizeof(char *), cmp_name);
    if (!n) {
        free(v);
        v = NULL;
    }
    *out = v;
    return n;
}

void ae_ckpt_names_free(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}
