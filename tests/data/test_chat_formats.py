"""SFT readers: Alpaca, ShareGPT, OpenAI messages, self-instruct seeds; bad records quarantined."""

from __future__ import annotations

import json

import pytest

from infir.data.chats import read_conversations, record_to_conversations


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_alpaca_with_input_system_and_history():
    rec = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "system": "Be exact.",
           "history": [["Hi", "Hello"]], "difficulty": "hard"}
    (conv,) = record_to_conversations(rec, domain="math", source="x:0")
    assert conv.messages == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"}, {"role": "assistant", "content": "5"},
    ]
    assert conv.domain == "math" and conv.labels == {"difficulty": "hard"} and conv.source == "x:0"


def test_sharegpt_and_openai_map_roles():
    share = {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}],
             "system": "S", "domain": "code"}
    (c1,) = record_to_conversations(share)
    assert [m["role"] for m in c1.messages] == ["system", "user", "assistant"] and c1.domain == "code"
    openai = {"messages": [{"role": "developer", "content": "S"},
                           {"role": "user", "content": [{"type": "text", "text": "Q1 "},
                                                        {"type": "text", "text": "Q2"}]},
                           {"role": "assistant", "content": "A"}]}
    (c2,) = record_to_conversations(openai, domain="general")
    assert c2.messages[0]["role"] == "system" and c2.messages[1]["content"] == "Q1 Q2"


def test_quarantine_reasons_and_counts(tmp_path):
    path = _write_jsonl(tmp_path / "mixed.jsonl", [
        {"instruction": "ok", "output": "fine"},
        "{not json",
        {"instruction": "", "output": "x"},
        {"conversations": [{"from": "alien", "value": "?"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                      {"role": "assistant", "content": "a"}]},
        {"foo": 1},
        [1, 2],
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
    ])
    result = read_conversations(path)
    assert len(result.conversations) == 2
    reasons = [q.reason.split(":")[0] for q in result.quarantined]
    assert reasons == ["bad_json", "missing_instruction", "unknown_role", "no_assistant", "non_text_content",
                       "unknown_format", "not_an_object"]
    assert result.counts["read"] == 9 and result.counts["quarantined"] == 7
    assert result.quarantined[0].source.endswith("mixed.jsonl:2")
    n = result.write_quarantine(tmp_path / "q.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert n == 7 and lines[2]["record"] == {"conversations": [{"from": "alien", "value": "?"}]}


def test_real_seed_files(shared_data):
    alpaca = read_conversations(shared_data / "sft/llamafactory/alpaca_en_demo.json", domain="general")
    assert len(alpaca.conversations) + len(alpaca.quarantined) == 999
    assert len(alpaca.conversations) >= 990
    seeds = read_conversations(shared_data / "sft/self_instruct_seed/seed_tasks.jsonl")
    assert len(seeds.conversations) >= 175 and not seeds.quarantined  # one per instance
    code = read_conversations(shared_data / "sft/codealpaca/code_alpaca_2k.json", domain="code")
    assert len(code.conversations) + len(code.quarantined) == 2017
    assert all(c.domain == "code" for c in code.conversations)


def test_whole_file_json_error_is_raised(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(json.JSONDecodeError):
        read_conversations(bad)


def test_parquet_like_hub_datasets(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
             "difficulty": "hard"} for i in range(3)]
    rows.append({"messages": [{"role": "user", "content": "no answer"}], "difficulty": "easy"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000.parquet")
    result = read_conversations(tmp_path / "train-00000.parquet", domain="math")
    assert [c.messages[1]["content"] for c in result.conversations] == ["a0", "a1", "a2"]
    assert result.conversations[0].labels == {"difficulty": "hard"}
    assert [q.source.rsplit(":", 1)[1] for q in result.quarantined] == ["3"]
