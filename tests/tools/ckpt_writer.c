/* ckpt_writer.c - the crash-safety helper of tests/sh/ckpt_kill.sh.
 *
 *   ckpt_writer run DIR [NFLOATS]     write checkpoints step after step, forever, the way the
 *                                     trainer does (ae_ckpt_save: tmp + fsync + rename + fsync
 *                                     of the directory; keep the newest 3). On start it removes
 *                                     stale *.tmp files and continues after the step of the
 *                                     newest checkpoint. Appends "start NEXT cleaned K" and
 *                                     "saved STEP" lines to DIR/writer.log.
 *   ckpt_writer naive DIR [NFLOATS]   the unsafe way, for comparison: DIR/naive.aeck is opened
 *                                     with O_TRUNC, then serialized (same content and
 *                                     compression) and written in 64 KiB writes, fsync'ed.
 *   ckpt_writer verify DIR [NFLOATS]  every *.aeck in DIR loads and verifies and its content
 *                                     (meta, config text, params, optimizer state, state)
 *                                     is the one derived from its step; prints
 *                                     "newest STEP files N tmp K" (STEP -1: no checkpoint).
 *                                     Exit 0 all good, 1 a bad file, 2 usage or I/O error.
 *   ckpt_writer one PATH STEP NFLOATS write one checkpoint (seed corpus of the fuzz targets).
 *
 * The content of step s: params[i] = u(s, 0, i), opt (2 x NFLOATS / 2 floats) = u(s, 1, i),
 * state (16 floats) = u(s, 2, i), with u a hash of (s, stream, i) mapped to [-1, 1) (random
 * bits: zstd cannot shrink them much, so a checkpoint of 8 x NFLOATS bytes takes about as long
 * to write as a real one); the config text names the step and the meta fields derive from it. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ae/ckpt.h"
#include "ae/status.h"

#define DEFAULT_FLOATS 150000 /* 0.6 MB of params + 0.6 MB of optimizer state: a 1.1 MB file */
#define STATE_FLOATS 16
#define KEEP 3
#define ARCH_HASH 0xC4EC4EC4EC4EC4EULL
#define SEED_XOR 0x5EED5EED5EED5EEDULL
#define STEPS_PER_EPOCH 10
#define PREFIX "ckpt-s"
#define SUFFIX ".aeck"
#define TMP_SUFFIX ".tmp"
#define NAIVE_NAME "naive.aeck"
#define LOG_NAME "writer.log"
#define NAIVE_CHUNK (64 * 1024)
#define PATH_CAP 4096

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static float u(int64_t step, uint64_t stream, size_t i)
{
    uint64_t h = splitmix(splitmix((uint64_t)step * 4 + stream) ^ (uint64_t)i);
    return (float)((double)(h >> 40) / (double)(1ULL << 23) - 1.0); /* 24 bits: exact in a float */
}

typedef struct content {
    ae_ckpt_meta meta;
    char config[256];
    size_t n[3];
    float *data[3];
} content;

static int content_alloc(content *c, size_t nfloats)
{
    memset(c, 0, sizeof *c);
    c->n[0] = nfloats;
    c->n[1] = 2 * (nfloats / 2);
    c->n[2] = STATE_FLOATS;
    for (int k = 0; k < 3; k++)
        if (!(c->data[k] = malloc(sizeof(float) * (c->n[k] ? c->n[k] : 1)))) return -1;
    return 0;
}

static void content_free(content *c)
{
    for (int k = 0; k < 3; k++) free(c->data[k]);
}

static void content_fill(content *c, int64_t step)
{
    memset(&c->meta, 0, sizeof c->meta);
    c->meta.arch_hash = ARCH_HASH;
    c->meta.seed = (uint64_t)step ^ SEED_XOR;
    c->meta.epoch = step / STEPS_PER_EPOCH;
    c->meta.step = step;
    c->meta.step_in_epoch = step % STEPS_PER_EPOCH;
    c->meta.bad_epochs = step % 7;
    c->meta.best_val = 1.0 / (double)(step + 1);
    c->meta.run_loss_sum = (double)step * 0.5;
    c->meta.run_loss_count = (double)step;
    c->meta.nranks = 1;
    snprintf(c->config, sizeof c->config, "[writer]\nstep = %lld\nfloats = %zu\n", (long long)step, c->n[0]);
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < c->n[k]; i++) c->data[k][i] = u(step, (uint64_t)k, i);
}

static ae_status content_save(const content *c, const char *path, ae_error *err)
{
    return ae_ckpt_save(path, &c->meta, c->config, c->data[0], c->n[0], c->data[1], c->n[1], c->data[2], c->n[2],
                        0, err);
}

