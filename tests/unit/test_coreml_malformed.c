/* Malformed packages: each case breaks one thing in a valid package (a file, the manifest,
 * a byte of weight.bin, or a field of the model protobuf) and expects pkg_open to fail with a
 * message that says what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "coreml/model_subset.pb-c.h"
#include "coreml/package.h"
#include "coreml_testutil.h"

typedef CoreML__Specification__Model PbModel;
typedef CoreML__Specification__MILSpec__Function PbFunction;
typedef CoreML__Specification__MILSpec__Operation PbOp;

static char *dir, *base;

/* The valid package every case starts from:
 *   main(x: fp16[1,16], s: state fp16[1,16]) -> z
 *   w = const fp16[16] (blob at 64); y = mul(x, w); sm = softmax(y, axis=-1 const)
 *   r = read_state(s); z = add(sm, r); write_state(s, z) */
static void write_base(void) {
    base = path_join(dir, "base.mlpackage");
    PkgWriter *w;
    Err e;
    assert_int_equal(pkg_writer_open(&w, base, &e), 0);
    MilProgram *p = mil_program_new();
    pkg_writer_attach(w, p);
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){1, 16});
    MilValue *s = mil_state(f, "s", MIL_FP16, 2, (int64_t[]){1, 16});
    uint16_t wd[16];
    for (int i = 0; i < 16; i++) wd[i] = (uint16_t)(0x3C00 + i);
    MilValue *wv = mil_const(f, "w", MIL_FP16, 1, (int64_t[]){16}, wd, sizeof wd);
    MilValue *y = mil_add_mul(f, "y", x, wv);
    MilValue *sm = mil_add_softmax(f, "sm", y, -1);
    MilValue *r = mil_add_read_state(f, "r", s);
    MilValue *z = mil_add_add(f, "z", sm, r);
    mil_add_write_state(f, "ws", s, z);
    mil_set_outputs(f, 1, &z);
    assert_int_equal(pkg_writer_finish(w, p, NULL, &e), 0);
    mil_program_free(p);
}

static int setup(void **state) {
    (void)state;
    dir = scratch_dir("malformed");
    write_base();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(dir);
    free(dir);
    free(base);
    return 0;
}

static char *file_in(const char *pkg, const char *rel) { return path_join(pkg, rel); }

#define MANIFEST "Manifest.json"
#define MODEL "Data/com.apple.CoreML/model.mlmodel"
#define WEIGHTS "Data/com.apple.CoreML/weights/weight.bin"

/* A fresh copy of the base package. */
static char *copy_base(void) {
    static int n;
    char *dst = xasprintf("%s/case%d.mlpackage", dir, n++);
    char *wd = xasprintf("%s/Data/com.apple.CoreML/weights", dst);
    Err e;
    assert_int_equal(mkdir_p(wd, &e), 0);
    const char *files[] = {MANIFEST, MODEL, WEIGHTS};
    for (int i = 0; i < 3; i++) {
        char *a = file_in(base, files[i]), *b = file_in(dst, files[i]);
        size_t len;
        char *data = read_text(a, &len);
        write_bytes(b, data, len);
        free(data);
        free(a);
        free(b);
    }
    free(wd);
    return dst;
}

static void expect_open_error(const char *pkg, const char *want) {
    Package *p;
    Err e;
    int rc = pkg_open(&p, pkg, 0, &e);
    if (rc == 0) {
        pkg_close(p);
        print_error("opening %s succeeded; expected an error containing \"%s\"\n", pkg, want);
        fail();
    }
    assert_contains(e.msg, want);
}

/* ==== Files and manifest ==== */

