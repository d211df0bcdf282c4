/* report.c - log lines, progress line and metrics files of rank 0. */
#include "ae/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ae/dist.h"

static struct {
    FILE *log, *csv, *jsonl;
    int quiet;
    int progress_shown;
    double last_plain;
} g;

static FILE *open_append(const char *dir, const char *name, int *fresh, ae_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    *fresh = stat(path, &st) != 0 || st.st_size == 0;
    FILE *f = fopen(path, "a");
    if (!f) ae_error_set(err, AE_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    return f;
}

ae_status ae_report_open(const char *run_dir, int quiet, ae_error *err)
{
    g.quiet = quiet;
    if (ae_dist_rank() != 0) return AE_OK;
    int fresh;
    if (!(g.log = open_append(run_dir, "log.txt", &fresh, err))) return AE_ERR_IO;
    if (!(g.csv = open_append(run_dir, "metrics.csv", &fresh, err))) return AE_ERR_IO;
    if (fresh)
        fprintf(g.csv, "epoch,step,train_loss,val_loss,test_loss,test_mse,test_bce,test_acc,test_kl,lr,samples_per_s,"
                       "allreduce_frac,epoch_s,allreduce_exposed_frac,wait_frac\n");
    if (!(g.jsonl = open_append(run_dir, "metrics.jsonl", &fresh, err))) return AE_ERR_IO;
    return AE_OK;
}

void ae_report_close(void)
{
    if (g.log) fclose(g.log);
    if (g.csv) fclose(g.csv);
    if (g.jsonl) fclose(g.jsonl);
    memset(&g, 0, sizeof g);
}

static void clear_progress(void)
{
    if (g.progress_shown) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
        g.progress_shown = 0;
    }
}

void ae_report_log(const char *fmt, ...)
{
    if (ae_dist_rank() != 0) return;
    va_list ap;
    if (!g.quiet) {
        clear_progress();
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (g.log) {
        va_start(ap, fmt);
        vfprintf(g.log, fmt, ap);
        va_end(ap);
        fputc('\n', g.log);
        fflush(g.log);
    }
}

void ae_report_warn(const char *fmt, ...)
{
    if (ae_dist_rank() != 0) return;
    va_list ap;
    clear_progress();
    fputs("aetrain: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (g.log) {
        fputs("warning: ", g.log);
        va_start(ap, fmt);
        vfprintf(g.log, fmt, ap);
        va_end(ap);
        fputc('\n', g.log);
        fflush(g.log);
    }
}

/* On a terminal the line is redrawn in place; otherwise (batch jobs, logs)
 * a plain line is printed at most every PROGRESS_PLAIN_PERIOD_S seconds. */
#define PROGRESS_PLAIN_PERIOD_S 30.0

void ae_report_progress(const char *fmt, ...)
{
    if (ae_dist_rank() != 0 || g.quiet) return;
    va_list ap;
    /* stdout: under mpirun a rank's stdout is a pseudo-terminal when mpirun's is, stderr a pipe */
    if (isatty(STDOUT_FILENO)) {
        fputs("\r\033[K", stdout);
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fflush(stdout);
        g.progress_shown = 1;
        return;
    }
    double now = ae_dist_time();
    if (g.last_plain > 0 && now - g.last_plain < PROGRESS_PLAIN_PERIOD_S) return;
    if (g.last_plain == 0) { /* the first call starts the clock */
        g.last_plain = now;
        return;
    }
    g.last_plain = now;
    fputs("progress: ", stdout);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* JSON has no NaN: write null. */
static void json_num(FILE *f, const char *key, double v, int last)
{
    if (isfinite(v)) fprintf(f, "\"%s\":%.9g%s", key, v, last ? "" : ",");
    else fprintf(f, "\"%s\":null%s", key, last ? "" : ",");
}

ae_status ae_report_metrics(const ae_metrics_row *r, ae_error *err)
{
    if (ae_dist_rank() != 0 || !g.csv) return AE_OK;
    fprintf(g.csv, "%lld,%lld,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.6g,%.4f,%.3f,%.4f,%.4f\n", (long long)r->epoch,
            (long long)r->step, r->train_loss, r->val_loss, r->test_loss, r->test_mse, r->test_bce, r->test_acc,
            r->test_kl, r->lr, r->samples_per_s, r->allreduce_frac, r->epoch_s,
            r->allreduce_exposed_frac, r->wait_frac);
    fprintf(g.jsonl, "{\"epoch\":%lld,\"step\":%lld,", (long long)r->epoch, (long long)r->step);
    json_num(g.jsonl, "train_loss", r->train_loss, 0);
    json_num(g.jsonl, "val_loss", r->val_loss, 0);
    json_num(g.jsonl, "test_loss", r->test_loss, 0);
    json_num(g.jsonl, "test_mse", r->test_mse, 0);
    json_num(g.jsonl, "test_bce", r->test_bce, 0);
    json_num(g.jsonl, "test_acc", r->test_acc, 0);
    json_num(g.jsonl, "test_kl", r->test_kl, 0);
    json_num(g.jsonl, "lr", r->lr, 0);
    json_num(g.jsonl, "samples_per_s", r->samples_per_s, 0);
    json_num(g.jsonl, "allreduce_frac", r->allreduce_frac, 0);
    json_num(g.jsonl, "epoch_s", r->epoch_s, 0);
    json_num(g.jsonl, "allreduce_exposed_frac", r->allreduce_exposed_frac, 0);
    json_num(g.jsonl, "wait_frac", r->wait_frac, 1);
    fputs("}\n", g.jsonl);
    if (fflush(g.csv) != 0 || fflush(g.jsonl) != 0)
        return ae_error_set(err, AE_ERR_IO, "metrics: write failed: %s", strerror(errno));
    return AE_OK;
}
