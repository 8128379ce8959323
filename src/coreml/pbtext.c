/* pbtext.c - protobuf text format of any protobuf-c message, in the style of Python's
 * google.protobuf.text_format (as in golden/NAME.spec.txt): fields in field-number order, proto3
 * scalars only when not zero, oneof members when selected, two-space indentation, strings
 * C-escaped with octal escapes for non-printable bytes, enums by name. Used by tests to
 * compare what we write with what coremltools writes, and for debugging. */
#include <protobuf-c/protobuf-c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/util.h"
#include "coreml/internal.h"

static void put_escaped(StrBuf *b, const uint8_t *s, size_t n) {
    strbuf_printf(b, "\"");
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        switch (c) {
        case '\n': strbuf_printf(b, "\\n"); break;
        case '\r': strbuf_printf(b, "\\r"); break;
        case '\t': strbuf_printf(b, "\\t"); break;
        case '"': strbuf_printf(b, "\\\""); break;
        case '\'': strbuf_printf(b, "\\'"); break;
        case '\\': strbuf_printf(b, "\\\\"); break;
        default:
            if (c < 0x20 || c >= 0x7f)
                strbuf_printf(b, "\\%03o", c);
            else
                strbuf_printf(b, "%c", c);
        }
    }
    strbuf_printf(b, "\"");
}

/* Shortest decimal that reads back as the same float, spelled like Python's repr. */
static void put_real(StrBuf *b, double v, int is_float) {
    if (isnan(v)) { strbuf_printf(b, "nan"); return; }
    if (isinf(v)) { strbuf_printf(b, v < 0 ? "-inf" : "inf"); return; }
    char s[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(s, sizeof s, "%.*g", p, v);
        if (is_float ? (float)strtod(s, NULL) == (float)v : strtod(s, NULL) == v) break;
    }
    if (!strpbrk(s, ".en")) strcat(s, ".0");
    strbuf_printf(b, "%s", s);
}

static size_t elem_size(const ProtobufCFieldDescriptor *f) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_FLOAT:
        return 4;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* True if a singular proto3 field holds its default (and so is not printed). */
static int is_default(const ProtobufCFieldDescriptor *f, const void *p) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: return !*(char *const *)p || !**(char *const *)p;
    case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: return *(ProtobufCMessage *const *)p == NULL;
    case PROTOBUF_C_TYPE_FLOAT: return *(const float *)p == 0 && !signbit(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)p == 0 && !signbit(*(const double *)p);
    default: {
        size_t n = elem_size(f);
        const uint8_t *c = p;
        for (size_t i = 0; i < n; i++)
            if (c[i]) return 0;
        return 1;
    }
    }
}

static void put_message(StrBuf *b, const ProtobufCMessage *m, int indent);

static void put_field(StrBuf *b, const ProtobufCFieldDescriptor *f, const void *p, int indent) {
    strbuf_printf(b, "%*s%s", indent, "", f->name);
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        strbuf_printf(b, " {\n");
        put_message(b, *(ProtobufCMessage *const *)p, indent + 2);
        strbuf_printf(b, "%*s}\n", indent, "");
        return;
    }
    strbuf_printf(b, ": ");
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
        strbuf_printf(b, "%d", *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
        strbuf_printf(b, "%u", *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
        strbuf_printf(b, "%lld", (long long)*(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
        strbuf_printf(b, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_FLOAT: put_real(b, *(const float *)p, 1); break;
    case PROTOBUF_C_TYPE_DOUBLE: put_real(b, *(const double *)p, 0); break;
    case PROTOBUF_C_TYPE_BOOL: strbuf_printf(b, *(const protobuf_c_boolean *)p ? "true" : "false"); break;
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev)
            strbuf_printf(b, "%s", ev->name);
        else
            strbuf_printf(b, "%d", v);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        put_escaped(b, (const uint8_t *)s, strlen(s));
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *d = p;
        put_escaped(b, d->data, d->len);
        break;
    }
    default: break;
    }
    strbuf_printf(b, "\n");
}

/* Map fields are spelled as repeated XxxEntry {key = 1; value = 2;} messages in our schema;
 * text format prints map entries sorted by key. */
static int is_map_field(const ProtobufCFieldDescriptor *f) {
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return 0;
    const ProtobufCMessageDescriptor *md = f->descriptor;
    size_t n = strlen(md->name);
    return n > 5 && !strcmp(md->name + n - 5, "Entry") && md->n_fields == 2 && !strcmp(md->fields[0].name, "key") &&
           md->fields[0].type == PROTOBUF_C_TYPE_STRING;
}

static const char *entry_key(const ProtobufCMessage *m) {
    return *(char *const *)((const char *)m + m->descriptor->fields[0].offset);
}

static int cmp_entries(const void *a, const void *b) {
    return strcmp(entry_key(*(ProtobufCMessage *const *)a), entry_key(*(ProtobufCMessage *const *)b));
}

static void put_message(StrBuf *b, const ProtobufCMessage *m, int indent) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *member = base + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(const char *const *)member;
            if (is_map_field(f) && n > 1) {
                ProtobufCMessage **sorted = xmalloc(sizeof *sorted * n);
                memcpy(sorted, arr, sizeof *sorted * n);
                qsort(sorted, n, sizeof *sorted, cmp_entries);
                for (size_t k = 0; k < n; k++) put_field(b, f, &sorted[k], indent);
                free(sorted);
                continue;
            }
            for (size_t k = 0; k < n; k++) put_field(b, f, arr + k * elem_size(f), indent);
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) == f->id) put_field(b, f, member, indent);
        } else if (!is_default(f, member)) {
            put_field(b, f, member, indent);
        }
    }
}

char *cml_proto_text(const ProtobufCMessage *m) {
    StrBuf b = {0};
    put_message(&b, m, 0);
    return strbuf_take(&b);
}
