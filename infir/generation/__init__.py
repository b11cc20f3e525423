"""The one inference engine: every room that generates text or scores it goes through here.

- `base`: the interface (`Generator`, `SamplingParams`, `Completion`, `LocalGenerator`);
- `text`: prompt encoding, chat rendering, stop strings, EOS ids, incremental detokenization;
- `engine`: `InfirGenerator`, batched KV-cache decoding for infir models (CUDA graphs via `static_decode`),
  also with embedding prefixes (the VLM's image features);
- `hf`: `HFGenerator`, any transformers causal LM; `http`: `OpenAIGenerator`, an OpenAI-compatible server;
- `loglik`: log-likelihoods of continuations; `nll`: per-token NLL of texts;
- `factory`: `load_generator(path_or_url)` picks the engine.
"""

from infir.generation.base import Completion, Generator, LocalGenerator, SamplingParams
from infir.generation.factory import load_generator

__all__ = ["Completion", "Generator", "LocalGenerator", "SamplingParams", "load_generator"]
