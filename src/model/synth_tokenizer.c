/* synth_tokenizer.c - tokenizer files for synthetic checkpoints (see synth.h).
 *
 * The built-in tokenizer is a real Hugging Face tokenizer.json: byte-level BPE whose 256 base
 * tokens are the bytes in GPT-2's printable-character mapping, merges learned here from a
 * short built-in English text, the Llama 3 pre-tokenizer (regex split, then byte-level), a
 * post-processor that adds <|begin_of_text|>, and a byte-level decoder.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "io/json.h"
#include "model/synth.h"

/* ==== byte-level alphabet ================================================= */

/* GPT-2's byte -> printable code point map; base token id i is byte order[i]. */
static void byte_alphabet(int order[256], int codepoint[256]) {
    int n = 0, extra = 0, taken[256] = {0};
    for (int b = '!'; b <= '~'; b++) order[n++] = b, taken[b] = 1;
    for (int b = 0xA1; b <= 0xAC; b++) order[n++] = b, taken[b] = 1;
    for (int b = 0xAE; b <= 0xFF; b++) order[n++] = b, taken[b] = 1;
    for (int b = 0; b < 256; b++) codepoint[b] = b;
    for (int b = 0; b < 256; b++)
        if (!taken[b]) {
            order[n++] = b;
            codepoint[b] = 256 + extra++;
        }
}

static size_t utf8_put(char *out, int cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2; /* the map never exceeds U+0143 */
}

/* ==== BPE training ======================================================== */

static const char *corpus =
    "The small model reads a line of text and guesses the next word. It has seen very little, "
    "so its guesses are poor, but the shape of the work is the same as for a large one: the "
    "text is cut into pieces, each piece becomes a number, and the numbers pass through the "
    "layers of the network one after another. When the user asks a question, the assistant "
    "answers with the words it thinks are most likely to follow. This is a test of the "
    "converter, the runtime and the tokenizer, and nothing in it should be taken as true. "
    "Hello there! How are you today? I am fine, thank you. What is the time? It is 10:45 in "
    "the morning, on the 3rd of May 2024. The weather is warm and the sky is clear. There are "
    "1, 2, 3, 4, 5 apples on the table and 12 more in the kitchen. Please read the following "
    "instructions with care before you start the program: open the file, write the numbers, "
    "then close it and check that the result is what you expected. If something goes wrong, "
    "stop and try again from the beginning. The quick brown fox jumps over the lazy dog. "
    "Models that run on the neural engine work with half precision numbers, which hold values "
    "up to sixty-five thousand; larger values turn into infinity and the answer is lost. "
    "We measure, we compare, and we write down what we found. The reference is the truth for "
    "these tests: every converted part must give the same tokens as the reference does.";

typedef struct Sym {
    char text[64];
    int len;
} Sym;

typedef struct Word {
    int sym[64];
    int n, count;
} Word;

static int is_letter(char c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }

/* Splits the corpus into words the way a GPT-style pre-tokenizer would (an optional leading
 * space, then letters, or up to 3 digits, or one other character), counting repeats. */
static int split_words(Word *words, int max_words) {
    int n = 0;
    const char *p = corpus;
    while (*p) {
        const char *s = p;
        if (*p == ' ' && p[1] && p[1] != ' ') p++;
        if (is_letter(*p)) {
            while (is_letter(*p) && p - s < 60) p++;
        } else if (*p >= '0' && *p <= '9') {
            while (*p >= '0' && *p <= '9' && p - s < 3) p++;
        } else {
            p++;
        }
        int len = (int)(p - s), found = -1;
        for (int i = 0; i < n && found < 0; i++) {
            int same = words[i].n == len;
            for (int k = 0; k < len && same; k++) same = words[i].sym[k] == (unsigned char)s[k];
            if (same) found = i;
        }
        if (found >= 0) {
            words[found].count++;
        } else if (n < max_words) {
            words[n].n = len;
            words[n].count = 1;
            for (int k = 0; k < len; k++) words[n].sym[k] = (unsigned char)s[k];
            n++;
        }
    }
    return n;
}

/* Pair counts in a small open-addressing table keyed by (left, right). */
#define PAIR_SLOTS 8192
typedef struct PairCount {
    int left, right, count;
} PairCount;

static void count_pair(PairCount *t, int l, int r, int c) {
    unsigned h = ((unsigned)l * 2654435761u ^ (unsigned)r * 40503u) & (PAIR_SLOTS - 1);
    while (t[h].count && (t[h].left != l || t[h].right != r)) h = (h + 1) & (PAIR_SLOTS - 1);
    t[h].left = l, t[h].right = r, t[h].count += c;
}

