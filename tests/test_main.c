/* test_main.c - the one CUnit runner. Each tests/test_<module>.c defines
 * ae_test_register_<module>(); declared weak here so that a partial build
 * (one module and its tests) still links and runs.
 * Usage: test_ae [suite-name ...]  (no names: all suites) */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#define AE_SUITES(X) X(rng) X(data) X(ckpt) X(config) X(optim) X(layers) X(loss) X(model) X(train) X(pca) X(conv) X(lstm) X(regress) X(plot) X(tboard)

#define DECLARE(name) void ae_test_register_##name(void) __attribute__((weak));
AE_SUITES(DECLARE)
#undef DECLARE

int main(int argc, char **argv)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
#define REGISTER(name)                                                              \
    if (ae_test_register_##name) {                                                  \
        int want = argc < 2;                                                        \
        for (int i = 1; i < argc; i++) want |= strcmp(argv[i], #name) == 0;         \
        if (want) ae_test_register_##name();                                        \
    }
    AE_SUITES(REGISTER)
#undef REGISTER
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
