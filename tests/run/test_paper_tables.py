"""The paper's tables: published numbers beside ours only for the same benchmark under the same protocol."""

from __future__ import annotations

from infir.run.paper_tables import TABLE1, TABLE2, TABLE3, TABLE6, Result, render, same_protocol


def _col(table, header):
    return next(c for c in table.columns if c.header == header)


def test_the_papers_numbers_are_as_printed() -> None:
    assert dict(TABLE1.rows)["InfiR-1B-Base"] == ("47.24", "63.46", "31.82", "37.80", "53.40", "37.6")
    assert dict(TABLE2.rows)["InfiR-1B-Instruct"] == ("50.22", "70.9", "46.4", "58.54", "56.03")
    assert dict(TABLE3.rows)["InfiR-VL-1.6B"] == ("38.8", "76.3", "9.48")
    assert dict(TABLE6.rows)["InfiR-1B-Instruct (2M Long CoT)"] == ("0.067", "0.62", "0.300", "0.364", "0.224")
    for table in (TABLE1, TABLE2, TABLE3, TABLE6):
        assert all(len(values) == len(table.columns) for _, values in table.rows)


def test_only_the_same_protocol_matches() -> None:
    gsm8k = _col(TABLE1, "GSM8K")
    full = Result(0.1, n=1319, mode="base", shots=8, metric="accuracy", real_data=True)
    assert same_protocol(gsm8k, full) == (True, "")
    assert "stand-in" in same_protocol(gsm8k, Result(0.1, n=1319, mode="base", real_data=False, stand_in="toy"))[1]
    assert "40 of 1319" in same_protocol(gsm8k, Result(0.1, n=40, mode="base", real_data=True))[1]
    assert "chat mode" in same_protocol(gsm8k, Result(0.1, n=1319, mode="chat", real_data=True))[1]
    mbpp3 = _col(TABLE1, "MBPP(3-shot)")
    assert same_protocol(mbpp3, Result(0.3, n=500, mode="base", shots=3, metric="pass@1", real_data=True))[0]
    assert "0-shot" in same_protocol(mbpp3, Result(0.3, n=500, mode="base", shots=0, metric="pass@1",
                                                    real_data=True))[1]
    assert not same_protocol(_col(TABLE1, "MBPP"), Result(0.3, n=500, mode="base", metric="pass@1",
                                                           real_data=True))[0]
    mmmu = _col(TABLE3, "MMMU")
    assert "rows skipped" in same_protocol(mmmu, Result(0.3, n=900, real_data=True, skipped=2))[1]
    assert "emulator" in same_protocol(_col(TABLE3, "Android World"), Result(None))[1]


def test_render_shows_paper_rows_only_in_matching_columns() -> None:
    ours = {"GSM8K": Result(0.25, n=1319, mode="base", shots=8, metric="accuracy", real_data=True),
            "MATH": Result(0.05, n=40, mode="base", shots=4, metric="accuracy", real_data=True)}
    md = "\n".join(render(TABLE1, ours, "run"))
    assert "| **run** (this run) | — | 25.00 (n=1319) | 5.00 †1 (n=40) |" in md
    assert "| InfiR-1B-Base (paper) | · | 63.46 | · | · | · | · |" in md
    assert "†1 MATH: 40 of 5000 items" in md and "MMLU: not run" in md
    toy = {"GSM8K": Result(0.25, n=40, mode="base", real_data=False, stand_in="the embedded problems")}
    md = "\n".join(render(TABLE1, toy, "run", extra=[("x (stand-in)", Result(0.5, n=3))]))
    assert "(paper)" not in md and "The paper's rows are not shown" in md
    assert "stand-in data (the embedded problems)" in md and "x (stand-in): a stand-in column" in md
