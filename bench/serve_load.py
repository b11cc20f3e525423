"""Load test of `infir serve` on loopback: N concurrent clients for a bounded time.

Runs the same load twice against real uvicorn servers in this process: with dynamic batching
(--max-batch-size) and with one request at a time (max batch 1, what a plain request-per-call
server does), and reports throughput, p50/p95 latency and failures for both.

    .venv/bin/python bench/serve_load.py --clients 8 --duration 30
    # last line: result: clients=N requests=R failed=F rps=X tokens_per_s=Y p50_ms=A p95_ms=B batching_speedup=Z
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

import httpx
import torch

from infir.model import registry
from infir.model.hf_io import save_model
from infir.model.tokenizer import train_bpe_tokenizer
from infir.serve.config import ServerConfig
from infir.serve.runner import BackgroundServer

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INFIR_SHARED_DATA", REPO.parent / "shared" / "data"))
QUESTIONS = ["What is 12 plus 30?", "Write a haiku about the sea.", "Explain recursion briefly.",
             "Name three prime numbers.", "What is the capital of France?", "Summarise the water cycle."]


def build_model(out: Path) -> Path:
    """The `tiny` preset (hidden 128, 4 layers) with a BPE tokenizer trained on Wikipedia text; random weights."""
    if (out / "config.json").exists():
        return out
    text = (DATA / "corpus" / "llamafactory" / "wiki_demo.txt").read_text(encoding="utf-8")[:300_000]
    tokenizer = train_bpe_tokenizer(text.split("\n"), vocab_size=2048)
    cfg = registry.preset("tiny", bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.convert_tokens_to_ids("<|eot_id|>"))
    torch.manual_seed(0)
    return save_model(registry.build_model(cfg), out, tokenizer=tokenizer)


def run_load(url: str, model: str, clients: int, duration_s: float, max_tokens: int) -> dict:
    latencies: list[float] = []
    tokens, failures, errors = [0], [0], []
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def client(k: int) -> None:
        with httpx.Client(timeout=120) as http:
            i = 0
            while time.monotonic() < deadline:
                body = {"model": model, "max_tokens": max_tokens, "temperature": 0.7, "seed": k * 1000 + i,
                        "messages": [{"role": "user", "content": QUESTIONS[(k + i) % len(QUESTIONS)]}]}
                t = time.perf_counter()
                try:
                    r = http.post(url + "/chat/completions", json=body)
                    ok = r.status_code == 200
                    n = r.json()["usage"]["completion_tokens"] if ok else 0
                except Exception as e:  # counted, never hidden
                    ok, n = False, 0
                    errors.append(repr(e))
                with lock:
                    if ok:
                        latencies.append(time.perf_counter() - t)
                        tokens[0] += n
                    else:
                        failures[0] += 1
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    return {"requests": len(latencies), "failed": failures[0], "rps": len(latencies) / wall,
            "tokens_per_s": tokens[0] / wall, "p50_ms": 1000 * statistics.median(latencies) if latencies else 0,
            "p95_ms": 1000 * q[18], "errors": errors[:3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="Model folder (default: build the tiny preset once).")
    ap.add_argument("--work-dir", type=Path, default=REPO / "runs" / "bench" / "serve_load")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=30.0, help="Seconds of load per configuration.")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = args.model or build_model(args.work_dir / "tiny-model")

    results = {}
    for label, batch in (("batched", args.max_batch_size), ("one-at-a-time", 1)):
        config = ServerConfig(model_name="bench", max_batch_size=batch, max_queue=max(64, 2 * args.clients),
                              batch_window_ms=5)
        with BackgroundServer(model_dir, config=config) as server:
            results[label] = r = run_load(server.url, "bench", args.clients, args.duration, args.max_tokens)
            health = httpx.get(server.root + "/health").json()
        print(f"{label:14} clients={args.clients} requests={r['requests']} failed={r['failed']} "
              f"rps={r['rps']:.2f} tokens/s={r['tokens_per_s']:.1f} p50={r['p50_ms']:.0f}ms "
              f"p95={r['p95_ms']:.0f}ms largest_batch={health['largest_batch']}", flush=True)
        if r["errors"]:
            print("  errors:", r["errors"])
    b, s = results["batched"], results["one-at-a-time"]
    print(f"result: clients={args.clients} requests={b['requests']} failed={b['failed'] + s['failed']} "
          f"rps={b['rps']:.2f} tokens_per_s={b['tokens_per_s']:.1f} p50_ms={b['p50_ms']:.0f} "
          f"p95_ms={b['p95_ms']:.0f} batching_speedup={b['rps'] / max(s['rps'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
