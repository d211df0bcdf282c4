/* test_config.c - CUnit suite "config": INI parsing, defaults, includes,
 * --set overrides, validation, dump round-trips and every error message
 * (checked for the exact file:line it must name). */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ae/config.h"
#include "testutil.h"

#define PATH_MAX_TEST 1024
#define TEXT_MAX_TEST (2 * PATH_MAX_TEST) /* a path and some words */
#define CHAIN_OK 16                       /* includes nested this deep are allowed */
#define CHAIN_BAD 17                      /* and one more is an error */
#define MANY_LAYERS 65                    /* one more than AE_SPEC_MAX_LAYERS */

/* ---- helpers */

static ae_spec *new_spec(void)
{
    ae_spec *s = calloc(1, sizeof *s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    return s;
}

/* Asserts that msg contains needle, printing both when it does not. */
static void check_msg_at(int line, const char *msg, const char *needle)
{
    int ok = needle == NULL || strstr(msg, needle) != NULL;
    if (!ok) fprintf(stderr, "\n    test_config.c:%d: '%s' not in message '%s'\n", line, needle, msg);
    TU_ASSERT_AT(ok, line, "message contains the expected text");
}
#define CHECK_MSG(msg, needle) check_msg_at(__LINE__, (msg), (needle))

/* Parses text (named "t.ini"); expects failure with code and both needles in the message. */
static void expect_parse_error_at(int line, const char *text, ae_status code, const char *n1, const char *n2)
{
    ae_spec *s = new_spec();
    ae_error err = {0};
    ae_status st = ae_config_parse_string(text, "t.ini", s, &err);
    if (st != code) fprintf(stderr, "\n    test_config.c:%d: status %d, message '%s'\n", line, st, err.msg);
    TU_ASSERT_AT(st == code, line, "status");
    check_msg_at(line, err.msg, n1);
    check_msg_at(line, err.msg, n2);
    free(s);
}
#define EXPECT_PARSE_ERROR(text, n1, n2) expect_parse_error_at(__LINE__, (text), AE_ERR_CONFIG, (n1), (n2))

/* Applies --set a; expects failure naming n1 and n2, and *s unchanged. */
static void expect_set_error_at(int line, ae_spec *s, const char *a, const char *n1, const char *n2)
{
    ae_spec *before = new_spec();
    memcpy(before, s, sizeof *before);
    ae_error err = {0};
    ae_status st = ae_config_set(s, a, &err);
    TU_ASSERT_AT(st == AE_ERR_CONFIG, line, "status");
    check_msg_at(line, err.msg, n1);
    check_msg_at(line, err.msg, n2);
    TU_ASSERT_AT(memcmp(before, s, sizeof *s) == 0, line, "spec unchanged");
    free(before);
}
#define EXPECT_SET_ERROR(s, a, n1, n2) expect_set_error_at(__LINE__, (s), (a), (n1), (n2))

static ae_status parse(const char *text, ae_spec *s, ae_error *err)
{
    return ae_config_parse_string(text, "t.ini", s, err);
}

/* dir/name into path (PATH_MAX_TEST chars); returns path. */
static char *in_dir(char *path, const char *dir, const char *name)
{
    snprintf(path, PATH_MAX_TEST, "%s/%s", dir, name);
    return path;
}

static void write_in(const char *dir, const char *name, const char *text)
{
    char p[PATH_MAX_TEST];
    CU_ASSERT_EQUAL_FATAL(tu_write_file(in_dir(p, dir, name), text, strlen(text)), 0);
}

static void make_dir(const char *dir, const char *name)
{
    char p[PATH_MAX_TEST];
    CU_ASSERT_EQUAL_FATAL(mkdir(in_dir(p, dir, name), 0755), 0);
}

static void layers_match(const ae_layer_spec *a, const ae_layer_spec *b, int n)
{
    for (int i = 0; i < n; i++) {
        CU_ASSERT_STRING_EQUAL(a[i].kind, b[i].kind);
        CU_ASSERT_EQUAL(a[i].nargs, b[i].nargs);
        for (int j = 0; j < a[i].nargs && j < AE_SPEC_MAX_ARGS; j++) {
            CU_ASSERT_STRING_EQUAL(a[i].args[j].key, b[i].args[j].key);
            CU_ASSERT_STRING_EQUAL(a[i].args[j].val, b[i].args[j].val);
        }
    }
}

/* Field-by-field equality of everything a config sets (independent of ae_config_equal). */
static void specs_match(const ae_spec *a, const ae_spec *b)
{
    CU_ASSERT_EQUAL(a->type, b->type);
    CU_ASSERT_EQUAL(a->n_encoder, b->n_encoder);
    CU_ASSERT_EQUAL(a->n_decoder, b->n_decoder);
    CU_ASSERT_EQUAL(a->n_head, b->n_head);
    layers_match(a->encoder, b->encoder, a->n_encoder);
    layers_match(a->decoder, b->decoder, a->n_decoder);
    layers_match(a->head, b->head, a->n_head);
    CU_ASSERT_STRING_EQUAL(a->init, b->init);
    CU_ASSERT_EQUAL(a->loss, b->loss);
    CU_ASSERT_EQUAL(a->l2, b->l2);
    CU_ASSERT_EQUAL(a->l1_activity, b->l1_activity);
    CU_ASSERT_STRING_EQUAL(a->activity_layer, b->activity_layer);
    CU_ASSERT_EQUAL(a->optim.kind, b->optim.kind);
    CU_ASSERT_EQUAL(a->optim.momentum, b->optim.momentum);
    CU_ASSERT_EQUAL(a->optim.nesterov, b->optim.nesterov);
    CU_ASSERT_EQUAL(a->optim.beta1, b->optim.beta1);
    CU_ASSERT_EQUAL(a->optim.beta2, b->optim.beta2);
    CU_ASSERT_EQUAL(a->optim.rho, b->optim.rho);
    CU_ASSERT_EQUAL(a->optim.eps, b->optim.eps);
    CU_ASSERT_EQUAL(a->optim_rho_set, b->optim_rho_set);
    CU_ASSERT_EQUAL(a->optim_eps_set, b->optim_eps_set);
    CU_ASSERT_EQUAL(a->lr, b->lr);
    CU_ASSERT_EQUAL(a->clip_norm, b->clip_norm);
    CU_ASSERT_EQUAL(a->scale_lr, b->scale_lr);
    CU_ASSERT_EQUAL(a->base_batch, b->base_batch);
    CU_ASSERT_EQUAL(a->sched.kind, b->sched.kind);
    CU_ASSERT_EQUAL(a->sched.base_lr, b->sched.base_lr);
    CU_ASSERT_EQUAL(a->sched.warmup_epochs, b->sched.warmup_epochs);
    CU_ASSERT_EQUAL(a->sched.step_epochs, b->sched.step_epochs);
    CU_ASSERT_EQUAL(a->sched.gamma, b->sched.gamma);
    CU_ASSERT_EQUAL(a->sched.min_lr, b->sched.min_lr);
    CU_ASSERT_EQUAL(a->batch, b->batch);
    CU_ASSERT_EQUAL(a->epochs, b->epochs);
    CU_ASSERT_EQUAL(a->max_steps, b->max_steps);
    CU_ASSERT_EQUAL(a->seed, b->seed);
    CU_ASSERT_EQUAL(a->validation, b->validation);
    CU_ASSERT_EQUAL(a->train_limit, b->train_limit);
    CU_ASSERT_EQUAL(a->patience, b->patience);
    CU_ASSERT_EQUAL(a->checkpoint_epochs, b->checkpoint_epochs);
    CU_ASSERT_EQUAL(a->checkpoint_steps, b->checkpoint_steps);
    CU_ASSERT_EQUAL(a->keep, b->keep);
    CU_ASSERT_EQUAL(a->threads, b->threads);
    CU_ASSERT_EQUAL(a->eval_every, b->eval_every);
    CU_ASSERT_EQUAL(a->probe, b->probe);
    CU_ASSERT_EQUAL(a->probe_epochs, b->probe_epochs);
    CU_ASSERT_EQUAL(a->probe_lr, b->probe_lr);
    CU_ASSERT_EQUAL(a->probe_batch, b->probe_batch);
    CU_ASSERT_STRING_EQUAL(a->dataset, b->dataset);
    CU_ASSERT_STRING_EQUAL(a->data_dir, b->data_dir);
    CU_ASSERT_STRING_EQUAL(a->run_name, b->run_name);
    CU_ASSERT_STRING_EQUAL(a->run_dir, b->run_dir);
    CU_ASSERT_TRUE(ae_config_equal(a, b, NULL, 0));
}

static const char *const full_config = "; every key, none at its default\n"
                                       "[model]\n"
                                       "type = autoencoder\n"
                                       "encoder = flatten, dense(128, relu), dense(32, act=relu, name=code)\n"
                                       "decoder = dense(128, relu), dense(784, sigmoid), reshape(1, 28, 28)\n"
                                       "head = dense(64, relu), dense(10, softmax)\n"
                                       "init = he_normal\n"
                                       "\n"
                                       "[loss]\n"
                                       "kind = bce\n"
                                       "l2 = 1e-4\n"
                                       "l1_activity = 0.001\n"
                                       "activity_layer = enc.2\n"
                                       "\n"
                                       "[optim]\n"
                                       "kind = sgd\n"
                                       "lr = 0.05\n"
                                       "momentum = 0.9\n"
                                       "nesterov = yes\n"
                                       "beta1 = 0.8\n"
                                       "beta2 = 0.99\n"
                                       "rho = 0.5\n"
                                       "eps = 1e-5\n"
                                       "clip_norm = 5\n"
                                       "scale_lr = on\n"
                                       "base_batch = 128\n"
                                       "\n"
                                       "[schedule]\n"
                                       "kind = cosine\n"
                                       "warmup_epochs = 0.5\n"
                                       "step_epochs = 3\n"
                                       "gamma = 0.5\n"
                                       "min_lr = 1e-5\n"
                                       "\n"
                                       "[train]\n"
                                       "batch = 512\n"
                                       "epochs = 20\n"
                                       "max_steps = 10000000000\n"
                                       "seed = 18446744073709551615\n"
                                       "validation = 1000\n"
                                       "train_limit = 20000\n"
                                       "patience = 4\n"
                                       "checkpoint_epochs = 2\n"
                                       "checkpoint_steps = 500\n"
                                       "keep = 5\n"
                                       "threads = 2\n"
                                       "eval_every = 3\n"
                                       "probe = false\n"
                                       "probe_epochs = 12\n"
                                       "probe_lr = 0.02\n"
                                       "probe_batch = 64\n"
                                       "\n"
                                       "[data]\n"
                                       "dataset = fashion-mnist\n"
                                       "dir = /tmp/ae data\n"
                                       "\n"
                                       "[run]\n"
                                       "name = exp-1.a_b\n"
                                       "dir = \"out/runs\"\n";

static const char *const minimal_ae = "[model]\nencoder = dense(32, relu)\ndecoder = dense(784, sigmoid)\n";

/* ---- tests */

static void test_config_defaults(void)
{
    ae_spec *s = new_spec();
    ae_config_defaults(s);
    CU_ASSERT_EQUAL(s->type, AE_MODEL_AUTOENCODER);
    CU_ASSERT_EQUAL(s->n_encoder, 0);
    CU_ASSERT_EQUAL(s->n_decoder, 0);
    CU_ASSERT_EQUAL_FATAL(s->n_head, 1);
    CU_ASSERT_STRING_EQUAL(s->head[0].kind, "dense");
    CU_ASSERT_EQUAL(s->head[0].nargs, 2);
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&s->head[0], 0, NULL), "10");
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&s->head[0], 1, NULL), "softmax");
    CU_ASSERT_STRING_EQUAL(s->head[0].origin, "default");
    CU_ASSERT_STRING_EQUAL(s->init, "glorot_uniform");
    CU_ASSERT_EQUAL(s->loss, AE_LOSS_MSE);
    CU_ASSERT_EQUAL(s->l2, 0.0f);
    CU_ASSERT_EQUAL(s->l1_activity, 0.0f);
    CU_ASSERT_STRING_EQUAL(s->activity_layer, "code");
    CU_ASSERT_EQUAL(s->optim.kind, AE_OPT_ADAM);
    CU_ASSERT_EQUAL(s->lr, 1e-3f);
    CU_ASSERT_EQUAL(s->optim.momentum, 0.0f);
    CU_ASSERT_EQUAL(s->optim.nesterov, 0);
    CU_ASSERT_EQUAL(s->optim.beta1, 0.9f);
    CU_ASSERT_EQUAL(s->optim.beta2, 0.999f);
    CU_ASSERT_EQUAL(s->optim.eps, 1e-8f);
    CU_ASSERT_EQUAL(s->optim_rho_set, 0);
    CU_ASSERT_EQUAL(s->optim_eps_set, 0);
    CU_ASSERT_EQUAL(s->clip_norm, 0.0f);
    CU_ASSERT_EQUAL(s->scale_lr, 0);
    CU_ASSERT_EQUAL(s->base_batch, 256);
    CU_ASSERT_EQUAL(s->sched.kind, AE_SCHED_CONSTANT);
    CU_ASSERT_EQUAL(s->sched.base_lr, 1e-3f);
    CU_ASSERT_EQUAL(s->sched.warmup_epochs, 0.0f);
    CU_ASSERT_EQUAL(s->sched.step_epochs, 10.0f);
    CU_ASSERT_EQUAL(s->sched.gamma, 0.1f);
    CU_ASSERT_EQUAL(s->sched.min_lr, 0.0f);
    CU_ASSERT_EQUAL(s->batch, 256);
    CU_ASSERT_EQUAL(s->epochs, 10);
    CU_ASSERT_EQUAL(s->max_steps, 0);
    CU_ASSERT_EQUAL(s->seed, 0);
    CU_ASSERT_EQUAL(s->validation, 5000);
    CU_ASSERT_EQUAL(s->train_limit, 0);
    CU_ASSERT_EQUAL(s->patience, 0);
    CU_ASSERT_EQUAL(s->checkpoint_epochs, 1);
    CU_ASSERT_EQUAL(s->checkpoint_steps, 0);
    CU_ASSERT_EQUAL(s->keep, 3);
    CU_ASSERT_EQUAL(s->threads, 0);
    CU_ASSERT_EQUAL(s->eval_every, 1);
    CU_ASSERT_EQUAL(s->probe, 1);
    CU_ASSERT_EQUAL(s->probe_epochs, 30);
    CU_ASSERT_EQUAL(s->probe_lr, 1e-2f);
    CU_ASSERT_EQUAL(s->probe_batch, 256);
    /* buckets off by default; when on, summed on the communication thread */
    CU_ASSERT_EQUAL(s->bucket_mb, 0.0f);
    CU_ASSERT_EQUAL(s->comm_thread, 1);
    CU_ASSERT_EQUAL(s->bucket_step, 1);
    CU_ASSERT_STRING_EQUAL(s->dataset, "mnist");
    CU_ASSERT_STRING_EQUAL(s->data_dir, "data");
    CU_ASSERT_STRING_EQUAL(s->run_name, "");
    CU_ASSERT_STRING_EQUAL(s->run_dir, "runs");

    /* An empty config parses to the defaults, but does not validate: the encoder is required. */
    ae_spec *p = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL(parse("", p, &err), AE_OK);
    CU_ASSERT_STRING_EQUAL(p->source, "t.ini");
    specs_match(s, p);
    CU_ASSERT_EQUAL(ae_config_validate(p, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "t.ini: [model] encoder: required");
    free(p);
    free(s);
}

