/* testutil.h - helpers shared by the CUnit tests: temp dirs, small files. */
#ifndef AE_TESTUTIL_H
#define AE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Create a fresh temporary directory; returns a static-lifetime string
 * owned by the caller (free it). */
char *tu_tempdir(void);
/* Recursively remove a directory made by tu_tempdir. */
void tu_rmtree(const char *dir);
/* Write bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
/* Read a whole file; returns malloc'ed bytes (size in *n) or NULL. */
unsigned char *tu_read_file(const char *path, size_t *n);
/* Write an IDX file of uint8 with the given dims (gzip when gz != 0). */
int tu_write_idx(const char *path, const uint32_t *dims, int ndims, const uint8_t *data, int gz);

#endif
