/* kernels.c - which kernel runs each op of the table in mil/ops.h.
 *
 * Every op id except const and constexpr_lut_to_dense (evaluated at load) and read_state /
 * write_state (run by the interpreter itself) must have an entry; a unit test walks the whole
 * op table to check it. moves_data marks ops whose outputs are input elements moved around,
 * which need no fp16 rounding.
 */
#include "runtime/rt_internal.h"

typedef struct KernelEntry {
    MilOpId id;
    KernelFn fn;
    int moves_data;
} KernelEntry;

static const KernelEntry kernels[] = {
    {MIL_OP_CONV, k_conv, 0},
    {MIL_OP_LINEAR, k_linear, 0},
    {MIL_OP_MATMUL, k_matmul, 0},
    {MIL_OP_ADD, k_binary, 0},
    {MIL_OP_SUB, k_binary, 0},
    {MIL_OP_MUL, k_binary, 0},
    {MIL_OP_REAL_DIV, k_binary, 0},
    {MIL_OP_MAXIMUM, k_binary, 1},
    {MIL_OP_MINIMUM, k_binary, 1},
    {MIL_OP_POW, k_binary, 0},
    {MIL_OP_GREATER_EQUAL, k_binary, 1},
    {MIL_OP_GREATER, k_binary, 1},
    {MIL_OP_LESS, k_binary, 1},
    {MIL_OP_LESS_EQUAL, k_binary, 1},
    {MIL_OP_EQUAL, k_binary, 1},
    {MIL_OP_NOT_EQUAL, k_binary, 1},
    {MIL_OP_SQRT, k_unary, 0},
    {MIL_OP_RSQRT, k_unary, 0},
    {MIL_OP_EXP, k_unary, 0},
    {MIL_OP_TANH, k_unary, 0},
    {MIL_OP_SILU, k_unary, 0},
    {MIL_OP_RELU, k_unary, 1},
    {MIL_OP_SIGMOID, k_unary, 0},
    {MIL_OP_IDENTITY, k_identity, 1},
    {MIL_OP_GELU, k_unary, 0},
    {MIL_OP_SOFTMAX, k_softmax, 0},
    {MIL_OP_LAYER_NORM, k_layer_norm, 0},
    {MIL_OP_REDUCE_MEAN, k_reduce, 0},
    {MIL_OP_REDUCE_SUM, k_reduce, 0},
    {MIL_OP_REDUCE_MAX, k_reduce, 1},
    {MIL_OP_REDUCE_ARGMAX, k_reduce_argmax, 1},
    {MIL_OP_GATHER, k_gather, 1},
    {MIL_OP_GATHER_ALONG_AXIS, k_gather_along_axis, 1},
    {MIL_OP_CONCAT, k_concat, 1},
    {MIL_OP_SPLIT, k_split, 1},
    {MIL_OP_SLICE_BY_INDEX, k_slice_by_index, 1},
    {MIL_OP_SLICE_UPDATE, k_slice_update, 1},
    {MIL_OP_RESHAPE, k_reshape, 1},
    {MIL_OP_TRANSPOSE, k_transpose, 1},
    {MIL_OP_EXPAND_DIMS, k_expand_dims, 1},
    {MIL_OP_SQUEEZE, k_squeeze, 1},
    {MIL_OP_TILE, k_tile, 1},
    {MIL_OP_CAST, k_cast, 0},
    {MIL_OP_SELECT, k_select, 1},
    {MIL_OP_CLIP, k_clip, 0},
    {MIL_OP_BAND_PART, k_band_part, 1},
};

KernelFn kernel_for(MilOpId id, int *moves_data) {
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i].id == id) {
            *moves_data = kernels[i].moves_data;
            return kernels[i].fn;
        }
    *moves_data = 0;
    return NULL;
}
