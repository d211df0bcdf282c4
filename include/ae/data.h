/* data.h - IDX files (raw or gzip), datasets, validation split, batches.
 *
 * A dataset keeps its images once, as uint8 (or as float features for
 * derived data such as codes), and converts a batch to float on demand. */
#ifndef AE_DATA_H
#define AE_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "ae/status.h"

#define AE_IDX_MAX_DIMS 4

/* One IDX file as read: element type uint8 only (MNIST family). */
typedef struct ae_idx {
    int ndims;
    uint32_t dims[AE_IDX_MAX_DIMS];
    size_t count; /* product of dims */
    uint8_t *data; /* count bytes, owned */
} ae_idx;

/* Read an IDX file of unsigned bytes (type code 0x08), raw or gzip (detected
 * by content, not by name). Checks the magic, dimension count (1..4), that
 * no dimension is 0, and that the file holds exactly the bytes the header
 * promises (truncated or trailing bytes are errors). Errors name the path. */
ae_status ae_data_read_idx(const char *path, ae_idx *out, ae_error *err);
void ae_data_idx_free(ae_idx *idx); /* accepts NULL */

typedef struct ae_dataset {
    size_t n;        /* samples */
    int c, h, w;     /* per-sample shape (channels, height, width) */
    size_t d;        /* c*h*w */
    uint8_t *x8;     /* n*d bytes (pixel / 255 is the float value), or NULL */
    float *xf;       /* n*d floats, or NULL; exactly one of x8/xf is set */
    uint8_t *y;      /* n labels, or NULL when unlabelled */
    int nclass;      /* 1 + max label (0 when unlabelled) */
    char name[64];   /* e.g. "mnist/train" */
    int borrowed;    /* x8/xf/y point into a shared segment: ae_data_free leaves them alone */
} ae_dataset;

/* Load an images file (IDX3, n x h x w) and, when labels_path != NULL, a
 * labels file (IDX1, n). Count mismatch, a label >= 256 classes etc. are
 * errors naming both files. */
ae_status ae_data_load_pair(const char *images_path, const char *labels_path, ae_dataset *out,
                            ae_error *err);

/* Resolve a dataset name to its four files and load train or test split.
 *   name = "mnist"          -> <data_dir>/mnist/
 *   name = "fashion-mnist"  -> <data_dir>/fashion-mnist/, else
 *                              /usr/share/datasets/fashion-mnist/
 *   anything else           -> taken as a directory path
 * In that directory the files are {train,t10k}-{images-idx3,labels-idx1}-ubyte
 * with or without ".gz" (the first that exists). */
ae_status ae_data_load_named(const char *name, const char *data_dir, int test_split, ae_dataset *out,
                             ae_error *err);

/* Split src into train (src minus nval samples) and val (nval samples); the
 * validation samples are chosen by a permutation keyed by (seed,
 * AE_RNG_SPLIT); both keep their samples in src order. Copies the data.
 * nval = 0 gives an empty val. */
ae_status ae_data_split(const ae_dataset *src, size_t nval, uint64_t seed, ae_dataset *train,
                        ae_dataset *val, ae_error *err);

/* Keep only the first n samples (n <= ds->n), in place. */
void ae_data_truncate(ae_dataset *ds, size_t n);

/* Make a float dataset of n samples of dimension d, zeroed, with labels
 * copied from labels (may be NULL). */
ae_status ae_data_create_float(size_t n, size_t d, const uint8_t *labels, int nclass,
                               ae_dataset *out, ae_error *err);

/* A borrowed float dataset over n x d floats at xf and n labels at y (may be NULL), which the
 * caller keeps alive: ae_data_free leaves them alone. */
void ae_data_view_float(size_t n, size_t d, float *xf, uint8_t *y, int nclass, ae_dataset *out);

/* Gather rows idx[0..n) into out (n x d floats, [0,1] for uint8 data). */
void ae_data_gather_x(const ae_dataset *ds, const uint32_t *idx, size_t n, float *out);
/* The same, and meanwhile the rows next[0..n_next) that the next gather will read are requested
 * into the outer caches (a hint: the result is that of ae_data_gather_x; next may be NULL). */
void ae_data_gather_x_next(const ae_dataset *ds, const uint32_t *idx, size_t n, const uint32_t *next,
                           size_t n_next, float *out);
/* Gather labels idx[0..n) into out. */
void ae_data_gather_y(const ae_dataset *ds, const uint32_t *idx, size_t n, uint8_t *out);
/* Same as gather for the contiguous range [start, start+n). */
void ae_data_range_x(const ae_dataset *ds, size_t start, size_t n, float *out);

void ae_data_free(ae_dataset *ds); /* accepts NULL; leaves *ds zeroed */

/* ------------------------------------------------ one copy per node -- */

/* Where shared datasets live: memory that every process of a node sees (an
 * MPI-3 shared window in the trainer), provided by the caller so that this
 * module needs no MPI. Both calls are collective over the processes sharing
 * the segment. */
typedef struct ae_data_shm_ops {
    /* The leader passes *bytes > 0, the others 0; every process gets the
     * leader's segment in *ptr, its size in *bytes and a handle for release.
     * Returns only after the leader's segment exists. AE_OK with *ptr NULL:
     * the node has no room for it (the same answer on every process; the
     * reason in why, why_cap bytes). */
    ae_status (*alloc)(size_t *bytes, void **ptr, void **handle, char *why, size_t why_cap, ae_error *err);
    /* A barrier: returns once the leader has filled the segment. */
    ae_status (*sync)(void *handle, ae_error *err);
    /* Collective; accepts NULL. */
    void (*release)(void *handle);
} ae_data_shm_ops;

/* Bytes a segment needs to hold sets[0..n): a header (shapes, names) and
 * every array, each aligned. */
size_t ae_data_pack_size(const ae_dataset *sets, int n);
/* Copy sets[0..n) into seg (ae_data_pack_size bytes), free their private
 * arrays and make them views of seg (borrowed). */
void ae_data_pack(ae_dataset *sets, int n, void *seg);
/* Make sets[0..n) views of a segment written by ae_data_pack. AE_ERR_FORMAT
 * when the segment does not hold n datasets that fit in bytes. */
ae_status ae_data_unpack(const void *seg, size_t bytes, ae_dataset *sets, int n, ae_error *err);

/* Move sets[0..n) into one segment of ops: on the leader (leader != 0) the
 * loaded datasets are packed into it; the others pass empty datasets and
 * get views of the leader's. Collective over the processes of ops. *handle
 * (release with ops->release after ae_data_free of every set) is NULL on
 * error; ae_data_free the sets then as always. When the node has no room
 * for the segment: AE_OK, *handle NULL, the sets as they were (the leader's
 * its own, the others empty) and the reason in why. */
ae_status ae_data_share(ae_dataset *sets, int n, int leader, const ae_data_shm_ops *ops, void **handle,
                        char *why, size_t why_cap, ae_error *err);

#endif
