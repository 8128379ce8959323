/* manifest.c - Manifest.json of an .mlpackage: written as coremltools writes it (4-space
 * indentation, keys sorted, trailing newline), read with the checks Core ML's
 * ModelPackage makes (format version, four keys per item, root item present). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "coreml/internal.h"

void cml_format_uuid(const uint64_t h[2], char out[37]) {
    uint8_t b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(h[0] >> (56 - 8 * i));
        b[8 + i] = (uint8_t)(h[1] >> (56 - 8 * i));
    }
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x40);   /* version nibble 4, RFC 4122 variant: looks like uuid_generate */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80);
    snprintf(out, 37, "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void item_text(char *buf, size_t size, const char *id, const char *desc, const char *name, const char *path,
                      int last) {
    snprintf(buf, size,
             "        \"%s\": {\n"
             "            \"author\": \"com.apple.CoreML\",\n"
             "            \"description\": \"%s\",\n"
             "            \"name\": \"%s\",\n"
             "            \"path\": \"%s\"\n"
             "        }%s\n",
             id, desc, name, path, last ? "" : ",");
}

char *cml_manifest_text(const char *model_id, const char *weights_id) {
    char a[512], b[512];
    int model_first = strcmp(model_id, weights_id) < 0;
    item_text(a, sizeof a, model_first ? model_id : weights_id,
              model_first ? "CoreML Model Specification" : "CoreML Model Weights",
              model_first ? "model.mlmodel" : "weights",
              model_first ? "com.apple.CoreML/model.mlmodel" : "com.apple.CoreML/weights", 0);
    item_text(b, sizeof b, model_first ? weights_id : model_id,
              model_first ? "CoreML Model Weights" : "CoreML Model Specification",
              model_first ? "weights" : "model.mlmodel",
              model_first ? "com.apple.CoreML/weights" : "com.apple.CoreML/model.mlmodel", 1);
    return xasprintf("{\n"
                     "    \"fileFormatVersion\": \"1.0.0\",\n"
                     "    \"itemInfoEntries\": {\n"
                     "%s%s"
                     "    },\n"
                     "    \"rootModelIdentifier\": \"%s\"\n"
                     "}\n",
                     a, b, model_id);
}

static const char *str_member(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* "X.Y.Z" with each part a number; the reader accepts up to 1.0.0. */
static int version_ok(const char *v, Err *e) {
    unsigned long part[3];
    const char *p = v;
    for (int i = 0; i < 3; i++) {
        char *end;
        if (*p < '0' || *p > '9') return err_set(e, "Manifest.json: fileFormatVersion '%s' is not major.minor.patch", v);
        part[i] = strtoul(p, &end, 10);
        p = end;
        if (i < 2 && *p++ != '.') return err_set(e, "Manifest.json: fileFormatVersion '%s' is not major.minor.patch", v);
    }
    if (*p) return err_set(e, "Manifest.json: fileFormatVersion '%s' is not major.minor.patch", v);
    if (part[0] > 1 || (part[0] == 1 && (part[1] > 0 || part[2] > 0)))
        return err_set(e, "Manifest.json: fileFormatVersion %s is newer than 1.0.0, the version this reader knows", v);
    return 0;
}

int cml_manifest_parse(const char *json, size_t len, CmlManifest *m, Err *e) {
    memset(m, 0, sizeof *m);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return err_set(e, "Manifest.json: not valid JSON");
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        err_set(e, "Manifest.json: the top level is not an object");
        goto out;
    }
    const char *ver = str_member(root, "fileFormatVersion");
    if (!ver) {
        err_set(e, "Manifest.json: missing fileFormatVersion");
        goto out;
    }
    if (version_ok(ver, e) < 0) goto out;
    const char *root_id = str_member(root, "rootModelIdentifier");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "itemInfoEntries");
    if (!root_id || !cJSON_IsObject(items)) {
        err_set(e, "Manifest.json: missing rootModelIdentifier or itemInfoEntries");
        goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        const char *path = str_member(it, "path"), *name = str_member(it, "name");
        if (!cJSON_IsObject(it) || !path || !name || !str_member(it, "author") || !str_member(it, "description")) {
            err_set(e, "Manifest.json: item '%s' is invalid (path, name, author and description are required)",
                    it->string ? it->string : "?");
            goto out;
        }
        if (!strcmp(it->string, root_id)) {
            if (m->model_id) {
                err_set(e, "Manifest.json: item '%s' appears twice", root_id);
                goto out;
            }
            m->model_id = xstrdup(it->string);
            m->model_path = xstrdup(path);
        } else if (!strcmp(name, "weights") && !m->weights_id) {
            m->weights_id = xstrdup(it->string);
            m->weights_path = xstrdup(path);
        }
    }
    if (!m->model_id) {
        err_set(e, "Manifest.json: rootModelIdentifier '%s' names no item", root_id);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc < 0) cml_manifest_free(m);
    return rc;
}

void cml_manifest_free(CmlManifest *m) {
    free(m->model_id);
    free(m->model_path);
    free(m->weights_id);
    free(m->weights_path);
    memset(m, 0, sizeof *m);
}
