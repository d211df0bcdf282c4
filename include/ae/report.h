/* report.h - what rank 0 tells the user and writes in the run folder:
 * log lines (stdout + log.txt), per-epoch metrics (metrics.csv and the same
 * rows as JSON lines in metrics.jsonl). Calls on other ranks do nothing. */
#ifndef AE_REPORT_H
#define AE_REPORT_H

#include <stdint.h>

#include "ae/status.h"

typedef struct ae_metrics_row {
    int64_t epoch;          /* 1-based epoch just finished */
    int64_t step;           /* global steps done */
    double train_loss;      /* mean over the epoch's samples */
    double val_loss;        /* NAN when there is no validation split */
    double test_loss;       /* NAN when not evaluated this epoch */
    double test_mse, test_bce;
    double test_acc;        /* classifier; NAN otherwise */
    double test_kl;         /* VAE: KL term per sample; NAN otherwise */
    double lr;
    double samples_per_s;   /* training samples / training time of the epoch */
    double allreduce_frac;  /* share of step time in the gradient allreduce's calls (during and after backward),
                               mean over the ranks, as the two below */
    double epoch_s;         /* wall time of the epoch including evaluation */
    double allreduce_exposed_frac; /* share of step time waiting for it after backward (not overlapped) */
    double wait_frac;       /* of that, the part spent waiting for slower ranks (estimate, see ae_train) */
} ae_metrics_row;

/* Rank 0: open (append) run_dir/log.txt, run_dir/metrics.csv (+header when new)
 * and run_dir/metrics.jsonl. quiet: no stdout (the log file still gets everything). */
ae_status ae_report_open(const char *run_dir, int quiet, ae_error *err);
void ae_report_close(void);
/* Rank 0: a line to stdout (unless quiet) and the log. */
void ae_report_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Rank 0: a warning to stderr and the log. */
void ae_report_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Rank 0: a progress line, redrawn in place on a terminal, else printed as a
 * plain line at most every 30 s (batch jobs); nothing when quiet. */
void ae_report_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
ae_status ae_report_metrics(const ae_metrics_row *row, ae_error *err);

#endif
