/* safetensors.h - read .safetensors files through mmap, one tensor (or a row range) at a time.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *
 *     u64 little-endian  N = header length in bytes
 *     N bytes            JSON object: "<tensor name>": {"dtype": "BF16", "shape": [r, c],
 *                        "data_offsets": [begin, end]}, plus an optional "__metadata__"
 *                        object of strings; often padded with spaces to a multiple of 8
 *     data section       tensor bytes, little-endian, row-major; offsets are relative to
 *                        the start of this section
 *
 * st_open validates the whole header before anything is read: header length (at most
 * ST_MAX_HEADER bytes, so a hostile file cannot make us allocate without bound), JSON syntax,
 * each entry's fields and types, dtype, shape (non-negative, at most ST_MAX_DIMS dims, no
 * overflow), data_offsets inside the data section, byte size == numel * dtype size, no two
 * tensors overlapping and no name twice. Each violation is an error naming the file and the
 * tensor. Only BF16, F16 and F32 tensors are accepted: quantized dtypes (F8_*, I8, U8, ...) get
 * an error asking the user to dequantize the checkpoint first.
 *
 * The file is mapped read-only: the header is parsed from the mapping and StTensor.data is a
 * zero-copy view of each tensor. The st_read_* functions convert a tensor, or rows [r0, r0+n)
 * along dim 0, into a caller buffer as fp32 or fp16; they read with pread() through a bounce
 * buffer of at most 1 MB (faster than faulting mapped pages in, and the resident set stays at
 * the caller's buffers), so streaming a model never holds it in memory.
 *
 * Ownership: st_open returns a StFile the caller releases with st_close; StTensor pointers
 * (and their names) belong to the StFile and live until st_close.
 * Return convention: 0 on success, -1 with e->msg set (see common/err.h).
 */
#ifndef ANEMLL_IO_SAFETENSORS_H
#define ANEMLL_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* same cap as the reference implementation */

typedef enum StDtype { ST_F32 = 0, ST_F16, ST_BF16 } StDtype;

typedef struct StFile StFile;

typedef struct StTensor {
    const char *name;
    StDtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS];
    size_t numel;                   /* product of shape (1 for a scalar) */
    size_t nbytes;                  /* numel * st_dtype_size(dtype) */
    uint64_t offset;                /* byte offset of the data inside the file */
    const unsigned char *data;      /* view into the mapping (not necessarily aligned) */
    const StFile *file;             /* the file holding the data */
} StTensor;

/* Opens and validates one .safetensors file. */
int st_open(StFile **out, const char *path, Err *e);
void st_close(StFile *f);

const char *st_path(const StFile *f);
size_t st_count(const StFile *f);
/* Tensors in name order, i < st_count(f). */
const StTensor *st_tensor(const StFile *f, size_t i);
/* NULL if absent. */
const StTensor *st_find(const StFile *f, const char *name);

const char *st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);

/* Number of values in one row along dim 0 (product of shape[1..]; 1 for rank 0 and 1). */
size_t st_row_numel(const StTensor *t);
/* Number of rows along dim 0 (1 for a scalar). */
size_t st_rows(const StTensor *t);

/* The whole tensor into dst[numel]. */
int st_read_f32(const StTensor *t, float *dst, Err *e);
/* Returns the number of finite values that became +-inf because they exceed the fp16 range
 * (0 for BF16/F16 values inside it), or -1 on error. */
long st_read_f16(const StTensor *t, uint16_t *dst, Err *e);

/* Rows [r0, r0+n) along dim 0 into dst[n * st_row_numel(t)]. Same returns as above. */
int st_read_rows_f32(const StTensor *t, size_t r0, size_t n, float *dst, Err *e);
long st_read_rows_f16(const StTensor *t, size_t r0, size_t n, uint16_t *dst, Err *e);

/* Conversion kernels used by the readers, exposed for tests and benchmarks.
 * src may be unaligned; src and dst may be the same buffer when the element sizes match
 * (BF16 -> fp16 in place). st_convert_f16 returns the count of overflows to inf. */
void st_convert_f32(StDtype src_type, const void *src, size_t n, float *dst);
size_t st_convert_f16(StDtype src_type, const void *src, size_t n, uint16_t *dst);
/* Tests: 1 = use only the portable C kernels (also where F16C exists), 0 = detect. */
void st_convert_force_portable(int on);

#endif