/* Learns up to max_merges merges: the most frequent adjacent pair, ties broken by the merged
 * text so the result is deterministic, until no pair occurs twice. syms[0..256) are the bytes;
 * merge m joins left[m] and right[m] into syms[256 + m]. Returns the number of merges. */
static int learn_merges(Sym *syms, int *left, int *right, int max_merges) {
    int order[256], cp[256];
    byte_alphabet(order, cp);
    for (int b = 0; b < 256; b++) syms[b].len = (int)utf8_put(syms[b].text, cp[b]);
    Word *words = xcalloc(1024, sizeof *words);
    PairCount *table = xmalloc(sizeof *table * PAIR_SLOTS);
    int nw = split_words(words, 1024), m = 0;
    for (; m < max_merges; m++) {
        memset(table, 0, sizeof *table * PAIR_SLOTS);
        for (int w = 0; w < nw; w++)
            for (int i = 0; i + 1 < words[w].n; i++) count_pair(table, words[w].sym[i], words[w].sym[i + 1], words[w].count);
        int best = -1;
        char best_text[128] = "", t[128];
        for (int h = 0; h < PAIR_SLOTS; h++) {
            const PairCount *pc = &table[h];
            if (pc->count < 2 || syms[pc->left].len + syms[pc->right].len >= 63) continue;
            snprintf(t, sizeof t, "%s%s", syms[pc->left].text, syms[pc->right].text);
            if (best < 0 || pc->count > table[best].count || (pc->count == table[best].count && strcmp(t, best_text) < 0)) {
                best = h;
                snprintf(best_text, sizeof best_text, "%s", t);
            }
        }
        if (best < 0) break;
        int id = 256 + m, bl = table[best].left, br = table[best].right;
        left[m] = bl, right[m] = br;
        syms[id].len = snprintf(syms[id].text, sizeof syms[id].text, "%s", best_text);
        for (int w = 0; w < nw; w++) {
            int k = 0;
            for (int i = 0; i < words[w].n; i++) {
                if (i + 1 < words[w].n && words[w].sym[i] == bl && words[w].sym[i + 1] == br) {
                    words[w].sym[k++] = id;
                    i++;
                } else {
                    words[w].sym[k++] = words[w].sym[i];
                }
            }
            words[w].n = k;
        }
    }
    free(table);
    free(words);
    return m;
}

/* ==== tokenizer.json ====================================================== */

static const char *llama3_split_regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

static const char *chat_template =
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if "
    "add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}";

static const char *specials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                 "<|eot_id|>"};
#define N_SPECIALS 5

static cJSON *byte_level(int add_prefix_space, int trim_offsets, int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

static cJSON *template_piece(const char *kind, const char *id, int type_id) {
    cJSON *o = cJSON_CreateObject(), *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "id", id);
    cJSON_AddNumberToObject(in, "type_id", type_id);
    cJSON_AddItemToObject(o, kind, in);
    return o;
}

static cJSON *post_processor(int bos_id) {
    const char *bos = specials[0];
    cJSON *tp = cJSON_CreateObject();
    cJSON_AddStringToObject(tp, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(tp, "single");
    cJSON_AddItemToArray(single, template_piece("SpecialToken", bos, 0));
    cJSON_AddItemToArray(single, template_piece("Sequence", "A", 0));
    cJSON *pair = cJSON_AddArrayToObject(tp, "pair");
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", bos, 0));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", bos, 1));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "B", 1));
    cJSON *st = cJSON_AddObjectToObject(tp, "special_tokens"), *b = cJSON_AddObjectToObject(st, bos);
    cJSON_AddStringToObject(b, "id", bos);
    cJSON_AddItemToObject(b, "ids", cJSON_CreateIntArray(&bos_id, 1));
    cJSON_AddItemToObject(b, "tokens", cJSON_CreateStringArray(&bos, 1));
    cJSON *seq = cJSON_CreateObject();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *procs = cJSON_AddArrayToObject(seq, "processors");
    cJSON_AddItemToArray(procs, byte_level(1, 0, 1));
    cJSON_AddItemToArray(procs, tp);
    return seq;
}

static cJSON *pre_tokenizer(void) {
    cJSON *seq = cJSON_CreateObject();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *list = cJSON_AddArrayToObject(seq, "pretokenizers");
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", llama3_split_regex);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", 0);
    cJSON_AddItemToArray(list, split);
    cJSON_AddItemToArray(list, byte_level(0, 1, 0));
    return seq;
}

static void special_name(int k, char *buf, size_t n) {
    if (k < N_SPECIALS) snprintf(buf, n, "%s", specials[k]);
    else snprintf(buf, n, "<|reserved_special_token_%d|>", k - N_SPECIALS);
}

