"""How many token positions an SFT epoch computes: infir's packing vs the usual padded micro-batches.

Data: the real SFT seeds and GSM8K train as chats (shared/data), the real Llama 3 tokenizer and
template, max length 4096, 128 conversations per step, 4 rows per micro-batch. Compared:
- hf-padding: micro-batches of 4 conversations in random order, each padded to its longest
  (transformers' DataCollatorForSeq2Seq / DataCollatorWithPadding without group_by_length);
- infir bucketing (packing=False): the step's conversations sorted by length, then padded;
- infir packing: first-fit-decreasing packing into rows of 4096 with document masks.
Compute per step scales with the positions computed (attention aside), so the ratio is the speed-up
in training throughput on the same data. Last line: `result: ...`.

    .venv/bin/python bench/sft_packing.py [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="Conversations to use (default: all).")
    parser.add_argument("--max-length", type=int, default=4096)
    args = parser.parse_args()
    from infir.data.chats import Conversation, read_conversations
    from infir.model.tokenizer import load_tokenizer
    from infir.sft.batching import SFTBatches
    from infir.sft.data import encode_conversations

    data = Path(os.environ.get("INFIR_SHARED_DATA", REPO.parent / "shared" / "data"))
    tok = load_tokenizer(data / "tokenizers/llama3/tokenizer.model")
    convs = read_conversations(data / "sft/llamafactory/alpaca_en_demo.json", domain="general").conversations
    convs += read_conversations(data / "sft/codealpaca/code_alpaca_2k.json", domain="code").conversations
    with open(data / "gsm8k/train.jsonl") as f:
        for line in f:
            ex = json.loads(line)
            convs.append(Conversation([{"role": "user", "content": ex["question"]},
                                       {"role": "assistant", "content": ex["answer"]}], domain="math"))
    random.Random(0).shuffle(convs)
    convs = convs[: args.limit] if args.limit else convs
    t0 = time.perf_counter()
    samples, stats, _ = encode_conversations(convs, tok, args.max_length)
    encode_s = time.perf_counter() - t0
    useful = sum(s.num_positions for s in samples)

    def infir_positions(packing: bool) -> tuple[int, int]:
        loader = SFTBatches(samples, global_batch_size=128, micro_batch_size=4, max_length=args.max_length,
                            packing=packing, pad_id=tok.pad_token_id, seed=0)
        positions, micro = 0, 0
        for batch in loader:
            positions += batch["input_ids"].numel()
            micro += 1
        return positions, micro

    order = list(range(len(samples)))
    random.Random(1).shuffle(order)
    hf = sum(4 * max(samples[i].num_positions for i in order[k : k + 4]) if len(order[k : k + 4]) == 4
             else len(order[k : k + 4]) * max(samples[i].num_positions for i in order[k : k + 4])
             for k in range(0, len(order), 4))
    bucket, bucket_micro = infir_positions(packing=False)
    packed, micro = infir_positions(packing=True)
    hf_micro = -(-len(samples) // 4)
    print(f"conversations {len(samples)} (truncated {stats.truncated}), useful positions {useful:,}, "
          f"tokenized in {encode_s:.1f}s ({len(samples) / encode_s:,.0f} conv/s)")
    for name, pos, passes in (("hf-padding", hf, hf_micro), ("infir bucketing", bucket, bucket_micro),
                              ("infir packing", packed, micro)):
        print(f"{name:16s} positions {pos:12,}  efficiency {useful / pos:6.1%}  forward/backward passes {passes:,}")
    print(f"result: positions_ratio_hf_padding_over_infir_packing={hf / packed:.2f} "
          f"(efficiency {useful / hf:.1%} -> {useful / packed:.1%}; passes {hf_micro} -> {micro})")


if __name__ == "__main__":
    main()
