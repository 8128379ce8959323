/* chat_template.c - built-in renderers for the chat templates of the families we
 * convert (see chat_template.h for what each writes and how it is verified). */
#include "runtime/chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runtime/strbuf.h"
#include "runtime/unicode.h"

#define DEEPSEEK_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define DEEPSEEK_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"
#define DEEPSEEK_EOS "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"

static const char *const FORMAT_NAMES[] = {"auto", "llama3", "chatml", "gemma", "deepseek"};

const char *chat_format_name(ChatFormat f) {
    return (unsigned)f < sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES ? FORMAT_NAMES[f] : "?";
}

int chat_format_parse(const char *name, ChatFormat *out) {
    for (size_t i = 0; i < sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES; i++)
        if (!strcmp(name, FORMAT_NAMES[i])) {
            *out = (ChatFormat)i;
            return 0;
        }
    if (!strcmp(name, "qwen")) {
        *out = CHAT_FORMAT_CHATML;
        return 0;
    }
    return -1;
}

/* ---- detection ------------------------------------------------------------------------ */

static int has_token(const Tokenizer *t, const char *s) { return tok_token_to_id(t, s, strlen(s)) >= 0; }

/* Marker strings, in the order they are tried. */
static const struct {
    const char *marker;
    ChatFormat format;
} MARKERS[] = {
    {"<|start_header_id|>", CHAT_FORMAT_LLAMA3},
    {"<|im_start|>", CHAT_FORMAT_CHATML},
    {"<start_of_turn>", CHAT_FORMAT_GEMMA},
    {DEEPSEEK_USER, CHAT_FORMAT_DEEPSEEK},
};

int chat_detect_format(const Tokenizer *t, ChatFormat *out, Err *e) {
    const char *tmpl = tok_chat_template(t);
    for (size_t i = 0; i < sizeof MARKERS / sizeof *MARKERS; i++) {
        if (tmpl ? strstr(tmpl, MARKERS[i].marker) != NULL : has_token(t, MARKERS[i].marker)) {
            *out = MARKERS[i].format;
            return 0;
        }
    }
    if (tmpl)
        return err_set(e, "the chat_template of %s is none of the built-in formats (Llama 3, ChatML/Qwen, Gemma, "
                          "DeepSeek-R1); other Jinja templates are not rendered: choose a format explicitly",
                       tok_dir(t));
    return err_set(e, "%s has no chat_template and none of the chat tokens of Llama 3, ChatML/Qwen, Gemma or "
                      "DeepSeek: choose a format explicitly", tok_dir(t));
}

/* ---- helpers ----------------------------------------------------------------------------- */

