/* tb_write.c - the writer of tests/sh/tboard_read.sh: one TensorBoard event
 * file made with ae/tboard.h from the command line.
 *
 *   tb_write DIR OP...       open a new event file in DIR (ae_tb_open), print its path on
 *                            a line, run the OPs in order, close it.
 *     s TAG STEP VALUE       ae_tb_scalar (VALUE read with strtof: "nan", "inf", "-0" work)
 *     i TAG STEP PNG H W     ae_tb_image_png of the bytes of the file PNG, H x W pixels
 *     wait                   print "waiting" on a line and block until stdin gives a line or
 *                            ends: the events so far must already be readable in the file
 *
 * Exit 0 done, 1 a library call failed (its message on stderr), 2 usage or unreadable PNG. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/status.h"
#include "ae/tboard.h"

#define EXIT_LIB 1
#define EXIT_USAGE 2
#define MAX_PNG_BYTES (64u << 20)

static int usage(void)
{
    fputs("usage: tb_write DIR [s TAG STEP VALUE | i TAG STEP PNG H W | wait]...\n", stderr);
    return EXIT_USAGE;
}

static int parse_i64(const char *s, int64_t *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *v = (int64_t)x;
    return 0;
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = malloc(MAX_PNG_BYTES);
    *n = b ? fread(b, 1, MAX_PNG_BYTES, f) : 0;
    int bad = !b || ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        free(b);
        return NULL;
    }
    return b;
}

/* Run the OP at argv[*i], advancing *i past it; 0 done, else an exit code. */
static int run_op(ae_tb *tb, int argc, char **argv, int *i)
{
    ae_error err = {0};
    const char *op = argv[*i];
    int64_t step;
    if (strcmp(op, "wait") == 0) {
        *i += 1;
        printf("waiting\n");
        fflush(stdout);
        char line[64];
        if (!fgets(line, sizeof line, stdin)) clearerr(stdin);
        return 0;
    }
    if (strcmp(op, "s") == 0 && *i + 3 < argc) {
        char *end;
        float v = strtof(argv[*i + 3], &end);
        if (parse_i64(argv[*i + 2], &step) != 0 || end == argv[*i + 3] || *end) return usage();
        if (ae_tb_scalar(tb, argv[*i + 1], step, v, &err) != AE_OK) goto fail;
        *i += 4;
        return 0;
    }
    if (strcmp(op, "i") == 0 && *i + 5 < argc) {
        int64_t h, w;
        if (parse_i64(argv[*i + 2], &step) != 0 || parse_i64(argv[*i + 4], &h) != 0 ||
            parse_i64(argv[*i + 5], &w) != 0)
            return usage();
        size_t n;
        unsigned char *png = read_all(argv[*i + 3], &n);
        if (!png) {
            fprintf(stderr, "tb_write: %s: cannot read\n", argv[*i + 3]);
            return EXIT_USAGE;
        }
        ae_status st = ae_tb_image_png(tb, argv[*i + 1], step, png, n, (int)h, (int)w, &err);
        free(png);
        if (st != AE_OK) goto fail;
        *i += 6;
        return 0;
    }
    return usage();
fail:
    fprintf(stderr, "tb_write: %s: %s\n", ae_status_str(err.code), err.msg);
    return EXIT_LIB;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    ae_error err = {0};
    ae_tb *tb;
    if (ae_tb_open(argv[1], &tb, &err) != AE_OK) {
        fprintf(stderr, "tb_write: %s: %s\n", ae_status_str(err.code), err.msg);
        return EXIT_LIB;
    }
    printf("%s\n", ae_tb_path(tb));
    fflush(stdout);
    int rc = 0;
    for (int i = 2; i < argc && rc == 0;) rc = run_op(tb, argc, argv, &i);
    ae_tb_close(tb);
    return rc;
}
