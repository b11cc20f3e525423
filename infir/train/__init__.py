"""Pretraining and annealing (and the loop SFT/VLM reuse).

tokenized.py   the packed, weighted, resumable loader over token shards (format: infir.data.tokens)
loop.py        the one training loop (AdamW, bf16, grad accumulation, clipping, FSDP2, checkpoints)
loss.py        chunked linear + cross-entropy (+ z-loss): full logits never materialise
schedule.py    warmup + cosine, warmup-stable-decay, anneal decay
checkpoint.py  atomic, keep-last-N checkpoints of model, optimizer, scheduler, loader and RNG
offline_eval.py / generation_eval.py   the paper's §2.3 data-mixing evaluations
pretrain.py    run_pretrain(): the pretrain and anneal stages
export.py      the trained weights as a Hugging Face folder (gathered under FSDP)
"""
