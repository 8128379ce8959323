/* print.h - a MIL program as model.mil text, in the syntax of the model.mil files that Core ML's
 * compiler (coremlc) writes into a compiled .mlmodelc (coreml_format.md section 9.3):
 *
 *     program(1.3)
 *     {
 *         func main<ios18>(tensor<fp16, [1, 64]> x, state<tensor<fp16, [2, 64]>> kv) {
 *                 int32 ax = const()[name = string("ax"), val = int32(-1)];
 *                 tensor<fp16, [64, 64]> w = const()[name = string("w"), val = tensor<fp16, [64, 64]>(BLOBFILE(path = string("@model_path/weights/weight.bin"), offset = uint64(64)))];
 *                 tensor<fp16, [1, 64]> y = linear(bias = b, weight = w, x = x)[name = string("y")];
 *             } -> (y);
 *     }
 *
 * Arguments are sorted by name, variadic ones parenthesized, floats in C99 hex notation.
 * Inputs with enumerated shapes get a [FlexibleShapeInformation = ...] attribute after the
 * signature; its exact spelling is our best reading of compiled models, not verified against
 * coremlc. The text is for people (anemll inspect --mil); nothing parses it back.
 */
#ifndef ANEMLL_MIL_PRINT_H
#define ANEMLL_MIL_PRINT_H

#include "mil/mil.h"

/* The whole program as text; caller frees. */
char *mil_program_to_text(const MilProgram *p);

#endif
