"""The Llama 3 chat template, as a Jinja string for HF tokenizer files and as plain Python.

Text layout (byte-exact, no date line, system prompt optional)::

    <|begin_of_text|>
    <|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>     (once per message)
    <|start_header_id|>assistant<|end_header_id|>\\n\\n                     (generation prompt, optional)

Content is used as given (no strip), so what a dataset holds is exactly what the model sees.
Llama 3.1/3.2's own template adds a "Today Date" system block; this one never does, so no
varying date can enter training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

BEGIN_OF_TEXT = "<|begin_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"

ROLES = ("system", "user", "assistant", "tool", "ipython")

# Jinja: '\n' inside a Jinja string literal is a newline, so this source keeps the escapes.
LLAMA3_CHAT_TEMPLATE = (
    "{{- '<|begin_of_text|>' -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}"
    "{%- endif -%}"
)


def header(role: str) -> str:
    """The header that opens a turn of `role` (also the generation prompt for 'assistant')."""
    return f"{START_HEADER}{role}{END_HEADER}\n\n"


def _check_message(i: int, message: Mapping) -> tuple[str, str]:
    role, content = message.get("role"), message.get("content")
    if not isinstance(role, str) or not role:
        raise ValueError(f"message {i}: 'role' must be a non-empty string, got {role!r}")
    if not isinstance(content, str):
        raise ValueError(f"message {i} ({role}): 'content' must be a string, got {type(content).__name__}")
    return role, content


def render_chat(messages: Sequence[Mapping], add_generation_prompt: bool = False) -> str:
    """Render `messages` ([{"role", "content"}, ...]) exactly as LLAMA3_CHAT_TEMPLATE does."""
    parts = [BEGIN_OF_TEXT]
    for i, message in enumerate(messages):
        role, content = _check_message(i, message)
        parts.append(f"{header(role)}{content}{EOT}")
    if add_generation_prompt:
        parts.append(header("assistant"))
    return "".join(parts)



def render_with_tokenizer(tokenizer, messages: Sequence[Mapping], add_generation_prompt: bool = False) -> str:
    """Render with the tokenizer's own chat template when it carries one, else with the Llama 3 template."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    return render_chat(messages, add_generation_prompt=add_generation_prompt)
