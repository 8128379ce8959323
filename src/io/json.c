#include "io/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

const char *json_type_name(const cJSON *item) {
    if (!item) return "nothing";
    if (cJSON_IsNull(item)) return "null";
    if (cJSON_IsBool(item)) return "a boolean";
    if (cJSON_IsNumber(item)) return "a number";
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    return "an invalid value";
}

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Offset of the first bracket nested deeper than limit (outside strings), or len if none. */
static size_t too_deep_at(const char *text, size_t len, int limit) {
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return i;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return len;
}

int json_parse_text(const char *text, size_t len, const char *what, cJSON **out, Err *e) {
    *out = NULL;
    size_t deep = too_deep_at(text, len, JSON_MAX_DEPTH);
    if (deep < len)
        return err_set(e, "%s is nested more than %d levels deep (at byte %zu); no file anemll reads is", what,
                       JSON_MAX_DEPTH, deep);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = (end && end >= text && end <= text + len) ? (size_t)(end - text) : 0;
        return err_set(e, "%s is not valid JSON (syntax error near byte %zu)", what, at);
    }
    for (const char *p = end; p < text + len; p++) {
        if (!is_json_space(*p) && *p != 0) {
            cJSON_Delete(root);
            return err_set(e, "%s is not valid JSON (unexpected data after the value at byte %zu)", what,
                           (size_t)(p - text));
        }
    }
    *out = root;
    return 0;
}

int json_read_file(const char *path, size_t max_len, cJSON **out, Err *e) {
    char *text;
    size_t len;
    *out = NULL;
    if (file_read_all(path, max_len, &text, &len, e) < 0) return -1;
    int rc = json_parse_text(text, len, path, out, e);
    free(text);
    return rc;
}

static int by_key(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int json_duplicate_key(const cJSON *obj, const char **key) {
    size_t n = 0;
    for (const cJSON *it = obj ? obj->child : NULL; it; it = it->next) n++;
    if (n < 2) return 0;
    const char **keys = xmalloc(sizeof *keys * n);
    n = 0;
    for (const cJSON *it = obj->child; it; it = it->next) keys[n++] = it->string ? it->string : "";
    qsort(keys, n, sizeof *keys, by_key);
    int dup = 0;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(keys[i - 1], keys[i])) {
            dup = 1;
            *key = keys[i];
        }
    free(keys);
    return dup;
}

int json_as_count(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0) || v > JSON_MAX_EXACT_INT || floor(v) != v) return -1;
    *out = (uint64_t)v;
    return 0;
}

static const cJSON *lookup(const cJSON *obj, const char *key) {
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (it && cJSON_IsNull(it)) ? NULL : it;
}

int json_get_int(const cJSON *obj, const char *key, int64_t min, int64_t max, int64_t *out, Err *e) {
    const cJSON *it = lookup(obj, key);
    if (!it) return 0;
    if (!cJSON_IsNumber(it)) return err_set(e, "%s: expected an integer, got %s", key, json_type_name(it));
    double v = it->valuedouble;
    if (!isfinite(v) || floor(v) != v || fabs(v) > JSON_MAX_EXACT_INT)
        return err_set(e, "%s: expected an integer, got %g", key, v);
    if (v < (double)min || v > (double)max)
        return err_set(e, "%s: %.0f is out of range (%lld..%lld)", key, v, (long long)min, (long long)max);
    *out = (int64_t)v;
    return 1;
}

int json_get_double(const cJSON *obj, const char *key, double *out, Err *e) {
    const cJSON *it = lookup(obj, key);
    if (!it) return 0;
    if (!cJSON_IsNumber(it)) return err_set(e, "%s: expected a number, got %s", key, json_type_name(it));
    if (!isfinite(it->valuedouble)) return err_set(e, "%s: expected a finite number, got %g", key, it->valuedouble);
    *out = it->valuedouble;
    return 1;
}

int json_get_bool(const cJSON *obj, const char *key, int *out, Err *e) {
    const cJSON *it = lookup(obj, key);
    if (!it) return 0;
    if (!cJSON_IsBool(it)) return err_set(e, "%s: expected true or false, got %s", key, json_type_name(it));
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return 1;
}

int json_get_string(const cJSON *obj, const char *key, const char **out, Err *e) {
    const cJSON *it = lookup(obj, key);
    if (!it) return 0;
    if (!cJSON_IsString(it)) return err_set(e, "%s: expected a string, got %s", key, json_type_name(it));
    *out = it->valuestring;
    return 1;
}
