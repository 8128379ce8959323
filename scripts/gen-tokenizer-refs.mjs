// gen-tokenizer-refs.mjs - writes the reference tokenizations the C tokenizer tests compare against.
//
// A dev tool, run by hand (not in CI) when the corpus or the fixtures change:
//
//   mkdir -p /tmp/tokref && (cd /tmp/tokref && npm init -y >/dev/null &&
//       npm install @huggingface/tokenizers@0.2.0 @huggingface/jinja@0.5.11)
//   TOKREF=/tmp/tokref node scripts/gen-tokenizer-refs.mjs [SHARED_TOKENIZERS_DIR]
//
// SHARED_TOKENIZERS_DIR defaults to ../shared/tokenizers (the real Llama 3, Qwen3 and Gemma 3 files).
// Everything is written under tests/data/tokenizer/:
//   corpus.json                 the texts (defined below, by category)
//   expected_<tok>.json         per text: ids with and without the post-processor's special tokens,
//                               decode() of the ids, decode(skip_special_tokens) (JS library defaults)
//   chat_<tok>.json             conversations rendered with the tokenizer's own chat_template by the
//                               Hugging Face Jinja engine (@huggingface/jinja, what transformers.js uses
//                               for apply_chat_template), and the ids of the rendered prompt
//   normalization.json          NFC/NFD/NFKC/NFKD of strings covering the decomposable blocks, Hangul and
//                               reordered combining marks (String.prototype.normalize, i.e. ICU)
//   mini_bytelevel/, mini_spm/  two small self-contained tokenizers (a Llama-3-shaped byte-level BPE with
//                               "a b" merges and lstrip/rstrip added tokens; a Llama-2-shaped
//                               SentencePiece BPE with ["a","b"] merges, byte fallback, Prepend and Strip),
//                               trained here on the corpus by a tiny deterministic BPE trainer
// The reference implementation is the pure-JS port of Hugging Face tokenizers (@huggingface/tokenizers).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const out = path.join(repo, "tests/data/tokenizer");
const shared = path.resolve(process.argv[2] ?? path.join(repo, "../shared/tokenizers"));
const tokref = process.env.TOKREF;
if (!tokref) {
  console.error("set TOKREF to the folder where @huggingface/tokenizers and @huggingface/jinja are installed");
  process.exit(2);
}
// The JS ByteFallback decoder uses `new TextDecoder()`, which silently drops a U+FEFF (BOM) at the start of
// each byte run; Hugging Face's Rust decoder keeps it. Make TextDecoder keep it too (ignoreBOM: true) so the
// reference follows the Rust library.
const NativeTextDecoder = globalThis.TextDecoder;
globalThis.TextDecoder = class extends NativeTextDecoder {
  constructor(label = "utf-8", options = {}) {
    super(label, { ...options, ignoreBOM: true });
  }
};
const requireRef = createRequire(path.join(path.resolve(tokref), "package.json"));
const { Tokenizer } = requireRef("@huggingface/tokenizers");
const { Template } = requireRef("@huggingface/jinja");
const versionOf = (name) =>
  JSON.parse(fs.readFileSync(path.join(path.resolve(tokref), "node_modules", name, "package.json"))).version;

// ---- the corpus -------------------------------------------------------------------------------------
const long_paragraph =
  "The quick brown fox jumps over the lazy dog. In 1492, Columbus sailed the ocean blue; " +
  "by 2024 the world's population had passed 8,000,000,000 people. Tokenizers split text into pieces: " +
  "words, sub-words, bytes. A byte-level BPE never meets an unknown character, while a SentencePiece model " +
  "falls back to <0x..> byte tokens. Consider these edge cases -- 'quoted', \"double-quoted\", (parenthesised) " +
  "and [bracketed] text; e-mail addresses like someone@example.org; URLs such as https://huggingface.co/docs?x=1#y; " +
  "numbers like 3.14159, -42, 1e-9, 0xFF and 1,234,567.89; and times like 12:30:45. " +
  "Ünïcödé letters (naïve café résumé), Straße, Ελληνικά, Русский текст, 日本語のテキスト, 中文文本, 한국어 텍스트, " +
  "العربية, हिन्दी, ไทย. Whitespace:  two spaces,\ttab,\nnewline,\n\n  indented line. " +
  "Emoji: 🙂👍🏽👨‍👩‍👧‍👦. End of paragraph.";

