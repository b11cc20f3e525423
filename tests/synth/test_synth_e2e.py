"""End-to-end synthesis against a real OpenAI-compatible server on loopback serving a tiny real model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_test_server import ServerThread, build_app

from infir.synth.config import SynthConfig
from infir.synth.pipeline import run_synth
from infir.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def small_config(reward_model: Path | None, concurrency: int = 4, batch_size: int = 4) -> SynthConfig:
    return SynthConfig.model_validate({
        "teacher": {"concurrency": concurrency, "max_tokens": 24, "backoff_s": 0.01, "temperature": 0.8},
        "evolve": {"per_seed": 1, "min_chars": 5, "max_copy_similarity": 0.99},
        "respond": {"candidates": 2},
        "reject": {"reward_model": str(reward_model) if reward_model else None, "min_chars": 1,
                   "min_reasoning_steps": 0, "code_timeout_s": 5},
        "label": {"min_quality": 1, "keep_unjudged": True},
        "batch_size": batch_size,
    })


def write_seeds(shared_data: Path, out: Path) -> list[Path]:
    """Real seeds in four formats, plus one malformed line and one duplicate (to be quarantined)."""
    out.mkdir(parents=True, exist_ok=True)
    alpaca = json.loads((shared_data / "sft/llamafactory/alpaca_en_demo.json").read_text())[:1]
    code = json.loads((shared_data / "sft/codealpaca/code_alpaca_2k.json").read_text())[:1]
    gsm8k = [json.loads(line) for line in (shared_data / "gsm8k/train.jsonl").read_text().splitlines()[:1]]
    (out / "alpaca.json").write_text(json.dumps(alpaca))
    (out / "code_alpaca.json").write_text(json.dumps(code))
    (out / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm8k))
    sharegpt = {"conversations": [{"from": "human", "value": "Name two prime numbers and explain why."},
                                  {"from": "gpt", "value": "2 and 3."}]}
    messages = {"messages": [{"role": "user", "content": "Explain what a haiku is."}]}
    (out / "chats.jsonl").write_text(json.dumps(sharegpt) + "\n" + json.dumps(messages) + "\n{not json\n"
                                     + json.dumps(messages) + "\n")
    return [out]


@pytest.fixture(scope="module")
def seeds_dir(shared_data, tmp_path_factory) -> list[Path]:
    return write_seeds(shared_data, tmp_path_factory.mktemp("seeds"))


def test_pipeline_records_provenance_and_cache(synth_models, seeds_dir, tmp_path):
    out = tmp_path / "synth"
    with ServerThread(build_app(synth_models["teacher"], fail_first=2)) as server:
        stats = run_synth(small_config(synth_models["reward"]), seeds_dir, server.url, out)
        first_requests = server.requests

        records = list(read_jsonl(out / "sft.jsonl"))
        assert records and len({r["id"] for r in records}) == len(records)
        for r in records:
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
            assert r["teacher"] == "tiny-teacher" and r["messages"][1]["content"] == r["messages"][1]["content"]
            assert Path(r["provenance"]["source"]).exists() and isinstance(r["provenance"]["index"], int)
            assert isinstance(r["scores"]["reward"], float)
            assert r["verification"]["reward_model"] == str(synth_models["reward"])
        evolved = [r for r in records if r["provenance"]["evolution"]]
        assert evolved and all(e["op"] and e["parent_id"] for r in evolved for e in r["provenance"]["evolution"])

        # Gibberish answers never match GSM8K's reference, and carry no tests for code seeds.
        rejected = list(read_jsonl(out / "rejected.jsonl"))
        reasons = {(r["step"], r["reason"]) for r in rejected}
        assert ("04_verify", "wrong_answer") in reasons and ("04_verify", "no_tests") in reasons
        quarantined = list(read_jsonl(out / "steps/01_seeds.quarantine.jsonl"))
        assert sorted(q["reason"].split(":")[0] for q in quarantined) == ["duplicate instruction",
                                                                           "malformed JSON line"]
        from infir.data.chats import read_conversations  # the SFT room reads what synthesis writes

        read_back = read_conversations(out / "sft.jsonl")
        assert len(read_back.conversations) == len(records) and not read_back.quarantined
        assert read_back.conversations[0].labels["reward"] == records[0]["scores"]["reward"]
        on_disk = json.loads((out / "stats.json").read_text())
        assert on_disk["output"]["records"] == len(records) == stats["output"]["records"]
        assert stats["teacher"]["retries"] == 2  # the server answered 503 twice
        assert first_requests == stats["teacher"]["requests"] + stats["teacher"]["retries"]

        # A rerun from scratch (same cache) asks the server nothing and produces the same records.
        for path in [out / "sft.jsonl", out / "stats.json", *sorted((out / "steps").iterdir())]:
            path.unlink()
        again = run_synth(small_config(synth_models["reward"]), seeds_dir, server.url, out)
        assert server.requests == first_requests
        assert again["teacher"]["requests"] == 0
        assert again["teacher"]["cache_hits"] == stats["teacher"]["requests"]
        assert list(read_jsonl(out / "sft.jsonl")) == records


def test_killed_run_resumes_without_loss_or_duplicates(synth_models, seeds_dir, tmp_path):
    out = tmp_path / "synth"
    config_path = tmp_path / "synth.yaml"
    config_path.write_text(json.dumps(small_config(None, concurrency=1, batch_size=1).model_dump(mode="json")))
    app = build_app(synth_models["teacher"], delay_s=0.2)
    with ServerThread(app) as server:
        seeds = [seeds_dir[0] / "alpaca.json", seeds_dir[0] / "chats.jsonl"]
        cmd = [sys.executable, "-m", "infir.cli", "synth", "--config", str(config_path), "--seeds", str(seeds[0]),
               "--seeds", str(seeds[1]), "--teacher", server.url, "--output", str(out)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "INFIR_LOG_LEVEL": "WARNING"})
        ledger = out / "steps/03_respond.jsonl"
        deadline = time.monotonic() + 60
        while not (ledger.exists() and ledger.read_text().count("\n") >= 2):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the run never reached the response step"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "steps/03_respond.done.json").exists()
        done_before = ledger.read_text().count("\n")

        app.state.delay_s = 0.0
        stats = run_synth(small_config(None, concurrency=1, batch_size=1), seeds, server.url, out)

        evolve_ids = [r["id"] for line in read_jsonl(out / "steps/02_evolve.jsonl") for r in line["kept"]]
        respond_inputs = [line["input_id"] for line in read_jsonl(ledger)]
        assert sorted(respond_inputs) == sorted(evolve_ids)  # every item exactly once
        assert stats["steps"]["03_respond"]["inputs"] == len(evolve_ids) > done_before
        records = list(read_jsonl(out / "sft.jsonl"))
        assert records and len({r["id"] for r in records}) == len(records)
        # Nothing finished before the kill was asked again (at most the one request in flight).
        cache_entries = stats["teacher"]["cache_entries"]
        assert server.requests - cache_entries <= 1


def test_against_infir_serve(synth_models, tmp_path):
    """The project's own `infir serve` app as the teacher (kept tiny: its CPU engine is slower than HF's)."""
    from openai_test_server import build_infir_serve_app

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "Name a colour of the sky.", "output": "Blue."}) + "\n")
    cfg = small_config(None)
    cfg.evolve.enabled = False
    cfg.respond.candidates = 1
    cfg.label.enabled = False
    cfg.teacher.max_tokens = 4
    with ServerThread(build_infir_serve_app(synth_models["teacher"], fail_first=1)) as server:
        stats = run_synth(cfg, [seeds], server.url, tmp_path / "out")
        assert stats["teacher"]["model"] == "tiny-teacher" and stats["teacher"]["retries"] == 1
        assert server.requests == 2 and stats["output"]["records"] == 1
        record = next(read_jsonl(tmp_path / "out/sft.jsonl"))
        assert record["provenance"]["source"] == str(seeds) and record["provenance"]["format"] == "alpaca"
