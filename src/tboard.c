/* tboard.c - TensorBoard event files: Events packed with protobuf-c (the code
 * protoc-c makes at build time from proto/tensorboard.proto) and framed as
 * TFRecords with a table-driven CRC-32C. */
#include "ae/tboard.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tensorboard.pb-c.h"

#define CRC32C_POLY 0x82f63b78u  /* Castagnoli, bit-reversed */
#define CRC_ROTATE 15            /* the mask rotates right by this many bits */
#define HOST_MAX 256             /* room for gethostname */
#define MAX_NAME_SUFFIX 1000     /* events...<host>.1 .. .999 before giving up */
#define DIR_MODE 0777            /* before the umask */
#define FILE_MODE 0644
#define NAME_FORMAT "%s/" AE_TB_FILE_PREFIX "%010lld.%s" /* dir, unix time, host */

/* PNG: the signature, then the IHDR chunk (length 13, type, width, height,
 * bit depth, colour type, ...) that must come first. */
static const unsigned char PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
#define PNG_IHDR_LEN_AT 8
#define PNG_IHDR_TYPE_AT 12
#define PNG_WIDTH_AT 16
#define PNG_HEIGHT_AT 20
#define PNG_COLOR_TYPE_AT 25
#define PNG_IHDR_DATA_LEN 13
#define PNG_MIN_BYTES 33         /* signature + the whole IHDR chunk with its CRC */

struct ae_tb {
    int fd;
    char *path;
    unsigned char *buf;  /* one record: header, event, footer */
    size_t cap;
    int failed;          /* a write failed: the file may end in a partial record */
};

/* ---- CRC-32C -------------------------------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t ae_tb_crc32c(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_table_init);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xffu] ^ (c >> 8);
    return ~c;
}

uint32_t ae_tb_crc_mask(uint32_t crc)
{
    return ((crc >> CRC_ROTATE) | (crc << (32 - CRC_ROTATE))) + AE_TB_CRC_MASK_DELTA;
}

/* ---- records -------------------------------------------------------------------------------------- */

static void put_le32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static void put_le64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* write(2) all n bytes (the kernel has them when it returns: what a live
 * reader needs, no stdio buffer in between); 0, or -1 with errno set. */
static int write_all(int fd, const unsigned char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Frame ev as one TFRecord in tb->buf and write it. A failure is
 * sticky: later records would follow a partial one, which readers cannot
 * skip, so the writer refuses them. */
static ae_status write_event(ae_tb *tb, const Aetb__Event *ev, ae_error *err)
{
    if (tb->failed) return ae_error_set(err, AE_ERR_IO, "%s: an earlier write failed", tb->path);
    size_t n = aetb__event__get_packed_size(ev);
    size_t total = AE_TB_HEADER_BYTES + n + AE_TB_FOOTER_BYTES;
    if (total > tb->cap) {
        unsigned char *b = realloc(tb->buf, total);
        if (!b) return ae_error_set(err, AE_ERR_NOMEM, "%s: out of memory for a %zu-byte event", tb->path, n);
        tb->buf = b;
        tb->cap = total;
    }
    unsigned char *b = tb->buf;
    put_le64(b, (uint64_t)n);
    put_le32(b + 8, ae_tb_crc_mask(ae_tb_crc32c(0, b, 8)));
    aetb__event__pack(ev, b + AE_TB_HEADER_BYTES);
    put_le32(b + AE_TB_HEADER_BYTES + n, ae_tb_crc_mask(ae_tb_crc32c(0, b + AE_TB_HEADER_BYTES, n)));
    if (write_all(tb->fd, b, total) != 0) {
        tb->failed = 1;
        return ae_error_set(err, AE_ERR_IO, "%s: write failed: %s", tb->path, strerror(errno));
    }
    return AE_OK;
}

/* Write one Summary value (its tag set here) at step. */
static ae_status write_value(ae_tb *tb, const char *tag, int64_t step, Aetb__Summary__Value *value,
                             ae_error *err)
{
    if (!tag || !tag[0])
        return ae_error_set(err, AE_ERR_ARG, "%s: a summary needs a non-empty tag", tb->path);
    value->tag = (char *)tag;
    Aetb__Summary__Value *values[1] = {value};
    Aetb__Summary summary = AETB__SUMMARY__INIT;
    summary.n_value = 1;
    summary.value = values;
    Aetb__Event ev = AETB__EVENT__INIT;
    ev.wall_time = wall_clock();
    ev.step = step;
    ev.what_case = AETB__EVENT__WHAT_SUMMARY;
    ev.summary = &summary;
    return write_event(tb, &ev, err);
}

/* ---- the writer ----------------------------------------------------------------------------------- */

static void host_name(char *host, size_t cap)
{
    if (gethostname(host, cap) != 0) host[0] = '\0';
    host[cap - 1] = '\0';
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    if (!host[0]) snprintf(host, cap, "localhost");
}

/* Create a file that did not exist: base, else base.1, base.2, ...; *fd is
 * the open file and *path its malloc'ed name. */
static ae_status create_new(const char *base, int *fd_out, char **path, ae_error *err)
{
    size_t cap = strlen(base) + 16;
    char *p = ae_malloc(cap, err);
    if (!p) return AE_ERR_NOMEM;
    int fd = -1;
    for (int k = 0; k < MAX_NAME_SUFFIX && fd < 0; k++) {
        if (k == 0) snprintf(p, cap, "%s", base);
        else snprintf(p, cap, "%s.%d", base, k);
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FILE_MODE);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        ae_error_set(err, AE_ERR_IO, "%s: cannot create: %s", p, strerror(errno));
        free(p);
        return AE_ERR_IO;
    }
    *fd_out = fd;
    *path = p;
    return AE_OK;
}