static void replace_in_file(const char *pkg, const char *rel, const char *from, const char *to) {
    char *path = file_in(pkg, rel);
    size_t len;
    char *s = read_text(path, &len);
    char *at = strstr(s, from);
    assert_non_null(at);
    char *out = xasprintf("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    write_bytes(path, out, strlen(out));
    free(out);
    free(s);
    free(path);
}

static void test_base_is_valid(void **state) {
    (void)state;
    Package *p;
    Err e;
    assert_int_equal(pkg_open(&p, base, 0, &e), 0);
    pkg_close(p);
}

static void test_manifest_errors(void **state) {
    (void)state;
    char *p;
    p = copy_base();
    char *m = file_in(p, MANIFEST);
    unlink(m);
    expect_open_error(p, "Manifest.json: No such file");
    write_bytes(m, "{ not json", 10);
    expect_open_error(p, "Manifest.json: not valid JSON");
    free(m);
    free(p);

    p = copy_base();
    replace_in_file(p, MANIFEST, "\"rootModelIdentifier\": \"", "\"rootModelIdentifier\": \"X");
    expect_open_error(p, "names no item");
    free(p);

    p = copy_base();   /* the manifest points nowhere */
    replace_in_file(p, MANIFEST, "com.apple.CoreML/model.mlmodel", "com.apple.CoreML/missing.mlmodel");
    expect_open_error(p, "points to Data/com.apple.CoreML/missing.mlmodel, which does not exist");
    free(p);

    p = copy_base();
    replace_in_file(p, MANIFEST, "\"path\": \"com.apple.CoreML/weights\"", "\"path\": \"com.apple.CoreML/weightz\"");
    expect_open_error(p, "the weights item points to Data/com.apple.CoreML/weightz");
    free(p);

    p = copy_base();
    replace_in_file(p, MANIFEST, "com.apple.CoreML/model.mlmodel", "../base.mlpackage/Data/com.apple.CoreML/model.mlmodel");
    expect_open_error(p, "is not a relative path inside the package");
    free(p);

    p = copy_base();
    replace_in_file(p, MANIFEST, "\"1.0.0\"", "\"2.0.0\"");
    expect_open_error(p, "newer than 1.0.0");
    free(p);

    p = copy_base();
    replace_in_file(p, MANIFEST, "\"author\": \"com.apple.CoreML\",", "");
    expect_open_error(p, "path, name, author and description are required");
    free(p);

    expect_open_error("/nonexistent.mlpackage", "is not a directory");
}

static void test_file_errors(void **state) {
    (void)state;
    char *p, *f;
    size_t len;
    char *data;

    p = copy_base();   /* truncated model.mlmodel */
    f = file_in(p, MODEL);
    data = read_text(f, &len);
    write_bytes(f, data, len / 2);
    expect_open_error(p, "model.mlmodel: not a valid Core ML model protobuf");
    write_bytes(f, "", 0);   /* an empty protobuf is an empty Model */
    expect_open_error(p, "not an ML Program model");
    free(data);
    free(f);
    free(p);

    p = copy_base();   /* no weight.bin */
    f = file_in(p, WEIGHTS);
    unlink(f);
    expect_open_error(p, "weights/weight.bin does not exist");
    free(f);
    free(p);

    p = copy_base();
    f = file_in(p, WEIGHTS);
    data = read_text(f, &len);
    data[4] = 3;   /* version */
    write_bytes(f, data, len);
    expect_open_error(p, "only version 2 (blob storage v2) is supported");
    data[4] = 2;
    data[64] = 0x00;   /* sentinel of the first blob */
    write_bytes(f, data, len);
    expect_open_error(p, "bad sentinel");
    data[64] = (char)0xEF;
    write_bytes(f, data, len - 5);   /* truncated */
    expect_open_error(p, "outside the file");
    data[68] = 3;   /* dtype: uint8 where the const is fp16 (32 bytes = 32 uint8) */
    write_bytes(f, data, len);
    expect_open_error(p, "dtype mismatch");
    data[68] = 1;
    data[72] = 30;   /* size: 15 fp16 elements for a 16-element tensor */
    write_bytes(f, data, len);
    expect_open_error(p, "holds 15 fp16 elements but the tensor using it has 16");
    write_bytes(f, data, 40);
    expect_open_error(p, "truncated weight file");
    free(data);
    free(f);
    free(p);
}

/* weight.bin headers and records that claim more than the file holds, and files far larger
 * than any package part (sparse: refused from their size, nothing read). */
static void put_u64(char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i));
}

