"""The annealing sources' release formats (Table 8): APPS and CodeContests (one solution per problem, Python
preferred), `infir synth` output, the OpenCoder annealing corpus (Hugging Face save_to_disk Arrow), Dolmino."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from infir.data.config import InputSpec
from infir.data.readers import read_path
from infir.data.records import Quarantined, Record
from infir.data.sources import detect_family, extract, resolve_inputs

PY2 = "n = input()\nprint 'twice', n * 2\n"
PY3 = "n = int(input())\nprint(n * 2)\n"
CPP = "#include <cstdio>\nint main() { return 0; }\n"
JAVA = "class Main { public static void main(String[] a) {} }\n"


def apps_row(solutions: list[str] | str, **extra) -> dict:
    return {"problem_id": 7, "question": "Print twice the number.", "difficulty": "introductory",
            "solutions": solutions if isinstance(solutions, str) else json.dumps(solutions),
            "input_output": json.dumps({"inputs": ["2\n"], "outputs": ["4\n"]}), "url": "u", "starter_code": "",
            **extra}


def cc_row(langs: list[int], sols: list[str]) -> dict:
    return {"name": "1_A. Twice", "description": "Print twice the number.", "source": 2, "difficulty": 7,
            "public_tests": {"input": ["2\n"], "output": ["4\n"]}, "private_tests": {"input": [], "output": []},
            "generated_tests": {"input": ["3\n"] * 50, "output": ["6\n"] * 50},
            "solutions": {"language": langs, "solution": sols},
            "incorrect_solutions": {"language": [3], "solution": ["print(0)\n"]}, "cf_rating": 800, "cf_tags": []}


@pytest.mark.parametrize(("row", "family"), [
    (apps_row([PY3]), "apps"), (cc_row([3], [PY3]), "code-contests"),
    ({"id": "s1", "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
      "verification": {"passed": 1}, "provenance": {"source": "seeds.json", "index": 0}, "domain": "reasoning"},
     "infir-synth"),
])
def test_annealing_families_are_recognised(row: dict, family: str) -> None:
    fam, domain = detect_family(row)
    assert fam == family and domain == ("instruct" if family == "infir-synth" else "code")


@pytest.mark.parametrize(("langs", "sols", "index", "language"), [
    ([2, 3, 1], [CPP, PY3, PY2], 1, "python3"),  # Python 3 first
    ([2, 1, 4], [CPP, PY2, JAVA], 1, "python2"),  # then Python 2
    ([4, 2], [JAVA, CPP], 1, "cpp"),  # then C++, Java
    ([3, 3], [PY2, PY3], 1, "python3"),  # a "Python 3" program that does not parse as Python 3 ranks as Python 2
    ([3, 3], [PY3, PY3.replace("2", "3")], 0, "python3"),  # the first of the best rank
])
def test_code_contests_keeps_one_solution_python_first(langs, sols, index, language) -> None:
    ex = extract(cc_row(langs, sols))
    assert ex.error is None and ex.meta["solution_index"] == index and ex.meta["solution_language"] == language
    assert ex.text == f"Print twice the number.\n\n```{'python' if 'python' in language else language}\n" \
                      f"{sols[index].rstrip()}\n```\n"
    assert ex.language == ("python" if language.startswith("python") else language)
    for bulky in ("solutions", "incorrect_solutions", "generated_tests", "public_tests", "description"):
        assert bulky not in ex.meta  # tests and the other solutions stay out of the metadata
    assert ex.meta["contest_source"] == "codeforces" and ex.meta["solutions_available"] == len(sols)


def test_apps_prefers_a_python3_solution_and_quarantines_problems_without_one() -> None:
    ex = extract(apps_row([PY2, PY3]))
    assert ex.meta["solution_index"] == 1 and PY3.rstrip() in ex.text and PY2 not in ex.text
    assert "input_output" not in ex.meta and ex.meta["problem_id"] == 7
    assert extract(apps_row([PY2])).meta["solution_language"] == "python2"  # the only one there is
    for empty in ("", [], ["   "]):
        assert extract(apps_row(empty)).error == "no_solution"
    assert extract(apps_row("[not json")).error == "solutions_not_json"
    assert extract(apps_row([PY3], question="")).error == "missing_statement"


def test_infir_synth_output_keeps_verification_and_provenance(tmp_path: Path) -> None:
    row = {"id": "s1", "messages": [{"role": "user", "content": "What is 2+2?"},
                                    {"role": "assistant", "content": "Step 1: add. The answer is 4."}],
           "teacher": "qwen", "domain": "math", "scores": {"reward": 0.9}, "labels": {"reward": 0.9},
           "verification": {"candidates": 4, "passed": 2, "chosen": 1, "math": {"correct": True}},
           "provenance": {"source": "seeds/gsm8k.jsonl", "index": 3, "evolution": []}}
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps(row) + "\n")
    [rec] = list(read_path(path, spec=InputSpec(path=str(path), source="synthetic")))
    assert isinstance(rec, Record) and rec.text == "What is 2+2?\n\nStep 1: add. The answer is 4."
    meta = rec.metadata
    assert meta["verification"]["math"] == {"correct": True} and meta["provenance"]["index"] == 3
    assert meta["synth_domain"] == "math" and meta["domain"] == "instruct" and meta["teacher"] == "qwen"
    assert meta["source_family"] == "infir-synth" and meta["source_name"] == "synthetic"


def _save_to_disk(folder: Path, rows: list[dict], stream: bool = True) -> Path:
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    path = folder / "data-00000-of-00001.arrow"
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_stream(sink, table.schema) if stream else pa.ipc.new_file(sink, table.schema)
        with writer:
            writer.write_table(table, max_chunksize=2)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": path.name}]}))
    return path


@pytest.mark.parametrize("stream", [True, False])
def test_opencoder_annealing_corpus_arrow_files_are_read(tmp_path: Path, stream: bool) -> None:
    rows = [{"text": f"def f{i}(x):\n    return x + {i}\n", "lang": "python"} for i in range(5)]
    path = _save_to_disk(tmp_path / "algorithmic_corpus", rows, stream)
    [spec] = resolve_inputs([{"path": str(tmp_path / "**" / "*.arrow"), "domain": "code",
                              "source": "opc-annealing-corpus"}])
    got = list(read_path(path, spec=spec))
    assert [r.text for r in got] == [r["text"] for r in rows]
    assert all(r.metadata["lang"] == "python" and r.metadata["domain"] == "code" for r in got)


def test_arrow_without_a_text_column_or_cut_short_is_reported(tmp_path: Path) -> None:
    _save_to_disk(tmp_path / "a", [{"code": "x = 1"}])
    with pytest.raises(ValueError, match="no text column"):
        resolve_inputs([str(tmp_path / "a" / "data-00000-of-00001.arrow")])
    good = _save_to_disk(tmp_path / "b", [{"text": f"doc {i}"} for i in range(6)])
    data = good.read_bytes()
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(data[: len(data) - 40])
    items = list(read_path(cut))
    assert any(isinstance(i, Record) for i in items)  # what was read is kept
    assert isinstance(items[-1], Quarantined) and items[-1].reason == "truncated_or_corrupt_file"


def test_dolmino_documents_are_text_whatever_their_subset(tmp_path: Path) -> None:
    """Dolma-format rows of Dolmino's flan subset are documents, not chats (they were quarantined as
    unknown_format before)."""
    rows = [{"id": "f1", "text": "Translate to French: cat\n\nchat", "added": "2024-11-24", "created": "2024",
             "source": "flan", "metadata": {}},
            {"id": "m1", "text": "Question: 2+2?\nAnswer: 4", "added": "2024-11-24", "created": "2024",
             "source": "gsm8k"}]
    path = tmp_path / "dolmino" / "flan-0000.json.gz"
    path.parent.mkdir()
    import gzip

    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    got = list(read_path(path, spec=InputSpec(path=str(path), source="dolmino")))
    assert [r.text for r in got] == [r["text"] for r in rows] and all(isinstance(r, Record) for r in got)


def test_a_release_source_that_is_not_a_name_does_not_become_the_record_source(tmp_path: Path) -> None:
    path = tmp_path / "cc.jsonl"
    path.write_text(json.dumps(cc_row([3], [PY3])) + "\n")
    [rec] = list(read_path(path))
    assert rec.source == str(path)  # CodeContests' `source` is an int enum (2 = Codeforces)
