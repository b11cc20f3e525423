"""The Llama 3 chat template: Jinja and Python render the same bytes, the layout is Llama 3's."""

from __future__ import annotations

import pytest

from infir.model.chat_template import LLAMA3_CHAT_TEMPLATE, render_chat, render_with_tokenizer

CONVERSATIONS = {
    "single": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    "system": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ],
    "multi": [
        {"role": "user", "content": "  spaced \n"},
        {"role": "assistant", "content": "A\n\nB"},
        {"role": "user", "content": "Thanks — ünïcode ✓"},
        {"role": "assistant", "content": ""},
    ],
    "prompt_only": [{"role": "user", "content": "Tell me a joke."}],
    "jinja_lookalike": [{"role": "user", "content": "{{ x }} {% if %} <b>&amp;</b> \\n"},
                        {"role": "assistant", "content": "'quoted' \"double\""}],
}


def _jinja(messages, add_generation_prompt):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(LLAMA3_CHAT_TEMPLATE).render(messages=messages,
                                                        add_generation_prompt=add_generation_prompt)


def test_layout_is_byte_exact():
    text = render_chat(CONVERSATIONS["system"], add_generation_prompt=False)
    assert text == (
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
    )
    prompt = render_chat(CONVERSATIONS["prompt_only"], add_generation_prompt=True)
    assert prompt.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "Date" not in LLAMA3_CHAT_TEMPLATE and "strftime" not in LLAMA3_CHAT_TEMPLATE


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("gen", [False, True])
def test_jinja_and_python_agree(name, gen):
    messages = CONVERSATIONS[name]
    assert _jinja(messages, gen) == render_chat(messages, add_generation_prompt=gen)


def test_transformers_renders_the_same(tmp_path):
    from infir.model.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(["a few words of text"] * 10, vocab_size=300)
    for messages in CONVERSATIONS.values():
        for gen in (False, True):
            assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen) == \
                render_chat(messages, add_generation_prompt=gen)


def test_content_is_not_stripped():
    text = render_chat(CONVERSATIONS["multi"])
    assert "\n\n  spaced \n<|eot_id|>" in text


def test_bad_messages_raise_clearly():
    with pytest.raises(ValueError, match="content"):
        render_chat([{"role": "user", "content": None}])
    with pytest.raises(ValueError, match="role"):
        render_chat([{"content": "x"}])


def test_render_with_tokenizer_prefers_the_tokenizers_template():
    class WithTemplate:
        chat_template = "custom"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "CUSTOM:" + messages[0]["content"]

    class Without:
        chat_template = None

    messages = CONVERSATIONS["single"]
    assert render_with_tokenizer(WithTemplate(), messages) == "CUSTOM:What is 2+2?"
    assert render_with_tokenizer(Without(), messages) == render_chat(messages)
