/* fuzz_config.c - libFuzzer target: config text -> ae_config_parse_string ->
 * ae_config_validate -> ae_config_dump -> parse -> validate again. Checks: a failed
 * parse leaves the spec untouched and says why; a valid spec's dump parses back to an
 * equal spec (ae_config_equal) whose dump is the same text. Parses with configs/ of
 * the source tree (AE_FUZZ_SRC, from the environment or the build) as the current
 * directory, so that `include = mnist_simple32.ini` and friends resolve; inputs that
 * hold both "include" (any case) and a '/' are skipped, so an include cannot reach
 * outside it (no /dev/stdin, /dev/zero). libFuzzer's own files (corpus, artifacts)
 * stay relative to the directory it was started in.
 * Build: tests/fuzz/run.sh. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ae/config.h"

#ifndef AE_FUZZ_SRC
#define AE_FUZZ_SRC "."
#endif
#define MAX_INPUT (64 * 1024)

static ae_spec *a, *b, *defaults;
static char configs[4096];
static int home = -1; /* the directory libFuzzer runs in: its corpus paths may be relative */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *src = getenv("AE_FUZZ_SRC");
    snprintf(configs, sizeof configs, "%s/configs", src && *src ? src : AE_FUZZ_SRC);
    home = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (home < 0 || chdir(configs) != 0 || fchdir(home) != 0) {
        perror(configs);
        abort();
    }
    a = malloc(sizeof *a);
    b = malloc(sizeof *b);
    defaults = malloc(sizeof *defaults);
    if (!a || !b || !defaults) abort();
    ae_config_defaults(defaults);
    return 0;
}

static int mentions_include(const char *text)
{
    for (const char *p = text; *p; p++)
        if (strncasecmp(p, "include", 7) == 0) return 1;
    return 0;
}

static void die(const char *what, const char *text, const ae_error *err)
{
    if (home >= 0 && fchdir(home) != 0) perror("fchdir"); /* the crash file goes where libFuzzer expects */
    fprintf(stderr, "fuzz_config: %s\n--- text ---\n%s\n--- error ---\n%s\n", what, text ? text : "",
            err ? err->msg : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT) return 0;
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    if (memchr(data, '/', size) && mentions_include(text)) {
        free(text);
        return 0;
    }
    ae_error err;
    char *d1 = NULL, *d2 = NULL;
    if (chdir(configs) != 0) abort(); /* only while parsing: includes resolve in configs/ */
    memcpy(a, defaults, sizeof *a);
    if (ae_config_parse_string(text, "fuzz", a, &err) != AE_OK) {
        if (memcmp(a, defaults, sizeof *a) != 0) die("a failed parse changed the spec", text, &err);
        if (!err.msg[0]) die("a failed parse without a message", text, &err);
        goto out;
    }
    if (ae_config_validate(a, &err) != AE_OK) {
        if (!err.msg[0]) die("a failed validation without a message", text, &err);
        goto out;
    }
    if (!(d1 = ae_config_dump(a, &err))) die("dump failed", text, &err);
    memcpy(b, defaults, sizeof *b);
    if (ae_config_parse_string(d1, "dump", b, &err) != AE_OK) die("the dump does not parse", d1, &err);
    if (ae_config_validate(b, &err) != AE_OK) die("the dump does not validate", d1, &err);
    char diff[256] = "";
    if (!ae_config_equal(a, b, diff, sizeof diff)) {
        fprintf(stderr, "fuzz_config: first difference: %s\n", diff);
        die("the dump parses to another spec", text, NULL);
    }
    if (!(d2 = ae_config_dump(b, &err))) die("second dump failed", d1, &err);
    if (strcmp(d1, d2) != 0) {
        fprintf(stderr, "--- dump 1 ---\n%s\n--- dump 2 ---\n%s\n", d1, d2);
        die("the dump of the dump differs", text, NULL);
    }
out:
    if (home >= 0 && fchdir(home) != 0) abort();
    free(d1);
    free(d2);
    free(text);
    return 0;
}
