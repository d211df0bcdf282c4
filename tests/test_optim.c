/* test_optim.c - optimizers, schedules and clipping against numbers worked
 * out by hand in the comments (PyTorch formulas of optim.h), plus one
 * behavioural check: Adam walks down a quadratic bowl to its minimum. */
#include <CUnit/CUnit.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/cpu.h"
#include "ae/optim.h"

#define REL_TOL 1e-6
#define N3 3
/* Long enough for several full blocks of the update loops plus a tail. */
#define LONG_N 203

/* Assert got[i] == want[i] within REL_TOL relative, reporting the caller's line. */
static void check_close_at(const float *got, const double *want, size_t n, const char *what, unsigned line)
{
    for (size_t i = 0; i < n; i++) {
        char msg[160];
        int ok = fabs((double)got[i] - want[i]) <= REL_TOL * fabs(want[i]);
        snprintf(msg, sizeof msg, "%s[%zu] = %.9g, want %.9g", what, i, (double)got[i], want[i]);
        CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, line, msg, __FILE__, "", CU_FALSE);
    }
}
#define CHECK_CLOSE(got, ...)                                                                      \
    do {                                                                                           \
        const double want_[] = {__VA_ARGS__};                                                      \
        check_close_at((got), want_, sizeof want_ / sizeof want_[0], #got, __LINE__);             \
    } while (0)

static void check_lr_at(float got, double want, unsigned line)
{
    check_close_at(&got, &want, 1, "lr", line);
}
#define CHECK_LR(got, want) check_lr_at((got), (want), __LINE__)

/* ---- optimizers ------------------------------------------------------- */

/* Adam's first moment of a weight whose gradient is 0 after step 1 decays as 0.1 * 0.9^k: after 900
 * zero steps it is ~7e-43, a denormal, unless denormals are flushed to zero (train.flush_denormals),
 * when it is exactly 0 from k ~ 800 on. ae_cpu_flush_denormals returns the previous state. */
#define DENORMAL_STEPS 900
static void adam_decayed_moment(float *m_out)
{
    ae_optim_conf c = {.kind = AE_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    float p[N3] = {1.0f, -2.0f, 0.5f}, st[2 * N3] = {0};
    float g1[N3] = {1.0f, -1.0f, 2.0f}, g0[N3] = {0};
    ae_optim_step(&c, 1e-3f, 1, p, g1, st, N3);
    for (int k = 0; k < DENORMAL_STEPS; k++) ae_optim_step(&c, 1e-3f, 2 + k, p, g0, st, N3);
    memcpy(m_out, st, sizeof(float) * N3);
}

static void test_optim_adam_denormals_flushed(void)
{
    int was = ae_cpu_flush_denormals(0);
    if (was < 0) return; /* no such switch on this CPU: nothing to test */
    float m[N3];
    adam_decayed_moment(m);
    for (int i = 0; i < N3; i++) CU_ASSERT(m[i] != 0.0f && fabsf(m[i]) < FLT_MIN); /* gradual underflow */
    CU_ASSERT_EQUAL(ae_cpu_flush_denormals(1), 0);
    adam_decayed_moment(m);
    for (int i = 0; i < N3; i++) CU_ASSERT(m[i] == 0.0f);
    CU_ASSERT_EQUAL(ae_cpu_flush_denormals(was), 1);
}

static void test_optim_state_floats(void)
{
    CU_ASSERT_EQUAL(ae_optim_state_floats(AE_OPT_SGD, 10), 10);
    CU_ASSERT_EQUAL(ae_optim_state_floats(AE_OPT_RMSPROP, 10), 10);
    CU_ASSERT_EQUAL(ae_optim_state_floats(AE_OPT_ADAM, 10), 20);
    CU_ASSERT_EQUAL(ae_optim_state_floats(AE_OPT_ADADELTA, 10), 20);
    CU_ASSERT_EQUAL(ae_optim_state_floats(AE_OPT_ADAM, 0), 0);
}

/* lr 0.1, p = (1, -2, 0.5)
 * step 1, g = (0.5, -1, 2):  p = (1 - 0.05, -2 + 0.1, 0.5 - 0.2)   = (0.95, -1.9, 0.3)
 * step 2, g = (1, 0.5, -2):  p = (0.95 - 0.1, -1.9 - 0.05, 0.3 + 0.2) = (0.85, -1.95, 0.5)
 * Plain SGD runs without state (NULL) and leaves a given state buffer alone. */
static void test_optim_sgd_plain(void)
{
    ae_optim_conf c = {.kind = AE_OPT_SGD};
    float p[N3] = {1.0f, -2.0f, 0.5f};
    float g1[N3] = {0.5f, -1.0f, 2.0f}, g2[N3] = {1.0f, 0.5f, -2.0f};
    ae_optim_step(&c, 0.1f, 1, p, g1, NULL, N3);
    CHECK_CLOSE(p, 0.95, -1.9, 0.3);
    float st[N3] = {7.0f, 7.0f, 7.0f};
    ae_optim_step(&c, 0.1f, 2, p, g2, st, N3);
    CHECK_CLOSE(p, 0.85, -1.95, 0.5);
    CHECK_CLOSE(st, 7.0, 7.0, 7.0);
}

/* mu 0.9, lr 0.1, p = (1, -2, 0.5), v = 0
 * step 1, g = (0.5, -1, 2): v = g = (0.5, -1, 2);  p = (0.95, -1.9, 0.3)
 * step 2, g = (1, 0.5, -2): v = (0.45 + 1, -0.9 + 0.5, 1.8 - 2) = (1.45, -0.4, -0.2)
 *                           p = (0.95 - 0.145, -1.9 + 0.04, 0.3 + 0.02) = (0.805, -1.86, 0.32)
 * step 3, g = 0:            v = 0.9 v = (1.305, -0.36, -0.18)
 *                           p = (0.805 - 0.1305, -1.86 + 0.036, 0.32 + 0.018) = (0.6745, -1.824, 0.338) */
static void test_optim_sgd_momentum(void)
{
    ae_optim_conf c = {.kind = AE_OPT_SGD, .momentum = 0.9f};
    float p[N3] = {1.0f, -2.0f, 0.5f}, v[N3] = {0};
    float g1[N3] = {0.5f, -1.0f, 2.0f}, g2[N3] = {1.0f, 0.5f, -2.0f}, g3[N3] = {0};
    ae_optim_step(&c, 0.1f, 1, p, g1, v, N3);
    CHECK_CLOSE(v, 0.5, -1.0, 2.0);
    CHECK_CLOSE(p, 0.95, -1.9, 0.3);
    ae_optim_step(&c, 0.1f, 2, p, g2, v, N3);
    CHECK_CLOSE(v, 1.45, -0.4, -0.2);
    CHECK_CLOSE(p, 0.805, -1.86, 0.32);
    ae_optim_step(&c, 0.1f, 3, p, g3, v, N3);
    CHECK_CLOSE(v, 1.305, -0.36, -0.18);
    CHECK_CLOSE(p, 0.6745, -1.824, 0.338);
}

/* Nesterov, mu 0.9, lr 0.1, p = (1, -2, 0.5), v = 0; update = g + mu*v (v already new)
 * step 1, g = (0.5, -1, 2): v = (0.5, -1, 2); upd = (0.5 + 0.45, -1 - 0.9, 2 + 1.8) = (0.95, -1.9, 3.8)
 *                           p = (1 - 0.095, -2 + 0.19, 0.5 - 0.38) = (0.905, -1.81, 0.12)
 * step 2, g = (1, 0.5, -2): v = (1.45, -0.4, -0.2); upd = (1 + 1.305, 0.5 - 0.36, -2 - 0.18)
 *                           = (2.305, 0.14, -2.18); p = (0.905 - 0.2305, -1.81 - 0.014, 0.12 + 0.218)
 *                           = (0.6745, -1.824, 0.338)
 * step 3, g = 0:            v = (1.305, -0.36, -0.18); upd = 0.9 v = (1.1745, -0.324, -0.162)
 *                           p = (0.6745 - 0.11745, -1.824 + 0.0324, 0.338 + 0.0162)
 *                             = (0.55705, -1.7916, 0.3542) */
static void test_optim_sgd_nesterov(void)
{
    ae_optim_conf c = {.kind = AE_OPT_SGD, .momentum = 0.9f, .nesterov = 1};
    float p[N3] = {1.0f, -2.0f, 0.5f}, v[N3] = {0};
    float g1[N3] = {0.5f, -1.0f, 2.0f}, g2[N3] = {1.0f, 0.5f, -2.0f}, g3[N3] = {0};
    ae_optim_step(&c, 0.1f, 1, p, g1, v, N3);
    CHECK_CLOSE(v, 0.5, -1.0, 2.0);
    CHECK_CLOSE(p, 0.905, -1.81, 0.12);
    ae_optim_step(&c, 0.1f, 2, p, g2, v, N3);
    CHECK_CLOSE(v, 1.45, -0.4, -0.2);
    CHECK_CLOSE(p, 0.6745, -1.824, 0.338);
    ae_optim_step(&c, 0.1f, 3, p, g3, v, N3);
    CHECK_CLOSE(v, 1.305, -0.36, -0.18);
    CHECK_CLOSE(p, 0.55705, -1.7916, 0.3542);
}

/* RMSProp, rho 0.75, eps 0.05, lr 0.1, p = (1, -2, 0.5), s = 0
 * step 1, g = (1, -1, 2):  s = 0.25 g^2 = (0.25, 0.25, 1); sqrt(s) + eps = (0.55, 0.55, 1.05)
 *     upd = 0.1 g / den = (0.1/0.55, -0.1/0.55, 0.2/1.05) = (0.1818181818, -0.1818181818, 0.1904761905)
 *     p = (0.8181818182, -1.818181818, 0.3095238095)
 * step 2, g = (0.5, -1.375, 0.25):
 *     s = 0.75 s + 0.25 g^2 = (0.1875 + 0.0625, 0.1875 + 0.47265625, 0.75 + 0.015625)
 *       = (0.25, 0.66015625, 0.765625);  sqrt(s) = (0.5, 0.8125, 0.875);  den = (0.55, 0.8625, 0.925)
 *     upd = (0.05/0.55, -0.1375/0.8625, 0.025/0.925) = (0.0909090909, -0.1594202899, 0.0270270270)
 *     p = (0.8181818182 - 0.0909090909, -1.818181818 + 0.1594202899, 0.3095238095 - 0.0270270270)
 *       = (0.7272727273, -1.658761528, 0.2824967825) */
static void test_optim_rmsprop(void)
{
    ae_optim_conf c = {.kind = AE_OPT_RMSPROP, .rho = 0.75f, .eps = 0.05f};
    float p[N3] = {1.0f, -2.0f, 0.5f}, s[N3] = {0};
    float g1[N3] = {1.0f, -1.0f, 2.0f}, g2[N3] = {0.5f, -1.375f, 0.25f};
    ae_optim_step(&c, 0.1f, 1, p, g1, s, N3);
    CHECK_CLOSE(s, 0.25, 0.25, 1.0);
    CHECK_CLOSE(p, 0.8181818182, -1.818181818, 0.3095238095);
    ae_optim_step(&c, 0.1f, 2, p, g2, s, N3);
    CHECK_CLOSE(s, 0.25, 0.66015625, 0.765625);
    CHECK_CLOSE(p, 0.7272727273, -1.658761528, 0.2824967825);
}

/* Adam, b1 0.5, b2 0.75, eps 0.05, lr 0.1, p = (1, -2, 0.5), m = v = 0
 * step 1, g = (1, -1, 2): m = 0.5 g = (0.5, -0.5, 1);  v = 0.25 g^2 = (0.25, 0.25, 1)
 *     bc1 = 1 - 0.5 = 0.5, bc2 = 1 - 0.75 = 0.25: mhat = g, vhat = g^2, sqrt(vhat) = (1, 1, 2)
 *     upd = 0.1 (1/1.05, -1/1.05, 2/2.05) = (0.0952380952, -0.0952380952, 0.0975609756)
 *     p = (0.9047619048, -1.904761905, 0.4024390244)
 * step 2, g = (0.5, 1, -0.5): m = 0.5 m + 0.5 g = (0.25 + 0.25, -0.25 + 0.5, 0.5 - 0.25) = (0.5, 0.25, 0.25)
 *     v = 0.75 v + 0.25 g^2 = (0.1875 + 0.0625, 0.1875 + 0.25, 0.75 + 0.0625) = (0.25, 0.4375, 0.8125)
 *     bc1 = 1 - 0.25 = 0.75: mhat = (0.6666666667, 0.3333333333, 0.3333333333)
 *     bc2 = 1 - 0.5625 = 0.4375: vhat = (0.5714285714, 1, 1.857142857)
 *     sqrt(vhat) + eps = (0.755928946 + 0.05, 1.05, 1.362770288 + 0.05) = (0.805928946, 1.05, 1.412770288)
 *     upd = 0.1 mhat / den = (0.0827202783, 0.0317460317, 0.0235943052)
 *     p = (0.8220416265, -1.936507937, 0.3788447192)
 * step 3, g = 0: m = (0.25, 0.125, 0.125); v = 0.75 v = (0.1875, 0.328125, 0.609375)
 *     bc1 = 1 - 0.125 = 0.875: mhat = (0.2857142857, 0.1428571429, 0.1428571429)
 *     bc2 = 1 - 0.421875 = 0.578125: vhat = (0.3243243243, 0.5675675676, 1.054054054)
 *     den = (0.5694947975 + 0.05, 0.7533708035 + 0.05, 1.026671347 + 0.05)
 *     upd = 0.1 mhat / den = (0.0461205303, 0.0177822174, 0.0132684076)
 *     p = (0.7759210962, -1.954290154, 0.3655763116) */
static void test_optim_adam(void)
{
    ae_optim_conf c = {.kind = AE_OPT_ADAM, .beta1 = 0.5f, .beta2 = 0.75f, .eps = 0.05f};
    float p[N3] = {1.0f, -2.0f, 0.5f}, st[2 * N3] = {0};
    float g1[N3] = {1.0f, -1.0f, 2.0f}, g2[N3] = {0.5f, 1.0f, -0.5f}, g3[N3] = {0};
    ae_optim_step(&c, 0.1f, 1, p, g1, st, N3);
    CHECK_CLOSE(st, 0.5, -0.5, 1.0, 0.25, 0.25, 1.0);
    CHECK_CLOSE(p, 0.9047619048, -1.904761905, 0.4024390244);
    ae_optim_step(&c, 0.1f, 2, p, g2, st, N3);
    CHECK_CLOSE(st, 0.5, 0.25, 0.25, 0.25, 0.4375, 0.8125);
    CHECK_CLOSE(p, 0.8220416265, -1.936507937, 0.3788447192);
    ae_optim_step(&c, 0.1f, 3, p, g3, st, N3);
    CHECK_CLOSE(st, 0.25, 0.125, 0.125, 0.1875, 0.328125, 0.609375);
    CHECK_CLOSE(p, 0.7759210962, -1.954290154, 0.3655763116);
}

/* Adam with PyTorch's defaults (b1 0.9, b2 0.999, eps 1e-8, lr 0.1) and a
 * constant g = (0.5, -1, 2): the bias corrections make mhat = g and vhat =
 * g^2 at every t, so each step moves p by lr * g / (|g| + 1e-8) = 0.1 sign(g)
 * (the eps changes it by < 2e-8 relative):
 *     p = (1, -2, 0.5) - t (0.1, -0.1, 0.1) -> t = 3: (0.7, -1.7, 0.2)
 * raw moments after 3 steps, with the betas as the floats they are (0.9f = 0.89999997616,
 * 0.999f = 0.99900001287; v is 1.3e-5 off its decimal 0.002997001 g^2 value):
 *     m = (1 - 0.89999997616^3) g = 0.27100005794 g = (0.13550002897, -0.27100005794, 0.54200011587)
 *     v = (1 - 0.99900001287^3) g^2 = 0.00299696245 g^2 = (0.00074924061, 0.00299696245, 0.01198784981)
 * (without the corrections step 1 would move p by 0.1 * 0.1/sqrt(0.001) = 0.316 x 0.1). */
static void test_optim_adam_bias_correction(void)
{
    ae_optim_conf c = {.kind = AE_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    float p[N3] = {1.0f, -2.0f, 0.5f}, st[2 * N3] = {0};
    float g[N3] = {0.5f, -1.0f, 2.0f};
    ae_optim_step(&c, 0.1f, 1, p, g, st, N3);
    CHECK_CLOSE(p, 0.9, -1.9, 0.4);
    ae_optim_step(&c, 0.1f, 2, p, g, st, N3);
    CHECK_CLOSE(p, 0.8, -1.8, 0.3);
    ae_optim_step(&c, 0.1f, 3, p, g, st, N3);
    CHECK_CLOSE(p, 0.7, -1.7, 0.2);
    CHECK_CLOSE(st, 0.13550002897, -0.27100005794, 0.54200011587, 0.00074924061, 0.00299696245,
                0.01198784981);
}

/* Adadelta, rho 0.5, eps 0.5, lr 0.5, p = (1, -2, 3), s = u = 0
 * step 1, g = (0.75, -2.4, 1.875): s = 0.5 g^2 = (0.28125, 2.88, 1.7578125)
 *     d = sqrt(0 + 0.5) / sqrt(0.5 g^2 + 0.5) g = g / sqrt(g^2 + 1)
 *       = (0.75/1.25, -2.4/2.6, 1.875/2.125) = (0.6, -0.9230769231, 0.8823529412)
 *     u = 0.5 d^2 = (0.18, 0.4260355030, 0.3892733564)
 *     p = p - 0.5 d = (0.7, -1.538461538, 2.558823529)
 * step 2, g = (0.5, 0.5, -1): s = 0.5 s + 0.5 g^2 = (0.140625 + 0.125, 1.44 + 0.125, 0.87890625 + 0.5)
 *       = (0.265625, 1.565, 1.37890625)
 *     sqrt(u + eps) = (sqrt 0.68, sqrt 0.926035503, sqrt 0.8892733564)
 *                   = (0.8246211251, 0.9623073849, 0.9430129142)
 *     sqrt(s + eps) = (sqrt 0.765625, sqrt 2.065, sqrt 1.87890625) = (0.875, 1.437010786, 1.370732012)
 *     d = (0.8246211251/0.875 * 0.5, 0.9623073849/1.437010786 * 0.5, -0.9430129142/1.370732012)
 *       = (0.4712120715, 0.3348295622, -0.6879630049)
 *     u = 0.5 u + 0.5 d^2 = (0.09 + 0.1110204082, 0.2130177515 + 0.0560554178, 0.1946366782 + 0.2366465481)
 *       = (0.2010204082, 0.2690731693, 0.4312832263)
 *     p = p - 0.5 d = (0.4643939643, -1.705876320, 2.902805032) */
static void test_optim_adadelta(void)
{
    ae_optim_conf c = {.kind = AE_OPT_ADADELTA, .rho = 0.5f, .eps = 0.5f};
    float p[N3] = {1.0f, -2.0f, 3.0f}, st[2 * N3] = {0};
    float g1[N3] = {0.75f, -2.4f, 1.875f}, g2[N3] = {0.5f, 0.5f, -1.0f};
    ae_optim_step(&c, 0.5f, 1, p, g1, st, N3);
    CHECK_CLOSE(st, 0.28125, 2.88, 1.7578125, 0.18, 0.4260355030, 0.3892733564);
    CHECK_CLOSE(p, 0.7, -1.538461538, 2.558823529);
    ae_optim_step(&c, 0.5f, 2, p, g2, st, N3);
    CHECK_CLOSE(st, 0.265625, 1.565, 1.37890625, 0.2010204082, 0.2690731693, 0.4312832263);
    CHECK_CLOSE(p, 0.4643939643, -1.705876320, 2.902805032);
}

/* The update loops split the buffer into blocks and a tail: on a long vector
 * whose element i repeats element i % 3 of the hand-checked case, every
 * element must come out as in that case, whatever its position. */
static void check_long_matches(const ae_optim_conf *c, const float p0[N3], const float g[N3], int steps)
{
    size_t nst = ae_optim_state_floats(c->kind, LONG_N);
    float *p = malloc(LONG_N * sizeof *p), *gl = malloc(LONG_N * sizeof *gl);
    float *st = calloc(nst, sizeof *st);
    float ps[N3] = {p0[0], p0[1], p0[2]}, sts[2 * N3] = {0};
    CU_ASSERT_FATAL(p && gl && st);
    for (size_t i = 0; i < LONG_N; i++) {
        p[i] = p0[i % N3];
        gl[i] = g[i % N3];
    }
    for (int t = 1; t <= steps; t++) {
        ae_optim_step(c, 0.1f, t, p, gl, st, LONG_N);
        ae_optim_step(c, 0.1f, t, ps, g, sts, N3);
    }
    for (size_t i = 0; i < LONG_N; i++) {
        double want = ps[i % N3];
        check_close_at(&p[i], &want, 1, "p", __LINE__);
    }
    free(p);
    free(gl);
    free(st);
}

/* Every optimizer and variant, with the usual hyperparameters. */
static const ae_optim_conf ALL_CONFS[] = {
    {.kind = AE_OPT_SGD},
    {.kind = AE_OPT_SGD, .momentum = 0.9f},
    {.kind = AE_OPT_SGD, .momentum = 0.9f, .nesterov = 1},
    {.kind = AE_OPT_RMSPROP, .rho = 0.9f, .eps = 1e-7f},
    {.kind = AE_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f},
    {.kind = AE_OPT_ADADELTA, .rho = 0.95f, .eps = 1e-6f},
};
#define N_CONFS (sizeof ALL_CONFS / sizeof ALL_CONFS[0])

static void test_optim_blocks_match_tail(void)
{
    const float p0[N3] = {1.0f, -2.0f, 0.5f}, g[N3] = {0.5f, -1.0f, 2.0f};
    for (size_t k = 0; k < N_CONFS; k++) check_long_matches(&ALL_CONFS[k], p0, g, 3);
}

/* The step of disjoint ranges that cover [0, n) (cut at 0, 5, 70, 133 and 203: tails of every
 * length, blocks that start off the 64-float grid) gives the bits of one whole step, state too,
 * over three steps of every optimizer: what the per-bucket optimizer step of the trainer relies on. */
static void test_optim_ranges_match_whole(void)
{
    const size_t cuts[] = {0, 5, 70, 133, LONG_N};
    float pa[LONG_N], pb[LONG_N], g[LONG_N], sa[2 * LONG_N], sb[2 * LONG_N];
    for (size_t k = 0; k < N_CONFS; k++) {
        for (size_t i = 0; i < LONG_N; i++) {
            pa[i] = pb[i] = 0.01f * (float)i - 1.0f;
            sa[i] = sb[i] = sa[LONG_N + i] = sb[LONG_N + i] = 0.0f;
        }
        for (int64_t t = 1; t <= 3; t++) {
            for (size_t i = 0; i < LONG_N; i++) g[i] = sinf(0.37f * (float)(i + 1) * (float)t);
            ae_optim_step(&ALL_CONFS[k], 0.01f, t, pa, g, sa, LONG_N);
            for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++)
                ae_optim_step_range(&ALL_CONFS[k], 0.01f, t, pb, g, sb, LONG_N, cuts[c], cuts[c + 1] - cuts[c]);
        }
        CU_ASSERT_EQUAL(memcmp(pa, pb, sizeof pa), 0);
        CU_ASSERT_EQUAL(memcmp(sa, sb, sizeof sa), 0);
        CU_ASSERT(pa[100] != 0.01f * 100.0f - 1.0f); /* the steps moved the parameters */
    }
}

/* The finite check inside the step: all finite returns 0 and steps everything; an Inf or a NaN
 * (gradient at 100 in the second block of 64; at 200, in the tail; at 0, the first element) returns 1,
 * and the blocks before its block are stepped exactly as by a whole step, its block and those after
 * it not at all, parameters and state; a finite gradient with a huge exponent (3e38) is no Inf. */
static void test_optim_step_checks_finite(void)
{
    const size_t bad_at[] = {100, 200, 0};
    const float bad_val[] = {NAN, INFINITY, -INFINITY};
    float p0[LONG_N], g[LONG_N], pa[LONG_N], pb[LONG_N], sa[2 * LONG_N], sb[2 * LONG_N];
    for (size_t i = 0; i < LONG_N; i++) {
        p0[i] = 0.01f * (float)i - 1.0f;
        g[i] = sinf(0.37f * (float)(i + 1));
    }
    for (size_t k = 0; k < N_CONFS; k++) {
        memcpy(pa, p0, sizeof pa);
        memset(sa, 0, sizeof sa);
        g[7] = 3e38f;
        CU_ASSERT_EQUAL(ae_optim_step(&ALL_CONFS[k], 1e-40f, 1, pa, g, sa, LONG_N), 0);
        g[7] = sinf(0.37f * 8.0f);
        for (size_t b = 0; b < sizeof bad_at / sizeof bad_at[0]; b++) {
            memcpy(pa, p0, sizeof pa);
            memcpy(pb, p0, sizeof pb);
            memset(sa, 0, sizeof sa);
            memset(sb, 0, sizeof sb);
            CU_ASSERT_EQUAL(ae_optim_step(&ALL_CONFS[k], 0.01f, 1, pa, g, sa, LONG_N), 0);
            g[bad_at[b]] = bad_val[b];
            CU_ASSERT_EQUAL(ae_optim_step(&ALL_CONFS[k], 0.01f, 1, pb, g, sb, LONG_N), 1);
            g[bad_at[b]] = sinf(0.37f * (float)(bad_at[b] + 1));
            size_t cut = bad_at[b] / 64 * 64; /* the bad block's start */
            size_t ns = ALL_CONFS[k].kind == AE_OPT_SGD && ALL_CONFS[k].momentum == 0.0f ? 0 : 1;
            CU_ASSERT_EQUAL(memcmp(pa, pb, cut * sizeof(float)), 0);
            CU_ASSERT_EQUAL(memcmp(pb + cut, p0 + cut, (LONG_N - cut) * sizeof(float)), 0);
            CU_ASSERT(cut == 0 || pa[cut - 1] != p0[cut - 1]);
            for (size_t i = cut; ns && i < LONG_N; i++) CU_ASSERT_EQUAL_FATAL(sb[i], 0.0f);
            CU_ASSERT(!ns || cut == 0 || sb[cut - 1] != 0.0f);
        }
    }
}

/* ae_optim_step_range_zero steps [off, off + len) bitwise as ae_optim_step_range does and sets
 * exactly those gradients to 0; at a NaN the blocks before its block (blocks of 64 from off) are
 * stepped and zeroed, its block and the rest keep their parameters and gradients. */
static void test_optim_step_range_zero(void)
{
    const size_t off = 37, len = LONG_N - 37 - 11, bad = off + 64 * 2 + 5;
    float p0[LONG_N], g0[LONG_N], g[LONG_N], pa[LONG_N], pb[LONG_N], sa[2 * LONG_N], sb[2 * LONG_N];
    for (size_t i = 0; i < LONG_N; i++) {
        p0[i] = 0.01f * (float)i - 1.0f;
        g0[i] = sinf(0.37f * (float)(i + 1));
    }
    for (size_t k = 0; k < N_CONFS; k++) {
        memcpy(pa, p0, sizeof pa);
        memcpy(pb, p0, sizeof pb);
        memcpy(g, g0, sizeof g);
        memset(sa, 0, sizeof sa);
        memset(sb, 0, sizeof sb);
        CU_ASSERT_EQUAL(ae_optim_step_range(&ALL_CONFS[k], 0.01f, 3, pa, g0, sa, LONG_N, off, len), 0);
        CU_ASSERT_EQUAL(ae_optim_step_range_zero(&ALL_CONFS[k], 0.01f, 3, pb, g, sb, LONG_N, off, len), 0);
        CU_ASSERT_EQUAL(memcmp(pa, pb, sizeof pa), 0);
        CU_ASSERT_EQUAL(memcmp(sa, sb, sizeof sa), 0);
        CU_ASSERT(pb[off] != p0[off] && pb[off + len - 1] != p0[off + len - 1]);
        CU_ASSERT_EQUAL(memcmp(g, g0, off * sizeof(float)), 0);
        CU_ASSERT_EQUAL(memcmp(g + off + len, g0 + off + len, (LONG_N - off - len) * sizeof(float)), 0);
        for (size_t i = off; i < off + len; i++) CU_ASSERT_EQUAL_FATAL(g[i], 0.0f);

        memcpy(pb, p0, sizeof pb);
        memcpy(g, g0, sizeof g);
        memset(sb, 0, sizeof sb);
        g[bad] = NAN;
        CU_ASSERT_EQUAL(ae_optim_step_range_zero(&ALL_CONFS[k], 0.01f, 3, pb, g, sb, LONG_N, off, len), 1);
        size_t cut = off + (bad - off) / 64 * 64;
        CU_ASSERT_EQUAL(memcmp(pa, pb, cut * sizeof(float)), 0);
        CU_ASSERT_EQUAL(memcmp(pb + cut, p0 + cut, (LONG_N - cut) * sizeof(float)), 0);
        for (size_t i = off; i < cut; i++) CU_ASSERT_EQUAL_FATAL(g[i], 0.0f);
        CU_ASSERT(isnan(g[bad]));
        g[bad] = g0[bad];
        CU_ASSERT_EQUAL(memcmp(g + cut, g0 + cut, (LONG_N - cut) * sizeof(float)), 0);
    }
}

/* Adam on f(x) = sum 0.5 a_i (x_i - c_i)^2 with curvatures 100x apart: from
 * x = 0 it must end near c (|x - c| < 1e-2) with f down by > 1e6. */
static void test_optim_adam_converges_on_quadratic(void)
{
    const double a[N3] = {1.0, 10.0, 0.1}, cmin[N3] = {1.0, -2.0, 3.0};
    const int steps = 3000;
    ae_optim_conf c = {.kind = AE_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    float x[N3] = {0}, g[N3], st[2 * N3] = {0};
    double f0 = 0.0, f = 0.0;
    for (int i = 0; i < N3; i++) f0 += 0.5 * a[i] * cmin[i] * cmin[i];
    for (int t = 1; t <= steps; t++) {
        for (int i = 0; i < N3; i++) g[i] = (float)(a[i] * (x[i] - cmin[i]));
        ae_optim_step(&c, 0.01f, t, x, g, st, N3);
    }
    for (int i = 0; i < N3; i++) {
        CU_ASSERT_DOUBLE_EQUAL(x[i], cmin[i], 1e-2);
        f += 0.5 * a[i] * (x[i] - cmin[i]) * (x[i] - cmin[i]);
    }
    CU_ASSERT(f < f0 * 1e-6);
}

static void test_optim_zero_length(void)
{
    ae_optim_conf c = {.kind = AE_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    float p[1] = {1.0f}, g[1] = {1.0f}, st[2] = {0};
    ae_optim_step(&c, 0.1f, 1, p, g, st, 0);
    CU_ASSERT_EQUAL(p[0], 1.0f);
    CU_ASSERT_EQUAL(st[0], 0.0f);
    CU_ASSERT_EQUAL(ae_optim_grad_norm(g, 0), 0.0);
}

/* ---- norm and clipping ------------------------------------------------ */

static void test_optim_grad_norm(void)
{
    float g[N3] = {3.0f, -4.0f, 0.0f}; /* sqrt(9 + 16) = 5 */
    CU_ASSERT_EQUAL(ae_optim_grad_norm(g, N3), 5.0);
    float h[10]; /* 10 x 0.5^2 = 2.5 -> 1.5811388301 */
    for (int i = 0; i < 10; i++) h[i] = 0.5f;
    CU_ASSERT_DOUBLE_EQUAL(ae_optim_grad_norm(h, 10), 1.5811388301, 1e-9);
}

/* One 1e4 and 2^20 values 0.125: sum of squares 1e8 + 2^20/64 = 1e8 + 16384,
 * norm sqrt(100016384) = 10000.819166448. A float accumulator would lose
 * every 0.015625 next to 1e8 (its spacing there is 8) and return 10000. */
static void test_optim_grad_norm_double_accumulation(void)
{
    const size_t n = ((size_t)1 << 20) + 1;
    float *g = malloc(n * sizeof *g);
    CU_ASSERT_FATAL(g != NULL);
    g[0] = 1e4f;
    for (size_t i = 1; i < n; i++) g[i] = 0.125f;
    CU_ASSERT_DOUBLE_EQUAL(ae_optim_grad_norm(g, n), 10000.819166448, 1e-8);
    free(g);
}

/* g = (3, -4, 0), norm 5, max 1: scale 1/5 -> (0.6, -0.8, 0), new norm 1. */
static void test_optim_clip_scales_to_max_norm(void)
{
    float g[N3] = {3.0f, -4.0f, 0.0f};
    CU_ASSERT_EQUAL(ae_optim_clip(g, N3, 1.0), 5.0);
    CU_ASSERT_DOUBLE_EQUAL(g[0], 0.6, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(g[1], -0.8, 1e-7);
    CU_ASSERT_EQUAL(g[2], 0.0f);
    CU_ASSERT_DOUBLE_EQUAL(ae_optim_grad_norm(g, N3), 1.0, 1e-6);
}

static void test_optim_clip_noop_below_threshold(void)
{
    float g[N3] = {3.0f, -4.0f, 0.0f};
    CU_ASSERT_EQUAL(ae_optim_clip(g, N3, 10.0), 5.0);
    CU_ASSERT(g[0] == 3.0f && g[1] == -4.0f && g[2] == 0.0f);
    CU_ASSERT_EQUAL(ae_optim_clip(g, N3, 5.0), 5.0); /* exactly at the threshold */
    CU_ASSERT(g[0] == 3.0f && g[1] == -4.0f && g[2] == 0.0f);
}

static void test_optim_clip_disabled_when_max_norm_zero(void)
{
    float g[N3] = {3.0f, -4.0f, 0.0f};
    CU_ASSERT_EQUAL(ae_optim_clip(g, N3, 0.0), 5.0);
    CU_ASSERT(g[0] == 3.0f && g[1] == -4.0f && g[2] == 0.0f);
    CU_ASSERT_EQUAL(ae_optim_clip(g, N3, -1.0), 5.0);
    CU_ASSERT(g[0] == 3.0f && g[1] == -4.0f && g[2] == 0.0f);
}

/* A NaN/Inf norm is returned for the caller to report; g is not touched. */
static void test_optim_clip_nonfinite_left_alone(void)
{
    float g[N3] = {3.0f, INFINITY, 0.0f};
    CU_ASSERT(isinf(ae_optim_clip(g, N3, 1.0)));
    CU_ASSERT(g[0] == 3.0f && isinf(g[1]) && g[2] == 0.0f);
    g[1] = NAN;
    CU_ASSERT(isnan(ae_optim_clip(g, N3, 1.0)));
    CU_ASSERT(g[0] == 3.0f && g[2] == 0.0f);
}

/* ---- schedules -------------------------------------------------------- */

static void test_optim_sched_constant(void)
{
    ae_sched_conf s = {.kind = AE_SCHED_CONSTANT, .base_lr = 0.1f};
    CHECK_LR(ae_sched_lr(&s, 0, 10, 1000), 0.1);
    CHECK_LR(ae_sched_lr(&s, 500, 10, 1000), 0.1);
    CHECK_LR(ae_sched_lr(&s, 5000, 10, 1000), 0.1);
}

/* base 0.1, 2 warm-up epochs of 5 steps = 10 steps: lr = 0.1 (step+1)/10
 * step 0 -> 0.01, 4 -> 0.05, 9 -> 0.1; then 0.1 */
static void test_optim_sched_warmup_ramp(void)
{
    ae_sched_conf s = {.kind = AE_SCHED_CONSTANT, .base_lr = 0.1f, .warmup_epochs = 2.0f};
    CHECK_LR(ae_sched_lr(&s, 0, 5, 100), 0.01);
    CHECK_LR(ae_sched_lr(&s, 4, 5, 100), 0.05);
    CHECK_LR(ae_sched_lr(&s, 9, 5, 100), 0.1);
    CHECK_LR(ae_sched_lr(&s, 10, 5, 100), 0.1);
    CHECK_LR(ae_sched_lr(&s, 99, 5, 100), 0.1);
    /* 0.5 epoch of 4 steps = 2 warm-up steps: 0.05, 0.1 */
    s.warmup_epochs = 0.5f;
    CHECK_LR(ae_sched_lr(&s, 0, 4, 100), 0.05);
    CHECK_LR(ae_sched_lr(&s, 1, 4, 100), 0.1);
    CHECK_LR(ae_sched_lr(&s, 2, 4, 100), 0.1);
}

/* base 1, gamma 0.5 every 2 epochs of 10 steps: epoch = step/10,
 * lr = 0.5^floor(epoch/2): step 19 (epoch 1.9) -> 1, 20 (epoch 2) -> 0.5,
 * 39 -> 0.5, 40 -> 0.25, 65 (epoch 6.5) -> 0.125 */
static void test_optim_sched_step_boundaries(void)
{
    ae_sched_conf s = {.kind = AE_SCHED_STEP, .base_lr = 1.0f, .step_epochs = 2.0f, .gamma = 0.5f};
    CHECK_LR(ae_sched_lr(&s, 0, 10, 1000), 1.0);
    CHECK_LR(ae_sched_lr(&s, 19, 10, 1000), 1.0);
    CHECK_LR(ae_sched_lr(&s, 20, 10, 1000), 0.5);
    CHECK_LR(ae_sched_lr(&s, 39, 10, 1000), 0.5);
    CHECK_LR(ae_sched_lr(&s, 40, 10, 1000), 0.25);
    CHECK_LR(ae_sched_lr(&s, 65, 10, 1000), 0.125);
    /* the classic base 0.1, x0.1 every 30 epochs of 100 steps */
    ae_sched_conf r = {.kind = AE_SCHED_STEP, .base_lr = 0.1f, .step_epochs = 30.0f, .gamma = 0.1f};
    CHECK_LR(ae_sched_lr(&r, 2999, 100, 10000), 0.1);
    CHECK_LR(ae_sched_lr(&r, 3000, 100, 10000), 0.01);
    CHECK_LR(ae_sched_lr(&r, 6000, 100, 10000), 0.001);
}

/* step_epochs 0.3 with 10 steps an epoch is a decay every 3 steps, even
 * though 0.3f * 10 = 3.0000001: step 2 -> 1, 3 -> 0.5, 5 -> 0.5, 6 -> 0.25 */
static void test_optim_sched_step_fractional_epochs(void)
{
    ae_sched_conf s = {.kind = AE_SCHED_STEP, .base_lr = 1.0f, .step_epochs = 0.3f, .gamma = 0.5f};
    CHECK_LR(ae_sched_lr(&s, 2, 10, 100), 1.0);
    CHECK_LR(ae_sched_lr(&s, 3, 10, 100), 0.5);
    CHECK_LR(ae_sched_lr(&s, 5, 10, 100), 0.5);
    CHECK_LR(ae_sched_lr(&s, 6, 10, 100), 0.25);
    s.step_epochs = 0.1f; /* every step: 0.5^step */
    CHECK_LR(ae_sched_lr(&s, 1, 10, 100), 0.5);
    CHECK_LR(ae_sched_lr(&s, 3, 10, 100), 0.125);
}

/* Warm-up 1 epoch of 10 steps, then step decay counted in global epochs:
 * step 4 -> 1 x 5/10 = 0.5, step 10 -> 1, 19 -> 1, 20 (epoch 2) -> 0.5 */
static void test_optim_sched_step_after_warmup(void)
{
    ae_sched_conf s = {.kind = AE_SCHED_STEP, .base_lr = 1.0f, .warmup_epochs = 1.0f, .step_epochs = 2.0f,
                       .gamma = 0.5f};
    CHECK_LR(ae_sched_lr(&s, 4, 10, 100), 0.5);
    CHECK_LR(ae_sched_lr(&s, 10, 10, 100), 1.0);
    CHECK_LR(ae_sched_lr(&s, 19, 10, 100), 1.0);
    CHECK_LR(ae_sched_lr(&s, 20, 10, 100), 0.5);
}

/* base 1, min 0.1, 101 steps: lr = 0.1 + 0.45 (1 + cos(pi step/100))
 * step 0 -> 1; 25 -> 0.1 + 0.45 (1 + 0.7071067812) = 0.8681980515;
 * 50 -> 0.55; 75 -> 0.1 + 0.45 (1 - 0.7071067812) = 0.2318019485;
 * 100 (last) -> 0.1; beyond -> 0.1 */
static void test_optim_sched_cosine(void)
{
    ae_sched_conf s = {.kind = AE_SCHED_COSINE, .base_lr = 1.0f, .min_lr = 0.1f};
    CHECK_LR(ae_sched_lr(&s, 0, 10, 101), 1.0);
    CHECK_LR(ae_sched_lr(&s, 25, 10, 101), 0.8681980515);
    CHECK_LR(ae_sched_lr(&s, 50, 10, 101), 0.55);
    CHECK_LR(ae_sched_lr(&s, 75, 10, 101), 0.2318019485);
    CHECK_LR(ae_sched_lr(&s, 100, 10, 101), 0.1);
    CHECK_LR(ae_sched_lr(&s, 101, 10, 101), 0.1);
    CHECK_LR(ae_sched_lr(&s, 5000, 10, 101), 0.1);
    float prev = ae_sched_lr(&s, 0, 10, 101);
    for (int64_t i = 1; i <= 100; i++) {
        float lr = ae_sched_lr(&s, i, 10, 101);
        CU_ASSERT(lr <= prev);
        prev = lr;
    }
}

/* Warm-up 1 epoch of 10 steps, 111 steps: the cosine runs over steps
 * 10..110 (101 steps): 9 -> 1 (end of ramp), 10 -> 1, 60 -> 0.55, 110 -> 0.1 */
static void test_optim_sched_cosine_after_warmup(void)
{
    ae_sched_conf s = {.kind = AE_SCHED_COSINE, .base_lr = 1.0f, .min_lr = 0.1f, .warmup_epochs = 1.0f};
    CHECK_LR(ae_sched_lr(&s, 0, 10, 111), 0.1);
    CHECK_LR(ae_sched_lr(&s, 9, 10, 111), 1.0);
    CHECK_LR(ae_sched_lr(&s, 10, 10, 111), 1.0);
    CHECK_LR(ae_sched_lr(&s, 60, 10, 111), 0.55);
    CHECK_LR(ae_sched_lr(&s, 110, 10, 111), 0.1);
    CHECK_LR(ae_sched_lr(&s, 200, 10, 111), 0.1);
}

/* steps_per_epoch 0 counts as 1; a cosine without steps after warm-up sits
 * at min_lr; step_epochs 0 means no decay. */
static void test_optim_sched_zero_guards(void)
{
    ae_sched_conf w = {.kind = AE_SCHED_CONSTANT, .base_lr = 0.1f, .warmup_epochs = 2.0f};
    CHECK_LR(ae_sched_lr(&w, 0, 0, 0), 0.05);
    CHECK_LR(ae_sched_lr(&w, 1, 0, 0), 0.1);
    CHECK_LR(ae_sched_lr(&w, 7, 0, 0), 0.1);
    ae_sched_conf c = {.kind = AE_SCHED_COSINE, .base_lr = 1.0f, .min_lr = 0.1f};
    CHECK_LR(ae_sched_lr(&c, 0, 0, 0), 0.1);
    CHECK_LR(ae_sched_lr(&c, 0, 10, 1), 0.1);
    CHECK_LR(ae_sched_lr(&c, 3, 10, 0), 0.1);
    ae_sched_conf s = {.kind = AE_SCHED_STEP, .base_lr = 1.0f, .step_epochs = 0.0f, .gamma = 0.5f};
    CHECK_LR(ae_sched_lr(&s, 50, 10, 100), 1.0);
    s.step_epochs = 2.0f; /* steps_per_epoch 0 -> 1: decay every 2 steps */
    CHECK_LR(ae_sched_lr(&s, 4, 0, 100), 0.25);
}

void ae_test_register_optim(void)
{
    CU_pSuite s = CU_add_suite("optim", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_optim_state_floats", test_optim_state_floats);
    CU_add_test(s, "test_optim_adam_denormals_flushed", test_optim_adam_denormals_flushed);
    CU_add_test(s, "test_optim_sgd_plain", test_optim_sgd_plain);
    CU_add_test(s, "test_optim_sgd_momentum", test_optim_sgd_momentum);
    CU_add_test(s, "test_optim_sgd_nesterov", test_optim_sgd_nesterov);
    CU_add_test(s, "test_optim_rmsprop", test_optim_rmsprop);
    CU_add_test(s, "test_optim_adam", test_optim_adam);
    CU_add_test(s, "test_optim_adam_bias_correction", test_optim_adam_bias_correction);
    CU_add_test(s, "test_optim_adadelta", test_optim_adadelta);
    CU_add_test(s, "test_optim_blocks_match_tail", test_optim_blocks_match_tail);
    CU_add_test(s, "test_optim_ranges_match_whole", test_optim_ranges_match_whole);
    CU_add_test(s, "test_optim_step_checks_finite", test_optim_step_checks_finite);
    CU_add_test(s, "test_optim_step_range_zero", test_optim_step_range_zero);
    CU_add_test(s, "test_optim_adam_converges_on_quadratic", test_optim_adam_converges_on_quadratic);
    CU_add_test(s, "test_optim_zero_length", test_optim_zero_length);
    CU_add_test(s, "test_optim_grad_norm", test_optim_grad_norm);
    CU_add_test(s, "test_optim_grad_norm_double_accumulation", test_optim_grad_norm_double_accumulation);
    CU_add_test(s, "test_optim_clip_scales_to_max_norm", test_optim_clip_scales_to_max_norm);
    CU_add_test(s, "test_optim_clip_noop_below_threshold", test_optim_clip_noop_below_threshold);
    CU_add_test(s, "test_optim_clip_disabled_when_max_norm_zero",
                test_optim_clip_disabled_when_max_norm_zero);
    CU_add_test(s, "test_optim_clip_nonfinite_left_alone", test_optim_clip_nonfinite_left_alone);
    CU_add_test(s, "test_optim_sched_constant", test_optim_sched_constant);
    CU_add_test(s, "test_optim_sched_warmup_ramp", test_optim_sched_warmup_ramp);
    CU_add_test(s, "test_optim_sched_step_boundaries", test_optim_sched_step_boundaries);
    CU_add_test(s, "test_optim_sched_step_fractional_epochs", test_optim_sched_step_fractional_epochs);
    CU_add_test(s, "test_optim_sched_step_after_warmup", test_optim_sched_step_after_warmup);
    CU_add_test(s, "test_optim_sched_cosine", test_optim_sched_cosine);
    CU_add_test(s, "test_optim_sched_cosine_after_warmup", test_optim_sched_cosine_after_warmup);
    CU_add_test(s, "test_optim_sched_zero_guards", test_optim_sched_zero_guards);
}
