"""Batched generation: left padding changes nothing, HF agrees, stops/seeds/streaming behave."""

from __future__ import annotations

import pytest

from infir.generation import Completion, SamplingParams, load_generator
from infir.generation.engine import InfirGenerator

PROMPTS = [
    "Question: what is 2",
    "def add(a",
    "The quick brown fox jumps over the lazy dog. A B C",
    "Natalia",
]


@pytest.fixture(scope="module")
def gen(tiny_model_dir) -> InfirGenerator:
    g = load_generator(tiny_model_dir)
    assert isinstance(g, InfirGenerator)
    return g


def test_left_padded_batch_equals_one_by_one(gen: InfirGenerator) -> None:
    params = SamplingParams(max_new_tokens=12)
    batched = gen.generate(PROMPTS, params)
    single = [gen.generate([p], params)[0] for p in PROMPTS]
    assert [c.token_ids for c in batched] == [c.token_ids for c in single]
    assert len({tuple(c.token_ids) for c in batched}) > 1  # the model does not emit one constant string
    assert all(c.prompt_tokens > 0 for c in batched)


def test_matches_transformers_generate(gen: InfirGenerator, tiny_model_dir) -> None:
    from infir.generation.hf import HFGenerator

    hf = HFGenerator.from_pretrained(tiny_model_dir, device="cpu")
    hf.eos_ids = gen.eos_ids
    params = SamplingParams(max_new_tokens=10)
    ours, theirs = gen.generate(PROMPTS, params), hf.generate(PROMPTS, params)
    assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]
    assert [c.text for c in ours] == [c.text for c in theirs]


def test_max_tokens_stop_strings_and_eos(gen: InfirGenerator) -> None:
    free = gen.generate(PROMPTS[:1], SamplingParams(max_new_tokens=15))[0]
    assert free.finish_reason == "length" and len(free.token_ids) == 15
    stop = free.text[3:6]
    cut = gen.generate(PROMPTS[:1], SamplingParams(max_new_tokens=15, stop=[stop]))[0]
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.find(stop)]
    # Make the model's 3rd greedy token an EOS id: generation ends there, EOS not in the output.
    eos_gen = InfirGenerator(gen.model, gen.tokenizer, eos_ids={free.token_ids[2]})
    ended = eos_gen.generate(PROMPTS[:1], SamplingParams(max_new_tokens=15))[0]
    assert ended.finish_reason == "stop"
    assert ended.token_ids == free.token_ids[: free.token_ids.index(free.token_ids[2])]


def test_per_request_params_and_seeds(gen: InfirGenerator) -> None:
    sampled = [SamplingParams(max_new_tokens=8, temperature=1.0, top_p=0.95, seed=s) for s in (1, 2, 1)]
    greedy = SamplingParams(max_new_tokens=5)
    out = gen.generate([PROMPTS[0], PROMPTS[0], PROMPTS[0], PROMPTS[1]], [*sampled, greedy])
    assert out[0].token_ids == out[2].token_ids  # same seed, same tokens, whatever the batch
    assert out[0].token_ids != out[1].token_ids
    assert len(out[3].token_ids) == 5
    alone = gen.generate([PROMPTS[0]], sampled[0])[0]
    assert alone.token_ids == out[0].token_ids
    assert out[3].token_ids == gen.generate([PROMPTS[1]], greedy)[0].token_ids


def test_streaming_pieces_add_up(gen: InfirGenerator) -> None:
    pieces: dict[int, list[str]] = {}
    tokens: dict[int, list[int]] = {}

    def on_token(i: int, token: int, piece: str) -> None:
        pieces.setdefault(i, []).append(piece)
        tokens.setdefault(i, []).append(token)

    out: list[Completion] = gen.generate(PROMPTS, SamplingParams(max_new_tokens=9), on_token=on_token)
    for i, c in enumerate(out):
        assert "".join(pieces[i]) == c.text
        assert tokens[i] == c.token_ids


def test_chat_prompt_and_loglikelihood(gen: InfirGenerator) -> None:
    chat = gen.generate_chat([[{"role": "user", "content": "hi"}]], SamplingParams(max_new_tokens=3))[0]
    assert chat.prompt_tokens > 5 and len(chat.token_ids) <= 3
    scores = gen.loglikelihood(
        [("Answer:", " A"), ("Answer:", " B"), ("A longer context here. Answer:", " A")]
    )
    assert all(n >= 1 and s < 0 for s, n in scores)
    assert scores[0] != scores[1]


