/* fuzz_idx.c - libFuzzer target: ae_data_read_idx on arbitrary bytes (raw or gzip).
 * The input goes to a memfd read through /proc/self/fd/N, so the library reads a real
 * file and nothing touches the disk. On success the result must be consistent:
 * 1..4 dimensions, none 0, count their product, and for a raw (non-gzip) file the
 * bytes after the header exactly. Build: tests/fuzz/run.sh. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ae/data.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = memfd_create("fuzz_idx", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    ae_idx idx;
    ae_error err;
    ae_status st = ae_data_read_idx(path, &idx, &err);
    if (st != AE_OK) {
        if (!err.msg[0] || !memchr(err.msg, '\0', sizeof err.msg)) abort(); /* a message, terminated */
        return 0;
    }
    if (idx.ndims < 1 || idx.ndims > AE_IDX_MAX_DIMS || !idx.data) abort();
    size_t count = 1;
    for (int i = 0; i < idx.ndims; i++) {
        if (idx.dims[i] == 0) abort();
        count *= idx.dims[i];
    }
    if (count != idx.count) abort();
    int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (!gz) {
        size_t hdr = 4 + 4 * (size_t)idx.ndims;
        if (size != hdr + count || memcmp(idx.data, data + hdr, count) != 0) abort();
    }
    volatile uint8_t sink = idx.data[count - 1]; /* the whole buffer is there */
    (void)sink;
    ae_data_idx_free(&idx);
    return 0;
}