static cJSON *added_token(int id, const char *content) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddBoolToObject(o, "single_word", 0);
    cJSON_AddBoolToObject(o, "lstrip", 0);
    cJSON_AddBoolToObject(o, "rstrip", 0);
    cJSON_AddBoolToObject(o, "normalized", 0);
    cJSON_AddBoolToObject(o, "special", 1);
    return o;
}

static int write_json(const char *dir, const char *name, cJSON *root, Err *e) {
    char *text = cJSON_Print(root);
    char *path = path_join(dir, name);
    int rc = file_write_atomic(path, text, strlen(text), e);
    free(path);
    cJSON_free(text);
    return rc;
}

static cJSON *tokenizer_config(int first_special, int n_special_ids) {
    cJSON *c = cJSON_CreateObject();
    cJSON *dec = cJSON_AddObjectToObject(c, "added_tokens_decoder");
    for (int k = 0; k < n_special_ids; k++) {
        char name[64], id[16];
        special_name(k, name, sizeof name);
        snprintf(id, sizeof id, "%d", first_special + k);
        cJSON *o = cJSON_AddObjectToObject(dec, id);
        cJSON_AddStringToObject(o, "content", name);
        cJSON_AddBoolToObject(o, "lstrip", 0);
        cJSON_AddBoolToObject(o, "normalized", 0);
        cJSON_AddBoolToObject(o, "rstrip", 0);
        cJSON_AddBoolToObject(o, "single_word", 0);
        cJSON_AddBoolToObject(o, "special", 1);
    }
    cJSON_AddStringToObject(c, "bos_token", specials[0]);
    cJSON_AddStringToObject(c, "chat_template", chat_template);
    cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 1);
    cJSON_AddStringToObject(c, "eos_token", "<|eot_id|>");
    const char *names[2] = {"input_ids", "attention_mask"};
    cJSON_AddItemToObject(c, "model_input_names", cJSON_CreateStringArray(names, 2));
    cJSON_AddNumberToObject(c, "model_max_length", 131072);
    cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
    return c;
}

int synth_write_builtin_tokenizer(const char *dir, int vocab, SynthTokenIds *ids, Err *e) {
    if (vocab < 256 + N_SPECIALS)
        return err_set(e, "the built-in tokenizer needs a vocabulary of at least %d ids (256 bytes + %d special "
                          "tokens), got %d",
                       256 + N_SPECIALS, N_SPECIALS, vocab);
    int max_merges = vocab - 256 - N_SPECIALS;
    if (max_merges > 4096) max_merges = 4096;
    Sym *syms = xcalloc(256 + (size_t)max_merges, sizeof *syms);
    int *left = xcalloc((size_t)max_merges + 1, sizeof *left), *right = xcalloc((size_t)max_merges + 1, sizeof *right);
    int n_merges = learn_merges(syms, left, right, max_merges);
    /* As in Llama 3, at most 256 special tokens sit at the top of the id range; a larger
       vocabulary is padded with filler entries in the BPE vocabulary that no merge produces
       (and no pre-token can match whole), so added_tokens stays small. */
    int n_special_ids = vocab - 256 - n_merges;
    if (n_special_ids > 256) n_special_ids = 256;
    int first_special = vocab - n_special_ids, n_fillers = first_special - 256 - n_merges;

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int k = 0; k < n_special_ids; k++) {
        char name[64];
        special_name(k, name, sizeof name);
        cJSON_AddItemToArray(added, added_token(first_special + k, name));
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pre_tokenizer());
    cJSON_AddItemToObject(root, "post_processor", post_processor(first_special));
    cJSON_AddItemToObject(root, "decoder", byte_level(1, 1, 1));
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 1);
    cJSON *v = cJSON_AddObjectToObject(model, "vocab");
    int order[256], cp[256];
    byte_alphabet(order, cp);
    for (int i = 0; i < 256; i++) cJSON_AddNumberToObject(v, syms[order[i]].text, i);
    for (int m = 0; m < n_merges; m++) cJSON_AddNumberToObject(v, syms[256 + m].text, 256 + m);
    for (int k = 0; k < n_fillers; k++) {
        char name[32];
        snprintf(name, sizeof name, "<filler_%d>", k);
        cJSON_AddNumberToObject(v, name, 256 + n_merges + k);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (int m = 0; m < n_merges; m++) {
        char t[160];
        snprintf(t, sizeof t, "%s %s", syms[left[m]].text, syms[right[m]].text);
        cJSON_AddItemToArray(merges, cJSON_CreateString(t));
    }
    int rc = write_json(dir, "tokenizer.json", root, e);
    cJSON_Delete(root);
    if (rc == 0) {
        cJSON *cfg = tokenizer_config(first_special, n_special_ids);
        rc = write_json(dir, "tokenizer_config.json", cfg, e);
        cJSON_Delete(cfg);
    }
    free(syms);
    free(left);
    free(right);
    ids->size = vocab;
    ids->bos = first_special;
    ids->eos[0] = first_special + 1; /* <|end_of_text|> */
    ids->eos[1] = first_special + 4; /* <|eot_id|> */
    ids->n_eos = 2;
    return rc;
}

