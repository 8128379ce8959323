/* internal.h - helpers shared by the files of the mil module (not part of its API). */
#ifndef ANEMLL_MIL_INTERNAL_H
#define ANEMLL_MIL_INTERNAL_H

#include "mil/mil.h"

/* Blobs up to this size keep an in-memory copy when streamed to a sink, so that type
 * inference, printing and comparisons can read them (split sizes, small LUTs). */
#define MIL_KEEP_BLOB_COPY (64 * 1024)

typedef struct MilNameSet MilNameSet;
MilNameSet *mil_names_new(void);
void mil_names_free(MilNameSet *s);
void *mil_names_get(const MilNameSet *s, const char *key);
void mil_names_put(MilNameSet *s, const char *key, void *val);

int mil_check_new_name(MilFunction *f, const char *name, const char *what);
const char *mil_unique_name(MilFunction *f, const char *base, int always_suffix);
const char *mil_auto_name(MilFunction *f, const char *prefix);
void mil_register_value(MilFunction *f, MilValue *v);
MilOp *mil_new_op(MilFunction *f, const char *type, const MilOpDef *def, const char *name, int n_outputs);
void mil_append_op(MilFunction *f, MilOp *op);

#endif