def test_rows_that_finish_early_leave_the_others_unchanged(gen: InfirGenerator) -> None:
    """EOS in some rows drops them from the batch mid-generation; the rest must not notice."""
    params = SamplingParams(max_new_tokens=12)
    free = gen.generate(PROMPTS, params)
    longest = max(free, key=lambda c: len(c.token_ids))
    eos = {free[0].token_ids[1], longest.token_ids[len(longest.token_ids) // 2]}
    early = InfirGenerator(gen.model, gen.tokenizer, eos_ids=eos)
    batched = early.generate(PROMPTS, params)
    single = [early.generate([p], params)[0] for p in PROMPTS]
    assert [c.token_ids for c in batched] == [c.token_ids for c in single]
    assert len(batched[0].token_ids) <= 1 and batched[0].finish_reason == "stop"


def test_per_token_nll_same_for_infir_and_transformers(gen: InfirGenerator, tiny_model_dir) -> None:
    import math

    import torch
    from transformers import AutoModelForCausalLM

    from infir.generation.nll import per_token_nll

    texts = ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b\n"]
    ours = per_token_nll(gen.model, gen.tokenizer, texts)
    hf = per_token_nll(
        AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32), gen.tokenizer, texts
    )
    assert ours > 0 and math.isclose(ours, hf, rel_tol=1e-4)
    # By hand: mean of -log p over every token after BOS.
    ids = torch.tensor([gen.tokenizer.encode(texts[0])])
    logp = torch.log_softmax(gen.model(ids)[0, :-1].float(), -1).gather(-1, ids[0, 1:, None])
    alone = per_token_nll(gen.model, gen.tokenizer, texts[:1])
    assert math.isclose(alone, float(-logp.mean()), rel_tol=1e-4)


def test_static_decode_step_matches_dynamic(gen: InfirGenerator) -> None:
    """The fixed-shape decode step (the one CUDA graphs capture) gives the same tokens, early stops included."""
    static = InfirGenerator(gen.model, gen.tokenizer, eos_ids=gen.eos_ids, decode="static")
    params = SamplingParams(max_new_tokens=10)
    assert [c.token_ids for c in static.generate(PROMPTS, params)] == [
        c.token_ids for c in gen.generate(PROMPTS, params)
    ]
    free = gen.generate(PROMPTS, params)
    eos = {free[0].token_ids[1]}
    dyn = InfirGenerator(gen.model, gen.tokenizer, eos_ids=eos).generate(PROMPTS, params)
    sta = InfirGenerator(gen.model, gen.tokenizer, eos_ids=eos, decode="static").generate(PROMPTS, params)
    assert [c.token_ids for c in sta] == [c.token_ids for c in dyn]


def test_static_decode_keeps_finished_rows_until_half_are_done(gen: InfirGenerator) -> None:
    """Rows finishing one by one: the static/graphed step lets finished rows ride along (fewer graph
    captures) and compacts at half; outputs equal the dynamic path's, which compacts at once."""
    prompts = PROMPTS * 2
    budgets = [SamplingParams(max_new_tokens=2 + 2 * i) for i in range(len(prompts))]
    static = InfirGenerator(gen.model, gen.tokenizer, eos_ids=set(), decode="static", batch_size=8)
    dynamic = InfirGenerator(gen.model, gen.tokenizer, eos_ids=set(), decode="dynamic", batch_size=8)
    s, d = static.generate(prompts, budgets), dynamic.generate(prompts, budgets)
    assert [c.token_ids for c in s] == [c.token_ids for c in d]
    assert [len(c.token_ids) for c in s] == [2 + 2 * i for i in range(len(prompts))]
    assert static._compact(5, 8) is False and static._compact(4, 8) is True and dynamic._compact(7, 8) is True


def test_embedded_prompts_prefill_from_their_embeddings(gen: InfirGenerator) -> None:
    """Prompts that carry input embeddings (the VLM's prefix) batch with plain ones; embeddings equal to the token
    embeddings give the plain prompt's tokens, other embeddings change the answer; static decoding agrees."""
    import torch

    from infir.generation.engine import EmbeddedPrompt

    params = SamplingParams(max_new_tokens=8)
    ids = [gen.tokenizer.encode(p) for p in PROMPTS]
    plain = gen.generate(ids, params)
    with torch.no_grad():
        same = [EmbeddedPrompt(x, gen.model.embed_tokens(torch.tensor(x))) for x in ids]
        other = EmbeddedPrompt(ids[0], gen.model.embed_tokens(torch.tensor(ids[0])) + 0.5)
    mixed = gen.generate([same[0], ids[1], same[2], ids[3], other], params)
    assert [c.token_ids for c in mixed[:4]] == [c.token_ids for c in plain]
    assert mixed[4].token_ids != plain[0].token_ids and mixed[4].prompt_tokens == len(ids[0])
    static = InfirGenerator(gen.model, gen.tokenizer, eos_ids=gen.eos_ids, decode="static")
    assert [c.token_ids for c in static.generate([*same, other], params)] == [c.token_ids for c in [*plain, mixed[4]]]
    with pytest.raises(ValueError, match="one row per prompt token"):
        EmbeddedPrompt(ids[0], torch.zeros(len(ids[0]) + 1, 4))
