/* internal.h - shared by the files of the coreml module (not part of its API). */
#ifndef ANEMLL_COREML_INTERNAL_H
#define ANEMLL_COREML_INTERNAL_H

#include "coreml/blob.h"
#include "coreml/package.h"

/* Encoding: where a const's data goes when it is written to a blob. Called for every const
 * and literal that needs blob storage (in-memory bytes above the inline limit, or blob
 * references that belong to another file); returns the metadata offset in the package's
 * weight file. */
typedef int (*CmlBlobPlace)(void *ctx, const MilValue *v, uint64_t *offset, Err *e);

/* Model protobuf of a program and its description; *out is malloc'd. */
int cml_encode(const MilProgram *p, const PkgDescription *d, int spec, CmlBlobPlace place, void *ctx,
               uint8_t **out, size_t *len, Err *e);

/* Decoding: resolves "@model_path/<rel>" to a weight file. */
typedef int (*CmlBlobOpen)(void *ctx, const char *rel, const BlobFile **out, Err *e);

/* Program and description from model bytes. The program's consts point into the weight files
 * resolve returns. */
int cml_decode(const uint8_t *buf, size_t len, CmlBlobOpen resolve, void *ctx, unsigned flags, MilProgram **prog,
               PkgDescription *d, int *spec, Err *e);

/* Checks a read program against its description (names, dtypes, known dims, flexible
 * shapes) and copies enumerated shapes onto the program's inputs. */
int cml_match_description(MilProgram *p, const PkgDescription *d, Err *e);

/* Manifest.json text for the two items (caller frees). */
char *cml_manifest_text(const char *model_id, const char *weights_id);

typedef struct CmlManifest {
    char *model_id, *model_path;      /* path relative to Data/ */
    char *weights_id, *weights_path;  /* NULL when the manifest has no weights item */
} CmlManifest;
int cml_manifest_parse(const char *json, size_t len, CmlManifest *m, Err *e);
void cml_manifest_free(CmlManifest *m);

/* UUID-shaped identifier (uppercase 8-4-4-4-12) from 128 bits. */
void cml_format_uuid(const uint64_t h[2], char out[37]);

/* Protobuf text format of a message (pbtext.c). */
struct ProtobufCMessage;
char *cml_proto_text(const struct ProtobufCMessage *m);

#endif
