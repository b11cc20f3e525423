"""Tokenizers: ids against the real Llama 3 vocabulary, chat template carried through save/load."""

from __future__ import annotations

from pathlib import Path

import pytest

from infir.model.chat_template import render_chat
from infir.model.tokenizer import LLAMA3_SPECIAL_TOKENS, load_tokenizer, train_bpe_tokenizer
from tests.conftest import shared_data_dir

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
]


def _shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    return root


@pytest.fixture(scope="module")
def llama3():
    path = _shared_data() / "tokenizers" / "llama3" / "tokenizer.model"
    if not path.exists():
        pytest.skip("Llama 3 tokenizer.model not staged")
    return load_tokenizer(path)


def _ids(encoded):
    return encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded


def test_special_token_table():
    assert len(LLAMA3_SPECIAL_TOKENS) == 256 == len(set(LLAMA3_SPECIAL_TOKENS))
    assert LLAMA3_SPECIAL_TOKENS[0] == "<|begin_of_text|>"
    assert LLAMA3_SPECIAL_TOKENS[9] == "<|eot_id|>"
    assert LLAMA3_SPECIAL_TOKENS[-1] == "<|reserved_special_token_247|>"


def test_real_llama3_ids(llama3):
    assert len(llama3) == 128256
    assert llama3.encode("Hello world!", add_special_tokens=False) == [9906, 1917, 0]
    assert llama3.encode("Hello world!") == [128000, 9906, 1917, 0]
    expected = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|finetune_right_pad_id|>": 128004,
                "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eom_id|>": 128008,
                "<|eot_id|>": 128009, "<|python_tag|>": 128010, "<|reserved_special_token_247|>": 128255}
    assert {t: llama3.convert_tokens_to_ids(t) for t in expected} == expected
    assert (llama3.bos_token_id, llama3.eos_token_id, llama3.pad_token_id) == (128000, 128009, 128004)
    text = "def f(x):\n    return x ** 2  # 12345 ünïcode"
    assert llama3.decode(llama3.encode(text, add_special_tokens=False)) == text


def test_real_llama3_chat_ids(llama3):
    ids = _ids(llama3.apply_chat_template(MESSAGES, tokenize=True))
    # Known Llama 3 ids: system=9125, user=882, assistant=78191, "\n\n"=271, "Hello"=9906, "!"=0.
    assert ids == [128000, 128006, 9125, 128007, 271, 3513, 10015, 13, 128009,
                   128006, 882, 128007, 271, 13347, 128009,
                   128006, 78191, 128007, 271, 9906, 0, 128009]
    assert llama3.decode(ids) == render_chat(MESSAGES)


def test_saved_folder_reloads_with_autotokenizer(llama3, tmp_path):
    from transformers import AutoTokenizer

    llama3.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    for gen in (False, True):
        msgs = MESSAGES if not gen else MESSAGES[:2]
        assert again.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen) == \
            render_chat(msgs, add_generation_prompt=gen)
        assert _ids(again.apply_chat_template(msgs, add_generation_prompt=gen)) == \
            llama3.encode(render_chat(msgs, add_generation_prompt=gen), add_special_tokens=False)
    assert again.eos_token == "<|eot_id|>" and again.bos_token == "<|begin_of_text|>"
    assert load_tokenizer(tmp_path).encode("Hello world!", add_special_tokens=False) == [9906, 1917, 0]


def test_trained_bpe_tokenizer(tmp_path):
    texts = [f"The number {i} is {'even' if i % 2 == 0 else 'odd'}; twice it is {2 * i}." for i in range(300)]
    tok = train_bpe_tokenizer(texts, vocab_size=400)
    assert len(tok) <= 400
    n_regular = len(tok) - 16
    assert tok.convert_tokens_to_ids("<|begin_of_text|>") == n_regular
    assert tok.convert_tokens_to_ids("<|eot_id|>") == n_regular + 9
    sample = "The number 7 is odd; twice it is 14."
    ids = tok.encode(sample, add_special_tokens=False)
    assert len(ids) < len(sample.encode())  # merges were learned
    assert tok.decode(ids) == sample
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    chat = _ids(again.apply_chat_template(MESSAGES))
    assert chat == tok.encode(render_chat(MESSAGES), add_special_tokens=False)
    assert chat.count(again.convert_tokens_to_ids("<|eot_id|>")) == 3
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe_tokenizer(texts, vocab_size=270)


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing")
    bogus = tmp_path / "sp.model"
    bogus.write_bytes(b"\x0a\x0b\x00binary")
    with pytest.raises(ValueError, match="tiktoken"):
        load_tokenizer(bogus)


def test_folder_without_template_gets_the_llama3_one(tmp_path):
    import json

    tok = train_bpe_tokenizer([f"sample text {i}" for i in range(50)], vocab_size=300)
    tok.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    again = load_tokenizer(tmp_path)
    assert again.apply_chat_template(MESSAGES, tokenize=False) == render_chat(MESSAGES)