static void test_hostile_sizes(void **state) {
    (void)state;
    char *p = copy_base(), *f = file_in(p, WEIGHTS);
    size_t len;
    char *data = read_text(f, &len);
    char *orig = xmalloc(len);
    memcpy(orig, data, len);
    put_u64(data, 0xFFFFFFFFu | ((uint64_t)2 << 32));   /* count 2^32-1, version 2 */
    write_bytes(f, data, len);
    expect_open_error(p, "the header claims 4294967295 blobs but a file of 160 bytes holds at most 1");
    memcpy(data, orig, len);
    put_u64(data + 72, UINT64_MAX);   /* the record's data size */
    write_bytes(f, data, len);
    expect_open_error(p, "has data [128, +18446744073709551615) outside the file (size 160)");
    memcpy(data, orig, len);
    put_u64(data + 80, UINT64_MAX - 63);   /* the record's data offset */
    write_bytes(f, data, len);
    expect_open_error(p, "has data [18446744073709551552, +32) outside the file");
    memcpy(data, orig, len);
    put_u64(data + 80, 64);   /* data overlapping its own record */
    write_bytes(f, data, len);
    expect_open_error(p, "has data [64, +32) outside the file");
    free(orig);
    free(data);
    free(f);
    free(p);

    static const struct { const char *rel; off_t size; const char *want; } big[] = {
        {MODEL, (off_t)3 << 30, "model.mlmodel is too large (3221225472 bytes, limit 2147483648)"},
        {MANIFEST, (off_t)1 << 30, "Manifest.json is too large (1073741824 bytes, limit 1048576)"},
    };
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        p = copy_base();
        f = file_in(p, big[i].rel);
        assert_int_equal(truncate(f, big[i].size), 0);
        expect_open_error(p, big[i].want);
        free(f);
        free(p);
    }
}

/* ==== Protobuf edits ==== */

typedef void (*Edit)(PbModel *m);

static PbFunction *main_fn(PbModel *m) { return m->mlprogram->functions[0]->value; }

static PbOp *op_named(PbModel *m, const char *type, int nth) {
    PbFunction *f = main_fn(m);
    CoreML__Specification__MILSpec__Block *b = f->block_specializations[0]->value;
    for (size_t i = 0; i < b->n_operations; i++)
        if (!strcmp(b->operations[i]->type, type) && nth-- == 0) return b->operations[i];
    fail();
    return NULL;
}

static CoreML__Specification__MILSpec__Value *attr(PbOp *op, const char *key) {
    for (size_t i = 0; i < op->n_attributes; i++)
        if (!strcmp(op->attributes[i]->key, key)) return op->attributes[i]->value;
    fail();
    return NULL;
}

static CoreML__Specification__MILSpec__Argument__Binding *input_binding(PbOp *op, const char *key) {
    for (size_t i = 0; i < op->n_inputs; i++)
        if (!strcmp(op->inputs[i]->key, key)) return op->inputs[i]->value->arguments[0];
    fail();
    return NULL;
}

/* Edits keep the message freeable: replaced strings and submessages are freed and new ones
 * malloc'd (protobuf-c frees with free()), and counts an edit lowers are restored before the
 * message is freed (restore_*). */
static size_t *restore_count, restore_count_value;

static void set_str(char **slot, const char *v) {
    if (*slot && *slot != protobuf_c_empty_string) free(*slot);
    *slot = xstrdup(v);
}
static void lower_count(size_t *count, size_t v) {
    restore_count = count;
    restore_count_value = *count;
    *count = v;
}

