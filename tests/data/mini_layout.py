"""The miniature corpus of recipes/infir-1b.yaml: one small file per source family of Table 7, in its release
format, laid out exactly where the recipe's corpus.inputs point, plus the local stand-ins the mini overlay
(recipes/mini/infir-1b.mini.yaml) expects: language-id model, recall seeds, tiny scorers. Also the annealing
sources of Table 8 where the recipe's anneal_data points (Dolmino documents, the OpenCoder annealing corpus as
Hugging Face `save_to_disk` Arrow files, APPS, CodeContests, a real `infir synth` run against a tiny local
teacher; `build_anneal_layout`) and the SFT sets of recipes/infir-1b-sft.yaml in their release formats
(Infinity-Instruct's real rows, Orca-AgentInstruct with string-encoded `messages`, NuminaMath-CoT, opc-sft-stage2;
`build_sft_layout`).

Texts come from ../shared/data (C4, Common Crawl, Wikipedia, MATH, GSM8K, Alpaca, Code Alpaca,
Infinity-Instruct, RedPajama arXiv, Dolma) and the Python standard library; JavaScript, Java and C files are
written here (no such files ship with Python). `build_mini_layout(root, shared)` returns what it wrote, so tests
know which documents are clean code, clean math pages, web pages, ... Reused by the issues after the corpus.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from infir.utils.io import write_jsonl

STDLIB_MODULES = ["textwrap", "fnmatch", "colorsys", "heapq", "bisect", "shlex", "graphlib", "fractions",
                  "numbers", "queue", "sched", "string", "netrc", "glob", "tabnanny", "calendar"]
STARCODER_PYTHON = ["copy", "pprint", "reprlib", "getopt", "zipapp", "types", "operator", "selectors", "optparse",
                    "gettext"]

CLEAN_JS = [
    "// Debounce a function: run it once calls stop for `wait` milliseconds.\n"
    "function debounce(fn, wait) {\n  let timer = null;\n  return function (...args) {\n"
    "    clearTimeout(timer);\n    timer = setTimeout(() => fn.apply(this, args), wait);\n  };\n}\n\n"
    "module.exports = { debounce };\n",
    "class Stack {\n  constructor() {\n    this.items = [];\n  }\n\n  push(item) {\n    this.items.push(item);\n"
    "  }\n\n  pop() {\n    if (this.items.length === 0) {\n      throw new Error('empty stack');\n    }\n"
    "    return this.items.pop();\n  }\n\n  get size() {\n    return this.items.length;\n  }\n}\n\n"
    "export default Stack;\n",
    "const fs = require('fs');\n\nfunction countLines(path) {\n  const text = fs.readFileSync(path, 'utf8');\n"
    "  return text.split('\\n').filter((line) => line.trim().length > 0).length;\n}\n\n"
    "console.log(countLines(process.argv[2]));\n",
]
CLEAN_JAVA = [
    "package org.example;\n\nimport java.util.ArrayList;\nimport java.util.List;\n\n"
    "public class Primes {\n    public static List<Integer> upTo(int n) {\n"
    "        List<Integer> out = new ArrayList<>();\n        for (int i = 2; i <= n; i++) {\n"
    "            boolean prime = true;\n            for (int d = 2; d * d <= i; d++) {\n"
    "                if (i % d == 0) { prime = false; break; }\n            }\n"
    "            if (prime) out.add(i);\n        }\n        return out;\n    }\n}\n",
    "public interface Shape {\n    double area();\n\n    default String describe() {\n"
    "        return getClass().getSimpleName() + \" with area \" + area();\n    }\n}\n",
    "public class Counter {\n    private int count;\n\n    public synchronized void increment() {\n"
    "        count++;\n    }\n\n    public synchronized int get() {\n        return count;\n    }\n\n"
    "    public static void main(String[] args) {\n        Counter c = new Counter();\n"
    "        c.increment();\n        System.out.println(c.get());\n    }\n}\n",
]
CLEAN_C = [
    "#include <stdio.h>\n\n/* Print the first n Fibonacci numbers. */\nint main(void) {\n"
    "    long a = 0, b = 1;\n    for (int i = 0; i < 10; i++) {\n        printf(\"%ld\\n\", a);\n"
    "        long t = a + b;\n        a = b;\n        b = t;\n    }\n    return 0;\n}\n",
    "#include <stdlib.h>\n#include <string.h>\n\nchar *reverse(const char *s) {\n"
    "    size_t n = strlen(s);\n    char *out = malloc(n + 1);\n    if (out == NULL) {\n        return NULL;\n"
    "    }\n    for (size_t i = 0; i < n; i++) {\n        out[i] = s[n - 1 - i];\n    }\n    out[n] = '\\0';\n"
    "    return out;\n}\n",
    "#include <stddef.h>\n\nstruct node {\n    int value;\n    struct node *next;\n};\n\n"
    "size_t list_length(const struct node *head) {\n    size_t n = 0;\n    while (head != NULL) {\n"
    "        n++;\n        head = head->next;\n    }\n    return n;\n}\n",
]
# Code the rules must drop: minified JS, a Java file without a type, an auto-generated Python file, Rust (not
# in the paper's allowlist).
DIRTY_CODE = [
    ("JavaScript", "bundle.min.js", "".join(f"function f{i}(b){{return b*{i}+g(b,{i})}}var c{i}=f{i}(a);"
                                            + ("\n" if i % 2 else "") for i in range(20))),
    ("Java", "Fragment.java", "import java.util.List;\nimport java.util.Map;\nimport java.util.Set;\n"
                              "import java.io.File;\n"),
    ("Python", "gen_pb2.py", "# Generated by the protocol buffer compiler.  DO NOT EDIT!\nimport sys\n"
                             "x = 1\ny = 2\nz = 3\n"),
    ("Rust", "main.rs", "fn main() {\n    let v = vec![1, 2, 3];\n    println!(\"{}\", v.len());\n}\n"),
]


def _parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _jsonl_gz(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _jsonl_zst(path: Path, rows: list[dict[str, Any]]) -> None:
    import zstandard

    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data))


def _lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _urn(i: int) -> str:
    return f"<urn:uuid:{uuid.UUID(int=i)}>"


def make_tiny_scorer(out: Path, texts: list[str], bias: float) -> Path:
    """A tiny BERT sequence-classification model with one regression output (the FineWeb-Edu / FineMath
    classifiers' architecture) and a WordPiece tokenizer; its head returns `bias` for every text."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=1, problem_type="regression")
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(bias)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_mini_layout(root: Path, shared: Path) -> dict[str, Any]:
    """Write the miniature corpus + stand-ins under root/data; returns each kind of document (web pages by url,
    math pages and code files by text)."""
    root = Path(root)
    raw = root / "data" / "raw"
    corpus = shared / "corpus"
    c4 = [json.loads(line)["text"] for line in open(corpus / "llamafactory" / "c4_demo.jsonl")]
    dolma = [r["text"] for f in sorted((corpus / "dolma_testdata").glob("multiple_files_*.jsonl.gz"))
             for r in _lines(f)]
    math = _lines(shared / "math" / "train.jsonl.gz")
    gsm = _lines(shared / "gsm8k" / "train.jsonl")
    alpaca = json.loads((shared / "sft" / "llamafactory" / "alpaca_en_demo.json").read_text())
    code_alpaca = json.loads((shared / "sft" / "codealpaca" / "code_alpaca_2k.json").read_text())
    wiki = [line.strip() for line in open(corpus / "llamafactory" / "wiki_demo.txt") if line.strip()]
    ids: dict[str, list[str]] = {"web": [], "math_clean": [], "math_dirty": [], "code_clean": [],
                                 "code_dirty": [], "web_math": []}

    # ---- web: Common Crawl WET, FineWeb-Edu parquet, DCLM jsonl.zstd
    wet = raw / "web" / "common-crawl" / "CC-MAIN-2024-22" / "whirlwind.warc.wet.gz"
    wet.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(corpus / "commoncrawl_whirlwind" / "whirlwind.warc.wet.gz", wet)
    fw = []
    for i, text in enumerate(c4[:120]):
        fw.append({"text": text, "id": _urn(i), "dump": "CC-MAIN-2024-10", "url": f"https://example.org/{i}",
                   "date": "2024-02-20T10:00:00Z", "file_path": "s3://commoncrawl/crawl-data/x.warc.gz",
                   "language": "en", "language_score": 0.95, "token_count": len(text.split()),
                   "score": 2.9, "int_score": 3})
        ids["web"].append(f"https://example.org/{i}")
    # word problems on web pages: reasoning text that recall should route to math (FineWeb's alpha-ratio rule
    # drops pages full of worked arithmetic, so these pages state the problems and their answers in words)
    for k in range(30):
        i = 1000 + k
        a, b = gsm[2 * k], gsm[2 * k + 1]
        text = "Here are two word problems we worked through in class today.\n\n" + "\n\n".join(
            f"{ex['question']} Working through it step by step, the answer is {ex['answer'].split('####')[-1].strip()}."
            for ex in (a, b))
        fw.append({"text": text, "id": _urn(i), "dump": "CC-MAIN-2024-10", "url": f"https://school.example/{k}",
                   "date": "2024-02-20T10:00:00Z", "file_path": "s3://x", "language": "en",
                   "language_score": 0.97, "token_count": len(text.split()), "score": 3.5, "int_score": 4})
        ids["web_math"].append(f"https://school.example/{k}")
    _parquet(raw / "web" / "fineweb-edu" / "data" / "CC-MAIN-2024-10" / "train-00000-of-00001.parquet", fw)
    dclm = []
    for i, text in enumerate(c4[120:240] + dolma):
        dclm.append({"text": text, "url": f"https://dclm.example/{i}",
                     "fasttext_openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train_prob": 0.02,
                     "language_id_whole_page_fasttext": {"en": 0.9}, "previous_word_count": len(text.split())})
        ids["web"].append(f"https://dclm.example/{i}")
    _jsonl_zst(raw / "web" / "dclm" / "global-shard_01_of_10" / "local-shard_0_of_10" /
               "shard_00000000_processed.jsonl.zstd", dclm)

    # ---- math: five release formats, twelve MATH train pages each; two pages end with a colon
    pages = [(f"math-{i}", m["problem"] + "\n\n" + m["solution"]) for i, m in enumerate(math[:60])]
    ids["math_clean"] = [p[1] for p in pages]
    colon = [("math-colon-0", math[100]["problem"] + "\n\nWe proceed as follows:"),
             ("math-colon-1", math[101]["problem"] + "\n\nSolution:")]
    ids["math_dirty"] = [c[1] for c in colon]
    chunk = {n: pages[n * 12:(n + 1) * 12] for n in range(5)}
    _jsonl_gz(raw / "math" / "infimm-webmath" / "part-00000.jsonl.gz", [
        {"URL": f"https://infimm.example/{rid}", "text_list": [t.split("\n\n", 1)[0], None, t.split("\n\n", 1)[1]],
         "image_list": [None, f"https://infimm.example/{rid}.png", None],
         "metadata": {"ft_lang_label": "__label__en", "ft_lang_prob": 0.93, "math_prob": 0.99}}
        for rid, t in chunk[0]])
    _parquet(raw / "math" / "open-web-math" / "data" / "train-00000-of-00114.parquet", [
        {"url": f"https://owm.example/{rid}", "text": t, "date": "2023-09-06",
         "metadata": json.dumps({"extraction_info": {"found_math": True}, "score": [0.9]})}
        for rid, t in chunk[1] + colon])
    _jsonl_gz(raw / "math" / "mathcode-pile" / "train" / "shard-0.jsonl.gz",
              [{"text": t} for _, t in chunk[2]])
    _jsonl_zst(raw / "math" / "proof-pile-2" / "open-web-math" / "train" / "train_00.jsonl.zst",
               [{"text": t, "meta": {"url": f"https://pp2.example/{rid}", "date": "2023"}}
                for rid, t in chunk[3]])
    _parquet(raw / "math" / "finemath" / "finemath-3plus" / "train-00000-of-00128.parquet", [
        {"url": f"https://fm.example/{rid}", "fetch_time": 1700000000, "content_mime_type": "text/html",
         "warc_filename": "crawl-data/x.warc.gz", "warc_record_offset": 0, "warc_record_length": 100, "text": t,
         "token_count": len(t.split()), "char_count": len(t), "metadata": "{}", "score": 3.6, "int_score": 4,
         "crawl": "CC-MAIN-2024-10", "snapshot_type": "latest", "language": "en", "language_score": 0.9}
        for rid, t in chunk[4]])

    # ---- code: The Stack v2 rows (stdlib Python + JS/Java/C + files the rules must drop), StarCoderData
    import textwrap

    stdlib = Path(textwrap.__file__).parent
    stack = []
    for name in STDLIB_MODULES:
        rid = f"stdlib-{name}"
        stack.append({"blob_id": rid, "path": f"Lib/{name}.py", "repo_name": "python/cpython", "language": "Python",
                      "extension": "py", "length_bytes": os.path.getsize(stdlib / f"{name}.py"),
                      "detected_licenses": ["PSF-2.0"], "license_type": "permissive", "star_events_count": 60000,
                      "is_vendor": False, "is_generated": False, "src_encoding": "UTF-8",
                      "content": (stdlib / f"{name}.py").read_text(encoding="utf-8")})
        ids["code_clean"].append(stack[-1]["content"])
    for lang, ext, texts in (("JavaScript", "js", CLEAN_JS), ("Java", "java", CLEAN_JAVA), ("C", "c", CLEAN_C)):
        for k, text in enumerate(texts[:1]):
            rid = f"stack-{ext}-{k}"
            stack.append({"blob_id": rid, "path": f"src/file{k}.{ext}", "repo_name": "example/repo", "language": lang,
                          "extension": ext, "length_bytes": len(text), "detected_licenses": [], "license_type":
                          "no_license", "star_events_count": 3, "is_vendor": False, "is_generated": False,
                          "src_encoding": "UTF-8", "content": text})
            ids["code_clean"].append(text)
    for k, (lang, path, text) in enumerate(DIRTY_CODE):
        rid = f"stack-dirty-{k}"
        stack.append({"blob_id": rid, "path": path, "repo_name": "example/dirty", "language": lang,
                      "extension": path.rsplit(".", 1)[1], "length_bytes": len(text), "detected_licenses": [],
                      "license_type": "no_license", "star_events_count": 0, "is_vendor": False,
                      "is_generated": False, "src_encoding": "UTF-8", "content": text})
        ids["code_dirty"].append(text)
    _parquet(raw / "code" / "the-stack-v2" / "data" / "train-00000-of-00001.parquet", stack)

    def starcoder(lang_dir: str, rows: list[tuple[str, str, str]]) -> None:
        _parquet(raw / "code" / "starcoderdata" / lang_dir / "train-00000-of-00001.parquet", [
            {"max_stars_repo_path": path, "max_stars_repo_name": "example/sc", "max_stars_count": 10,
             "id": rid, "content": text} for rid, path, text in rows])
        ids["code_clean"].extend(r[2] for r in rows)

    starcoder("python", [(f"sc-py-{name}", f"Lib/{name}.py", (stdlib / f"{name}.py").read_text(encoding="utf-8"))
                         for name in STARCODER_PYTHON])
    starcoder("javascript", [(f"sc-js-{k}", f"lib/m{k}.js", t) for k, t in enumerate(CLEAN_JS[1:])])
    starcoder("java", [(f"sc-java-{k}", f"src/T{k}.java", t) for k, t in enumerate(CLEAN_JAVA[1:])])
    starcoder("c", [(f"sc-c-{k}", f"src/u{k}.c", t) for k, t in enumerate(CLEAN_C[1:])])

    # ---- general knowledge: RedPajama arXiv (real rows), StackExchange, peS2o
    arxiv = raw / "knowledge" / "arxiv" / "arxiv_sample.jsonl"
    arxiv.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared / "formats" / "redpajama_arxiv" / "redpajama_arxiv_sample.jsonl", arxiv)
    se = [{"text": f"Q: {r['instruction']}\n\nA: {r['output']}", "meta": {
        "source": "stackexchange", "url": f"https://stackoverflow.com/questions/{i}", "question_score": "3",
        "language": "en", "timestamp": "2023-03-29"}} for i, r in enumerate(code_alpaca[1000:1015])]
    write_jsonl(raw / "knowledge" / "stackexchange" / "stackexchange.jsonl", se)
    _jsonl_gz(raw / "knowledge" / "pes2o" / "v2" / "train-00000-of-00020.json.gz", [
        {"added": "2023-01-01", "created": "2020-01-01", "id": f"pes2o-{i}", "source": "s2orc/train",
         "text": text, "version": "v2"} for i, text in enumerate(wiki[20:25])])

    # ---- encyclopedia: wikimedia/wikipedia parquet
    _parquet(raw / "wiki" / "wikipedia" / "20231101.en" / "train-00000-of-00041.parquet", [
        {"id": str(i), "url": f"https://en.wikipedia.org/wiki?curid={i}", "title": text.split(".")[0][:60],
         "text": text} for i, text in enumerate(wiki[:10])])

    # ---- instructions: FLAN (inputs/targets), Infinity-Instruct (real rows)
    _jsonl_gz(raw / "instruct" / "flan" / "train" / "flan_zsopt_000.jsonl.gz", [
        {"inputs": r["instruction"] + ("\n\n" + r["input"] if r["input"] else ""), "targets": r["output"],
         "task_source": "Flan2021", "task_name": "alpaca_demo", "template_type": "zs_opt"} for r in alpaca[:30]])
    inf = raw / "instruct" / "infinity-instruct" / "7M" / "train-00000-of-00075.parquet"
    inf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared / "formats" / "infinity_instruct" / "infinity_instruct_7M_train-00000-of-00075.head100.parquet",
                inf)

    # ---- stand-ins for the overlay: language id, recall seeds, scorers, web validation text
    models = root / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared / "fasttext" / "lid.176.ftz", models / "lid.176.ftz")
    seeds = root / "data" / "seeds"
    # as few seeds as the pool is small: each classifier draws as many negatives as it has positives
    # (fastText on so few seeds needs them to look like the pages: word problems with their answers)
    write_jsonl(seeds / "math.jsonl", [
        {"text": f"{ex['question']} The answer is {ex['answer'].split('####')[-1].strip()}."}
        for ex in gsm[100:180]])
    write_jsonl(seeds / "code.jsonl", [{"text": r["instruction"] + "\n" + r["output"]} for r in code_alpaca[:60]])
    write_jsonl(seeds / "other.jsonl", [{"text": r["instruction"] + "\n" + r["output"]} for r in alpaca[100:160]])
    sample = c4[:50] + [p[1] for p in pages[:20]]
    make_tiny_scorer(root / "data" / "mini" / "scorers" / "fineweb-edu", sample, bias=3.4)
    make_tiny_scorer(root / "data" / "mini" / "scorers" / "finemath", sample, bias=3.4)
    write_jsonl(root / "data" / "mini" / "web_validation.jsonl", [{"text": t} for t in c4[280:300]])
    ids.update(build_anneal_layout(root, shared))
    build_sft_layout(root, shared)
    return ids


