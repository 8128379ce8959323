/* tok_cjson.h - small cJSON accessors for the tokenizer loaders (internal). Each
 * returns the value, or the default / NULL when the key is absent or of another type. */
#ifndef ANEMLL_TOK_CJSON_H
#define ANEMLL_TOK_CJSON_H

#include <cjson/cJSON.h>

static inline const cJSON *jget(const cJSON *o, const char *key) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}
static inline const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static inline int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = jget(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}
static inline int jint(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = jget(o, key);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}
/* A token given as "<s>" or as {"content": "<s>", ...}. */
static inline const char *jtoken(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    return jstr(v, "content");
}

#endif
