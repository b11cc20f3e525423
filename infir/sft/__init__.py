"""infir.sft: supervised fine-tuning as InfiR does it (paper §3, App. A, B.2, D).

formats.py    Alpaca / ShareGPT / OpenAI-messages / self-instruct readers -> Conversation (+ quarantine)
selection.py  instruction dedup, mixture by domain weights, difficulty compression, s1-style subsets
data.py       chat template rendering, assistant-only targets, truncation counted
batching.py   packing (document ids, restarting positions), length bucketing, resumable loader
config.py     SFTConfig (the paper's defaults) and its long-CoT variant
train.py      run_sft(cfg, base_model, data, output) -> summary dict
commands.py   `infir train sft`
"""