static void test_config_full_file(void)
{
    char *dir = tu_tempdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    write_in(dir, "full.ini", full_config);
    char path[PATH_MAX_TEST];
    ae_spec *s = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(ae_config_parse_file(in_dir(path, dir, "full.ini"), s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    CU_ASSERT_STRING_EQUAL(s->source, path);
    CU_ASSERT_EQUAL(s->type, AE_MODEL_AUTOENCODER);
    CU_ASSERT_EQUAL_FATAL(s->n_encoder, 3);
    CU_ASSERT_STRING_EQUAL(s->encoder[0].kind, "flatten");
    CU_ASSERT_EQUAL(s->encoder[0].nargs, 0);
    CU_ASSERT_STRING_EQUAL(s->encoder[2].kind, "dense");
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&s->encoder[2], -1, "name"), "code");
    CU_ASSERT_EQUAL_FATAL(s->n_decoder, 3);
    CU_ASSERT_STRING_EQUAL(s->decoder[2].kind, "reshape");
    CU_ASSERT_EQUAL(s->decoder[2].nargs, 3);
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&s->decoder[2], 2, NULL), "28");
    CU_ASSERT_EQUAL(s->n_head, 2);
    CU_ASSERT_STRING_EQUAL(s->init, "he_normal");
    CU_ASSERT_EQUAL(s->loss, AE_LOSS_BCE);
    CU_ASSERT_EQUAL(s->l2, 1e-4f);
    CU_ASSERT_EQUAL(s->l1_activity, 0.001f);
    CU_ASSERT_STRING_EQUAL(s->activity_layer, "enc.2");
    CU_ASSERT_EQUAL(s->optim.kind, AE_OPT_SGD);
    CU_ASSERT_EQUAL(s->lr, 0.05f);
    CU_ASSERT_EQUAL(s->optim.momentum, 0.9f);
    CU_ASSERT_EQUAL(s->optim.nesterov, 1);
    CU_ASSERT_EQUAL(s->optim.beta1, 0.8f);
    CU_ASSERT_EQUAL(s->optim.beta2, 0.99f);
    CU_ASSERT_EQUAL(s->optim.rho, 0.5f);
    CU_ASSERT_EQUAL(s->optim.eps, 1e-5f);
    CU_ASSERT_EQUAL(s->optim_rho_set, 1);
    CU_ASSERT_EQUAL(s->optim_eps_set, 1);
    CU_ASSERT_EQUAL(s->clip_norm, 5.0f);
    CU_ASSERT_EQUAL(s->scale_lr, 1);
    CU_ASSERT_EQUAL(s->base_batch, 128);
    CU_ASSERT_EQUAL(s->sched.kind, AE_SCHED_COSINE);
    CU_ASSERT_EQUAL(s->sched.base_lr, (float)(0.05f * 512.0 / 128.0));
    CU_ASSERT_EQUAL(s->sched.warmup_epochs, 0.5f);
    CU_ASSERT_EQUAL(s->sched.step_epochs, 3.0f);
    CU_ASSERT_EQUAL(s->sched.gamma, 0.5f);
    CU_ASSERT_EQUAL(s->sched.min_lr, 1e-5f);
    CU_ASSERT_EQUAL(s->batch, 512);
    CU_ASSERT_EQUAL(s->epochs, 20);
    CU_ASSERT_EQUAL(s->max_steps, INT64_C(10000000000));
    CU_ASSERT_EQUAL(s->seed, UINT64_MAX);
    CU_ASSERT_EQUAL(s->validation, 1000);
    CU_ASSERT_EQUAL(s->train_limit, 20000);
    CU_ASSERT_EQUAL(s->patience, 4);
    CU_ASSERT_EQUAL(s->checkpoint_epochs, 2);
    CU_ASSERT_EQUAL(s->checkpoint_steps, 500);
    CU_ASSERT_EQUAL(s->keep, 5);
    CU_ASSERT_EQUAL(s->threads, 2);
    CU_ASSERT_EQUAL(s->eval_every, 3);
    CU_ASSERT_EQUAL(s->probe, 0);
    CU_ASSERT_EQUAL(s->probe_epochs, 12);
    CU_ASSERT_EQUAL(s->probe_lr, 0.02f);
    CU_ASSERT_EQUAL(s->probe_batch, 64);
    CU_ASSERT_STRING_EQUAL(s->dataset, "fashion-mnist");
    CU_ASSERT_STRING_EQUAL(s->data_dir, "/tmp/ae data");
    CU_ASSERT_STRING_EQUAL(s->run_name, "exp-1.a_b");
    CU_ASSERT_STRING_EQUAL(s->run_dir, "out/runs");
    free(s);
    tu_rmtree(dir);
    free(dir);
}

