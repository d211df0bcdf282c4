/* fuzz_ckpt.c - libFuzzer target: ae_ckpt_load on arbitrary bytes (via a memfd read
 * through /proc/self/fd/N). A checkpoint that loads is saved again (into a tmpfs
 * folder) and must load back to the same meta, config text and floats (bitwise).
 * The custom mutator gets past the checksums: a third of the mutants are plain byte
 * mutations; a third have their payload size, header CRC and trailer CRC repaired (into
 * the zstd frame and the size checks); a third are mutated inside: the payload is
 * decompressed, its content mutated, the section sizes kept, adjusted to the new length
 * or nudged, and it is compressed again with a valid content checksum and CRCs (into the
 * section split, the config text and the floats, and the save/load round trip).
 * Build: tests/fuzz/run.sh. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "ae/ckpt.h"

#define TRAILER 12 /* CRC-32 + "AECKEND\0" */
#define OFF_CONFIG_LEN 96
#define OFF_N_PARAMS 104
#define OFF_PAYLOAD_BYTES 128
#define OFF_HEADER_CRC 140
#define MAX_CONTENT (1u << 20) /* the inner mutation handles payloads up to this */

static int fd = -1;
static char path[64], dir[256], saved[512];

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* payload size, header CRC, trailer CRC and end magic made to fit */
static void repair(uint8_t *data, size_t size)
{
    put_le(data + OFF_PAYLOAD_BYTES, size - AE_CKPT_HEADER_BYTES - TRAILER, 8);
    put_le(data + OFF_HEADER_CRC, crc32(0, data, OFF_HEADER_CRC), 4);
    put_le(data + size - TRAILER, crc32(0, data, (uInt)(size - TRAILER)), 4);
    memcpy(data + size - 8, "AECKEND", 8);
}

/* Mutate the decompressed content and compress it again; 0 when data is not a
 * checkpoint with a readable payload (or the result would not fit). */
static size_t mutate_inside(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    if (size < AE_CKPT_HEADER_BYTES + TRAILER || memcmp(data, "AETRCKPT", 8) != 0) return 0;
    const uint8_t *frame = data + AE_CKPT_HEADER_BYTES;
    size_t flen = size - AE_CKPT_HEADER_BYTES - TRAILER;
    unsigned long long cs = ZSTD_getFrameContentSize(frame, flen);
    if (cs == ZSTD_CONTENTSIZE_ERROR || cs == ZSTD_CONTENTSIZE_UNKNOWN || cs > MAX_CONTENT) return 0;
    size_t cap = (size_t)cs + 4096;
    uint8_t *raw = malloc(cap), *z = NULL;
    size_t out = 0;
    if (!raw) return 0;
    size_t got = ZSTD_decompress(raw, (size_t)cs, frame, flen);
    if (ZSTD_isError(got)) goto done;
    size_t n = LLVMFuzzerMutate(raw, got, cap);
    /* section sizes: keep (a length mismatch), follow the new length through config_len,
     * or nudge one of the four by -1..+1 */
    unsigned mode = (seed >> 1) % 4;
    uint64_t config_len = get_le(data + OFF_CONFIG_LEN);
    if (mode == 1 && config_len + n >= got) put_le(data + OFF_CONFIG_LEN, config_len + n - got, 8);
    if (mode == 2) {
        uint8_t *f = data + OFF_CONFIG_LEN + 8 * ((seed >> 3) % 4);
        put_le(f, get_le(f) + ((seed >> 5) % 3) - 1, 8);
    }
    size_t zcap = ZSTD_compressBound(n);
    if (AE_CKPT_HEADER_BYTES + zcap + TRAILER > max_size || !(z = malloc(zcap))) goto done;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t zlen = cctx ? ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1) : 1;
    if (cctx && !ZSTD_isError(zlen)) zlen = ZSTD_compress2(cctx, z, zcap, raw, n);
    ZSTD_freeCCtx(cctx);
    if (!cctx || ZSTD_isError(zlen)) goto done;
    memcpy(data + AE_CKPT_HEADER_BYTES, z, zlen);
    out = AE_CKPT_HEADER_BYTES + zlen + TRAILER;
    repair(data, out);
done:
    free(raw);
    free(z);
    return out;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    if (seed % 3 == 2) {
        size_t n = mutate_inside(data, size, max_size, seed / 3);
        if (n) return n;
    }
    size = LLVMFuzzerMutate(data, size, max_size);
    if (seed % 3 == 1 && size >= AE_CKPT_HEADER_BYTES + TRAILER) repair(data, size);
    return size;
}

static void cleanup(void)
{
    unlink(saved);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = memfd_create("fuzz_ckpt", MFD_CLOEXEC);
    snprintf(dir, sizeof dir, "/dev/shm/fuzz_ckpt.XXXXXX");
    if (fd < 0 || !mkdtemp(dir)) {
        perror("fuzz_ckpt setup");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    snprintf(saved, sizeof saved, "%s/again.aeck", dir);
    atexit(cleanup);
    return 0;
}

static int same_floats(const float *x, const float *y, size_t n)
{
    return n == 0 || memcmp(x, y, n * sizeof(float)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    ae_ckpt c, d;
    ae_error err;
    memset(&c, 0x5a, sizeof c);
    if (ae_ckpt_load(path, &c, &err) != AE_OK) {
        const unsigned char *p = (const unsigned char *)&c;
        for (size_t i = 0; i < sizeof c; i++)
            if (p[i] != 0x5a) abort(); /* *out untouched on error */
        if (!err.msg[0]) abort();
        return 0;
    }
    /* loaded: save it again and load that */
    if (ae_ckpt_save(saved, &c.meta, c.config_text, c.params, c.n_params, c.opt, c.n_opt, c.state, c.n_state, 0,
                     &err) != AE_OK) {
        fprintf(stderr, "fuzz_ckpt: cannot save a checkpoint that loaded: %s\n", err.msg);
        abort();
    }
    if (ae_ckpt_load(saved, &d, &err) != AE_OK) {
        fprintf(stderr, "fuzz_ckpt: the saved copy does not load: %s\n", err.msg);
        abort();
    }
    if (memcmp(&c.meta, &d.meta, sizeof c.meta) != 0 || strcmp(c.config_text, d.config_text) != 0 ||
        c.n_params != d.n_params || c.n_opt != d.n_opt || c.n_state != d.n_state ||
        !same_floats(c.params, d.params, c.n_params) || !same_floats(c.opt, d.opt, c.n_opt) ||
        !same_floats(c.state, d.state, c.n_state)) {
        fprintf(stderr, "fuzz_ckpt: load -> save -> load changed the checkpoint\n");
        abort();
    }
    unlink(saved);
    ae_ckpt_free(&c);
    ae_ckpt_free(&d);
    return 0;
}
