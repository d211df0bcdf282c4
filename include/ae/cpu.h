/* cpu.h - make OpenBLAS run the kernels this CPU deserves.
 *
 * Debian's DYNAMIC_ARCH OpenBLAS picks its kernels from the CPU model; on
 * virtual CPUs whose model is hidden it can fall back to its Prescott (SSE3)
 * kernels on a machine with AVX-512, 5x slower for sgemm. The core type is
 * read from OPENBLAS_CORETYPE when the library loads, before main, so the
 * fix is to set the variable and re-execute the program. */
#ifndef AE_CPU_H
#define AE_CPU_H

/* The OpenBLAS core type the CPU's features support ("SkylakeX" for
 * AVX-512 F/VL/BW/DQ, "Haswell" for AVX2 + FMA, "Sandybridge" for AVX), or
 * NULL when nothing better than the generic kernels applies. */
const char *ae_cpu_best_coretype(void);

/* When OpenBLAS loaded weaker kernels than ae_cpu_best_coretype() and the
 * user did not set OPENBLAS_CORETYPE (a user's choice is never overridden),
 * set it and re-execute argv[0] via /proc/self/exe; returns only when no
 * re-exec is needed or it failed. Call first in main, before MPI_Init. */
void ae_cpu_fix_openblas(char **argv);

/* A note for logs and run.json: "" normally, or what ae_cpu_fix_openblas
 * changed (e.g. "OPENBLAS_CORETYPE=SkylakeX set by aetrain: OpenBLAS had
 * chosen Prescott"), or, when the user's OPENBLAS_CORETYPE made OpenBLAS load
 * kernels for fewer instruction sets than this CPU has (e.g. Haswell's AVX2
 * kernels on an AVX-512 CPU: half the sgemm speed), a warning that says so and
 * how to undo it; the user's setting is kept either way. */
const char *ae_cpu_note(void);

/* Is ae_cpu_note() that warning? */
int ae_cpu_note_warns(void);

/* The instruction sets this build's code was compiled for (-march=native: the
 * build host's) that this CPU lacks, as "avx512f avx512vl ..." ("" when it
 * has them all: the build runs here). Compiled for baseline x86-64, so it may
 * run first on any CPU; the CLI checks it before main. */
const char *ae_cpu_missing_isa(void);

/* The CPU the build was configured on with -march=native ("" otherwise). */
const char *ae_cpu_build_host(void);

/* Flush denormal floats to zero in the calling thread (x86: the FTZ and DAZ
 * bits of MXCSR) when on, or restore gradual underflow when off. An
 * operation on a denormal costs a microcode assist on Intel cores (~100
 * cycles): Adam's moments of weights whose gradient stays 0 (dead units,
 * always-black pixels) decay into denormals after a few hundred steps.
 * Returns the previous state (1 = flushing), or -1 where the CPU has no such
 * switch (nothing changes). */
int ae_cpu_flush_denormals(int on);

#endif