static void test_config_include_override_order(void)
{
    char *dir = tu_tempdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    write_in(dir, "base.ini",
             "[optim]\nkind = sgd\nlr = 0.5\n[train]\nbatch = 64\nepochs = 7\n[model]\nencoder = dense(8)\n");
    write_in(dir, "main.ini",
             "include = base.ini\n" /* top level, first */
             "[optim]\n"
             "lr = 0.1\n" /* overrides base */
             "[train]\n"
             "epochs = 3\n"         /* set before the include below: overridden by it */
             "include = more.ini\n" /* inside [train] */
             "keep = 9\n"           /* still in [train] after the include */
             "[model]\n"
             "encoder = dense(16)\n");
    write_in(dir, "more.ini", "[train]\nepochs = 5\n[optim]\nkind = adam\n");
    char path[PATH_MAX_TEST];
    ae_spec *s = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(ae_config_parse_file(in_dir(path, dir, "main.ini"), s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->lr, 0.1f);
    CU_ASSERT_EQUAL(s->batch, 64);
    CU_ASSERT_EQUAL(s->epochs, 5);
    CU_ASSERT_EQUAL(s->keep, 9);
    CU_ASSERT_EQUAL(s->optim.kind, AE_OPT_ADAM);
    CU_ASSERT_EQUAL_FATAL(s->n_encoder, 1);
    CU_ASSERT_STRING_EQUAL(s->encoder[0].args[0].val, "16");
    char origin[TEXT_MAX_TEST];
    snprintf(origin, sizeof origin, "%s:9", path);
    CU_ASSERT_STRING_EQUAL(s->encoder[0].origin, origin);

    /* A layer list set only in the included file keeps that file's origin. */
    write_in(dir, "main2.ini", "include = base.ini\n");
    CU_ASSERT_EQUAL_FATAL(ae_config_parse_file(in_dir(path, dir, "main2.ini"), s, &err), AE_OK);
    snprintf(origin, sizeof origin, "%s/base.ini:8", dir);
    CU_ASSERT_STRING_EQUAL(s->encoder[0].origin, origin);

    /* The same key twice in one file is an error even with an include in between. */
    write_in(dir, "dup.ini", "[train]\nepochs = 1\ninclude = more.ini\nepochs = 2\n");
    CU_ASSERT_EQUAL(ae_config_parse_file(in_dir(path, dir, "dup.ini"), s, &err), AE_ERR_CONFIG);
    snprintf(origin, sizeof origin, "dup.ini:4: [train] epochs: duplicate key, first set at %s/dup.ini:2",
             dir);
    CHECK_MSG(err.msg, origin);
    free(s);
    tu_rmtree(dir);
    free(dir);
}

static void test_config_include_relative_path(void)
{
    char *dir = tu_tempdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    make_dir(dir, "conf");
    make_dir(dir, "conf/common");
    write_in(dir, "conf/main.ini", "include = common/base.ini\n[train]\nbatch = 8\n");
    write_in(dir, "conf/common/base.ini", "include = ../../shared.ini\n[train]\nepochs = 2\n");
    write_in(dir, "shared.ini", "[optim]\nlr = 0.25\n[train]\nepochs = 1\n");
    char path[PATH_MAX_TEST];
    ae_spec *s = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(ae_config_parse_file(in_dir(path, dir, "conf/main.ini"), s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->batch, 8);
    CU_ASSERT_EQUAL(s->epochs, 2);
    CU_ASSERT_EQUAL(s->lr, 0.25f);

    /* A missing include is an I/O error naming the including file:line and the path tried. */
    write_in(dir, "conf/bad.ini", "[train]\nbatch = 8\ninclude = \"nope.ini\"\n");
    CU_ASSERT_EQUAL(ae_config_parse_file(in_dir(path, dir, "conf/bad.ini"), s, &err), AE_ERR_IO);
    CHECK_MSG(err.msg, "conf/bad.ini:3: include '");
    CHECK_MSG(err.msg, "conf/nope.ini'");
    CU_ASSERT_EQUAL(s->epochs, 2); /* unchanged by the failed parse */

    /* An error inside an included file names that file. */
    write_in(dir, "conf/common/broken.ini", "[train]\n\nbatch = many\n");
    write_in(dir, "conf/uses_broken.ini", "[optim]\ninclude = common/broken.ini\n");
    CU_ASSERT_EQUAL(ae_config_parse_file(in_dir(path, dir, "conf/uses_broken.ini"), s, &err),
                    AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "conf/common/broken.ini:3: [train] batch: 'many' is not an integer");

    /* parse_string resolves includes against the current directory: absolute paths work anywhere. */
    char text[TEXT_MAX_TEST];
    snprintf(text, sizeof text, "include = %s/shared.ini\n", dir);
    CU_ASSERT_EQUAL(ae_config_parse_string(text, "ckpt:config", s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->lr, 0.25f);

    /* A missing top-level file. */
    CU_ASSERT_EQUAL(ae_config_parse_file(in_dir(path, dir, "absent.ini"), s, &err), AE_ERR_IO);
    CHECK_MSG(err.msg, "absent.ini");
    free(s);
    tu_rmtree(dir);
    free(dir);
}

static void test_config_include_cycle(void)
{
    char *dir = tu_tempdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    write_in(dir, "a.ini", "[train]\nbatch = 8\ninclude = b.ini\n");
    write_in(dir, "b.ini", "; b\ninclude = a.ini\n");
    write_in(dir, "self.ini", "include = ./self.ini\n");
    char path[PATH_MAX_TEST];
    ae_spec *s = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_config_parse_file(in_dir(path, dir, "a.ini"), s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "b.ini:2: include cycle: ");
    CHECK_MSG(err.msg, "a.ini -> ");
    CU_ASSERT_EQUAL(ae_config_parse_file(in_dir(path, dir, "self.ini"), s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "self.ini:1: include cycle");

    /* Includes nested 16 deep are fine; 17 deep is an error. */
    char name[64], text[128];
    for (int i = 0; i <= CHAIN_BAD; i++) {
        snprintf(name, sizeof name, "c%d.ini", i);
        snprintf(text, sizeof text, "include = c%d.ini\n", i + 1);
        write_in(dir, name, text);
    }
    snprintf(name, sizeof name, "c%d.ini", CHAIN_BAD + 1);
    write_in(dir, name, "[train]\nepochs = 4\n");
    snprintf(name, sizeof name, "c%d.ini", CHAIN_BAD + 1 - CHAIN_OK);
    CU_ASSERT_EQUAL(ae_config_parse_file(in_dir(path, dir, name), s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->epochs, 4);
    CU_ASSERT_EQUAL(ae_config_parse_file(in_dir(path, dir, "c0.ini"), s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "deeper than 16");
    snprintf(name, sizeof name, "c%d.ini:1", CHAIN_OK);
    CHECK_MSG(err.msg, name);
    free(s);
    tu_rmtree(dir);
    free(dir);
}

static void test_config_set_overrides(void)
{
    ae_spec *s = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(parse(minimal_ae, s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.lr=0.5", &err), AE_OK);
    CU_ASSERT_EQUAL(s->lr, 0.5f);
    CU_ASSERT_EQUAL(s->sched.base_lr, 0.5f);
    CU_ASSERT_EQUAL(ae_config_set(s, " train.epochs = 4 ", &err), AE_OK);
    CU_ASSERT_EQUAL(s->epochs, 4);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.probe=off", &err), AE_OK);
    CU_ASSERT_EQUAL(s->probe, 0);
    CU_ASSERT_EQUAL(ae_config_set(s, "run.name=\"my-run\"", &err), AE_OK);
    CU_ASSERT_STRING_EQUAL(s->run_name, "my-run");
    CU_ASSERT_EQUAL(ae_config_set(s, "run.name=", &err), AE_OK);
    CU_ASSERT_STRING_EQUAL(s->run_name, "");
    CU_ASSERT_EQUAL(ae_config_set(s, "model.encoder=dense(64, act=relu), dense(8)", &err), AE_OK);
    CU_ASSERT_EQUAL_FATAL(s->n_encoder, 2);
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&s->encoder[0], -1, "act"), "relu");
    CU_ASSERT_STRING_EQUAL(s->encoder[1].origin, "--set model.encoder");
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.kind=rmsprop", &err), AE_OK);
    CU_ASSERT_EQUAL(s->optim.rho, 0.9f);
    CU_ASSERT_EQUAL(s->optim.eps, 1e-7f);
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.scale_lr=true", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.batch=1024", &err), AE_OK);
    CU_ASSERT_EQUAL(s->sched.base_lr, 2.0f); /* 0.5 * 1024 / 256 */
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    free(s);
}

static void test_config_set_errors(void)
{
    ae_spec *s = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(parse(minimal_ae, s, &err), AE_OK);
    EXPECT_SET_ERROR(s, "optim.lr", "--set 'optim.lr': expected section.key=value", NULL);
    EXPECT_SET_ERROR(s, "lr=0.1", "expected section.key=value", NULL);
    EXPECT_SET_ERROR(s, "optimizer.lr=0.1", "--set optimizer.lr: unknown section [optimizer]",
                     "allowed: model,");
    EXPECT_SET_ERROR(s, "optin.lr=0.1", "unknown section [optin] (did you mean [optim]?)", NULL);
    EXPECT_SET_ERROR(s, "optim.lrr=0.1", "--set optim.lrr: unknown key 'lrr' in [optim] (did you mean 'lr'?)",
                     NULL);
    EXPECT_SET_ERROR(s, "train.lr=0.1", "unknown key 'lr' in [train] (it belongs in [optim])", NULL);
    EXPECT_SET_ERROR(
        s, "optim.kind=adamw",
        "--set optim.kind: [optim] kind: unknown value 'adamw' (allowed: sgd, rmsprop, adam, adadelta)",
        NULL);
    EXPECT_SET_ERROR(s, "train.batch=0", "--set train.batch: [train] batch: 0 is out of range",
                     "(allowed: an integer, 1 <= batch <= 1000000)");
    EXPECT_SET_ERROR(s, "optim.lr=fast", "'fast' is not a number", NULL);
    EXPECT_SET_ERROR(s, "model.encoder=dense(8", "--set model.encoder: [model] encoder: layer 1: '(' without",
                     NULL);
    EXPECT_SET_ERROR(s, "run.name=a b", "[run] name: 'a b' contains ' '", NULL);
    EXPECT_SET_ERROR(s, "run.name=a\"b", "'\"'", NULL);
    free(s);
}

static void test_config_dump_roundtrip(void)
{
    ae_spec *a = new_spec(), *b = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(parse(full_config, a, &err), AE_OK);
    CU_ASSERT_EQUAL_FATAL(ae_config_validate(a, &err), AE_OK);
    char *text = ae_config_dump(a, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CHECK_MSG(text, "[optim]\n");
    CHECK_MSG(text, "\nlr = 0.05\n");
    CHECK_MSG(text, "\nencoder = flatten,\n    dense(128, relu),\n    dense(32, act=relu, name=code)\n");
    CHECK_MSG(text, "\nseed = 18446744073709551615\n");
    CU_ASSERT_EQUAL_FATAL(ae_config_parse_string(text, "dump", b, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(b, &err), AE_OK);
    specs_match(a, b);
    /* Dumping the re-read spec gives the same text. */
    char *again = ae_config_dump(b, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(again);
    CU_ASSERT_STRING_EQUAL(text, again);
    free(again);
    free(text);

    /* Defaults plus awkward strings, values that need many digits, rho / eps left to the kind. */
    ae_config_defaults(a);
    CU_ASSERT_EQUAL(ae_config_set(a, "model.encoder=dense(3)", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(a, "data.dir=\" my data ; #1 \"", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(a, "data.dataset=set#2", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(a, "optim.lr=0.1234567891", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(a, "loss.l2=1e-38", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(a, "optim.kind=adadelta", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(a, "model.head=", &err), AE_OK);
    CU_ASSERT_STRING_EQUAL(a->data_dir, " my data ; #1 ");
    text = ae_config_dump(a, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CHECK_MSG(text, "\n; rho = 0.95 (not set");
    CHECK_MSG(text, "\nhead = \"\"\n");
    CHECK_MSG(text, "\nname = \"\"\n");
    CU_ASSERT_EQUAL_FATAL(ae_config_parse_string(text, "dump", b, &err), AE_OK);
    specs_match(a, b);
    CU_ASSERT_EQUAL(b->optim_rho_set, 0);
    /* ... so that changing the kind afterwards still moves rho / eps with it. */
    CU_ASSERT_EQUAL(ae_config_set(b, "optim.kind=rmsprop", &err), AE_OK);
    CU_ASSERT_EQUAL(b->optim.rho, 0.9f);
    free(text);

    /* ae_config_equal names the first difference. */
    char diff[64];
    CU_ASSERT_EQUAL(ae_config_set(b, "optim.kind=adadelta", &err), AE_OK);
    CU_ASSERT_TRUE(ae_config_equal(a, b, diff, sizeof diff));
    CU_ASSERT_STRING_EQUAL(diff, "");
    CU_ASSERT_EQUAL(ae_config_set(b, "train.keep=4", &err), AE_OK);
    CU_ASSERT_FALSE(ae_config_equal(a, b, diff, sizeof diff));
    CU_ASSERT_STRING_EQUAL(diff, "train.keep");

    /* A spec broken by hand is refused by the dump. */
    b->batch = 0;
    CU_ASSERT_PTR_NULL(ae_config_dump(b, &err));
    CHECK_MSG(err.msg, "[train] batch: 0 is out of range");
    free(a);
    free(b);
}

static void test_config_error_messages(void)
{
    /* The example from the docs, verbatim. */
    ae_spec *s = new_spec();
    ae_error err = {0};
    const char *text = "[model]\nencoder = dense(2)\n\n[optim]\n; the optimizer\n\nkind = adamw\n";
    CU_ASSERT_EQUAL(ae_config_parse_string(text, "configs/x.ini", s, &err), AE_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(err.msg, "configs/x.ini:7: [optim] kind: unknown value 'adamw' "
                                    "(allowed: sgd, rmsprop, adam, adadelta)");
    free(s);

    EXPECT_PARSE_ERROR("[optim]\nlrate = 1\n", "t.ini:2: unknown key 'lrate' in [optim] (allowed: kind, lr,",
                       NULL);
    EXPECT_PARSE_ERROR("[optim]\n\nbeta = 1\n",
                       "t.ini:3: unknown key 'beta' in [optim] (did you mean 'beta1'?)", NULL);
    EXPECT_PARSE_ERROR("[train]\nbatch = 1\n[foo]\n",
                       "t.ini:3: unknown section [foo] (allowed: model, pretrain, loss, optim, "
                       "schedule, train, data, run)",
                       NULL);
    EXPECT_PARSE_ERROR("[Train]\n", "t.ini:1: unknown section [Train] (did you mean [train]?)", NULL);
    EXPECT_PARSE_ERROR("[train]\nbatch = 1\njust words\n",
                       "t.ini:3: line is neither a section, a key = value, nor a comment", NULL);
    EXPECT_PARSE_ERROR("[train\n", "t.ini:1: line is neither", NULL);
    EXPECT_PARSE_ERROR("[train]\n= 5\n", "t.ini:2: line is neither", NULL);
    EXPECT_PARSE_ERROR("[train]\nbatch = 1\n\n[optim]\nlr = 1\n[train]\nbatch = 2\n",
                       "t.ini:7: [train] batch: duplicate key, first set at t.ini:2", NULL);
    EXPECT_PARSE_ERROR("batch = 1\n", "t.ini:1: key 'batch' outside any section", NULL);
    EXPECT_PARSE_ERROR("[train]\nbatch = 0\n", "t.ini:2: [train] batch: 0 is out of range",
                       "(allowed: an integer, 1 <= batch <= 1000000)");
    EXPECT_PARSE_ERROR("[optim]\nmomentum = 1\n", "t.ini:2: [optim] momentum: 1 is out of range",
                       "(allowed: a finite number, 0 <= momentum < 1)");
    EXPECT_PARSE_ERROR("[optim]\nlr = 0\n", "[optim] lr: 0 is out of range",
                       "(allowed: a finite number, lr > 0)");
    EXPECT_PARSE_ERROR("[schedule]\ngamma = 0\n", "(allowed: a finite number, 0 < gamma <= 1)", NULL);
    EXPECT_PARSE_ERROR("[train]\nkeep = 0\n", "(allowed: an integer, keep >= 1)", NULL);
    EXPECT_PARSE_ERROR("[train]\nprobe = maybe\n", "t.ini:2: [train] probe: 'maybe' is not a boolean",
                       "(allowed: true, false, yes, no, on, off, 1, 0)");
    EXPECT_PARSE_ERROR("[model]\ninit = xavier\n", "[model] init: unknown value 'xavier'",
                       "(allowed: glorot_uniform, glorot_normal, he_uniform, he_normal, torch)");
    EXPECT_PARSE_ERROR("[model]\ntype = gan\n", "(allowed: autoencoder, classifier)", NULL);
    EXPECT_PARSE_ERROR("[schedule]\nkind = linear\n", "(allowed: constant, step, cosine)", NULL);
    EXPECT_PARSE_ERROR("[loss]\nkind = l1\n", "(allowed: mse, bce, ce)", NULL);
    EXPECT_PARSE_ERROR("[run]\nname = .hidden\n", "t.ini:2: [run] name: '.hidden' starts with '.'", NULL);
    EXPECT_PARSE_ERROR("[run]\nname = a/b\n", "[run] name: 'a/b' contains '/'", NULL);
    EXPECT_PARSE_ERROR("[data]\ndataset = \"\"\n", "[data] dataset: must not be empty", NULL);
    EXPECT_PARSE_ERROR("[loss]\nactivity_layer = my layer\n",
                       "[loss] activity_layer: 'my layer' contains ' '", NULL);
    EXPECT_PARSE_ERROR("[data]\ndir = a\"b\n", "t.ini:2: [data] dir: a '\"' inside the value", NULL);
    EXPECT_PARSE_ERROR("[train]\nbatch = 10\ninclude =\n", "t.ini:3: include: empty path", NULL);

    /* 300 characters do not fit data.dir; 101 are too many for a run name (whose field holds 127). */
    char long_text[512] = "[data]\ndir = ";
    size_t n = strlen(long_text);
    memset(long_text + n, 'd', 300);
    long_text[n + 300] = '\0';
    EXPECT_PARSE_ERROR(long_text, "t.ini:2: [data] dir: value is too long (300 characters)", NULL);
    snprintf(long_text, sizeof long_text, "[run]\nname = ");
    n = strlen(long_text);
    memset(long_text + n, 'r', 101);
    long_text[n + 101] = '\0';
    EXPECT_PARSE_ERROR(long_text, "t.ini:2: [run] name: 'rrrr", "...' is too long (101 characters)");
    long_text[n + 100] = '\0';
    s = new_spec();
    CU_ASSERT_EQUAL(parse(long_text, s, &err), AE_OK);
    CU_ASSERT_EQUAL(strlen(s->run_name), 100);
    free(s);

    /* A NUL byte in a file. */
    char *dir = tu_tempdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    char path[PATH_MAX_TEST];
    CU_ASSERT_EQUAL(tu_write_file(in_dir(path, dir, "nul.ini"), "[train]\0x", 9), 0);
    s = new_spec();
    CU_ASSERT_EQUAL(ae_config_parse_file(path, s, &err), AE_ERR_FORMAT);
    CHECK_MSG(err.msg, "NUL byte");
    free(s);
    tu_rmtree(dir);
    free(dir);
}

static void test_config_layer_lists(void)
{
    ae_spec *s = new_spec();
    ae_error err = {0};
    const char *text = "[model]\n"
                       "type = classifier\n"
                       "encoder = flatten,\n"
                       "   conv2d (16,3, stride = 2 ,pad=same) ,  ; a comment inside the list\n"
                       "; dense(999) commented out\n"
                       "\n"
                       "\tdropout(0.5), noise(std=1e-3), x(-1, +2, k.v=a_b), dense()\n"
                       "head=dense(10,softmax)\n"
                       "decoder =\n"
                       "[loss]\nkind = ce\n";
    CU_ASSERT_EQUAL_FATAL(parse(text, s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    CU_ASSERT_EQUAL_FATAL(s->n_encoder, 6);
    CU_ASSERT_EQUAL(s->n_decoder, 0);
    const ae_layer_spec *e = s->encoder;
    CU_ASSERT_STRING_EQUAL(e[0].kind, "flatten");
    CU_ASSERT_EQUAL(e[0].nargs, 0);
    CU_ASSERT_STRING_EQUAL(e[0].origin, "t.ini:3");
    CU_ASSERT_STRING_EQUAL(e[1].kind, "conv2d");
    CU_ASSERT_EQUAL(e[1].nargs, 4);
    CU_ASSERT_STRING_EQUAL(e[1].origin, "t.ini:4");
    CU_ASSERT_STRING_EQUAL(e[1].args[0].key, "");
    CU_ASSERT_STRING_EQUAL(e[1].args[1].val, "3");
    CU_ASSERT_STRING_EQUAL(e[1].args[2].key, "stride");
    CU_ASSERT_STRING_EQUAL(e[1].args[2].val, "2");
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&e[1], 0, NULL), "16");
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&e[1], 1, NULL), "3");
    CU_ASSERT_PTR_NULL(ae_layer_spec_arg(&e[1], 2, NULL)); /* only two positional arguments */
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&e[1], -1, "pad"), "same");
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&e[1], 5, "pad"), "same");
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&e[1], 1, "missing"), "3"); /* falls back to the position */
    CU_ASSERT_PTR_NULL(ae_layer_spec_arg(&e[1], -1, "missing"));
    CU_ASSERT_STRING_EQUAL(e[2].kind, "dropout");
    CU_ASSERT_STRING_EQUAL(e[2].origin, "t.ini:7");
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&e[3], -1, "std"), "1e-3");
    CU_ASSERT_STRING_EQUAL(e[4].args[0].val, "-1");
    CU_ASSERT_STRING_EQUAL(e[4].args[1].val, "+2");
    CU_ASSERT_STRING_EQUAL(ae_layer_spec_arg(&e[4], -1, "k.v"), "a_b");
    CU_ASSERT_STRING_EQUAL(e[5].kind, "dense");
    CU_ASSERT_EQUAL(e[5].nargs, 0);
    CU_ASSERT_EQUAL(s->n_head, 1);
    CU_ASSERT_STRING_EQUAL(s->head[0].origin, "t.ini:8");

    /* Syntax errors, each naming the line of the layer at fault. */
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1,\n  2\n",
                       "t.ini:3: [model] encoder: layer 1: '(' without a "
                       "matching ')' at the end of the list",
                       NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1)),\n",
                       "t.ini:2: [model] encoder: layer 1: ')' without a "
                       "matching '('",
                       NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense 1)\n", "layer 1: expected ',' between layers at '1)'", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense((1))\n", "layer 1: expected an argument at '(1))'", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1)(2)\n", "layer 1: expected ',' between layers", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1 (2))\n",
                       "layer 1: unexpected '(' (parentheses do not nest)", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1),\n\n  , dense(2)\n",
                       "t.ini:4: [model] encoder: layer 2: empty item (a stray ',')", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = , dense(2)\n", "layer 1: empty item", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(2),\n", "layer 2: empty item (a stray ',') at the end",
                       NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1,,2)\n", "layer 1: empty argument", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1,)\n", "layer 1: empty argument", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(act=)\n", "expected a value after '='", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(=relu)\n", "expected an argument", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1), d@nse(2)\n", "layer 2: expected ',' between layers",
                       NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(a=1, 2)\n", "positional argument after a key=value argument",
                       NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(a=1, a=2)\n", "argument 'a' given twice", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = dense(1,2,3,4,5,6,7,8,9)\n",
                       "layer 1: more than 8 arguments at '9)'", "(allowed: kind(arg, key=value, ...)");
    EXPECT_PARSE_ERROR("[model]\nencoder = a_kind_name_of_24_chars__\n",
                       "layer 1: a layer kind is too long (max 23 characters)", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = d(an_argument_name_of_24_chars=1)\n",
                       "argument name is too long (max 23 characters)", NULL);
    EXPECT_PARSE_ERROR("[model]\nencoder = d(v=a_value_that_is_longer_than_47_characters_in_total_x)\n",
                       "a value after '=' is too long (max 47 characters)", NULL);

    char many[MANY_LAYERS * 4 + 32] = "[model]\nencoder = ";
    for (int i = 0; i < MANY_LAYERS; i++) strcat(many, i ? ", r" : "r");
    EXPECT_PARSE_ERROR(many, "layer 65: more than 64 layers", NULL);
    many[strlen(many) - 3] = '\0'; /* 64 layers are fine */
    CU_ASSERT_EQUAL(parse(many, s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->n_encoder, AE_SPEC_MAX_LAYERS);
    free(s);
}