def _arrow_dataset(folder: Path, rows: list[dict[str, Any]]) -> None:
    """A Hugging Face `save_to_disk` folder: data-00000-of-00001.arrow (an Arrow IPC stream), dataset_info.json,
    state.json."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=4)
    features = {name: {"dtype": "string", "_type": "Value"} for name in table.column_names}
    (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": features,
                                                          "homepage": "", "license": ""}))
    (folder / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_fingerprint": "0123456789abcdef",
        "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
        "_split": "train"}))


def _dolma_rows(subset: str, texts: list[str]) -> list[dict[str, Any]]:
    return [{"id": f"{subset}-{i}", "text": t, "added": "2024-11-24T00:00:00.000Z", "created": "2024-01-01",
             "source": subset, "metadata": {"subset": subset}} for i, t in enumerate(texts)]


def build_anneal_layout(root: Path, shared: Path) -> dict[str, Any]:
    """Table 8's annealing sources where recipes/infir-1b.yaml's anneal_data points, in their release formats.
    Returns what the tests check: the contaminated documents planted in them, and the APPS / CodeContests
    problems with the solution a "one solution, Python preferred" reader must keep."""
    root = Path(root)
    anneal = root / "data" / "anneal"
    gsm = _lines(shared / "gsm8k" / "train.jsonl")
    gsm_test = _lines(shared / "gsm8k" / "test.jsonl")
    alpaca = json.loads((shared / "sft" / "llamafactory" / "alpaca_en_demo.json").read_text())
    code_alpaca = json.loads((shared / "sft" / "codealpaca" / "code_alpaca_2k.json").read_text())
    wiki = [line.strip() for line in open(shared / "corpus" / "llamafactory" / "wiki_demo.txt") if line.strip()]
    humaneval = _lines(shared / "humaneval" / "HumanEval.jsonl.gz")
    out: dict[str, Any] = {}

    # ---- Dolmino (allenai/dolmino-mix-1124): Dolma documents per subset; its math holds GSM8K's *train* set,
    # plus here one page that quotes a GSM8K *test* problem (decontamination must remove it)
    dolmino = anneal / "dolmino-mix-1124" / "data"
    contaminated = (f"A reader asked about this one. {gsm_test[0]['question']} The worked answer: "
                    f"{gsm_test[0]['answer'].split('####')[0]}")
    math_texts = [f"Question: {ex['question']}\nAnswer: {ex['answer'].split('####')[0].strip()} The answer is "
                  f"{ex['answer'].split('####')[-1].strip()}." for ex in gsm[400:440]] + [contaminated]
    _jsonl_zst(dolmino / "math" / "gsm8k" / "gsm8k-train-0000.json.zst", _dolma_rows("gsm8k", math_texts))
    _jsonl_gz(dolmino / "flan" / "flan-0000.json.gz", _dolma_rows("flan", [
        f"{r['instruction']}\n\n{r['output']}" for r in alpaca[200:230]]))
    _jsonl_gz(dolmino / "pes2o" / "pes2o-0000.json.gz", _dolma_rows("pes2o", wiki[25:27]))
    _jsonl_gz(dolmino / "stackexchange" / "stackexchange-0000.json.gz", _dolma_rows("stackexchange", [
        f"Q: {r['instruction']}\n\nA: {r['output']}" for r in code_alpaca[1100:1130]]))
    _jsonl_gz(dolmino / "wiki" / "wiki-0000.json.gz", _dolma_rows("wiki", wiki[12:15]))
    out["dolmino_contaminated"] = contaminated

    # ---- the OpenCoder annealing corpus (OpenCoder-LLM/opc-annealing-corpus): save_to_disk Arrow, `text` + `lang`
    snippets = [r["output"] for r in code_alpaca[:400] if r["output"].lstrip().startswith("def ")][:40]
    _arrow_dataset(anneal / "opc-annealing-corpus" / "algorithmic_corpus",
                   [{"text": t, "lang": "python"} for t in snippets])

    # ---- APPS (codeparrot/apps train.jsonl): `solutions` and `input_output` are JSON strings
    apps = []
    picks: dict[str, str] = {}
    py_rows = [r for r in code_alpaca[400:900] if r["output"].lstrip().startswith(("def ", "for ", "print("))][:12]
    for k, r in enumerate(py_rows):
        solutions = [r["output"]]
        if k == 0:  # a Python 2 program first: the Python 3 one must be kept
            solutions = ["n = input()\nprint 'the answer is', n\n", r["output"]]
        question = r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")
        apps.append({"problem_id": 4000 + k, "question": question, "solutions": json.dumps(solutions),
                     "input_output": json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]}),
                     "difficulty": "introductory", "url": f"https://codeforces.com/problemset/problem/{k}/A",
                     "starter_code": ""})
        picks[question] = r["output"]
    apps.append({"problem_id": 4100, "question": "Count the vowels of a string.", "solutions": "",
                 "input_output": "", "difficulty": "interview", "url": "https://example.org/4100", "starter_code": ""})
    he = humaneval[0]  # a HumanEval problem posted as a programming exercise: decontamination must remove it
    apps.append({"problem_id": 4101, "question": he["prompt"], "solutions": json.dumps([he["prompt"] +
                 he["canonical_solution"]]), "input_output": json.dumps({"fn_name": he["entry_point"]}),
                 "difficulty": "interview", "url": "https://example.org/4101", "starter_code": ""})
    write_jsonl(anneal / "apps" / "train.jsonl", apps)
    out["apps_picks"] = picks
    out["humaneval_contaminated"] = he["prompt"]

    # ---- CodeContests (deepmind/code_contests parquet): solutions {language: [int], solution: [str]}
    # language enum: 1 Python 2, 2 C++, 3 Python 3, 4 Java
    cpp = "#include <cstdio>\nint main() { int n; scanf(\"%d\", &n); printf(\"%d\\n\", n * 2); return 0; }\n"
    py3 = "n = int(input())\nprint(n * 2)\n"
    py2 = "n = int(raw_input())\nprint n * 2\n"
    java = "public class Main { public static void main(String[] a) { System.out.println(2); } }\n"
    problems = [  # (languages, solutions, the solution to keep)
        ([2, 3, 1], [cpp, py3, py2], py3), ([2, 1], [cpp, py2], py2), ([4, 2], [java, cpp], cpp), ([], [], None),
    ] + [([3], [f"n = int(input())\nprint(n * {k + 3})\n"], f"n = int(input())\nprint(n * {k + 3})\n")
         for k in range(6)]
    cc, cc_picks = [], {}
    for k, (langs, sols, keep) in enumerate(problems):
        desc = (f"Problem {k}: you are given an integer n (1 <= n <= 10^9). Print n multiplied by {k + 2}.\n\n"
                "Input\n\nThe only line contains n.\n\nOutput\n\nPrint one integer.")
        cc.append({"name": f"{1000 + k}_A. Multiply {k}", "description": desc,
                   "public_tests": {"input": ["3\n"], "output": [f"{3 * (k + 2)}\n"]},
                   "private_tests": {"input": ["5\n"], "output": [f"{5 * (k + 2)}\n"]},
                   "generated_tests": {"input": ["7\n"] * 3, "output": [f"{7 * (k + 2)}\n"] * 3},
                   "source": 2, "difficulty": 7, "solutions": {"language": langs, "solution": sols},
                   "incorrect_solutions": {"language": [3], "solution": ["print(0)\n"]},
                   "cf_contest_id": 1000 + k, "cf_index": "A", "cf_points": 500.0, "cf_rating": 800,
                   "cf_tags": ["math", "implementation"], "is_description_translated": False,
                   "untranslated_description": "", "time_limit": {"seconds": 1, "nanos": 0},
                   "memory_limit_bytes": 256000000, "input_file": "", "output_file": ""})
        if keep is not None:
            cc_picks[desc] = keep
    _parquet(anneal / "code_contests" / "data" / "train-00000-of-00001.parquet", cc)
    out["code_contests_picks"] = cc_picks

    # ---- synthetic data: a real `infir synth` run (seeds -> evolve -> teacher -> verify -> label) against a tiny
    # local teacher model (its answers are noise: what matters here is the output format and its provenance). In
    # its own process, as a user runs it: in the test process, its torch work left fastText's recall training
    # (run later in the same process by other tests) diverging with "Encountered NaN" in about 1 run of 4.
    seeds = root / "data" / "seeds" / "synth_seeds.json"
    seeds.parent.mkdir(parents=True, exist_ok=True)
    seeds.write_text(json.dumps([{"instruction": r["instruction"], "input": r["input"], "output": r["output"]}
                                 for r in alpaca[400:406]]))
    (root / "data" / "seeds" / "synth.yaml").write_text(json.dumps({
        "teacher": {"concurrency": 4, "max_tokens": 24, "temperature": 0.8},
        "evolve": {"per_seed": 1, "min_chars": 5, "max_copy_similarity": 0.99},
        "respond": {"candidates": 2},
        "reject": {"min_chars": 1, "min_reasoning_steps": 0},
        "label": {"min_quality": 1, "keep_unjudged": True},
        "batch_size": 8,
    }))
    script = (
        "import sys; from pathlib import Path; from tests.conftest import make_tiny_model_dir\n"
        "from infir.synth.config import load_synth_config; from infir.synth.pipeline import run_synth\n"
        "root = Path(sys.argv[1])\n"
        "teacher = make_tiny_model_dir(root / 'models' / 'tiny-teacher')\n"
        "cfg = load_synth_config(root / 'data' / 'seeds' / 'synth.yaml')\n"
        "run_synth(cfg, [root / 'data' / 'seeds' / 'synth_seeds.json'], str(teacher), root / 'data' / 'anneal' / 'synth')\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, str(root)], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"infir synth (the annealing layout's synthetic data) failed:\n{done.stderr[-3000:]}")
    return out


def build_sft_layout(root: Path, shared: Path) -> dict[str, int]:
    """recipes/infir-1b-sft.yaml's SFT sets in their release formats; returns the rows written per set."""
    sft = Path(root) / "data" / "sft"
    alpaca = json.loads((shared / "sft" / "llamafactory" / "alpaca_en_demo.json").read_text())
    code_alpaca = json.loads((shared / "sft" / "codealpaca" / "code_alpaca_2k.json").read_text())
    math = _lines(shared / "math" / "train.jsonl.gz")
    inf = sft / "infinity_instruct" / "Gen" / "train-00000-of-00015.parquet"  # BAAI/Infinity-Instruct: real rows
    inf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared / "formats" / "infinity_instruct" / "infinity_instruct_Gen_train-00000-of-00015.head100.parquet",
                inf)
    # microsoft/orca-agentinstruct-1M-v1: one file per split, `messages` a JSON-encoded string (system turn empty)
    orca = {}
    for split, rows in (("analytical_reasoning", alpaca[600:615]), ("text_modification", alpaca[615:630])):
        orca[split] = [{"messages": json.dumps([
            {"role": "system", "content": ""},
            {"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")},
            {"role": "assistant", "content": r["output"]}])} for r in rows]
    orca["analytical_reasoning"].append({"messages": "[{\"role\": \"user\", \"content\": \"cut off"})  # torn row
    for split, rows in orca.items():
        _parquet(sft / "orca_agentinstruct" / "data" / f"{split}-00000-of-00001.parquet", rows)
    # AI-MO/NuminaMath-CoT: source, problem, solution, messages
    numina = [{"source": "math", "problem": m["problem"], "solution": m["solution"],
               "messages": [{"role": "user", "content": m["problem"]}, {"role": "assistant", "content": m["solution"]}]}
              for m in math[300:330]]
    _parquet(sft / "numinamath_cot" / "data" / "train-00000-of-00005.parquet", numina)
    # OpenCoder-LLM/opc-sft-stage2, educational_instruct: instruction, output (+ code, entry_point, testcase)
    opc = [{"seq_id": i, "instruction": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else ""),
            "output": r["output"], "code": r["output"], "entry_point": "", "testcase": []}
           for i, r in enumerate(code_alpaca[1300:1330])]
    _parquet(sft / "opc_sft_stage2" / "educational_instruct" / "train-00000-of-00001.parquet", opc)
    return {"infinity_instruct": 100, "orca_agentinstruct": 31, "numinamath_cot": len(numina),
            "opc_sft_stage2": len(opc)}
