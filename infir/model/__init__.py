"""Model architectures behind one seam.

- `registry`: HF `model_type` -> config class, module class, presets, HF key adapter, GGUF architecture and
  tensor transforms, default chat template, end-of-sequence rule; building, loading from a state dict, presets;
- `base`: the `CausalLM` protocol (what the trainer, the engine and the exporter use) and the KV cache;
- `decoder`: the pre-norm RoPE decoder Llama and Qwen2 share; `llama`, `qwen2`: one file per architecture;
- `hf_io`: HF model folders (config.json + safetensors) of any registered architecture;
- `tokenizer`, `chat_template`: Llama 3 and Qwen2 tokenizer families and chat templates.

Outside this package, import `registry`, `base`, `hf_io`, `tokenizer` and `chat_template`, never an architecture
file (pyproject.toml's `architectures-behind-registry` contract).
"""