static void test_config_per_kind_defaults(void)
{
    static const struct {
        const char *kind;
        float rho, eps;
    } want[] = {
        {"sgd", 0.0f, 0.0f}, {"rmsprop", 0.9f, 1e-7f}, {"adam", 0.0f, 1e-8f}, {"adadelta", 0.95f, 1e-6f}};
    ae_spec *s = new_spec();
    ae_error err = {0};
    char text[256];
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(text, sizeof text, "%s[optim]\nkind = %s\n", minimal_ae, want[i].kind);
        CU_ASSERT_EQUAL_FATAL(parse(text, s, &err), AE_OK);
        CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
        CU_ASSERT_EQUAL(s->optim.kind, (ae_opt_kind)i);
        CU_ASSERT_EQUAL(s->optim.rho, want[i].rho);
        CU_ASSERT_EQUAL(s->optim.eps, want[i].eps);
    }
    /* Explicit values win over the kind's defaults, also when the kind changes later. */
    snprintf(text, sizeof text, "%s[optim]\nkind = rmsprop\nrho = 0.5\n", minimal_ae);
    CU_ASSERT_EQUAL_FATAL(parse(text, s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->optim.rho, 0.5f);
    CU_ASSERT_EQUAL(s->optim.eps, 1e-7f);
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.kind=adadelta", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->optim.rho, 0.5f);
    CU_ASSERT_EQUAL(s->optim.eps, 1e-6f);
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.eps=1e-3", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.kind=adam", &err), AE_OK);
    CU_ASSERT_EQUAL(s->optim.eps, 1e-3f);
    EXPECT_SET_ERROR(s, "optim.rho=1", "[optim] rho: 1 is out of range", "0 <= rho < 1");
    EXPECT_SET_ERROR(s, "optim.eps=0", "[optim] eps: 0 is out of range", "eps > 0");

    /* Validate is idempotent. */
    ae_spec *t = new_spec();
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    memcpy(t, s, sizeof *t);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    CU_ASSERT_EQUAL(memcmp(t, s, sizeof *t), 0);
    specs_match(t, s);
    free(t);
    free(s);
}