static void e_blob_offset(PbModel *m) { attr(op_named(m, "const", 0), "val")->blobfilevalue->offset = 1 << 20; }
static void e_blob_unaligned(PbModel *m) { attr(op_named(m, "const", 0), "val")->blobfilevalue->offset = 72; }
static void e_blob_path(PbModel *m) {
    set_str(&attr(op_named(m, "const", 0), "val")->blobfilevalue->filename, "@model_path/../weights/weight.bin");
}
static void e_undefined_input(PbModel *m) { set_str(&input_binding(op_named(m, "mul", 0), "y")->name, "nowhere"); }
static void e_output_shape(PbModel *m) {
    op_named(m, "mul", 0)->outputs[0]->type->tensortype->dimensions[1]->constant->size = 8;
}
static void e_const_type(PbModel *m) {
    op_named(m, "const", 0)->outputs[0]->type->tensortype->datatype = CORE_ML__SPECIFICATION__MILSPEC__DATA_TYPE__FLOAT32;
}
static void e_unknown_op(PbModel *m) { set_str(&op_named(m, "mul", 0)->type, "frobnicate"); }
static void e_rank(PbModel *m) { op_named(m, "mul", 0)->outputs[0]->type->tensortype->rank = 3; }
static void e_variadic(PbModel *m) {
    CoreML__Specification__MILSpec__Dimension *d = op_named(m, "mul", 0)->outputs[0]->type->tensortype->dimensions[1];
    protobuf_c_message_free_unpacked(&d->constant->base, NULL);
    CoreML__Specification__MILSpec__Dimension__UnknownDimension *u = xmalloc(sizeof *u);
    core_ml__specification__milspec__dimension__unknown_dimension__init(u);
    u->variadic = 1;
    d->dimension_case = CORE_ML__SPECIFICATION__MILSPEC__DIMENSION__DIMENSION_UNKNOWN;
    d->unknown = u;
}
static void e_spec(PbModel *m) { m->specificationversion = 5; }
static void e_program_version(PbModel *m) { m->mlprogram->version = 2; }
static void e_opset(PbModel *m) { set_str(&main_fn(m)->opset, "CoreML99"); }
static void e_no_name(PbModel *m) { lower_count(&op_named(m, "mul", 0)->n_attributes, 0); }
static void e_extra_attr(PbModel *m) { set_str(&op_named(m, "mul", 0)->attributes[0]->key, "foo"); }
static void e_duplicate_output(PbModel *m) { set_str(&op_named(m, "mul", 0)->outputs[0]->name, "x"); }
static void e_immediate_field(PbModel *m) {
    /* an int32 scalar stored in floats */
    CoreML__Specification__MILSpec__TensorValue *tv = attr(op_named(m, "const", 1), "val")->immediatevalue->tensor;
    protobuf_c_message_free_unpacked(&tv->ints->base, NULL);
    CoreML__Specification__MILSpec__TensorValue__RepeatedFloats *fl = xmalloc(sizeof *fl);
    core_ml__specification__milspec__tensor_value__repeated_floats__init(fl);
    fl->n_values = 1;
    fl->values = xmalloc(sizeof(float));
    fl->values[0] = -1.0f;
    tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_FLOATS;
    tv->floats = fl;
}
static void e_immediate_count(PbModel *m) {
    lower_count(&attr(op_named(m, "const", 1), "val")->immediatevalue->tensor->ints->n_values, 0);
}
static void e_state_dtype(PbModel *m) {
    m->description->state[0]->type->statetype->arraytype->datatype = CORE_ML__SPECIFICATION__ARRAY_FEATURE_TYPE__ARRAY_DATA_TYPE__FLOAT32;
}
static void e_desc_input(PbModel *m) { lower_count(&m->description->n_input, 0); }
static void e_desc_shape(PbModel *m) { m->description->input[0]->type->multiarraytype->shape[1] = 17; }
static void e_default_function(PbModel *m) { set_str(&m->description->defaultfunctionname, "frobnicate"); }
static void e_no_block(PbModel *m) { lower_count(&main_fn(m)->n_block_specializations, 0); }
static void e_blocks(PbModel *m) {
    /* field 4 of Operation (nested blocks for control flow): an unknown field to our schema */
    PbOp *op = op_named(m, "mul", 0);
    ProtobufCMessageUnknownField *uf = xcalloc(1, sizeof *uf);
    uf->tag = 4;
    uf->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    uf->len = 1;              /* protobuf-c keeps the length prefix in the data: an empty Block */
    uf->data = xcalloc(1, 1);
    op->base.n_unknown_fields = 1;
    op->base.unknown_fields = uf;
}
static void e_duplicate_input(PbModel *m) {
    PbOp *op = op_named(m, "mul", 0);
    for (size_t i = 0; i < op->n_inputs; i++)
        if (!strcmp(op->inputs[i]->key, "y")) set_str(&op->inputs[i]->key, "x");
}
static void e_op_type_chars(PbModel *m) { set_str(&op_named(m, "mul", 0)->type, "mu l"); }
static void e_write_state_to_tensor(PbModel *m) {
    set_str(&input_binding(op_named(m, "write_state", 0), "input")->name, "y");
}