/* ==== copying a tokenizer ================================================= */

static int copy_file(const char *from, const char *to, Err *e) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return err_errno(e, "cannot open %s", from);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return err_errno(e, "cannot create %s", to);
    }
    char *buf = xmalloc(1 << 20);
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, 1 << 20);
        if (r < 0) {
            rc = err_errno(e, "cannot read %s", from);
            break;
        }
        if (r == 0) break;
        for (ssize_t w = 0; w < r;) {
            ssize_t k = write(out, buf + w, (size_t)(r - w));
            if (k <= 0) {
                rc = err_errno(e, "cannot write %s", to);
                break;
            }
            w += k;
        }
        if (rc) break;
    }
    free(buf);
    close(in);
    if (close(out) < 0 && rc == 0) rc = err_errno(e, "cannot write %s", to);
    return rc;
}

/* The id of a token string, from added_tokens or the model vocabulary; -1 if absent. */
static int token_id(const cJSON *tok, const char *content) {
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens");
    for (const cJSON *t = added ? added->child : NULL; t; t = t->next) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(t, "content"), *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        if (cJSON_IsString(c) && cJSON_IsNumber(id) && !strcmp(c->valuestring, content)) return id->valueint;
    }
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tok, "model"), "vocab");
    const cJSON *id = cJSON_IsObject(vocab) ? cJSON_GetObjectItemCaseSensitive(vocab, content) : NULL;
    return cJSON_IsNumber(id) ? id->valueint : -1;
}

/* tokenizer_config's bos_token / eos_token: a string, {"content": ...} or null. */
static const char *special_content(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int tokenizer_size(const cJSON *tok) {
    int max = -1;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens");
    for (const cJSON *t = added ? added->child : NULL; t; t = t->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        if (cJSON_IsNumber(id) && id->valueint > max) max = id->valueint;
    }
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tok, "model"), "vocab");
    for (const cJSON *t = vocab ? vocab->child : NULL; t; t = t->next) {
        if (cJSON_IsNumber(t) && t->valueint > max) max = t->valueint; /* BPE: {"piece": id} */
        if (cJSON_IsArray(t)) max = max > cJSON_GetArraySize(vocab) - 1 ? max : cJSON_GetArraySize(vocab) - 1;
    }
    return max + 1;
}

int synth_copy_tokenizer(const char *src_dir, const char *dir, SynthTokenIds *ids, Err *e) {
    static const char *required[] = {"tokenizer.json", "tokenizer_config.json"};
    static const char *optional[] = {"special_tokens_map.json", "tokenizer.model"};
    for (int i = 0; i < 4; i++) {
        const char *name = i < 2 ? required[i] : optional[i - 2];
        char *from = path_join(src_dir, name), *to = path_join(dir, name);
        int rc = 0;
        if (path_exists(from)) rc = copy_file(from, to, e);
        else if (i < 2) rc = err_set(e, "--tokenizer %s has no %s", src_dir, name);
        free(from);
        free(to);
        if (rc < 0) return -1;
    }
    cJSON *tok = NULL, *cfg = NULL;
    char *tp = path_join(dir, "tokenizer.json"), *cp = path_join(dir, "tokenizer_config.json");
    int rc = json_read_file(tp, (size_t)512 << 20, &tok, e);
    if (rc == 0) rc = json_read_file(cp, (size_t)64 << 20, &cfg, e);
    if (rc == 0) {
        ids->size = tokenizer_size(tok);
        const char *bos = special_content(cfg, "bos_token"), *eos = special_content(cfg, "eos_token");
        ids->bos = bos ? token_id(tok, bos) : -1;
        ids->n_eos = 0;
        int eid = eos ? token_id(tok, eos) : -1;
        if (eid >= 0) ids->eos[ids->n_eos++] = eid;
        if (ids->size <= 0) rc = err_set(e, "%s: no tokens found in model.vocab or added_tokens", tp);
    }
    cJSON_Delete(tok);
    cJSON_Delete(cfg);
    free(tp);
    free(cp);
    return rc;
}