const corpus = [
  // basics and the empty string
  "",
  "Hello world",
  "Hello",
  " leading space",
  "trailing space ",
  "  two leading spaces",
  "a",
  // contractions and case
  "I'm sure it's fine, we'll see; they're here and you've won. He'd said so.",
  "I'D DO IT, DON'T YOU'LL SEE? IT'S ALL CAPS 'S 'T 'RE 'VE 'M 'LL 'D",
  "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
  "camelCaseWords and snake_case_words and kebab-case-words",
  // digits and long numbers
  "1 12 123 1234 12345 123456 1234567",
  "3.14159 2.71828 -42 +7 1e10 1,000,000 1_000_000 0xDEADBEEF 007",
  "12345678901234567890123456789012345678901234567890",
  "2024-01-01T12:30:45Z and 12/31/1999",
  "٠١٢٣٤٥٦٧٨٩ ०१२३ ①②③ ½ ¾",
  // runs of whitespace, tabs, newlines, trailing whitespace
  "a  b   c    d     e",
  "tab\tsep\t\tdouble\t\t\ttriple",
  "line1\nline2\n\nline4\n\n\nline7",
  "trailing spaces   ",
  "trailing newlines\n\n",
  "   ",
  "\n",
  "\t",
  "\t\n \r\n",
  "\r\nwindows\r\nline endings\r\n",
  "spaces before newline   \nand after\n   x",
  " ".repeat(40) + "x",
  "\n".repeat(35) + "x",
  "\t".repeat(33) + "x",
  // Unicode scripts
  "你好，世界！今天天气很好。",
  "こんにちは、世界。カタカナとひらがな。",
  "안녕하세요 세계, 한국어 문장입니다.",
  "مرحبا بالعالم، كيف حالك؟",
  "नमस्ते दुनिया, आप कैसे हैं?",
  "Привет, мир! Как дела? ЁЖИК",
  "Γειά σου Κόσμε! ΑΒΓΔ αβγδ",
  "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง",
  "שלום עולם",
  "Tokyo東京2024年に",
  "naïve coöperation façade Ærøskøbing Łódź",
  // normalization (NFC): decomposed and composed forms
  "cafe\u0301 vs caf\u00e9",
  "A\u030a \u212b \u00c5 o\u0308 \u1100\u1161\u11a8 \ufb01 \u2460",
  "e\u0301\u0323 e\u0323\u0301 q\u0307\u0323",
  // emoji, ZWJ sequences, skin tones, flags
  "😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸🇯🇵",
  "emoji🙂inside🙃words",
  "🙂",
  // rare characters (byte fallback in SentencePiece vocabularies)
  "𓀀𓀁 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \ue000 \u{1FAE8}",
  // unusual whitespace and invisible characters
  "nel\u0085next nbsp\u00a0x ogham\u1680x mongolian\u180ex zwsp\u200bx bom\ufeffx ideo\u3000x ls\u2028x",
  "control \u0001\u0002\u001f\u007f chars",
  "nul\u0000byte",
  // code with indentation
  "def greet(name):\n    if name:\n        print(f\"Hello, {name}!\")\n    return None\n",
  "int main(void) {\n\tfor (int i = 0; i < 10; i++) {\n\t\tprintf(\"%d\\n\", i);\n\t}\n\treturn 0;\n}\n",
  "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
  "<div class=\"x\">&nbsp;<b>bold</b></div>",
  "x = a->b; y = c >> 2; z = !(p && q) || r;",
  // punctuation
  "Hello!!! What?? ... --- «quotes» “curly” ‘single’ — dash – en",
  "https://example.com/path?q=1&r=2#frag someone@example.org",
  "Hello , world . isn't it ? yes ! 'quoted' I 'm",
  // special-token strings inside text
  "<|begin_of_text|>Hello<|eot_id|>",
  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
  "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
  "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
  "<bos><eos> <pad> text <unk>",
  "<think>\nreasoning\n</think>\n\nanswer",
  "<|endoftext|>after",
  "partial <|im_start and <|im_end| and <start_of_tur",
  "<unused5> <0x41> literal byte token",
  "▁literal ▁▁ metaspace",
  // a long paragraph
  long_paragraph,
];

// ---- helpers ---------------------------------------------------------------------------------------
const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
const writeJson = (p, v) => {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, JSON.stringify(v, null, 1) + "\n");
  console.log(`wrote ${path.relative(repo, p)}`);
};
const decode = (tok, ids, opts) => (ids.length ? tok.decode(ids, opts) : "");

function expectations(name, dir) {
  const tok = new Tokenizer(readJson(path.join(dir, "tokenizer.json")), readJson(path.join(dir, "tokenizer_config.json")));
  const cases = corpus.map((text) => {
    const ids = tok.encode(text).ids;
    return {
      ids,
      ids_no_special: tok.encode(text, { add_special_tokens: false }).ids,
      decoded: decode(tok, ids),
      decoded_skip_special: decode(tok, ids, { skip_special_tokens: true }),
    };
  });
  writeJson(path.join(out, `expected_${name}.json`), {
    tokenizer: name,
    generator: `@huggingface/tokenizers ${versionOf("@huggingface/tokenizers")} via scripts/gen-tokenizer-refs.mjs`,
    cases,
  });
  return tok;
}