static void test_config_continuation_lines(void)
{
    ae_spec *s = new_spec();
    ae_error err = {0};
    const char *text = "[data]\r\n"
                       "dataset = my\r\n"
                       "   big\r\n"
                       "; a comment between continuation lines\r\n"
                       "\r\n"
                       "\tdata set  \r\n"
                       "dir = x\n"
                       "[train]\n"
                       "   batch = 7\n" /* indented, but nothing to continue after a section line */
                       "epochs =\n"
                       "    12\n";
    CU_ASSERT_EQUAL_FATAL(parse(text, s, &err), AE_OK);
    CU_ASSERT_STRING_EQUAL(s->dataset, "my big data set");
    CU_ASSERT_STRING_EQUAL(s->data_dir, "x");
    CU_ASSERT_EQUAL(s->batch, 7);
    CU_ASSERT_EQUAL(s->epochs, 12);

    /* An indented key continues the previous value: here it makes batch invalid. */
    EXPECT_PARSE_ERROR("[train]\nbatch = 7\n  epochs = 3\n",
                       "t.ini:2: [train] batch: '7 epochs = 3' is not an "
                       "integer",
                       NULL);
    /* A UTF-8 byte-order mark is skipped. */
    CU_ASSERT_EQUAL(parse("\xEF\xBB\xBF[train]\nbatch = 3\n", s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->batch, 3);
    /* No newline at the end of the text. */
    CU_ASSERT_EQUAL(parse("[train]\nbatch = 5", s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->batch, 5);
    free(s);
}

static void test_config_comments_and_quotes(void)
{
    ae_spec *s = new_spec();
    ae_error err = {0};
    const char *text = "# hash comment\n"
                       "; semicolon comment\n"
                       "[data] ; after a section\n"
                       "dataset = dir#1   # the '#' before is part of the value\n"
                       "dir = \"a ; b # c\" ; quoted: kept\n"
                       "[run]\n"
                       "name = \"\"\n"
                       "dir=runs;x\n"
                       "[train]\n"
                       "probe = No\n"
                       "batch = \"32\"\n";
    CU_ASSERT_EQUAL_FATAL(parse(text, s, &err), AE_OK);
    CU_ASSERT_STRING_EQUAL(s->dataset, "dir#1");
    CU_ASSERT_STRING_EQUAL(s->data_dir, "a ; b # c");
    CU_ASSERT_STRING_EQUAL(s->run_name, "");
    CU_ASSERT_STRING_EQUAL(s->run_dir, "runs;x");
    CU_ASSERT_EQUAL(s->probe, 0);
    CU_ASSERT_EQUAL(s->batch, 32);
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "On"};
    static const char *const no[] = {"false", "no", "off", "0", "False", "OFF"};
    char line[64];
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        snprintf(line, sizeof line, "[train]\nprobe = %s\n", no[i]);
        CU_ASSERT_EQUAL(parse(line, s, &err), AE_OK);
        CU_ASSERT_EQUAL(s->probe, 0);
        snprintf(line, sizeof line, "[optim]\nscale_lr = %s\n", yes[i]);
        CU_ASSERT_EQUAL(parse(line, s, &err), AE_OK);
        CU_ASSERT_EQUAL(s->scale_lr, 1);
    }
    free(s);
}

