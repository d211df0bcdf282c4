/* main.c - the aetrain command line: parses arguments, wires the library,
 * turns a status into a message and an exit code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ae/config.h"
#include "ae/cpu.h"
#include "ae/dist.h"
#include "ae/plot.h"
#include "ae/status.h"
#include "ae/train.h"

#ifndef AE_VERSION
#define AE_VERSION "0.0.0"
#endif
#include "ae_gitcommit.h" /* AE_GIT_COMMIT, generated at build time */

#define MAX_SETS 256

static const char usage[] =
    "usage: aetrain <command> [options]\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set section.key=value ...] [--run NAME] [--resume FILE|auto] [--quiet]\n"
    "        train the model of CONFIG; run with mpirun -n P for P data-parallel ranks.\n"
    "        --set      override a config key (repeatable), e.g. --set train.epochs=5\n"
    "        --run      name of the run folder (runs/NAME); the same name continues a run\n"
    "        --resume   continue from a checkpoint file, or 'auto': the newest checkpoint of\n"
    "                   the run folder (starts afresh when there is none)\n"
    "        --quiet    no output on stdout (the run folder's log.txt still gets it)\n"
    "  eval CKPT [--probe]\n"
    "        evaluate a checkpoint on its test set (--probe: also the softmax probe on the code)\n"
    "  encode CKPT --out FILE [--train]\n"
    "        write the codes of the test (or train) split: CSV (label, codes) or .npy (codes, plus\n"
    "        FILE_labels.npy and the encoder weights FILE_<layer>_W.npy / _b.npy)\n"
    "  pca CONFIG [-k 2,30] [--set ...]\n"
    "        PCA baseline on the config's data: test reconstruction MSE for k components\n"
    "  plot RUN_DIR\n"
    "        draw the pictures of a run into RUN_DIR/images/: curves, recon, codes, filters,\n"
    "        manifold, interpolation, denoise, epochs (those that apply; see docs/pictures.md)\n"
    "  plot --scaling FILE.csv --out FILE.png [--log] [--title TEXT]\n"
    "        the scaling picture (samples/s and efficiency against ranks) of the CSV written by\n"
    "        cluster/scaling-study (see docs/cluster.md); --log: log axes (ranks, samples/s); an\n"
    "        optional CSV column style (measured, projected, model) says how each series is drawn\n"
    "  reconstruct CKPT --out FILE.png [-n N]\n"
    "        a grid of N test images (default 20) above their reconstructions by CKPT's model\n"
    "  check CONFIG [--set ...] [-n P]\n"
    "        print layer shapes, parameters, FLOPs per sample and memory per rank for P ranks\n"
    "  --help, --version\n"
    "\n"
    "exit codes: 0 ok, 2 usage, 3 config, 4 I/O, 5 corrupt file, 6 shape, 7 memory, 8 NaN/Inf,\n"
    "            9 MPI, 10 built for another CPU, 75 stopped by a signal after checkpointing (resume with\n"
    "            --resume auto)\n";

static int fail(const ae_error *err, ae_status st)
{
    if (ae_dist_rank() == 0) fprintf(stderr, "aetrain: error: %s\n", err->msg[0] ? err->msg : ae_status_str(st));
    return ae_status_exit_code(st);
}

static int usage_error(const char *fmt, const char *arg)
{
    if (ae_dist_rank() == 0) {
        fprintf(stderr, "aetrain: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\n(see aetrain --help)\n");
    }
    return ae_status_exit_code(AE_ERR_ARG);
}

