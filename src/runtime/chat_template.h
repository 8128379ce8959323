/* chat_template.h - chat prompts for the model families we convert.
 *
 * A full Jinja engine is out of scope. Instead the family is recognised from the
 * tokenizer's chat_template (or, without one, from its special tokens) and a
 * built-in renderer writes exactly what that template writes for plain
 * conversations (system / user / assistant messages, no tools, no images), with
 * add_generation_prompt=True:
 *
 *   llama3    <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
 *             <|start_header_id|>assistant<|end_header_id|>\n\n          (contents trimmed)
 *             Llama 3.1+ templates ("Cutting Knowledge Date") also get their system
 *             header with "Today Date: 26 Jul 2024" (or ChatOptions.date).
 *   chatml    <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n  (Qwen 2.5 / 3)
 *             + "<think>\n\n</think>\n\n" with no_think (Qwen3, enable_thinking=false);
 *             a default system prompt written into the template (Qwen 2.5) is used.
 *   gemma     <bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n
 *             (a system message becomes a prefix of the first user turn)
 *   deepseek  <｜begin▁of▁sentence｜>SYSTEM<｜User｜>Hi<｜Assistant｜><think>\n (R1 distills)
 *
 * The outputs for the real Llama 3, Qwen3 and Gemma 3 templates are checked in the
 * tests against the Hugging Face JS Jinja engine's rendering (tests/data/tokenizer/).
 * The rendered prompt already holds its special tokens: encode it with flags 0
 * (as apply_chat_template does), or use chat_encode.
 */
#ifndef ANEMLL_CHAT_TEMPLATE_H
#define ANEMLL_CHAT_TEMPLATE_H

#include "common/err.h"
#include "runtime/tokenizer.h"

typedef enum {
    CHAT_FORMAT_AUTO = 0, /* detect from the tokenizer */
    CHAT_FORMAT_LLAMA3,
    CHAT_FORMAT_CHATML,
    CHAT_FORMAT_GEMMA,
    CHAT_FORMAT_DEEPSEEK,
} ChatFormat;

typedef struct {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} ChatMessage;

typedef struct {
    ChatFormat format; /* CHAT_FORMAT_AUTO: chat_detect_format */
    int no_think;      /* chatml: enable_thinking=false (only if the template knows it, or no template) */
    const char *date;  /* llama3.1+: "Today Date" (NULL: "26 Jul 2024", the templates' fallback) */
} ChatOptions;

/* The family of the tokenizer's chat template, or of its special tokens when it has
 * no template. Fails (naming the folder) when neither says. */
int chat_detect_format(const Tokenizer *t, ChatFormat *out, Err *e);

/* Renders the conversation followed by the assistant header (the generation prompt).
 * *prompt is allocated (caller frees). Fails on an empty conversation, unknown
 * roles, or (gemma) roles that do not alternate user/assistant. */
int chat_render(const Tokenizer *t, const ChatMessage *msgs, int n, const ChatOptions *o, char **prompt, Err *e);

/* chat_render + tok_encode(prompt, flags 0). */
int chat_encode(const Tokenizer *t, const ChatMessage *msgs, int n, const ChatOptions *o, int **ids, int *n_ids,
                Err *e);

/* "llama3", "chatml", "gemma", "deepseek" ("auto" for AUTO). */
const char *chat_format_name(ChatFormat f);
/* Inverse of chat_format_name (also accepts "qwen" for chatml); -1 if unknown. */
int chat_format_parse(const char *name, ChatFormat *out);

#endif
