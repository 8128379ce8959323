/* blob.h - weight.bin, Core ML's "MIL blob storage v2" file.
 *
 * Byte layout (little-endian throughout):
 *
 *     offset 0     storage header, 64 bytes
 *                    u32 count      number of blobs
 *                    u32 version    2
 *                    56 bytes       zero
 *     offset 64    blob 0: metadata record, 64 bytes
 *                    u32 sentinel   0xDEADBEEF (bytes EF BE AD DE)
 *                    u32 dtype      blob dtype code (below)
 *                    u64 size       data bytes (sub-byte types: ceil(n * bits / 8))
 *                    u64 offset     absolute file offset of the data = metadata offset + 64
 *                    u64 padding    unused bits at the end of sub-byte data, (8 - n*bits % 8) % 8
 *                    32 bytes       zero
 *     offset 128   blob 0 data, then zero fill up to the next multiple of 64
 *     ...          blob 1 metadata at the next 64-aligned offset, its data right after, ...
 *                  (no padding after the last blob's data: the file ends there)
 *
 * A tensor refers to a blob by the offset of its metadata record (BlobFileValue.offset in
 * the protobuf), e.g. 64 for the first blob. Elements are row-major; fp16 are IEEE half bits;
 * sub-byte types (uint1/2/3/4/6, int4) are packed LSB first (mil_pack_subbyte in mil/mil.h).
 *
 * Blob dtype codes: 1 fp16, 2 fp32, 3 uint8, 4 int8, 5 bf16, 6 int16, 7 uint16, 8 int4,
 * 9 uint1, 10 uint2, 11 uint4, 12 uint3, 13 uint6, 14 int32, 15 uint32, 16 fp8e4m3fn,
 * 17 fp8e5m2. (Source: apple/coremltools mlmodel/src/MILBlob/Blob/StorageFormat.hpp and
 * BlobDataType.hpp.)
 *
 * The writer streams: each blob is written when it is added, nothing is kept in memory but a
 * hash table of what was written. A blob identical to an earlier one (same dtype, same bytes:
 * content hash, then a byte compare against the file) is not written again; the earlier
 * offset is returned. The reader maps the file and checks every record it is asked for.
 *
 * Return convention: 0 on success, -1 with a message in *e.
 */
#ifndef ANEMLL_COREML_BLOB_H
#define ANEMLL_COREML_BLOB_H

#include <stdint.h>

#include "common/err.h"
#include "mil/mil.h"

#define BLOB_HEADER_SIZE 64
#define BLOB_METADATA_SIZE 64
#define BLOB_ALIGNMENT 64
#define BLOB_SENTINEL 0xDEADBEEFu
#define BLOB_VERSION 2

/* Blob dtype code of a MIL dtype, 0 if it cannot be stored in a blob. */
uint32_t blob_dtype_code(MilDType dt);
/* MIL dtype of a blob dtype code, MIL_DT_INVALID if unknown. */
MilDType blob_dtype_from_code(uint32_t code);

/* ==== Writing ==== */

typedef struct BlobWriter BlobWriter;

/* Creates (truncates) path and writes an empty header. */
int blob_writer_open(BlobWriter **out, const char *path, Err *e);
/* Writes a blob of numel elements of packed data (mil_packed_size(dt, numel) bytes), or
 * finds an identical one already in the file (same dtype, count and bytes). *offset: its
 * metadata offset; *reused (may be NULL): 1 if an earlier blob was reused. */
int blob_writer_add(BlobWriter *w, MilDType dt, uint64_t numel, const void *data, uint64_t *offset, int *reused,
                    Err *e);
/* The content hash blob_writer_add computes for nbytes of data of dtype dt. */
uint64_t blob_content_hash(MilDType dt, const void *data, uint64_t nbytes);
/* blob_writer_add with that hash computed by the caller (once for several writers). */
int blob_writer_add_hashed(BlobWriter *w, MilDType dt, uint64_t numel, const void *data, uint64_t hash,
                           uint64_t *offset, int *reused, Err *e);