static void test_config_numbers_strict(void)
{
    EXPECT_PARSE_ERROR("[optim]\nlr = nan\n", "t.ini:2: [optim] lr: 'nan' is not a finite number", NULL);
    EXPECT_PARSE_ERROR("[optim]\nlr = inf\n", "'inf' is not a finite number", NULL);
    EXPECT_PARSE_ERROR("[optim]\nlr = -Infinity\n", "'-Infinity' is not a finite number", NULL);
    EXPECT_PARSE_ERROR("[loss]\nl2 = 1e39\n", "[loss] l2: '1e39' overflows a float", NULL);
    EXPECT_PARSE_ERROR("[loss]\nl2 = 1e999\n", "'1e999' overflows", NULL);
    EXPECT_PARSE_ERROR("[optim]\neps = 1e-50\n", "[optim] eps: 1e-50 is out of range",
                       NULL); /* 0 as a float */
    EXPECT_PARSE_ERROR("[optim]\nlr = 0.1x\n", "'0.1x' is not a number", NULL);
    EXPECT_PARSE_ERROR("[optim]\nlr =\n", "[optim] lr: '' is not a number", NULL);
    EXPECT_PARSE_ERROR("[optim]\nlr = 1 2\n", "'1 2' is not a number", NULL);
    EXPECT_PARSE_ERROR("[train]\nepochs = 1.5\n", "[train] epochs: '1.5' is not an integer", NULL);
    EXPECT_PARSE_ERROR("[train]\nepochs = 1e3\n", "'1e3' is not an integer", NULL);
    EXPECT_PARSE_ERROR("[train]\nepochs = 0x10\n", "'0x10' is not an integer", NULL);
    EXPECT_PARSE_ERROR("[train]\nepochs = 12abc\n", "'12abc' is not an integer", NULL);
    EXPECT_PARSE_ERROR("[train]\nepochs = 1000001\n", "[train] epochs: 1000001 is out of range", NULL);
    EXPECT_PARSE_ERROR("[train]\nvalidation = 3000000000\n", "[train] validation: '3000000000' overflows",
                       NULL);
    EXPECT_PARSE_ERROR("[train]\nmax_steps = 99999999999999999999\n", "'99999999999999999999' overflows",
                       NULL);
    EXPECT_PARSE_ERROR("[train]\nmax_steps = -1\n", "[train] max_steps: -1 is out of range", NULL);
    EXPECT_PARSE_ERROR("[train]\nseed = -1\n", "[train] seed: -1 is out of range", NULL);
    EXPECT_PARSE_ERROR("[train]\nseed = 18446744073709551616\n", "'18446744073709551616' overflows", NULL);
    EXPECT_PARSE_ERROR("[train]\nseed = 1.0\n", "'1.0' is not an integer", NULL);

    ae_spec *s = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL(parse("[train]\nmax_steps = 9223372036854775807\nvalidation = +2147483647\n", s, &err),
                    AE_OK);
    CU_ASSERT_EQUAL(s->max_steps, INT64_MAX);
    CU_ASSERT_EQUAL(s->validation, 2147483647);
    CU_ASSERT_EQUAL(parse("[optim]\nlr = 3.4e38\n", s, &err), AE_OK);
    CU_ASSERT_TRUE(isfinite(s->lr));
    CU_ASSERT_EQUAL(parse("[schedule]\ngamma = 1\n", s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->sched.gamma, 1.0f);
    free(s);
}

static void test_config_validate(void)
{
    ae_spec *s = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(parse("[model]\nencoder = dense(3)\n", s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(err.msg,
                           "t.ini: [model] decoder: required for type = autoencoder (a non-empty layer "
                           "list)");
    CU_ASSERT_EQUAL(ae_config_set(s, "model.type=classifier", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[loss] kind: mse is for autoencoders (type = classifier needs ce)");
    CU_ASSERT_EQUAL(ae_config_set(s, "loss.kind=ce", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);

    CU_ASSERT_EQUAL_FATAL(parse(minimal_ae, s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "loss.kind=ce", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[loss] kind: ce needs type = classifier");
    CU_ASSERT_EQUAL(ae_config_set(s, "loss.kind=bce", &err), AE_OK);

    CU_ASSERT_EQUAL(ae_config_set(s, "optim.nesterov=true", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[optim] nesterov: needs kind = sgd and momentum > 0");
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.kind=sgd", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.momentum=0.9", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);

    /* Gradient accumulation: accum or micro_batch, at most batch passes, not with deterministic. */
    CU_ASSERT_EQUAL(ae_config_set(s, "train.accum=4", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.micro_batch=32", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "t.ini: [train] accum: 4 together with [train] micro_batch = 32");
    CU_ASSERT_EQUAL(ae_config_set(s, "train.accum=1", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.deterministic=true", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[train] micro_batch: 32 does not combine with [train] deterministic = true: "
                       "micro_shards already bounds");
    CU_ASSERT_EQUAL(ae_config_set(s, "train.micro_batch=0", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.accum=2", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[train] accum: 2 does not combine with [train] deterministic = true");
    CU_ASSERT_EQUAL(ae_config_set(s, "train.deterministic=false", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.batch=8", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.accum=9", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[train] accum: 9 is more than batch = 8");
    CU_ASSERT_EQUAL(ae_config_set(s, "train.accum=8", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.accum=0", &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[train] accum: 0 is out of range");
    CU_ASSERT_EQUAL(ae_config_set(s, "train.accum=1", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "train.batch=256", &err), AE_OK);

    CU_ASSERT_EQUAL(ae_config_set(s, "schedule.kind=cosine", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "schedule.min_lr=0.01", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[schedule] min_lr: 0.01 is above the learning rate 0.001");
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.scale_lr=yes", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_set(s, "optim.base_batch=8", &err), AE_OK);
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_OK); /* lr 0.001 * 256 / 8 = 0.032 */
    CU_ASSERT_EQUAL(s->sched.base_lr, (float)(0.001f * 256.0 / 8.0));

    /* Values broken by code, not by a file, are caught too. */
    s->epochs = -1;
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "t.ini: [train] epochs: -1 is out of range");
    s->epochs = 1;
    s->optim.kind = (ae_opt_kind)7;
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[optim] kind: invalid value 7");
    s->optim.kind = AE_OPT_SGD;
    s->lr = NAN;
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[optim] lr: nan is not a finite number");
    s->lr = 1e-3f;
    strcpy(s->encoder[0].kind, "de nse");
    CU_ASSERT_EQUAL(ae_config_validate(s, &err), AE_ERR_CONFIG);
    CHECK_MSG(err.msg, "[model] encoder: layer 1: bad kind");
    free(s);
}

static void test_config_error_leaves_spec(void)
{
    ae_spec *s = new_spec(), *before = new_spec();
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(parse(full_config, s, &err), AE_OK);
    memcpy(before, s, sizeof *s);
    CU_ASSERT_EQUAL(parse("[train]\nbatch = 3\nepochs = x\n", s, &err), AE_ERR_CONFIG);
    CU_ASSERT_EQUAL(memcmp(before, s, sizeof *s), 0);
    CU_ASSERT_EQUAL(ae_config_set(s, "model.encoder=dense(1), (", &err), AE_ERR_CONFIG);
    CU_ASSERT_EQUAL(memcmp(before, s, sizeof *s), 0);
    /* A successful parse starts again from the defaults. */
    CU_ASSERT_EQUAL(parse("[train]\nbatch = 3\n", s, &err), AE_OK);
    CU_ASSERT_EQUAL(s->batch, 3);
    CU_ASSERT_EQUAL(s->epochs, 10);
    CU_ASSERT_EQUAL(s->n_encoder, 0);
    free(before);
    free(s);
}

void ae_test_register_config(void)
{
    CU_pSuite suite = CU_add_suite("config", NULL, NULL);
    if (!suite) return;
    CU_add_test(suite, "test_config_defaults", test_config_defaults);
    CU_add_test(suite, "test_config_full_file", test_config_full_file);
    CU_add_test(suite, "test_config_include_override_order", test_config_include_override_order);
    CU_add_test(suite, "test_config_include_relative_path", test_config_include_relative_path);
    CU_add_test(suite, "test_config_include_cycle", test_config_include_cycle);
    CU_add_test(suite, "test_config_set_overrides", test_config_set_overrides);
    CU_add_test(suite, "test_config_set_errors", test_config_set_errors);
    CU_add_test(suite, "test_config_dump_roundtrip", test_config_dump_roundtrip);
    CU_add_test(suite, "test_config_error_messages", test_config_error_messages);
    CU_add_test(suite, "test_config_layer_lists", test_config_layer_lists);
    CU_add_test(suite, "test_config_per_kind_defaults", test_config_per_kind_defaults);
    CU_add_test(suite, "test_config_continuation_lines", test_config_continuation_lines);
    CU_add_test(suite, "test_config_comments_and_quotes", test_config_comments_and_quotes);
    CU_add_test(suite, "test_config_numbers_strict", test_config_numbers_strict);
    CU_add_test(suite, "test_config_validate", test_config_validate);
    CU_add_test(suite, "test_config_error_leaves_spec", test_config_error_leaves_spec);
}