// ---- chat prompts ------------------------------------------------------------------------------------
const conversations = [
  { messages: [{ role: "user", content: "Hello! How are you?" }] },
  { messages: [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "What is 2+2?" }] },
  { messages: [{ role: "user", content: "  padded with spaces and a newline\n" }] },
  {
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello. How can I help?" },
      { role: "user", content: "Tell me a joke." },
    ],
  },
  {
    messages: [
      { role: "user", content: "2+2?" },
      { role: "assistant", content: "<think>\nsimple sum\n</think>\n\n4" },
      { role: "user", content: "and 3+3?" },
    ],
  },
  { messages: [{ role: "user", content: "Think quietly." }], no_think: true },
];

function chatExpectations(name, dir, tok) {
  const cfg = readJson(path.join(dir, "tokenizer_config.json"));
  const template = new Template(cfg.chat_template);
  const tokenString = (v) => (v && typeof v === "object" ? v.content : v ?? "");
  const cases = [];
  for (const conv of conversations) {
    if (conv.no_think && !cfg.chat_template.includes("enable_thinking")) continue;
    const vars = {
      messages: conv.messages,
      add_generation_prompt: true,
      bos_token: tokenString(cfg.bos_token),
      eos_token: tokenString(cfg.eos_token),
    };
    if (conv.no_think) vars.enable_thinking = false;
    const prompt = template.render(vars);
    cases.push({ messages: conv.messages, no_think: !!conv.no_think, prompt, ids: tok.encode(prompt, { add_special_tokens: false }).ids });
  }
  writeJson(path.join(out, `chat_${name}.json`), {
    tokenizer: name,
    generator: `@huggingface/jinja ${versionOf("@huggingface/jinja")} rendering tokenizer_config.json's chat_template`,
    cases,
  });
}

// ---- the mini tokenizers -------------------------------------------------------------------------------
// A tiny deterministic BPE trainer: the most frequent adjacent pair wins (ties: smallest pair first).
function trainMerges(words, alphabetOf, count) {
  let seqs = [...words.entries()].map(([w, n]) => ({ syms: alphabetOf(w), n }));
  const merges = [];
  for (let k = 0; k < count; k++) {
    const counts = new Map();
    for (const { syms, n } of seqs)
      for (let i = 0; i + 1 < syms.length; i++) {
        const key = syms[i] + "\u0000" + syms[i + 1];
        counts.set(key, (counts.get(key) ?? 0) + n);
      }
    let best = null, bestN = 1;
    for (const [key, n] of counts) if (n > bestN || (n === bestN && best !== null && key < best)) [best, bestN] = [key, n];
    if (best === null) break;
    const [a, b] = best.split("\u0000");
    merges.push([a, b]);
    seqs = seqs.map(({ syms, n }) => {
      const next = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) next.push(syms[i++] + b);
        else next.push(syms[i]);
      }
      return { syms: next, n };
    });
  }
  return merges;
}

const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const trainingText = corpus.slice(0, 12).join(" ") + " " + long_paragraph;

function byteLevelAlphabet() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const map = new Map(bs.map((b) => [b, String.fromCodePoint(b)]));
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!map.has(b)) map.set(b, String.fromCodePoint(256 + extra++));
  return map;
}

function miniByteLevel() {
  const byteMap = byteLevelAlphabet();
  const enc = new TextEncoder();
  const mapBytes = (s) => [...enc.encode(s)].map((b) => byteMap.get(b)).join("");
  const words = new Map();
  for (const m of trainingText.matchAll(new RegExp(LLAMA3_SPLIT.replace("(?i:", "(?:"), "gu"))) {
    const w = mapBytes(m[0]);
    words.set(w, (words.get(w) ?? 0) + 1);
  }
  const merges = trainMerges(words, (w) => [...w], 300);
  const vocab = {};
  for (let b = 0; b < 256; b++) vocab[byteMap.get(b)] = b;
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  const n = Object.keys(vocab).length;
  const added = [
    ["<|begin_of_text|>", true], ["<|end_of_text|>", true], ["<|start_header_id|>", true],
    ["<|end_header_id|>", true], ["<|eot_id|>", true],
  ].map(([content, special], i) => ({ id: n + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special }));
  added.push({ id: n + 5, content: "<mask>", single_word: false, lstrip: true, rstrip: false, normalized: false, special: false });
  added.push({ id: n + 6, content: "<sep>", single_word: false, lstrip: false, rstrip: true, normalized: false, special: false });
  const tokenizer = {
    version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: { type: "Sequence", pretokenizers: [
      { type: "Split", pattern: { Regex: LLAMA3_SPLIT }, behavior: "Isolated", invert: false },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    ] },
    post_processor: { type: "Sequence", processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      { type: "TemplateProcessing",
        single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
               { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
        special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [n], tokens: ["<|begin_of_text|>"] } } },
    ] },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  };
  const config = { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>", clean_up_tokenization_spaces: false,
                   tokenizer_class: "PreTrainedTokenizerFast" };
  return { tokenizer, config };
}