typedef struct args {
    const char *cmd, *target, *resume, *run, *out, *ks, *scaling, *title;
    int train_split, log_axes;
    const char *sets[MAX_SETS];
    int nsets, quiet, probe, nranks;
} args;

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        int has_next = i + 1 < argc;
        if (strcmp(s, "--set") == 0 && has_next) {
            if (a->nsets == MAX_SETS) return usage_error("too many --set options%s", "");
            a->sets[a->nsets++] = argv[++i];
        } else if (strncmp(s, "--set=", 6) == 0) {
            if (a->nsets == MAX_SETS) return usage_error("too many --set options%s", "");
            a->sets[a->nsets++] = s + 6;
        } else if (strcmp(s, "--resume") == 0 && has_next) {
            a->resume = argv[++i];
        } else if (strcmp(s, "--run") == 0 && has_next) {
            a->run = argv[++i];
        } else if (strcmp(s, "--out") == 0 && has_next) {
            a->out = argv[++i];
        } else if (strcmp(s, "--scaling") == 0 && has_next) {
            a->scaling = argv[++i];
        } else if (strcmp(s, "--log") == 0) {
            a->log_axes = 1;
        } else if (strcmp(s, "--title") == 0 && has_next) {
            a->title = argv[++i];
        } else if (strcmp(s, "-k") == 0 && has_next) {
            a->ks = argv[++i];
        } else if (strcmp(s, "--train") == 0) {
            a->train_split = 1;
        } else if (strcmp(s, "-n") == 0 && has_next) {
            a->nranks = atoi(argv[++i]);
        } else if (strcmp(s, "--quiet") == 0 || strcmp(s, "-q") == 0) {
            a->quiet = 1;
        } else if (strcmp(s, "--probe") == 0) {
            a->probe = 1;
        } else if (s[0] == '-') {
            return usage_error("unknown option or missing value: %s", s);
        } else if (!a->target) {
            a->target = s;
        } else {
            return usage_error("unexpected argument: %s", s);
        }
    }
    if (!a->target && !a->scaling) return usage_error("%s needs a file argument", a->cmd);
    if (a->scaling && (strcmp(a->cmd, "plot") || a->target))
        return usage_error("--scaling FILE.csv goes with plot alone (no RUN_DIR)%s", "");
    if ((a->log_axes || a->title) && !a->scaling) return usage_error("--log and --title go with plot --scaling%s", "");
    return 0;
}

static ae_status load_spec(const args *a, ae_spec *spec, ae_error *err)
{
    ae_config_defaults(spec);
    ae_status st = ae_config_parse_file(a->target, spec, err);
    for (int i = 0; !st && i < a->nsets; i++) st = ae_config_set(spec, a->sets[i], err);
    if (!st && a->run) {
        char assign[300];
        snprintf(assign, sizeof assign, "run.name=%s", a->run);
        st = ae_config_set(spec, assign, err);
    }
    if (!st) st = ae_config_validate(spec, err);
    return st;
}

static void join_args(int argc, char **argv, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < argc && len < cap; i++) {
        int w = snprintf(out + len, cap - len, "%s%s", i ? " " : "", argv[i]);
        if (w > 0) len += (size_t)w;
    }
}

/* Before main, before any code of the build's instruction sets runs: a build made with
 * -march=native on another CPU (a cluster's login node) stops with what is missing, not SIGILL. */
#if defined(__x86_64__) || defined(__i386__)
__attribute__((constructor, target("arch=x86-64"))) static void check_isa(void)
{
    const char *miss = ae_cpu_missing_isa();
    if (!miss[0]) return;
    const char *host = ae_cpu_build_host();
    fprintf(stderr,
            "aetrain: error: this build uses instructions this CPU lacks (%s): it was compiled %s%s%s. Build "
            "aetrain on a node like this one, or for any x86-64 CPU with cmake -DAE_NATIVE=OFF "
            "(docs/cluster.md)\n",
            miss, host[0] ? "with -march=native for the CPU it was built on (" : "for another CPU", host,
            host[0] ? ")" : "");
    _exit(AE_EXIT_CPU);
}
#endif

