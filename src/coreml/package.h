/* package.h - Core ML .mlpackage directories: writing them (streamed weights, atomic) and
 * reading them back into a MIL program.
 *
 * Layout of X.mlpackage (coreml_format.md section 1):
 *     Manifest.json                               items + root model identifier
 *     Data/com.apple.CoreML/model.mlmodel         CoreML.Specification.Model protobuf
 *     Data/com.apple.CoreML/weights/weight.bin    blob storage v2 (coreml/blob.h)
 *
 * Writing a package:
 *
 *     PkgWriter *w;
 *     if (pkg_writer_open(&w, "out/model.mlpackage", &e) < 0) ...
 *     MilProgram *p = mil_program_new();
 *     pkg_writer_attach(w, p);               // large consts now stream into weight.bin
 *     MilBlobRef ref;                        // or add blobs yourself and share them:
 *     pkg_writer_add_blob(w, MIL_UINT4, n, packed_indices, &ref, &e);
 *     ... build functions; use &ref in any number of consts / literals of any function ...
 *     if (pkg_writer_finish(w, p, &meta, &e) < 0) ...   // writes model.mlmodel + Manifest.json
 *     mil_program_free(p);
 *
 * The package is built in a temporary sibling directory ("<path>.tmp.XXXXXX") and renamed to
 * path only when complete (files fsynced), replacing an existing package at path. On any error,
 * or with pkg_writer_abort, the temporary directory is removed: an interrupted write never
 * leaves something that looks like a finished package. Identical blobs are stored once (see
 * blob.h), across the functions of a program too. Output is deterministic: the same program
 * and metadata give byte-identical packages (the Manifest's item identifiers are UUID-shaped
 * digests of model.mlmodel and weight.bin; protobuf maps are written sorted by key).
 *
 * The ModelDescription is derived from the program, as coremltools derives it: one function
 * named "main" gives the single-function form (top-level input/output/state); otherwise the
 * multifunction form (functions[] in program order, defaultFunctionName = the program's
 * default function or the first). Inputs with enumerated shapes (mil_input_enumerated) get
 * shape = the default shape plus enumeratedShapes; outputs with unknown dims get no shape;
 * states go to state[] as stateType, never to input[].
 *
 * Reading: pkg_open() checks the manifest, parses model.mlmodel, maps the weight files and
 * rebuilds the program (consts point into the mapping), then validates every op against the
 * op table (mil_program_validate). Errors name the file and what is wrong.
 *
 * Return convention: 0 on success, -1 with a message in *e.
 */
#ifndef ANEMLL_COREML_PACKAGE_H
#define ANEMLL_COREML_PACKAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "mil/mil.h"

#define PKG_SPEC_VERSION 9   /* iOS 18 / macOS 15 */
#define PKG_WEIGHT_PATH "@model_path/weights/weight.bin"

/* ==== Description ==== */

typedef struct PkgKeyValue {
    const char *key, *value;
} PkgKeyValue;

typedef struct PkgMetadata {
    const char *short_description;
    const char *version_string;
    const char *author;
    const char *license;
    int n_user;
    const PkgKeyValue *user;      /* userDefined; written sorted by key */
} PkgMetadata;

typedef enum PkgFeatureKind {
    PKG_FEATURE_ARRAY,            /* multiArrayType */
    PKG_FEATURE_STATE,            /* stateType */
    PKG_FEATURE_OTHER,            /* int64 / double / string scalars (read only) */
} PkgFeatureKind;

typedef struct PkgShape {
    int rank;
    int64_t dims[MIL_MAX_RANK];
} PkgShape;

typedef struct PkgFeature {
    const char *name;
    const char *short_description;
    PkgFeatureKind kind;
    MilDType dtype;               /* array element type: fp16, fp32, int32 (int8, fp64 when read) */
    PkgShape shape;               /* rank 0: no shape given */
    int n_enum;                   /* enumeratedShapes, the default first */
    const PkgShape *enum_shapes;
    int n_range;                  /* shapeRange (read only): per dim lower/upper (-1 = unbounded) */
    const int64_t *range_lower, *range_upper;
    int optional;
} PkgFeature;

typedef struct PkgFunctionDesc {
    const char *name;
    int n_inputs, n_outputs, n_states;
    const PkgFeature *inputs, *outputs, *states;
} PkgFunctionDesc;

typedef struct PkgDescription {
    int multifunction;            /* functions[] form */
    int n_functions;              /* single-function form: one entry, named after the MIL function */
    const PkgFunctionDesc *functions;
    const char *default_function; /* multifunction form */
    PkgMetadata metadata;
} PkgDescription;

/* ==== Writing ==== */

typedef struct PkgWriter PkgWriter;

/* Starts a package at path (which must end in ".mlpackage"); nothing appears at path yet. */
int pkg_writer_open(PkgWriter **out, const char *path, Err *e);
/* Makes the program's large consts stream into this package's weight.bin. */
void pkg_writer_attach(PkgWriter *w, MilProgram *p);
/* Stores numel elements of packed data (mil_packed_size bytes) as a blob, or finds an
 * identical one; *ref can be used by consts/literals of any function (mil_const_blob,
 * mil_literal_blob). ref->data is NULL (the bytes are only on disk); weights never need their
 * values for type inference. Shared by construction: add a blob once, use the ref everywhere
 * (re-adding the same bytes also finds the first copy, at the cost of reading it back). */