/* A blob whose bytes arrive in pieces (never all in memory): begin writes its record,
 * append writes the next bytes, end (after exactly mil_packed_size(dt, numel) bytes)
 * returns its offset as blob_writer_add would -- if an identical blob was already in the
 * file, the new copy is cut off again and the earlier offset returned. No other add may
 * come between begin and end. */
int blob_writer_begin(BlobWriter *w, MilDType dt, uint64_t numel, Err *e);
int blob_writer_append(BlobWriter *w, const void *data, size_t n, Err *e);
int blob_writer_end(BlobWriter *w, uint64_t *offset, int *reused, Err *e);
/* Sharing of identical blobs: on by default; off makes every add write a new blob. */
void blob_writer_set_dedup(BlobWriter *w, int on);
/* Writes the final blob count into the header and fsyncs the file. */
int blob_writer_finish(BlobWriter *w, Err *e);
/* Closes the file (without finishing it) and frees the writer. */
void blob_writer_free(BlobWriter *w);
uint32_t blob_writer_count(const BlobWriter *w);      /* distinct blobs written */
uint64_t blob_writer_size(const BlobWriter *w);       /* file size so far */
uint64_t blob_writer_reused_bytes(const BlobWriter *w); /* bytes not written thanks to sharing */
/* A 128-bit digest of everything written (dtype, size, content of each blob, in order). */
void blob_writer_digest(const BlobWriter *w, uint64_t digest[2]);
/* Makes m's file a byte copy of src's, written as src writes (so the bytes are produced once
 * and never read back to be copied). Both must be freshly opened. Until src is finished, m
 * refuses blobs and finishing; when src finishes, m's file is complete and synced and m knows
 * its blobs (count, digest, blob_writer_has_blob) -- finishing m then only seals it again. If
 * src is freed unfinished, m is useless and refuses everything but freeing. */
int blob_writer_mirror(BlobWriter *src, BlobWriter *m, Err *e);
/* A blob of the file with this content hash (blob_content_hash), dtype and count: 1 and its
 * metadata offset, or 0. The bytes are not compared: for blobs known only by their hash. */
int blob_writer_find(const BlobWriter *w, uint64_t hash, MilDType dt, uint64_t numel, uint64_t *offset);
/* 1 if the file holds a blob of numel elements of dtype dt at metadata offset `offset`. */
int blob_writer_has_blob(const BlobWriter *w, uint64_t offset, MilDType dt, uint64_t numel);

/* ==== Reading ==== */

typedef struct BlobFile BlobFile;

/* One blob as its metadata record describes it (checked against the file). */
typedef struct BlobInfo {
    uint64_t offset;        /* metadata record offset */
    MilDType dtype;
    uint64_t nbytes;
    uint64_t data_offset;
    uint64_t padding_bits;
    const void *data;       /* into the mapping */
} BlobInfo;

/* Maps a weight file and checks its header (size >= 64, version 2). */
int blob_file_open(BlobFile **out, const char *path, Err *e);
/* The same over bytes in memory (not copied; they must outlive the BlobFile). name is used
 * in messages. */
int blob_file_from_memory(BlobFile **out, const void *data, uint64_t len, const char *name, Err *e);
void blob_file_close(BlobFile *f);
const char *blob_file_name(const BlobFile *f);
uint32_t blob_file_count(const BlobFile *f);          /* header count */
uint64_t blob_file_size(const BlobFile *f);
/* Reads and checks the metadata record at offset: inside the file, 64-aligned, sentinel,
 * known dtype, data inside the file after the record and 64-aligned, padding < 8 bits and
 * consistent with the dtype's width. */
int blob_file_get(const BlobFile *f, uint64_t offset, BlobInfo *out, Err *e);
/* Walks the blobs as Core ML does (first at 64, next at the aligned end of each one's data)
 * for header-count records; fills up to max infos; *n gets the count. */
int blob_file_walk(const BlobFile *f, BlobInfo *infos, uint32_t max, uint32_t *n, Err *e);
/* Checks that a blob holds exactly numel elements of dtype dt. */
int blob_check_elements(const BlobFile *f, const BlobInfo *b, MilDType dt, uint64_t numel, Err *e);

#endif