/* hostile sizes and offsets in the protobuf */
static void e_blob_offset_2_64(PbModel *m) { attr(op_named(m, "const", 0), "val")->blobfilevalue->offset = UINT64_MAX - 63; }
static void e_const_dims_huge(PbModel *m) {
    CoreML__Specification__MILSpec__TensorType *t = op_named(m, "const", 0)->outputs[0]->type->tensortype;
    t->dimensions[0]->constant->size = (uint64_t)1 << 62;
    attr(op_named(m, "const", 0), "val")->type->tensortype->dimensions[0]->constant->size = (uint64_t)1 << 62;
}
static void e_input_dims_huge(PbModel *m) {
    main_fn(m)->inputs[0]->type->tensortype->dimensions[1]->constant->size = UINT64_MAX;
}
static void e_desc_shape_huge(PbModel *m) { m->description->input[0]->type->multiarraytype->shape[1] = INT64_MAX; }

static void expect_edit_error(Edit edit, const char *want, int lenient_ok) {
    char *p = copy_base(), *f = file_in(p, MODEL);
    size_t len;
    char *data = read_text(f, &len);
    PbModel *m = core_ml__specification__model__unpack(NULL, len, (const uint8_t *)data);
    assert_non_null(m);
    restore_count = NULL;
    edit(m);
    size_t n = core_ml__specification__model__get_packed_size(m);
    uint8_t *out = xmalloc(n);
    core_ml__specification__model__pack(m, out);
    write_bytes(f, out, n);
    free(out);
    if (restore_count) *restore_count = restore_count_value;
    core_ml__specification__model__free_unpacked(m, NULL);
    expect_open_error(p, want);
    if (lenient_ok) {
        Package *pkg;
        Err e;
        assert_int_equal(pkg_open(&pkg, p, PKG_OPEN_LENIENT, &e), 0);
        pkg_close(pkg);
    }
    free(data);
    free(f);
    free(p);
}

static void test_protobuf_errors(void **state) {
    (void)state;
    static const struct { Edit edit; const char *want; int lenient_ok; } cases[] = {
        {e_blob_offset, "blob offset 1048576 is out of range", 0},
        {e_blob_unaligned, "is not 64-byte aligned", 0},
        {e_blob_path, "is not a plain path inside the package", 0},
        {e_undefined_input, "input 'y' refers to 'nowhere', which is not defined before this op", 0},
        {e_output_shape, "output 'y' is declared tensor<fp16, [1, 8]> but its inputs give tensor<fp16, [1, 16]>", 0},
        {e_const_type, "const value is tensor<fp16, [16]> but its output is declared tensor<fp32, [16]>", 0},
        {e_unknown_op, "op type 'frobnicate' is not supported", 1},
        {e_rank, "has rank 3 but 2 dimensions", 0},
        {e_variadic, "variadic dimension", 0},
        {e_spec, "specification version 5; ML Programs need 6 or later", 0},
        {e_program_version, "program version 2", 0},
        {e_opset, "unknown opset 'CoreML99'", 0},
        {e_no_name, "has no 'name' attribute", 0},
        {e_extra_attr, "attribute 'foo' is not supported", 0},
        {e_duplicate_output, "a value named 'x' already exists", 0},
        {e_immediate_field, "stored in the wrong TensorValue field", 0},
        {e_immediate_count, "immediate value has 0 elements, its type has 1", 0},
        {e_state_dtype, "state 's' must be FLOAT16", 0},
        {e_desc_input, "input 'x' is not in the model description", 0},
        {e_desc_shape, "'x' has dimension 17 at axis 1 in the description but the program has tensor<fp16, [1, 16]>", 0},
        {e_default_function, "a multifunction description must not use top-level input/output/state", 0},
        {e_no_block, "no block for its opset CoreML8", 0},
        {e_blocks, "nested blocks (control flow)", 0},
        {e_write_state_to_tensor, "input 'input' must be a state", 0},
        {e_duplicate_input, "input 'x' is bound twice", 0},
        {e_op_type_chars, "op type is not a valid identifier", 0},
        {e_blob_offset_2_64, "blob offset 18446744073709551552 is out of range", 0},
        {e_const_dims_huge, "attribute 'val' has dimension 4611686018427387904 at axis 0, too large", 0},
        {e_input_dims_huge, "function input has dimension 18446744073709551615 at axis 1, too large", 0},
        {e_desc_shape_huge, "description of feature 'x' has invalid shape value 9223372036854775807", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_edit_error(cases[i].edit, cases[i].want, cases[i].lenient_ok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_is_valid),
        cmocka_unit_test(test_manifest_errors),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_hostile_sizes),
        cmocka_unit_test(test_protobuf_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
