"""Chat templates, as Jinja strings for HF tokenizer files and as plain Python: Llama 3's and ChatML (Qwen2.5).

Which template an architecture uses by default is the registry's (`infir.model.registry`); a tokenizer that
carries its own template always keeps it.

Llama 3
-------

Text layout (byte-exact, no date line, system prompt optional)::

    <|begin_of_text|>
    <|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>     (once per message)
    <|start_header_id|>assistant<|end_header_id|>\\n\\n                     (generation prompt, optional)

Content is used as given (no strip), so what a dataset holds is exactly what the model sees.
Llama 3.1/3.2's own template adds a "Today Date" system block; this one never does, so no
varying date can enter training data.

ChatML (Qwen2.5)
----------------
The layout Qwen2.5's own template gives conversations without tools (byte-exact)::

    <|im_start|>system\n{system content}<|im_end|>\n   (Qwen2.5's default system text when the first message
                                                      is not a system message)
    <|im_start|>{role}\n{content}<|im_end|>\n          (once per further message)
    <|im_start|>assistant\n                            (generation prompt, optional)

No BOS token. Tool calls and tool results (Qwen2.5's `<tool_call>` / `<tool_response>` blocks) are not rendered
here; a Qwen2.5 tokenizer folder keeps its own full template for those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BEGIN_OF_TEXT = "<|begin_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"


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


IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# Qwen2.5's template uses this system text when a conversation brings none.
QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

CHATML_CHAT_TEMPLATE = (
    "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n" + QWEN25_DEFAULT_SYSTEM + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)


@dataclass(frozen=True)
class ChatLayout:
    """A chat format as plain strings, for code that builds token ids turn by turn (the VLM's encoder, which
    puts image slots inside turns and learns only the assistant's) and for the plain-Python renderers below."""

    begin: str  # once, before the first turn (Llama 3's BOS; nothing for ChatML)
    turn_open: str  # opens a turn; "{role}" stands for the role (also the generation prompt for "assistant")
    end_of_turn: str  # the special token that closes every turn (learned at the end of assistant turns)
    after_turn: str = ""  # text after end_of_turn (ChatML's newline; never learned)
    default_system: str | None = None  # system text used when a conversation brings none

    def header(self, role: str) -> str:
        return self.turn_open.replace("{role}", role)

    def turns(self, messages: Sequence[Mapping]) -> list[tuple[str, str]]:
        """(role, content) of every turn the layout writes, the default system turn included; checked."""
        checked = [_check_message(i, m) for i, m in enumerate(messages)]
        if self.default_system is not None and (not checked or checked[0][0] != "system"):
            checked.insert(0, ("system", self.default_system))
        return checked

    def render(self, messages: Sequence[Mapping], add_generation_prompt: bool = False) -> str:
        parts = [self.begin]
        parts += [f"{self.header(role)}{content}{self.end_of_turn}{self.after_turn}"
                  for role, content in self.turns(messages)]
        if add_generation_prompt:
            parts.append(self.header("assistant"))
        return "".join(parts)


LLAMA3_LAYOUT = ChatLayout(begin=BEGIN_OF_TEXT, turn_open=f"{START_HEADER}{{role}}{END_HEADER}\n\n", end_of_turn=EOT)
CHATML_LAYOUT = ChatLayout(begin="", turn_open=f"{IM_START}{{role}}\n", end_of_turn=IM_END, after_turn="\n",
                           default_system=QWEN25_DEFAULT_SYSTEM)


def header(role: str) -> str:
    """The Llama 3 header that opens a turn of `role` (also the generation prompt for 'assistant')."""
    return LLAMA3_LAYOUT.header(role)


def _check_message(i: int, message: Mapping) -> tuple[str, str]:
    role, content = message.get("role"), message.get("content")
    if not isinstance(role, str) or not role:
        raise ValueError(f"message {i}: 'role' must be a non-empty string, got {role!r}")
    if not isinstance(content, str):
        raise ValueError(f"message {i} ({role}): 'content' must be a string, got {type(content).__name__}")
    return role, content


def render_chat(messages: Sequence[Mapping], add_generation_prompt: bool = False) -> str:
    """Render `messages` ([{"role", "content"}, ...]) exactly as LLAMA3_CHAT_TEMPLATE does."""
    return LLAMA3_LAYOUT.render(messages, add_generation_prompt)


def render_chatml(messages: Sequence[Mapping], add_generation_prompt: bool = False) -> str:
    """Render `messages` exactly as CHATML_CHAT_TEMPLATE does (Qwen2.5's layout)."""
    return CHATML_LAYOUT.render(messages, add_generation_prompt)


def render_with_tokenizer(tokenizer, messages: Sequence[Mapping], add_generation_prompt: bool = False) -> str:
    """Render with the tokenizer's own chat template when it carries one, else with the Llama 3 template."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    return render_chat(messages, add_generation_prompt=add_generation_prompt)