/* Jinja's |trim: strip leading and trailing whitespace. */
static void add_trimmed(StrBuf *b, const char *s) {
    size_t n = strlen(s), a = 0, z = n;
    uint32_t cp;
    int len;
    while (a < n && (len = utf8_decode(s + a, n - a, &cp)) > 0 && uni_is_whitespace(cp)) a += (size_t)len;
    while (z > a) {
        size_t start = z - 1;
        while (start > a && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
        if (utf8_decode(s + start, z - start, &cp) <= 0 || !uni_is_whitespace(cp)) break;
        z = start;
    }
    sb_add(b, s + a, z - a);
}

static const char *bos_string(const Tokenizer *t, size_t *len) {
    const char *s = tok_id_to_token(t, tok_bos_id(t), len);
    if (!s) *len = 0;
    return s ? s : "";
}

/* The text after the last "</think>" (Qwen3 and DeepSeek drop earlier reasoning). */
static const char *after_think(const char *content) {
    const char *p = content, *hit;
    while ((hit = strstr(p, "</think>"))) p = hit + strlen("</think>");
    return p;
}

static int template_says(const Tokenizer *t, const char *needle) {
    const char *tmpl = tok_chat_template(t);
    return tmpl && strstr(tmpl, needle);
}

static int check_role(const ChatMessage *m, int i, Err *e) {
    if (!m->role || !m->content) return err_set(e, "chat message %d has no role or no content", i);
    if (strcmp(m->role, "system") && strcmp(m->role, "user") && strcmp(m->role, "assistant"))
        return err_set(e, "chat message %d has role \"%s\"; use system, user or assistant", i, m->role);
    return 0;
}

/* ---- llama3 --------------------------------------------------------------------------------- */

static void llama3_turn(StrBuf *b, const char *role, const char *content) {
    sb_adds(b, "<|start_header_id|>");
    sb_adds(b, role);
    sb_adds(b, "<|end_header_id|>\n\n");
    add_trimmed(b, content);
    sb_adds(b, "<|eot_id|>");
}

static void render_llama3(const Tokenizer *t, const ChatMessage *m, int n, const ChatOptions *o, StrBuf *b) {
    size_t bos_len;
    const char *bos = bos_string(t, &bos_len);
    sb_add(b, bos, bos_len);
    int first = 0;
    if (template_says(t, "Cutting Knowledge Date")) {
        /* Llama 3.1+: a system header is always written; a system message goes inside it. */
        sb_adds(b, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ");
        sb_adds(b, o->date ? o->date : "26 Jul 2024");
        sb_adds(b, "\n\n");
        if (n > 0 && !strcmp(m[0].role, "system")) {
            add_trimmed(b, m[0].content);
            first = 1;
        }
        sb_adds(b, "<|eot_id|>");
    }
    for (int i = first; i < n; i++) llama3_turn(b, m[i].role, m[i].content);
    sb_adds(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* ---- chatml (Qwen) ------------------------------------------------------------------------- */

/* A default system prompt written literally into the template, as Qwen 2.5's
 * '<|im_start|>system\nYou are Qwen, ...<|im_end|>\n' (NULL if there is none). */
static char *chatml_default_system(const Tokenizer *t) {
    const char *tmpl = tok_chat_template(t);
    static const char head[] = "<|im_start|>system\\n";
    for (const char *p = tmpl ? strstr(tmpl, head) : NULL; p; p = strstr(p + 1, head)) {
        const char *text = p + strlen(head), *end = strstr(text, "<|im_end|>");
        if (!end || end == text) continue;
        if (memchr(text, '\'', (size_t)(end - text)) || memchr(text, '"', (size_t)(end - text))) continue;
        char *s = xmalloc((size_t)(end - text) + 1);
        memcpy(s, text, (size_t)(end - text));
        s[end - text] = 0;
        return s;
    }
    return NULL;
}

static void strip_newlines(const char **a, const char **z) {
    while (*a < *z && **a == '\n') (*a)++;
    while (*z > *a && (*z)[-1] == '\n') (*z)--;
}

/* Qwen3 writes assistant turns after the last user message with their reasoning:
 * <think>\nREASONING\n</think>\n\nANSWER, where REASONING is what precedes the first
 * </think> (after its last <think>) and ANSWER what follows the last </think>. */
static void chatml_assistant_with_think(StrBuf *b, const char *content) {
    const char *answer = after_think(content);
    const char *r = content, *rz = content;
    if (answer != content) {
        rz = strstr(content, "</think>");
        const char *hit;
        for (const char *p = content; (hit = strstr(p, "<think>")) && hit < rz; p = hit + 1) r = hit + strlen("<think>");
    }
    strip_newlines(&r, &rz);
    while (*answer == '\n') answer++;
    sb_adds(b, "<think>\n");
    sb_add(b, r, (size_t)(rz - r));
    sb_adds(b, "\n</think>\n\n");
    sb_adds(b, answer);
}

/* A user message that only carries a tool's output does not count as the query. */
static int is_tool_response(const char *s) {
    size_t n = strlen(s), tl = strlen("</tool_response>");
    return !strncmp(s, "<tool_response>", strlen("<tool_response>")) && n >= tl && !strcmp(s + n - tl, "</tool_response>");
}

static void render_chatml(const Tokenizer *t, const ChatMessage *m, int n, const ChatOptions *o, StrBuf *b) {
    int qwen3 = template_says(t, "</think>");
    int start = 0;
    if (n > 0 && !strcmp(m[0].role, "system")) {
        sb_adds(b, "<|im_start|>system\n");
        sb_adds(b, m[0].content);
        sb_adds(b, "<|im_end|>\n");
        start = 1;
    } else {
        char *dflt = chatml_default_system(t);
        if (dflt) {
            sb_adds(b, "<|im_start|>system\n");
            sb_adds(b, dflt);
            sb_adds(b, "<|im_end|>\n");
            free(dflt);
        }
    }
    int last_user = n - 1;
    for (int i = n - 1; i >= 0; i--)
        if (!strcmp(m[i].role, "user") && !is_tool_response(m[i].content)) {
            last_user = i;
            break;
        }
    for (int i = start; i < n; i++) {
        sb_adds(b, "<|im_start|>");
        sb_adds(b, m[i].role);
        sb_addc(b, '\n');
        if (qwen3 && !strcmp(m[i].role, "assistant")) {
            const char *answer = after_think(m[i].content);
            int has_reasoning = answer != m[i].content;
            if (i > last_user && (i == n - 1 || has_reasoning)) {
                chatml_assistant_with_think(b, m[i].content);
            } else {
                while (has_reasoning && *answer == '\n') answer++;
                sb_adds(b, answer);
            }
        } else {
            sb_adds(b, m[i].content);
        }
        sb_adds(b, "<|im_end|>\n");
    }
    sb_adds(b, "<|im_start|>assistant\n");
    if (o->no_think && (!tok_chat_template(t) || template_says(t, "enable_thinking")))
        sb_adds(b, "<think>\n\n</think>\n\n");
}

/* ---- gemma ------------------------------------------------------------------------------------- */

static int render_gemma(const Tokenizer *t, const ChatMessage *m, int n, StrBuf *b, Err *e) {
    size_t bos_len;
    const char *bos = bos_string(t, &bos_len);
    sb_add(b, bos, bos_len);
    const char *prefix = NULL;
    int start = 0;
    if (n > 0 && !strcmp(m[0].role, "system")) {
        prefix = m[0].content;
        start = 1;
    }
    for (int i = start; i < n; i++) {
        int expect_user = (i - start) % 2 == 0;
        if ((strcmp(m[i].role, "user") == 0) != expect_user)
            return err_set(e, "Gemma chats must alternate user/assistant/user/...; message %d is \"%s\"", i, m[i].role);
        sb_adds(b, "<start_of_turn>");
        sb_adds(b, expect_user ? "user" : "model");
        sb_addc(b, '\n');
        if (i == start && prefix) {
            sb_adds(b, prefix);
            sb_adds(b, "\n\n");
        }
        add_trimmed(b, m[i].content);
        sb_adds(b, "<end_of_turn>\n");
    }
    sb_adds(b, "<start_of_turn>model\n");
    return 0;
}

/* ---- deepseek (R1 distills) ------------------------------------------------------------------- */

static void render_deepseek(const Tokenizer *t, const ChatMessage *m, int n, StrBuf *b) {
    size_t bos_len;
    const char *bos = bos_string(t, &bos_len);
    sb_add(b, bos, bos_len);
    const char *system = "";
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].role, "system")) system = m[i].content; /* the last one, unseparated */
    sb_adds(b, system);
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "user")) {
            sb_adds(b, DEEPSEEK_USER);
            sb_adds(b, m[i].content);
        } else if (!strcmp(m[i].role, "assistant")) {
            sb_adds(b, DEEPSEEK_ASSISTANT);
            sb_adds(b, after_think(m[i].content));
            sb_adds(b, DEEPSEEK_EOS);
        }
    }
    sb_adds(b, DEEPSEEK_ASSISTANT);
    if (!tok_chat_template(t) || template_says(t, DEEPSEEK_ASSISTANT "<think>")) sb_adds(b, "<think>\n");
}

