/* json.h - reading JSON files and typed values with cJSON, with errors that name the key.
 *
 * All getters follow one convention:
 *   return 1  the key is present and has the requested type and range (*out set)
 *   return 0  the key is absent or JSON null (*out untouched, so callers pre-set defaults)
 *   return -1 the key is present with the wrong type or out of range; e->msg says
 *             "<key>: expected ..., got ..." (callers wrap it with the file name).
 * Ownership: json_read_file returns a tree the caller frees with cJSON_Delete.
 */
#ifndef ANEMLL_IO_JSON_H
#define ANEMLL_IO_JSON_H

#include <stdint.h>
#include <cjson/cJSON.h>

#include "common/err.h"

/* Largest integer a JSON number (an IEEE double) holds exactly: 2^53. */
#define JSON_MAX_EXACT_INT 9007199254740992.0

/* Parses a whole file (at most max_len bytes). Errors name the file and, for a
 * syntax error, the byte offset. */
int json_read_file(const char *path, size_t max_len, cJSON **out, Err *e);

/* Deepest array/object nesting json_parse_text accepts: config.json, checkpoint indexes and
 * safetensors headers are 2-4 levels deep; a deeper file is refused before parsing. */
#define JSON_MAX_DEPTH 64

/* Parses text[0..len); trailing whitespace is allowed, anything else after the
 * value is an error. `what` names the text in errors ("<file>: header"). */
int json_parse_text(const char *text, size_t len, const char *what, cJSON **out, Err *e);

/* Integer in [min, max]; a number with a fractional part is an error. */
int json_get_int(const cJSON *obj, const char *key, int64_t min, int64_t max, int64_t *out, Err *e);
/* Any finite number. */
int json_get_double(const cJSON *obj, const char *key, double *out, Err *e);
int json_get_bool(const cJSON *obj, const char *key, int *out, Err *e);
/* Points into the tree (valid while the tree lives). */
int json_get_string(const cJSON *obj, const char *key, const char **out, Err *e);

/* 1 if the object has a key twice (*key set to it; JSON leaves the meaning open: Python keeps
 * the last, cJSON lookups find the first), else 0. O(n log n). */
int json_duplicate_key(const cJSON *obj, const char **key);

/* A JSON number as an exact non-negative integer (0..2^53); -1 if it is not one. */
int json_as_count(const cJSON *item, uint64_t *out);

/* "number", "string", "array", ... for messages. */
const char *json_type_name(const cJSON *item);

#endif