int main(int argc, char **argv)
{
    ae_cpu_fix_openblas(argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("aetrain %s (commit %s)\n", AE_VERSION, AE_GIT_COMMIT);
        return 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "train") && strcmp(cmd, "eval") && strcmp(cmd, "check") && strcmp(cmd, "pca") &&
        strcmp(cmd, "encode") && strcmp(cmd, "plot") && strcmp(cmd, "reconstruct")) {
        fprintf(stderr, "aetrain: unknown command '%s'\n(see aetrain --help)\n", cmd);
        return 2;
    }
    args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;

    ae_error err;
    ae_error_clear(&err);
    ae_spec *spec = NULL;
    ae_status st = AE_OK;
    if (strcmp(cmd, "check") == 0) {
        /* no MPI needed */
        spec = malloc(sizeof *spec);
        if (!spec) return ae_status_exit_code(AE_ERR_NOMEM);
        st = load_spec(&a, spec, &err);
        if (!st) st = ae_train_check(spec, a.nranks, &err);
        free(spec);
        return st ? fail(&err, st) : 0;
    }

    if (strcmp(cmd, "pca") == 0) {
        int ks[64], nk = 0;
        const char *p = a.ks ? a.ks : "2,30";
        while (*p && nk < 64) {
            char *end;
            long k = strtol(p, &end, 10);
            if (end == p || k < 1) return usage_error("-k takes component counts like 2,30: %s", a.ks);
            ks[nk++] = (int)k;
            p = *end == ',' ? end + 1 : end;
        }
        spec = malloc(sizeof *spec);
        if (!spec) return ae_status_exit_code(AE_ERR_NOMEM);
        st = load_spec(&a, spec, &err);
        if (!st) st = ae_train_pca(spec, ks, nk, &err);
        free(spec);
        return st ? fail(&err, st) : 0;
    }
    if (strcmp(cmd, "encode") == 0) {
        if (!a.out) return usage_error("encode needs --out FILE%s", "");
        st = ae_train_encode(a.target, a.out, a.train_split, &err);
        return st ? fail(&err, st) : 0;
    }
    if (strcmp(cmd, "plot") == 0 && a.scaling) {
        if (!a.out) return usage_error("plot --scaling needs --out FILE.png%s", "");
        st = ae_plot_scaling_png(a.out, a.scaling, a.title, a.log_axes ? AE_PLOT_SCALING_LOG : 0, NULL, &err);
        if (!st) printf("wrote %s\n", a.out);
        return st ? fail(&err, st) : 0;
    }
    if (strcmp(cmd, "plot") == 0) {
        st = ae_plot_run(a.target, &err);
        return st ? fail(&err, st) : 0;
    }
    if (strcmp(cmd, "reconstruct") == 0) {
        if (!a.out) return usage_error("reconstruct needs --out FILE.png%s", "");
        st = ae_plot_reconstruct(a.target, a.out, a.nranks > 0 ? a.nranks : 20, &err);
        return st ? fail(&err, st) : 0;
    }
    /* train reads its config before MPI starts, so that MPI is asked for MPI_THREAD_MULTIPLE only
     * when a communication thread will be wanted; a config error is reported after init as before */
    if (strcmp(cmd, "train") == 0) {
        spec = malloc(sizeof *spec);
        if (!spec) st = ae_error_set(&err, AE_ERR_NOMEM, "out of memory");
        if (!st) st = load_spec(&a, spec, &err);
    }
    int multiple = spec && !st && spec->comm_thread && spec->bucket_mb > 0 && !spec->deterministic;
    ae_error init_err;
    ae_error_clear(&init_err);
    ae_status ist = ae_dist_init(&argc, &argv, multiple, &init_err);
    if (ist) {
        free(spec);
        return fail(&init_err, ist);
    }
    if (strcmp(cmd, "train") == 0) {
        if (!st) {
            char command[4096];
            join_args(argc, argv, command, sizeof command);
            ae_train_opts opts = {a.target, a.resume, a.quiet, command};
            ae_train_result res;
            st = ae_train_run(spec, &opts, &res, &err);
        }
        free(spec);
    } else {
        st = ae_train_eval_ckpt(a.target, a.probe, a.quiet, &err);
    }
    if (st == AE_ERR_MPI) {
        /* a broken collective may leave other ranks waiting: end the job */
        fail(&err, st);
        ae_dist_abort(ae_status_exit_code(st));
    }
    rc = st ? fail(&err, st) : 0;
    ae_dist_finalize();
    return rc;
}
