"""SFT tokenization and batches: assistant-only labels, zero prompt gradients, packing = no packing,
truncation counted, exact loader resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from infir.data.chats import Conversation, MalformedRecord
from infir.model.llama import PRESETS, Llama
from infir.model.tokenizer import load_tokenizer, train_bpe_tokenizer
from infir.sft.batching import SFTBatches, collate_rows, pack_first_fit_decreasing
from infir.sft.data import IGNORE_INDEX, ConversationEncoder, EncodedSample, encode_conversations
from infir.train.loss import linear_cross_entropy

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Add 2 and 3."},
    {"role": "assistant", "content": "It is 5."},
]
WORDS = "the cat sat on a mat and two dogs ran to the park while one bird sang three songs about numbers".split()




@pytest.fixture(scope="module")
def tiny_tok():
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=12)) for _ in range(300)] + [m["content"] for m in CHAT]
    return train_bpe_tokenizer(texts, vocab_size=400)


@pytest.fixture(scope="module")
def tiny_model(tiny_tok):
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["micro"], vocab_size=len(tiny_tok), max_position_embeddings=512)
    return Llama(cfg)


def _sample(tok, n_user: int, n_answer: int, seed: int) -> EncodedSample:
    rng = np.random.default_rng(seed)
    msgs = [{"role": "user", "content": " ".join(rng.choice(WORDS, size=n_user))},
            {"role": "assistant", "content": " ".join(rng.choice(WORDS, size=n_answer))}]
    ids, target, truncated = ConversationEncoder(tok, 512).encode(msgs)
    return EncodedSample(ids, target, "general", truncated)


def test_labels_are_exactly_the_assistant_turns_real_llama3(shared_data):
    tok = load_tokenizer(shared_data / "tokenizers/llama3/tokenizer.model")
    ids, target, truncated = ConversationEncoder(tok, 4096).encode(CHAT)
    assert not truncated
    assert ids.tolist() == tok.encode(tok.apply_chat_template(CHAT, tokenize=False), add_special_tokens=False)
    assert tok.decode(ids[target]) == "Hello!<|eot_id|>It is 5.<|eot_id|>"
    # The generation prompt (assistant header) is prompt: a model learns to answer after it, not to write it.
    header = tok.encode("<|start_header_id|>assistant<|end_header_id|>\n\n", add_special_tokens=False)
    first = int(np.argmax(target))
    assert ids[first - len(header) : first].tolist() == header and not target[:first].any()
    sample = EncodedSample(ids, target)
    x, y = sample.inputs_and_labels()
    assert tok.decode(y[y != IGNORE_INDEX]) == "Hello!<|eot_id|>It is 5.<|eot_id|>"
    assert (x[1:] == ids[1:-1]).all() and len(x) == len(ids) - 1


def test_gradient_wrt_prompt_positions_is_zero(tiny_tok, tiny_model):
    sample = EncodedSample(*ConversationEncoder(tiny_tok, 512).encode(CHAT)[:2])
    batch = collate_rows([[sample]], pad_id=tiny_tok.pad_token_id, pad_to_multiple_of=16)
    hidden = tiny_model(batch["input_ids"], position_ids=batch["position_ids"],
                        document_ids=batch["document_ids"], return_hidden=True)
    hidden.retain_grad()
    loss_sum, _ = linear_cross_entropy(hidden, tiny_model.lm_head.weight, batch["labels"])
    loss_sum.backward()
    grad_norm = hidden.grad[0].norm(dim=-1)
    labelled = batch["labels"][0] != IGNORE_INDEX
    assert labelled.sum() > 0 and (~labelled).sum() > labelled.sum()
    assert torch.all(grad_norm[~labelled] == 0)
    assert torch.all(grad_norm[labelled] > 0)


def _mean_loss(model, batch) -> torch.Tensor:
    logits = model(batch["input_ids"], position_ids=batch["position_ids"], document_ids=batch["document_ids"])
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                             ignore_index=IGNORE_INDEX, reduction="sum")


def test_packed_and_unpacked_batches_give_the_same_loss_and_grads(tiny_tok, tiny_model):
    samples = [_sample(tiny_tok, 8, 20, 1), _sample(tiny_tok, 30, 5, 2), _sample(tiny_tok, 3, 40, 3)]
    packed = collate_rows([samples], pad_id=0, pad_to_multiple_of=8)
    unpacked = collate_rows([[s] for s in samples], pad_id=0, pad_to_multiple_of=8)
    assert packed["input_ids"].shape[0] == 1 and unpacked["input_ids"].shape[0] == 3
    n = sum(int((s.target[1:]).sum()) for s in samples)
    assert int((packed["labels"] != IGNORE_INDEX).sum()) == n == int((unpacked["labels"] != IGNORE_INDEX).sum())
    # position ids restart per sample, document ids change per sample
    row = packed["position_ids"][0]
    starts = (row == 0).nonzero().flatten().tolist()
    assert starts[:3] == [0, samples[0].num_positions, samples[0].num_positions + samples[1].num_positions]
    grads = []
    losses = []
    for batch in (packed, unpacked):
        tiny_model.zero_grad()
        loss = _mean_loss(tiny_model, batch) / n
        loss.backward()
        losses.append(loss.item())
        grads.append(tiny_model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    # Without document ids the packed row leaks attention across samples and the loss changes.
    leaky = dict(packed, document_ids=None)
    leaky_loss = (_mean_loss(tiny_model, leaky) / n).item()
    assert abs(leaky_loss - losses[0]) > 1e-4


def test_truncation_is_counted_and_empty_targets_quarantined(tiny_tok):
    long_answer = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "the cat " * 100}]
    long_prompt = [{"role": "user", "content": "the dog " * 100}, {"role": "assistant", "content": "ok"}]
    injected = [{"role": "user", "content": "x<|eot_id|>"}, {"role": "assistant", "content": "y"}]
    convs = [Conversation(long_answer, source="a"), Conversation(long_prompt, source="b"),
             Conversation(CHAT[1:3], source="c"), Conversation(injected, source="d")]
    samples, stats, quarantined = encode_conversations(convs, tiny_tok, max_length=48)
    assert stats.truncated == 1 and stats.samples == 2
    assert all(s.num_positions <= 48 for s in samples) and samples[0].truncated
    assert sorted((q.source, q.reason.split(":")[0]) for q in quarantined) == [
        ("b", "no_target_after_truncation"), ("d", "control_token_in_content")]
    with pytest.raises(MalformedRecord, match="no_target"):
        ConversationEncoder(tiny_tok, 64).encode([{"role": "user", "content": "only"}])


def test_first_fit_decreasing_packing():
    bins = pack_first_fit_decreasing([5, 7, 3, 2, 8, 1], capacity=10)
    assert sorted(sorted(b) for b in bins) == [[0, 2, 3], [1, 5], [4]] or all(
        sum([5, 7, 3, 2, 8, 1][i] for i in b) <= 10 for b in bins)
    assert sorted(i for b in bins for i in b) == list(range(6)) and len(bins) == 3
    with pytest.raises(ValueError):
        pack_first_fit_decreasing([11], capacity=10)


def _loader_samples(tok, n=37):
    return [_sample(tok, 2 + i % 7, 3 + (i * 5) % 23, 100 + i) for i in range(n)]


def _key(batch):
    return tuple(batch["input_ids"].flatten().tolist()), tuple(batch["labels"].flatten().tolist())


def test_loader_covers_each_epoch_once_with_fixed_micro_batches(tiny_tok):
    samples = _loader_samples(tiny_tok)
    loader = SFTBatches(samples, global_batch_size=8, micro_batch_size=2, max_length=128, pad_id=0, seed=3,
                        total_steps=10)
    rows = [len(loader.step_rows(step)) for step in range(10)]
    assert loader.steps_per_epoch == 5 and loader.accum_steps == max(-(-r // 2) for r in rows)
    assert loader.accum_steps < 4  # packing: fewer passes than 8 conversations / 2 rows
    assert len(loader) == 10 * loader.accum_steps
    batches = list(loader)
    assert len(batches) == 10 * loader.accum_steps
    for b in batches:
        assert b["input_ids"].shape[0] <= 2 and b["input_ids"].shape[1] <= 128
        assert set(b) == {"input_ids", "labels", "position_ids", "document_ids"}
    epoch = batches[: 5 * loader.accum_steps]
    labels_epoch = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in epoch)
    assert labels_epoch == sum(int(s.target[1:].sum()) for s in samples)  # every sample exactly once
    seen = sorted(i for step in range(5) for i in loader.step_samples(step))
    assert seen == list(range(37))
    assert loader.step_samples(5) != loader.step_samples(0)  # a new shuffle for epoch 2
    packed_rows = sum(int((b["document_ids"] != -1).any(1).sum()) for b in epoch)
    assert packed_rows < 37  # packing put several samples in a row


def test_loader_resumes_exactly(tiny_tok):
    samples = _loader_samples(tiny_tok)
    kwargs = dict(global_batch_size=8, micro_batch_size=2, max_length=64, pad_id=0, seed=5, total_steps=7)
    full = [_key(b) for b in SFTBatches(samples, **kwargs)]
    first = SFTBatches(samples, **kwargs)
    it = iter(first)
    head = [_key(next(it)) for _ in range(11)]  # stop mid-step
    state = first.state_dict()
    second = SFTBatches(samples, **kwargs)
    second.load_state_dict(state)
    assert head + [_key(b) for b in second] == full
    with pytest.raises(ValueError, match="seed"):
        SFTBatches(samples, **{**kwargs, "seed": 6}).load_state_dict(state)


def test_unpacked_bucketing_and_ranks(tiny_tok):
    samples = _loader_samples(tiny_tok, n=16)
    per_rank = [SFTBatches(samples, global_batch_size=16, micro_batch_size=4, max_length=64, packing=False,
                           pad_id=0, rank=r, world_size=2, total_steps=1) for r in range(2)]
    labels = 0
    for loader in per_rank:
        batches = list(loader)
        assert len(batches) == 2  # 16 / (4 x 2)
        for b in batches:
            assert b["input_ids"].shape[0] == 4
            lengths = (b["document_ids"] == 0).sum(1)
            assert int(lengths.max()) <= b["input_ids"].shape[1] < int(lengths.max()) + 8  # bucketed padding
        labels += sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches)
    assert labels == sum(int(s.target[1:].sum()) for s in samples)


def test_a_tokenizers_own_template_is_used_for_rendering_and_masking(tiny_tok):
    import copy

    tok = copy.deepcopy(tiny_tok)
    tok.chat_template = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}: {{ m['content'] }}<|eot_id|>"
                         "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant: {% endif %}")
    encoder = ConversationEncoder(tok, 512)
    ids, target, _ = encoder.encode(CHAT)
    assert tok.decode(ids).startswith("<|start_header_id|>system: Be brief.<|eot_id|>")
    assert tok.decode(ids[target]) == "Hello!<|eot_id|>It is 5.<|eot_id|>"
    tok.chat_template = ("{{ date_string if date_string is defined else strftime_now('%d %b %Y') }}"
                         "{% for m in messages %}<|start_header_id|>{{ m['role'] }}: {{ m['content'] }}<|eot_id|>"
                         "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant: {% endif %}")
    ids, target, _ = ConversationEncoder(tok, 512).encode(CHAT)
    assert tok.decode(ids).startswith("26 Jul 2024<|start_header_id|>")  # a pinned date, never today's
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
                         "{% if loop.last %} END{% endif %}\n{% endfor %}")
    with pytest.raises(MalformedRecord, match="prefix"):
        ConversationEncoder(tok, 512).encode(CHAT)
