/* st_writer.h - write a .safetensors file as a stream, tensor data in header order.
 *
 * The header (8-byte little-endian length, compact JSON with "__metadata__": {"format": "pt"}
 * first, padded with spaces to a multiple of 8 bytes, as PyTorch's safetensors writes it) is
 * written at open from the list of tensors; the caller then appends each tensor's bytes in the
 * same order, in chunks of any size, so a multi-GB file never has to be in memory.
 * The file is written as "<path>.tmp" and renamed at finish: an interrupted write never leaves
 * something that looks like a finished file.
 *
 *     StWriter *w;
 *     st_writer_open(&w, path, specs, n, e);
 *     for each tensor: st_writer_write(w, bytes, len, e) ...
 *     st_writer_finish(w, e);          (or st_writer_abort(w) on any error)
 *
 * Returns 0, or -1 with e->msg set; after an error call st_writer_abort.
 */
#ifndef ANEMLL_IO_ST_WRITER_H
#define ANEMLL_IO_ST_WRITER_H

#include <stdint.h>

#include "io/safetensors.h"

typedef struct StWriteSpec {
    const char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} StWriteSpec;

typedef struct StWriter StWriter;

int st_writer_open(StWriter **out, const char *path, const StWriteSpec *tensors, size_t n, Err *e);
int st_writer_write(StWriter *w, const void *data, size_t len, Err *e);
/* Fails if fewer or more bytes were written than the header declares. */
int st_writer_finish(StWriter *w, Err *e);
void st_writer_abort(StWriter *w);

/* Total data bytes of a list of specs (what the index's metadata.total_size holds). */
uint64_t st_specs_nbytes(const StWriteSpec *tensors, size_t n);

/* Appends s to buf as a JSON string literal (quoted, escaped); buf grows (caller frees). */
void json_append_string(char **buf, size_t *len, size_t *cap, const char *s);

#endif