function miniSentencePiece() {
  const words = new Map();
  const normalized = ("▁" + trainingText.replaceAll(" ", "▁")).split(/(?=▁)/u);
  for (const w of normalized) words.set(w, (words.get(w) ?? 0) + 1);
  const merges = trainMerges(words, (w) => [...w], 250);
  const vocab = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  // Common characters only: rarer ones (most non-Latin scripts) go through byte fallback.
  const chars = new Map();
  for (const w of normalized) for (const c of w) chars.set(c, (chars.get(c) ?? 0) + 1);
  for (const [c] of [...chars].filter(([, n]) => n >= 3).sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1)))
    if (!(c in vocab)) vocab[c] = Object.keys(vocab).length;
  const kept = [];
  for (const [a, b] of merges) {
    if (!(a in vocab) || !(b in vocab)) continue; // a part built from a dropped rare character
    if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
    kept.push([a, b]);
  }
  const special = (id, content) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tokenizer = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
    pre_tokenizer: null,
    post_processor: { type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
             { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } } },
    decoder: { type: "Sequence", decoders: [
      { type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" },
      { type: "Strip", content: " ", start: 1, stop: 0 },
    ] },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: kept },
  };
  const config = { bos_token: "<s>", eos_token: "</s>", clean_up_tokenization_spaces: false, tokenizer_class: "LlamaTokenizer" };
  return { tokenizer, config };
}

// ---- Unicode normalization -----------------------------------------------------------------------------
// Blocks with canonical/compatibility decompositions (all assigned long before Unicode 14, the version of
// our generated tables), each as one string, plus composition edge cases.
function normalizationCases() {
  const blocks = [
    [0xa0, 0x24f], [0x2b0, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x9ff], [0xe00, 0xeff],
    [0x1e00, 0x1eff], [0x1f00, 0x1fff], [0x2000, 0x22ff], [0x2460, 0x24ff], [0x2e80, 0x2fdf], [0x3040, 0x30ff],
    [0x3130, 0x318f], [0x3200, 0x33ff], [0xac00, 0xd7a3, 37], [0xf900, 0xfad9], [0xfb00, 0xfdff], [0xfe30, 0xfe6f],
    [0xff00, 0xffef], [0x1d400, 0x1d7ff], [0x2f800, 0x2fa1d],
  ];
  const texts = blocks.map(([lo, hi, step = 1]) => {
    let s = "";
    for (let cp = lo; cp <= hi; cp += step) if (cp < 0xd800 || cp > 0xdfff) s += String.fromCodePoint(cp) + " ";
    return s;
  });
  texts.push(
    "a\u0301\u0323 a\u0323\u0301 q\u0307\u0323 \u1e0b\u0323 e\u0302\u0323 \u0915\u093c \u0958 \u212b \u2126 \u0344 \u0f73",
    "\u1100\u1161 \u1100\u1161\u11a8 \uac00\u11a8 \u1100\u1161\u0301\u11a8 \u1112\u1173\u11b7",
    "o\u0308\u0304 \u01eb\u0304 a\u0328\u0301\u0300\u0308 \u05d1\u05bc\u05bf \u0627\u0653 x\u0301\u0301\u0327",
    "\ufb01\ufb02 \u00bd \u2460 \u3392 \u2075 \u1d2c \ufdfa \uff76\uff9e \u3300",
  );
  return texts.map((text) => ({
    text, nfc: text.normalize("NFC"), nfd: text.normalize("NFD"), nfkc: text.normalize("NFKC"), nfkd: text.normalize("NFKD"),
  }));
}

// ---- main ------------------------------------------------------------------------------------------------
writeJson(path.join(out, "corpus.json"), corpus);
writeJson(path.join(out, "normalization.json"), { generator: `node ${process.versions.node} (ICU ${process.versions.icu}, Unicode ${process.versions.unicode}) String.prototype.normalize`, cases: normalizationCases() });
for (const name of ["llama3", "qwen3", "gemma3"]) {
  const dir = path.join(shared, name);
  const tok = expectations(name, dir);
  chatExpectations(name, dir, tok);
}
for (const [name, build] of [["mini_bytelevel", miniByteLevel], ["mini_spm", miniSentencePiece]]) {
  const { tokenizer, config } = build();
  const dir = path.join(out, name);
  writeJson(path.join(dir, "tokenizer.json"), tokenizer);
  writeJson(path.join(dir, "tokenizer_config.json"), config);
  expectations(name, dir);
}