/* ---- entry points ------------------------------------------------------------------------------- */

int chat_render(const Tokenizer *t, const ChatMessage *msgs, int n, const ChatOptions *o, char **prompt, Err *e) {
    *prompt = NULL;
    ChatOptions dflt = {0};
    if (!o) o = &dflt;
    if (n <= 0) return err_set(e, "a chat prompt needs at least one message");
    for (int i = 0; i < n; i++)
        if (check_role(&msgs[i], i, e) < 0) return -1;
    ChatFormat f = o->format;
    if (f == CHAT_FORMAT_AUTO && chat_detect_format(t, &f, e) < 0) return -1;
    StrBuf b = {0};
    switch (f) {
    case CHAT_FORMAT_LLAMA3: render_llama3(t, msgs, n, o, &b); break;
    case CHAT_FORMAT_CHATML: render_chatml(t, msgs, n, o, &b); break;
    case CHAT_FORMAT_GEMMA:
        if (render_gemma(t, msgs, n, &b, e) < 0) {
            sb_free(&b);
            return -1;
        }
        break;
    case CHAT_FORMAT_DEEPSEEK: render_deepseek(t, msgs, n, &b); break;
    default: return err_set(e, "unknown chat format %d", (int)f);
    }
    *prompt = sb_take(&b, NULL);
    return 0;
}

int chat_encode(const Tokenizer *t, const ChatMessage *msgs, int n, const ChatOptions *o, int **ids, int *n_ids,
                Err *e) {
    *ids = NULL;
    *n_ids = 0;
    char *prompt;
    if (chat_render(t, msgs, n, o, &prompt, e) < 0) return -1;
    int rc = tok_encode(t, prompt, strlen(prompt), 0, ids, n_ids, e);
    free(prompt);
    return rc;
}
