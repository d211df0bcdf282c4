/* tboard.h - TensorBoard event files: scalars and PNG images of a run, written
 * so that `tensorboard --logdir runs` shows them while the run goes on.
 *
 * A file is a sequence of TFRecords, each
 *     uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes |
 *     length bytes of data         | uint32 masked CRC-32C of the data (LE)
 * whose data is one serialized Event (proto/tensorboard.proto, with the field
 * numbers of TensorFlow's event.proto and summary.proto); the first Event
 * carries file_version "brain.Event:2", every later one a Summary of one
 * value. Each call hands its whole record to the kernel (write(2), no stdio
 * buffer), so a reader - a live TensorBoard - sees every event as soon as
 * the call returns.
 *
 * Nothing here is collective and nothing calls MPI: open the writer on one
 * rank only (rank 0). An ae_tb is not thread-safe. */
#ifndef AE_TBOARD_H
#define AE_TBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "ae/status.h"

#define AE_TB_FILE_VERSION "brain.Event:2"   /* the first event of every file */
#define AE_TB_FILE_PREFIX "events.out.tfevents."
#define AE_TB_CRC_MASK_DELTA 0xa282ead8u     /* TFRecord's CRC mask constant */
#define AE_TB_HEADER_BYTES 12                /* length (8) + its masked CRC (4) */
#define AE_TB_FOOTER_BYTES 4                 /* masked CRC of the data */

typedef struct ae_tb ae_tb;

/* Create dir (one level, fine if it exists) and in it a new event file
 * dir/events.out.tfevents.<unix time, 10 digits>.<hostname> (when that name
 * is taken, the first free of <name>.1, <name>.2, ...; an existing file is
 * never reopened) and write the file_version event. On success *out
 * owns the open file (ae_tb_close); on failure *out is NULL and err names the
 * path: AE_ERR_IO (cannot create), AE_ERR_NOMEM, AE_ERR_ARG (NULL dir / out). */
ae_status ae_tb_open(const char *dir, ae_tb **out, ae_error *err);

/* Path of the event file (owned by tb, valid until ae_tb_close). */
const char *ae_tb_path(const ae_tb *tb);

/* Append an Event {wall_time = now, step, Summary {Value {tag, simple_value}}}
 * to the file. Any float is written, NaN and Inf included (TensorBoard shows
 * them). Errors: AE_ERR_ARG (NULL tb, NULL or empty tag: nothing written),
 * AE_ERR_NOMEM, AE_ERR_IO (the write failed: the file may now end in a
 * partial record, which readers stop at, so every later call on tb fails
 * with AE_ERR_IO too). */
ae_status ae_tb_scalar(ae_tb *tb, const char *tag, int64_t step, float value, ae_error *err);

/* Append an Event whose value is an Image {height, width, colorspace, the n
 * PNG bytes} to the file. The bytes must start with the PNG signature and an
 * IHDR chunk whose width and height are the ones given; colorspace follows
 * the IHDR colour type (1 gray, 2 gray + alpha, 3 RGB or palette, 4 RGBA).
 * Errors: AE_ERR_ARG (NULL tb / png, empty tag, not a PNG, size mismatch),
 * AE_ERR_NOMEM, AE_ERR_IO as ae_tb_scalar. */
ae_status ae_tb_image_png(ae_tb *tb, const char *tag, int64_t step, const unsigned char *png, size_t n,
                          int height, int width, ae_error *err);

/* Close the file and free tb. Accepts NULL. */
void ae_tb_close(ae_tb *tb);

/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) of n bytes continuing
 * from crc (0 to start; ae_tb_crc32c(ae_tb_crc32c(0, a, na), b, nb) is the CRC
 * of a followed by b). "123456789" gives 0xe3069283. */
uint32_t ae_tb_crc32c(uint32_t crc, const void *data, size_t n);

/* The masked CRC that TFRecord stores: rotate right by 15, add
 * AE_TB_CRC_MASK_DELTA (mod 2^32). */
uint32_t ae_tb_crc_mask(uint32_t crc);

#endif
