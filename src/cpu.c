/* cpu.c - detect OpenBLAS kernels weaker than the CPU and re-exec with
 * OPENBLAS_CORETYPE set (see cpu.h). */
#define _GNU_SOURCE
#include "ae/cpu.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#define REEXEC_ENV "AE_OPENBLAS_REEXEC" /* set across the re-exec: what OpenBLAS had chosen */

/* Instruction-set tier of an OpenBLAS core name: 3 AVX-512, 2 AVX2, 1 AVX, 0 older. */
static int core_tier(const char *name)
{
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const avx2[] = {"Haswell", "Zen", "Skylake"};
    static const char *const avx[] = {"Sandybridge", "Bulldozer", "Piledriver", "Steamroller", "Excavator"};
    for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++)
        if (strcasecmp(name, avx512[i]) == 0) return 3;
    for (size_t i = 0; i < sizeof avx2 / sizeof avx2[0]; i++)
        if (strcasecmp(name, avx2[i]) == 0) return 2;
    for (size_t i = 0; i < sizeof avx / sizeof avx[0]; i++)
        if (strcasecmp(name, avx[i]) == 0) return 1;
    return 0;
}

const char *ae_cpu_best_coretype(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    if (__builtin_cpu_supports("avx")) return "Sandybridge";
    return NULL;
}

static char note[384];
static int note_warns; /* note is a warning (the user's core type is weaker than the CPU's) */

static const char *tier_isa(int tier)
{
    static const char *const isa[] = {"SSE", "AVX", "AVX2", "AVX-512"};
    return isa[tier];
}

void ae_cpu_fix_openblas(char **argv)
{
    const char *prev = getenv(REEXEC_ENV);
    if (prev) {
        snprintf(note, sizeof note, "OPENBLAS_CORETYPE=%s set by aetrain: OpenBLAS had chosen %s",
                 getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "?", prev);
        unsetenv(REEXEC_ENV);
        return;
    }
    const char *best = ae_cpu_best_coretype();
    /* AE_CORETYPE_TEST_FROM pretends OpenBLAS chose that core (for the tests) */
    const char *cur = getenv("AE_CORETYPE_TEST_FROM") ? getenv("AE_CORETYPE_TEST_FROM") : openblas_get_corename();
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user) {
        /* the user's choice stays, but a weaker one is said: such variables come from
         * environment modules and container images made for other CPUs */
        if (best && cur && core_tier(cur) < core_tier(best))
            note_warns = snprintf(note, sizeof note,
                                  "OPENBLAS_CORETYPE=%s from the environment: OpenBLAS runs its %s kernels (%s), "
                                  "weaker than this CPU's %s (%s); aetrain keeps the setting: unset it to let "
                                  "aetrain choose",
                                  user, cur, tier_isa(core_tier(cur)), tier_isa(core_tier(best)), best) > 0;
        return;
    }
    if (getenv("AE_NO_CORETYPE_FIX")) return;
    if (!best || !cur || core_tier(cur) >= core_tier(best)) return;
    setenv("OPENBLAS_CORETYPE", best, 1);
    setenv(REEXEC_ENV, cur, 1);
    unsetenv("AE_CORETYPE_TEST_FROM");
    execv("/proc/self/exe", argv);
    /* exec failed: go on with what we have */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(REEXEC_ENV);
}

const char *ae_cpu_note(void) { return note; }

int ae_cpu_note_warns(void) { return note_warns; }

/* ---- the instruction sets this build was compiled for ------------------------------------ */

#if defined(__x86_64__) || defined(__i386__)
/* Compiled for the baseline x86-64 whatever the build's -march, so that it runs on any CPU: the
 * check comes before any code of the build's instruction sets. */
#define BASELINE __attribute__((target("arch=x86-64")))

/* Is `feat` in AE_CPU_TEST_MISSING (names separated by commas or spaces; for the tests)? */
BASELINE static int pretend_missing(const char *feat)
{
    const char *l = getenv("AE_CPU_TEST_MISSING");
    size_t n = strlen(feat);
    while (l && *l) {
        size_t k = strcspn(l, ", ");
        if (k == n && strncmp(l, feat, n) == 0) return 1;
        l += k + (l[k] != '\0');
    }
    return 0;
}

BASELINE const char *ae_cpu_missing_isa(void)
{
    static char miss[160];
    size_t len = 0;
    miss[0] = '\0';
    __builtin_cpu_init();
#define AE_ISA(feat)                                                                                  \
    if ((!__builtin_cpu_supports(feat) || pretend_missing(feat)) && len + sizeof feat + 1 < sizeof miss) { \
        memcpy(miss + len, len ? " " feat : feat, sizeof feat + (len != 0));                          \
        len += sizeof feat - 1 + (len != 0);                                                          \
    }
#ifdef __SSE2__
    AE_ISA("sse2")
#endif
#ifdef __SSE4_2__
    AE_ISA("sse4.2")
#endif
#ifdef __AVX__
    AE_ISA("avx")
#endif
#ifdef __AVX2__
    AE_ISA("avx2")
#endif
#ifdef __FMA__
    AE_ISA("fma")
#endif
#ifdef __BMI2__
    AE_ISA("bmi2")
#endif
#ifdef __AVX512F__
    AE_ISA("avx512f")
#endif
#ifdef __AVX512VL__
    AE_ISA("avx512vl")
#endif
#ifdef __AVX512BW__
    AE_ISA("avx512bw")
#endif
#ifdef __AVX512DQ__
    AE_ISA("avx512dq")
#endif
#ifdef __AVX512VNNI__
    AE_ISA("avx512vnni")
#endif
#undef AE_ISA
    return miss;
}
#else
const char *ae_cpu_missing_isa(void) { return ""; }
#endif

const char *ae_cpu_build_host(void)
{
#ifdef AE_BUILD_CPU
    return AE_BUILD_CPU;
#else
    return "";
#endif
}

int ae_cpu_flush_denormals(int on)
{
#if defined(__SSE2__)
    enum { FTZ = 0x8000, DAZ = 0x0040 };
    unsigned csr = _mm_getcsr();
    int was = (csr & (FTZ | DAZ)) == (FTZ | DAZ);
    _mm_setcsr(on ? csr | FTZ | DAZ : csr & ~(unsigned)(FTZ | DAZ));
    return was;
#else
    (void)on;
    return -1;
#endif
}