int pkg_writer_add_blob(PkgWriter *w, MilDType dt, uint64_t numel, const void *data, MilBlobRef *ref, Err *e);
/* The same with the content hash computed by the caller (blob_content_hash in coreml/blob.h),
 * e.g. once for a blob added to several packages. */
int pkg_writer_add_blob_hashed(PkgWriter *w, MilDType dt, uint64_t numel, const void *data, uint64_t hash,
                               MilBlobRef *ref, Err *e);
/* A blob streamed in pieces (blob_writer_begin/append/end in coreml/blob.h): large weights
 * converted block by block are written without holding them whole. No other blob may be
 * added between begin and end. */
int pkg_writer_blob_begin(PkgWriter *w, MilDType dt, uint64_t numel, Err *e);
int pkg_writer_blob_append(PkgWriter *w, const void *data, size_t n, Err *e);
int pkg_writer_blob_end(PkgWriter *w, MilBlobRef *ref, Err *e);
/* Identical blobs are stored once unless this is turned off (then every add writes a copy). */
void pkg_writer_set_dedup(PkgWriter *w, int on);
/* Makes m's weight.bin a byte copy of w's, written as w writes it (blob_writer_mirror): both
 * freshly opened. Once w is finished, m's blobs are referenced with pkg_writer_ref_blob. */
int pkg_writer_mirror(PkgWriter *w, PkgWriter *m, Err *e);
/* A blob already in w's weight.bin with this content hash (blob_content_hash), dtype and count,
 * taken as equal without comparing bytes: 1 and *ref, or 0. */
int pkg_writer_find_blob(PkgWriter *w, uint64_t hash, MilDType dt, uint64_t numel, MilBlobRef *ref);
/* A reference to the blob of numel elements of dtype dt already in w's weight.bin at metadata
 * offset `offset` (a finished mirror's blobs); an error if there is none such. */
int pkg_writer_ref_blob(PkgWriter *w, uint64_t offset, MilDType dt, uint64_t numel, MilBlobRef *ref, Err *e);
/* Validates the program (mil_error, mil_program_validate), derives the description, writes
 * model.mlmodel and Manifest.json, syncs and renames into place. meta may be NULL.
 * Frees w whatever the outcome (on failure the temporary directory is removed). */
int pkg_writer_finish(PkgWriter *w, const MilProgram *p, const PkgMetadata *meta, Err *e);
/* Drops everything written so far and frees w. */
void pkg_writer_abort(PkgWriter *w);

/* Statistics of the last pkg_writer_finish (for reports). */
typedef struct PkgWriteStats {
    uint32_t blobs;               /* distinct blobs in weight.bin */
    uint64_t weight_bytes;        /* size of weight.bin */
    uint64_t shared_bytes;        /* bytes not written because a blob was reused */
    uint64_t model_bytes;         /* size of model.mlmodel */
    uint64_t digest[2];           /* of weight.bin's blobs (blob_writer_digest) */
} PkgWriteStats;
void pkg_writer_stats(const PkgWriter *w, PkgWriteStats *s);   /* any time before finish */

/* Derives the description of a program (what pkg_writer_finish writes). Allocated in the
 * program's arena. */
int pkg_describe(const MilProgram *p, const PkgMetadata *meta, PkgDescription *d, Err *e);
/* Core ML's interface rules for a description (names, shapes, dtypes, states, functions vs
 * top-level features), for spec version spec. */
int pkg_description_validate(const PkgDescription *d, int spec, Err *e);

/* ==== Reading ==== */

/* pkg_open flags */
enum {
    PKG_OPEN_LENIENT = 1,         /* accept op types the op table does not know (inspect) */
};

typedef struct PkgBlobFile PkgBlobFile;

typedef struct Package {
    const char *path;
    int spec_version;
    MilProgram *prog;             /* owned; consts reference the mapped weight files */
    PkgDescription desc;
    const char *model_id;         /* Manifest item identifiers */
    const char *weights_id;
    uint64_t model_bytes;         /* size of model.mlmodel */
    int n_blob_files;
    PkgBlobFile **blob_files;
} Package;

int pkg_open(Package **out, const char *path, unsigned flags, Err *e);
void pkg_close(Package *pkg);

/* The same from bytes in memory (the fuzz target's entry point): manifest JSON, model.mlmodel
 * and one weight file, as if they were the files of a package whose weights directory holds
 * weight.bin. manifest may be NULL to skip the manifest. The buffers must outlive the package. */
typedef struct PkgMemory {
    const char *manifest;
    size_t manifest_len;
    const void *model;
    size_t model_len;
    const void *weights;          /* NULL: no weight file */
    size_t weights_len;
} PkgMemory;
int pkg_open_memory(Package **out, const PkgMemory *m, unsigned flags, Err *e);

/* Weight file of a package by index (for inspect): its header count and size. */
typedef struct PkgBlobFileInfo {
    const char *name;             /* file name inside weights/ */
    uint32_t count;
    uint64_t size;
} PkgBlobFileInfo;
void pkg_blob_file_info(const Package *pkg, int i, PkgBlobFileInfo *out);

/* ==== Debugging ==== */

/* model.mlmodel bytes as protobuf text format (Python text_format style: fields in number
 * order, maps as key/value entries). Caller frees *out. */
int pkg_model_to_text(const void *model, size_t len, char **out, Err *e);
/* "specificationVersion: N" and the ModelDescription (what golden/anemll/ *.description.txt hold). */
int pkg_description_to_text(const void *model, size_t len, char **out, Err *e);

#endif
