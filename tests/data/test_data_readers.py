"""Readers on real WARC/WET captures, Parquet, folders of code; language id with lid.176."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from infir.data.readers import expand_inputs, read_path
from infir.data.records import Quarantined, Record


def test_warc_and_wet(shared_data):
    corpus = shared_data / "corpus"
    wet = list(read_path(corpus / "commoncrawl_whirlwind" / "whirlwind.warc.wet.gz"))
    assert len(wet) == 1 and isinstance(wet[0], Record)
    assert wet[0].metadata["url"] == "https://an.wikipedia.org/wiki/Escopete" and "Escopete" in wet[0].text
    items = list(read_path(corpus / "dolma_testdata" / "warc_sample-0000.warc.gz"))
    records = [i for i in items if isinstance(i, Record)]
    assert len(items) == 22 and len(records) >= 15  # HTML responses -> main text via trafilatura
    assert all(r.metadata["url"].startswith("http") and r.text.strip() for r in records)
    assert all(i.reason in ("not_html", "no_text_extracted") for i in items if isinstance(i, Quarantined))


def test_parquet_and_code_folder(tmp_path):
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": ["first doc", None], "lang": ["en", "en"]}),
        tmp_path / "x.parquet",
    )
    items = list(read_path(tmp_path / "x.parquet"))
    assert isinstance(items[0], Record) and items[0].id == "a" and items[0].metadata["lang"] == "en"
    assert isinstance(items[1], Quarantined) and items[1].reason == "missing_text"
    code = tmp_path / "repo"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "m.py").write_text("def f():\n    return 1\n")
    (code / "pkg" / "bad.py").write_bytes(b"x = '\xff'\n")
    shards = expand_inputs([code])
    assert len(shards) == 1
    name, files, root = shards[0]
    got = [i for f in files for i in read_path(f, root=root)]
    rec = next(i for i in got if isinstance(i, Record))
    assert rec.metadata == {"path": "pkg/m.py", "language_code": "python", "domain": "code", "domain_from": "format"}
    assert any(isinstance(i, Quarantined) and i.reason == "invalid_utf8" for i in got)


def test_language_id_step(shared_data):
    from infir.data.config import CurateConfig
    from infir.data.steps import StepContext, langid_step

    cfg = CurateConfig.model_validate(
        {"langid": {"enabled": True, "model_path": shared_data / "fasttext" / "lid.176.ftz"}}
    )
    step = langid_step(StepContext(cfg))
    en = Record(
        "1", "The weather is lovely today and we are going for a walk in the park.", "t", {"domain": "web"}
    )
    de = Record("2", "Das Wetter ist heute herrlich und wir gehen im Park spazieren.", "t", {"domain": "web"})
    assert step.check(en) is None and en.metadata["language"] == "en"
    assert step.check(de) == "language_not_allowed" and de.metadata["language"] == "de"


def test_parquet_output_round_trips(tmp_path):
    from infir.data.config import CurateConfig
    from infir.data.pipeline import run_curate

    text = "The committee reviewed the plan and approved it with minor changes after a long debate. " * 8
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(f'{{"id": "r{i}", "text": "{text} {i}", "metadata": {{"k": {i}}}}}' for i in range(3))
    )
    cfg = CurateConfig.model_validate(
        {"output_format": "parquet", "heuristics": {"enabled": False}, "minhash": {"enabled": False}}
    )
    stats = run_curate(cfg, [src], tmp_path / "out")
    shards = list((tmp_path / "out").glob("*.parquet"))
    assert stats["kept"] == 3 and len(shards) == 1
    back = [r for r in read_path(shards[0]) if isinstance(r, Record)]
    assert [r.id for r in back] == ["r0", "r1", "r2"] and back[2].metadata["k"] == 2


def test_the_embedded_corpus_code_files_survive_curation(tmp_path):
    """Regression: infir's own records say a code file's language as metadata `language`/`path`; the code
    language allowlist dropped every embedded stdlib file as code_language_unknown (the demo lost all its code), and
    files cut mid-function at max_code_chars failed the syntax check."""
    from infir.data.builtin_corpus import BuiltinCorpusConfig, build_corpus
    from infir.data.config import CurateConfig
    from infir.data.pipeline import run_curate

    build_corpus(BuiltinCorpusConfig(code_files=12, doc_modules=5, math_train=20, math_test=2, boilerplate_pages=2,
                                     short_pages=2, contaminated_pages=0), tmp_path / "corpus")
    rows = [r for r in read_path(tmp_path / "corpus" / "corpus.jsonl") if isinstance(r, Record)]
    code = [r for r in rows if r.domain == "code"]
    assert code and all(r.metadata["language_code"] == "python" for r in code)
    stats = run_curate(CurateConfig(), [tmp_path / "corpus" / "corpus.jsonl"], tmp_path / "out")
    code_stats = stats["domains"]["code"]
    assert "code_language_unknown" not in code_stats["dropped"] and "python_syntax_error" not in code_stats["dropped"]
    assert code_stats["kept"] >= 0.6 * code_stats["input"], code_stats  # the rest: planted duplicates, lint