/* 0 when the loaded checkpoint is exactly the content of its step, else a message in why. */
static int content_check(const ae_ckpt *ck, content *c, char *why, size_t cap)
{
    int64_t step = ck->meta.step;
    if (step < 0) {
        snprintf(why, cap, "negative step %lld", (long long)step);
        return -1;
    }
    content_fill(c, step);
    const ae_ckpt_meta *a = &ck->meta, *b = &c->meta;
    if (a->arch_hash != b->arch_hash || a->seed != b->seed || a->epoch != b->epoch ||
        a->step_in_epoch != b->step_in_epoch || a->bad_epochs != b->bad_epochs || a->best_val != b->best_val ||
        a->run_loss_sum != b->run_loss_sum || a->run_loss_count != b->run_loss_count || a->nranks != b->nranks) {
        snprintf(why, cap, "meta fields do not match step %lld", (long long)step);
        return -1;
    }
    if (strcmp(ck->config_text, c->config) != 0) {
        snprintf(why, cap, "config text does not match step %lld", (long long)step);
        return -1;
    }
    const float *got[3] = {ck->params, ck->opt, ck->state};
    const size_t n[3] = {ck->n_params, ck->n_opt, ck->n_state};
    for (int k = 0; k < 3; k++) {
        if (n[k] != c->n[k] || (n[k] && memcmp(got[k], c->data[k], sizeof(float) * n[k]) != 0)) {
            snprintf(why, cap, "section %d (%zu floats) does not match step %lld", k, n[k], (long long)step);
            return -1;
        }
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names in dir with the prefix and suffix (either may be ""); caller frees. -1 on error. */
static int list_names(const char *dir, const char *prefix, const char *suffix, char ***out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || !ends_with(e->d_name, suffix)) continue;
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, sizeof(char *) * (size_t)cap);
            if (!nv) abort();
            v = nv;
        }
        if (!(v[n++] = strdup(e->d_name))) abort();
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof(char *), cmp_str);
    *out = v;
    return n;
}