ae_status ae_tb_open(const char *dir, ae_tb **out, ae_error *err)
{
    if (!out) return ae_error_set(err, AE_ERR_ARG, "ae_tb_open: NULL out");
    *out = NULL;
    if (!dir || !dir[0]) return ae_error_set(err, AE_ERR_ARG, "ae_tb_open: no directory");
    if (mkdir(dir, DIR_MODE) != 0 && errno != EEXIST)
        return ae_error_set(err, AE_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    char host[HOST_MAX];
    host_name(host, sizeof host);
    double now = wall_clock();
    int len = snprintf(NULL, 0, NAME_FORMAT, dir, (long long)now, host);
    char *base = ae_malloc((size_t)len + 1, err);
    if (!base) return AE_ERR_NOMEM;
    snprintf(base, (size_t)len + 1, NAME_FORMAT, dir, (long long)now, host);
    ae_tb *tb = ae_calloc(1, sizeof *tb, err);
    if (!tb) {
        free(base);
        return AE_ERR_NOMEM;
    }
    tb->fd = -1;
    ae_status st = create_new(base, &tb->fd, &tb->path, err);
    free(base);
    if (st != AE_OK) {
        free(tb);
        return st;
    }
    Aetb__Event ev = AETB__EVENT__INIT;
    ev.wall_time = now;
    ev.what_case = AETB__EVENT__WHAT_FILE_VERSION;
    ev.file_version = (char *)AE_TB_FILE_VERSION;
    st = write_event(tb, &ev, err);
    if (st != AE_OK) {
        unlink(tb->path);
        ae_tb_close(tb);
        return st;
    }
    *out = tb;
    return AE_OK;
}

const char *ae_tb_path(const ae_tb *tb) { return tb ? tb->path : NULL; }

ae_status ae_tb_scalar(ae_tb *tb, const char *tag, int64_t step, float value, ae_error *err)
{
    if (!tb) return ae_error_set(err, AE_ERR_ARG, "ae_tb_scalar: NULL writer");
    Aetb__Summary__Value v = AETB__SUMMARY__VALUE__INIT;
    v.value_case = AETB__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    v.simple_value = value;
    return write_value(tb, tag, step, &v, err);
}

static uint32_t get_be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* TensorFlow's colorspace of a PNG colour type; 0 for an invalid type. */
static int png_colorspace(unsigned char color_type)
{
    switch (color_type) {
    case 0: return 1; /* gray */
    case 4: return 2; /* gray + alpha */
    case 2: return 3; /* RGB */
    case 3: return 3; /* palette: decodes to RGB */
    case 6: return 4; /* RGBA */
    default: return 0;
    }
}

ae_status ae_tb_image_png(ae_tb *tb, const char *tag, int64_t step, const unsigned char *png, size_t n,
                          int height, int width, ae_error *err)
{
    if (!tb) return ae_error_set(err, AE_ERR_ARG, "ae_tb_image_png: NULL writer");
    if (!png || n < PNG_MIN_BYTES || memcmp(png, PNG_SIGNATURE, sizeof PNG_SIGNATURE) != 0 ||
        get_be32(png + PNG_IHDR_LEN_AT) != PNG_IHDR_DATA_LEN ||
        memcmp(png + PNG_IHDR_TYPE_AT, "IHDR", 4) != 0)
        return ae_error_set(err, AE_ERR_ARG, "%s: image '%s' at step %lld: not a PNG (%zu bytes)", tb->path,
                            tag ? tag : "", (long long)step, png ? n : 0);
    uint32_t w = get_be32(png + PNG_WIDTH_AT), h = get_be32(png + PNG_HEIGHT_AT);
    if (height <= 0 || width <= 0 || h != (uint32_t)height || w != (uint32_t)width)
        return ae_error_set(err, AE_ERR_ARG, "%s: image '%s' at step %lld: the PNG is %ux%u (WxH), not %dx%d",
                            tb->path, tag ? tag : "", (long long)step, w, h, width, height);
    int colorspace = png_colorspace(png[PNG_COLOR_TYPE_AT]);
    if (!colorspace)
        return ae_error_set(err, AE_ERR_ARG, "%s: image '%s' at step %lld: invalid PNG colour type %u",
                            tb->path, tag ? tag : "", (long long)step, png[PNG_COLOR_TYPE_AT]);
    Aetb__Summary__Image img = AETB__SUMMARY__IMAGE__INIT;
    img.height = height;
    img.width = width;
    img.colorspace = colorspace;
    img.encoded_image_string.data = (uint8_t *)png;
    img.encoded_image_string.len = n;
    Aetb__Summary__Value v = AETB__SUMMARY__VALUE__INIT;
    v.value_case = AETB__SUMMARY__VALUE__VALUE_IMAGE;
    v.image = &img;
    return write_value(tb, tag, step, &v, err);
}

void ae_tb_close(ae_tb *tb)
{
    if (!tb) return;
    if (tb->fd >= 0) close(tb->fd);
    free(tb->path);
    free(tb->buf);
    free(tb);
}
