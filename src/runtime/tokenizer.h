/* tokenizer.h - Hugging Face tokenizers from tokenizer.json, in C.
 *
 * Implements the tokenizer.json format generically (the pipeline Hugging Face's
 * `tokenizers` library runs): added tokens split out first (longest match, honouring
 * single_word / lstrip / rstrip / normalized) -> normalizer (NFC/NFD/NFKC/NFKD,
 * Replace, Prepend, Strip, Sequence) -> pre-tokenizer (Split with a PCRE2 regex or a
 * string, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Sequence) ->
 * BPE model (merge ranks in a hash map, a priority queue per word; byte_fallback,
 * unk/fuse_unk, ignore_merges, continuing_subword_prefix, end_of_word_suffix) ->
 * post-processor (TemplateProcessing, ByteLevel, Roberta/BertProcessing, Sequence).
 * Decoding runs the decoder (ByteLevel, Replace, ByteFallback, Fuse, Strip,
 * Metaspace, BPEDecoder, Sequence). This covers Llama 3, Qwen 2.5/3, Gemma 3 and
 * DeepSeek-R1-Distill tokenizers; anything else is refused at load with a message
 * naming the unsupported component (Unigram and WordPiece models, Lowercase, ...).
 *
 *     Err e = {0};
 *     Tokenizer *tok;
 *     if (tok_load(&tok, "models/qwen3", &e) < 0) { report(e.msg); ... }
 *     int *ids, n;
 *     if (tok_encode(tok, text, strlen(text), TOK_ADD_SPECIAL, &ids, &n, &e) < 0) ...
 *     char *back;
 *     if (tok_decode(tok, ids, n, 0, &back, NULL, &e) < 0) ...
 *     free(ids); free(back); tok_free(tok);
 *
 * Conventions: functions return 0 on success and -1 with a message in *e; output
 * arrays and strings are allocated for the caller, who frees them with free().
 * A loaded Tokenizer is immutable: any number of threads may use it at once.
 * Text is UTF-8; encoding refuses invalid UTF-8 (naming the byte offset).
 */
#ifndef ANEMLL_TOKENIZER_H
#define ANEMLL_TOKENIZER_H

#include <stddef.h>

#include "common/err.h"

typedef struct Tokenizer Tokenizer;

/* Loads DIR/tokenizer.json, plus DIR/tokenizer_config.json when present (bos/eos
 * tokens, clean_up_tokenization_spaces, additional special tokens, chat_template;
 * DIR/chat_template.jinja is read when the config has no template) and the eos ids
 * of DIR/config.json and DIR/generation_config.json when present (stop tokens). */
int tok_load(Tokenizer **out, const char *dir, Err *e);
/* The same from tokenizer.json text alone (no configuration files: no bos/eos
 * tokens or chat template; the stop ids are the known end tokens the vocabulary
 * has). `name` stands for the file in errors. Used by tests and the fuzz target. */
int tok_load_json(Tokenizer **out, const char *json, size_t len, const char *name, Err *e);
void tok_free(Tokenizer *t);

/* ---- encoding -------------------------------------------------------------------- */

enum {
    /* Add what the tokenizer's post_processor adds (Hugging Face encode()'s default
     * add_special_tokens=True): Gemma 3 prepends <bos>, Qwen3 adds nothing. */
    TOK_ADD_SPECIAL = 1,
};

/* Encodes text[0..len) into *ids (*n of them; an empty text gives n = 0 and a
 * non-NULL array). */
int tok_encode(const Tokenizer *t, const char *text, size_t len, int flags, int **ids, int *n, Err *e);

/* ---- decoding -------------------------------------------------------------------- */

enum {
    TOK_SKIP_SPECIAL = 1, /* leave out special tokens (skip_special_tokens=True) */
    TOK_NO_CLEANUP = 2,   /* never apply clean_up_tokenization_spaces (" ," -> "," ...);
                             otherwise it follows tokenizer_config.json (default on) */
};

/* Decodes ids into UTF-8 text (invalid byte sequences become U+FFFD). Ids that name
 * no token (negative, past the vocabulary, padding ids of a bigger embedding) are
 * skipped, as Hugging Face does. *len may be NULL. */
int tok_decode(const Tokenizer *t, const int *ids, int n, int flags, char **text, size_t *len, Err *e);

/* Incremental decoding for printing generated tokens as they arrive: each push
 * returns the text that became printable (possibly ""), holding back incomplete
 * UTF-8 characters and text a later token may still change. Costs O(few tokens)
 * per push. Special tokens are skipped. */
typedef struct {
    int *ids;
    int n, cap;
    int prefix, read; /* window: ids[prefix..read) were already turned into printed text */
} TokStream;
void tok_stream_init(TokStream *s);
int tok_stream_push(const Tokenizer *t, TokStream *s, int id, char **text, Err *e);
/* Whatever is still held back (at the end of generation). */
int tok_stream_flush(const Tokenizer *t, TokStream *s, char **text, Err *e);
void tok_stream_free(TokStream *s);

/* ---- vocabulary ---------------------------------------------------------------- */

/* Highest token id + 1 (model vocab and added tokens). */
int tok_vocab_size(const Tokenizer *t);
/* The token's string as stored in the vocabulary (e.g. "Ġworld", "▁world", "<0x0A>"),
 * not NUL-terminated inside a longer buffer: use *len. NULL if the id has no token. */
const char *tok_id_to_token(const Tokenizer *t, int id, size_t *len);
/* Id of a token string (added tokens first, then the model vocab), or -1. */
int tok_token_to_id(const Tokenizer *t, const char *token, size_t len);
/* 1 if the id is a special token (skipped by TOK_SKIP_SPECIAL). */
int tok_is_special(const Tokenizer *t, int id);
/* bos_token / eos_token of tokenizer_config.json, or -1. */
int tok_bos_id(const Tokenizer *t);
int tok_eos_id(const Tokenizer *t);

/* Ids that end a generated reply: eos_token, the eos ids of config.json and
 * generation_config.json, and whichever of <|eot_id|>, <|eom_id|>, <|end_of_text|>,
 * <|im_end|>, <|endoftext|>, <end_of_turn>, <eos>, </s>, <｜end▁of▁sentence｜> exist.
 * Returns the count; *ids points into the tokenizer (do not free). */
int tok_stop_ids(const Tokenizer *t, const int **ids);
int tok_is_stop(const Tokenizer *t, int id);

/* The chat_template of tokenizer_config.json (or chat_template.jinja), or NULL. */
const char *tok_chat_template(const Tokenizer *t);
/* The folder the tokenizer was loaded from. */
const char *tok_dir(const Tokenizer *t);

#endif