static void free_names(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Append "<what> <a>[ cleaned <b>]" to DIR/writer.log with one write(2): the kernel keeps it
 * even when the process is killed right after. */
static void log_line(const char *dir, const char *what, long long a, long long cleaned)
{
    char path[PATH_CAP], line[128];
    snprintf(path, sizeof path, "%s/%s", dir, LOG_NAME);
    int len = cleaned >= 0 ? snprintf(line, sizeof line, "%s %lld cleaned %lld\n", what, a, cleaned)
                           : snprintf(line, sizeof line, "%s %lld\n", what, a);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (write(fd, line, (size_t)len) != len) perror(path);
    close(fd);
}

/* Keep the newest KEEP numbered checkpoints, as the trainer does. */
static void prune(const char *dir)
{
    char **names;
    int n = list_names(dir, PREFIX, SUFFIX, &names);
    for (int i = 0; i + KEEP < n; i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    if (n > 0) free_names(names, n);
}

static void ckpt_name(char *out, size_t cap, const char *dir, int64_t step)
{
    snprintf(out, cap, "%s/%s%010lld-e%05lld%s", dir, PREFIX, (long long)step, (long long)(step / STEPS_PER_EPOCH),
             SUFFIX);
}

static int cmd_run(const char *dir, size_t nfloats)
{
    content c;
    if (content_alloc(&c, nfloats)) return 2;
    /* stale tmp files of a killed save: never read, removed */
    char **names;
    int n = list_names(dir, "", TMP_SUFFIX, &names), cleaned = 0;
    for (int i = 0; i < n; i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        cleaned += unlink(path) == 0;
    }
    if (n > 0) free_names(names, n);
    /* continue after the newest checkpoint (by name: the test verifies the content after
     * every kill, so the start stays short and the kills land in saves) */
    int64_t next = 0;
    n = list_names(dir, PREFIX, SUFFIX, &names);
    if (n > 0) {
        long long last;
        if (sscanf(names[n - 1], PREFIX "%lld", &last) != 1 || last < 0) {
            fprintf(stderr, "ckpt_writer: %s/%s: not a checkpoint name\n", dir, names[n - 1]);
            return 1;
        }
        next = last + 1;
        free_names(names, n);
    }
    log_line(dir, "start", (long long)next, cleaned);
    prune(dir);
    for (int64_t step = next;; step++) {
        char path[PATH_CAP];
        ae_error err;
        content_fill(&c, step);
        ckpt_name(path, sizeof path, dir, step);
        if (content_save(&c, path, &err) != AE_OK) {
            fprintf(stderr, "ckpt_writer: %s\n", err.msg);
            return 2;
        }
        log_line(dir, "saved", (long long)step, -1);
        prune(dir);
    }
}

static int write_chunks(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n < NAIVE_CHUNK ? n : NAIVE_CHUNK);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The unsafe pattern: fopen(path, "wb") first, then serialize and write. */
static int cmd_naive(const char *dir, size_t nfloats)
{
    content c;
    if (content_alloc(&c, nfloats)) return 2;
    char path[PATH_CAP], scratch[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", dir, NAIVE_NAME);
    /* serialization goes through a file in memory (tmpfs), then into path */
    snprintf(scratch, sizeof scratch, "/dev/shm/ckpt_writer-%ld.aeck", (long)getpid());
    int64_t next = 0;
    ae_ckpt ck;
    ae_error err;
    if (ae_ckpt_load(path, &ck, &err) == AE_OK) {
        next = ck.meta.step + 1;
        ae_ckpt_free(&ck);
    }
    log_line(dir, "start", (long long)next, 0);
    for (int64_t step = next;; step++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            perror(path);
            return 2;
        }
        content_fill(&c, step);
        if (content_save(&c, scratch, &err) != AE_OK) {
            fprintf(stderr, "ckpt_writer: %s\n", err.msg);
            return 2;
        }
        int sfd = open(scratch, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (sfd < 0 || fstat(sfd, &sb) != 0) return 2;
        unsigned char *bytes = malloc((size_t)sb.st_size);
        if (!bytes || read(sfd, bytes, (size_t)sb.st_size) != sb.st_size) return 2;
        close(sfd);
        unlink(scratch);
        if (write_chunks(fd, bytes, (size_t)sb.st_size) || fsync(fd) || close(fd)) {
            perror(path);
            return 2;
        }
        free(bytes);
        log_line(dir, "saved", (long long)step, -1);
    }
}

static int cmd_verify(const char *dir, size_t nfloats)
{
    content c;
    if (content_alloc(&c, nfloats)) return 2;
    char **names;
    int n = list_names(dir, "", SUFFIX, &names);
    if (n < 0) {
        fprintf(stderr, "ckpt_writer: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    int bad = 0;
    int64_t newest = -1;
    for (int i = 0; i < n; i++) {
        char path[PATH_CAP], why[256];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        ae_ckpt ck;
        ae_error err;
        if (ae_ckpt_load(path, &ck, &err) != AE_OK) {
            printf("BAD %s\n", err.msg);
            bad++;
            continue;
        }
        if (content_check(&ck, &c, why, sizeof why)) {
            printf("BAD %s: %s\n", path, why);
            bad++;
        } else if (strncmp(names[i], PREFIX, strlen(PREFIX)) == 0) {
            char want[PATH_CAP];
            ckpt_name(want, sizeof want, dir, ck.meta.step);
            if (strcmp(want, path) != 0) {
                printf("BAD %s: holds step %lld\n", path, (long long)ck.meta.step);
                bad++;
            }
        }
        if (ck.meta.step > newest) newest = ck.meta.step;
        ae_ckpt_free(&ck);
    }
    char **tmps;
    int ntmp = list_names(dir, "", TMP_SUFFIX, &tmps);
    printf("newest %lld files %d tmp %d\n", (long long)newest, n, ntmp > 0 ? ntmp : 0);
    if (ntmp > 0) free_names(tmps, ntmp);
    if (n > 0) free_names(names, n);
    content_free(&c);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && argc <= 4 && strcmp(argv[1], "run") != 0 && strcmp(argv[1], "naive") != 0 &&
        strcmp(argv[1], "verify") != 0)
        argc = 0;
    if (argc >= 3 && argc <= 4) {
        size_t nfloats = argc == 4 ? (size_t)strtoull(argv[3], NULL, 10) : DEFAULT_FLOATS;
        if (strcmp(argv[1], "run") == 0) return cmd_run(argv[2], nfloats);
        if (strcmp(argv[1], "naive") == 0) return cmd_naive(argv[2], nfloats);
        return cmd_verify(argv[2], nfloats);
    }
    if (argc == 5 && strcmp(argv[1], "one") == 0) {
        content c;
        ae_error err;
        if (content_alloc(&c, (size_t)strtoull(argv[4], NULL, 10))) return 2;
        content_fill(&c, strtoll(argv[3], NULL, 10));
        if (content_save(&c, argv[2], &err) != AE_OK) {
            fprintf(stderr, "ckpt_writer: %s\n", err.msg);
            return 2;
        }
        content_free(&c);
        return 0;
    }
    fprintf(stderr, "usage: ckpt_writer run DIR [NFLOATS] | naive DIR [NFLOATS] | verify DIR [NFLOATS] | "
                    "one PATH STEP NFLOATS\n");
    return 2;
}
