"""MMMU as released: rows, images from a folder, multiple-choice and open questions, MMMU's own answer extraction."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from PIL import Image

from infir.eval.tasks import get_task
from infir.eval.tasks.mmmu import (
    MC_INSTRUCTION,
    load_samples,
    open_correct,
    parse_multi_choice,
    parse_open,
)
from tests.conftest import shared_data_dir

SHARED = shared_data_dir() / "formats" / "mmmu"
REAL_ROWS = SHARED / "mmmu_pro_mix_data.head40.jsonl"


def _image(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), colour).save(path)


@pytest.mark.skipif(not REAL_ROWS.exists(), reason="shared/data/formats/mmmu not present")
def test_real_rows_load_with_images_from_a_folder_and_missing_ones_are_counted_skips(tmp_path) -> None:
    rows = tmp_path / "mmmu" / "validation.jsonl"
    rows.parent.mkdir()
    shutil.copy(REAL_ROWS, rows)
    real = [json.loads(line) for line in REAL_ROWS.read_text().splitlines()]
    images = [r[f"image_{k}"] for r in real for k in range(1, 8) if r.get(f"image_{k}")]
    for rel in images[1:]:  # the first row's image is left out on purpose
        _image(tmp_path / "mmmu" / rel)
    samples, skipped = load_samples(tmp_path)
    assert len(samples) == len(real) - 1 and [s["id"] for s in skipped] == [real[0]["id"]]
    assert "image not found: images/test_History_1_1.png" in skipped[0]["reason"]
    multi = next(s for s in samples if s.id == "mmmu/test_Biology_321")  # images referenced in the options
    content = multi.prompt[0]["content"]
    assert content.count("<image>") == len(multi.meta["images"]) == 5 and "<image 1>" not in content
    assert "(A) <image>\n(B) <image>" in content and content.endswith(MC_INSTRUCTION)
    two = next(s for s in samples if s.id == "mmmu/test_History_76")
    assert len(two.meta["images"]) == 2 and all(Path(p).is_file() for p in two.meta["images"])
    assert samples[0].reference in "ABCDEFGHIJ" and samples[0].meta["question_type"] == "multiple-choice"
    assert samples[0].meta["subject"] is not None


def test_parquet_rows_with_string_options_embedded_images_and_open_questions(tmp_path) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(buf, format="PNG")
    rows = [
        {"id": "validation_Math_1", "question": "What is shown in <image 1>?", "options": "['a square', 'a circle']",
         "answer": "A", "image_1": {"bytes": buf.getvalue(), "path": "x.png"}, "question_type": "multiple-choice"},
        {"id": "validation_Math_2", "question": "<image 1> What is the area?", "options": "[]",
         "answer": "['3.14', 'pi']", "image_1": {"bytes": buf.getvalue(), "path": "x.png"}, "question_type": "open"},
    ]
    folder = tmp_path / "mmmu" / "Math"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "validation-00000-of-00001.parquet")
    samples, skipped = load_samples(tmp_path)
    assert not skipped and [s.meta["options"] for s in samples] == [["a square", "a circle"], []]
    assert samples[1].reference == ["3.14", "pi"] and samples[1].prompt[0]["content"].startswith("<image> What")
    assert Image.open(samples[0].meta["images"][0]).size == (8, 8)
    task = get_task("mmmu", "chat")
    graded = [task.grade(samples[0], ["(A) a square"]), task.grade(samples[1], ["The area is 3.1415."])]
    assert [g["correct"] for g in graded] == [True, True]


def test_multiple_choice_parsing_follows_mmmu() -> None:
    options = ["red apple", "green pear", "blue plum", "yellow lemon"]
    rng = random.Random(0)
    assert parse_multi_choice("The answer is (C).", options, rng) == ("C", "bracket")
    assert parse_multi_choice("B", options, rng) == ("B", "letter")
    assert parse_multi_choice("I think it is (A), no wait, (D)", options, rng) == ("D", "bracket")
    # no letter: the option text, but only in replies longer than five words
    assert parse_multi_choice("I am quite sure it shows a green pear here", options, rng) == ("B", "content")
    assert parse_multi_choice("green pear", options, rng)[1] == "random"
    # nothing to parse: a random option, the same one for the same generator state
    picks = {parse_multi_choice("no idea", options, random.Random("42:mmmu/x"))[0] for _ in range(3)}
    assert len(picks) == 1 and picks <= set("ABCD")


def test_open_answers_are_normalised_as_mmmu_does() -> None:
    assert 3.14 in parse_open("so the area is 3.14159 square units")
    assert open_correct("3.14", parse_open("Therefore the answer is 3.1400."))
    assert open_correct(["24/7", "always"], parse_open("The shop is open always."))
    assert not open_correct("12", parse_open("The result is 13."))
    assert open_correct("1,000", parse_open("the total is 1000"))


def test_random_guesses_are_reported_beside_the_accuracy(tmp_path) -> None:
    rows = tmp_path / "rows.jsonl"
    _image(tmp_path / "img.png")
    rows.write_text("".join(json.dumps({"id": f"validation_Art_{i}", "question": "Which colour is <image 1>?",
                                        "options": ["red", "green"], "answer": "A", "image_1": "img.png",
                                        "question_type": "multiple-choice"}) + "\n" for i in range(20)))
    samples, _ = load_samples(None, rows=rows)
    task = get_task("mmmu", "chat")
    graded = [task.grade(s, ["hmm"]) for s in samples]  # nothing parseable: all random picks
    metrics = task.aggregate(graded)
    assert metrics["random_guesses"] == 20 and 0 < metrics["random_guess_correct"] < 20
    assert metrics["accuracy"] == metrics["random_guess_correct"] / 20 and metrics["accuracy_random_guesses_wrong"] == 0
    again = task.aggregate([task.grade(s, ["hmm"]) for s in reversed(samples)])  # order does not change a pick
    assert again["random_guess_correct"] == metrics["random_guess_correct"]


def test_the_text_runner_refuses_mmmu_instead_of_dropping_its_images(tmp_path) -> None:
    with pytest.raises(ValueError, match="image task"):
        get_task("mmmu", "chat").load(tmp_path, "chat", None)
