"""Response generation: step-by-step prompting, N candidates per instruction (paper §3.1, App. A.2, C.2)."""

from __future__ import annotations

from infir.synth.config import ResponseConfig, TeacherConfig

STEP_BY_STEP = ("You are a careful, helpful assistant. Think step by step: lay out your reasoning as "
                "numbered steps, then state the final answer clearly.")
MATH_SUFFIX = " Put the final answer in \\boxed{}."
CODE_SUFFIX = (" For programming tasks: explain your approach step by step, give the complete, self-contained "
               "Python solution in one ```python block, then write unit tests as plain assert statements "
               "that check the solution in a second ```python block.")


def response_messages(record: dict, cfg: ResponseConfig) -> list[dict]:
    system = STEP_BY_STEP if cfg.step_by_step else "You are a helpful assistant."
    if record["domain_hint"] == "math":
        system += MATH_SUFFIX
    elif record["domain_hint"] == "code":
        system += CODE_SUFFIX
    return [{"role": "system", "content": system}, {"role": "user", "content": record["instruction"]}]


def make_respond_handler(teacher, cfg: ResponseConfig, teacher_cfg: TeacherConfig):
    async def handle(record: dict) -> tuple[list[dict], list[dict]]:
        import asyncio

        messages = response_messages(record, cfg)
        texts = await asyncio.gather(*(
            teacher.complete(messages, temperature=teacher_cfg.temperature, max_tokens=teacher_cfg.max_tokens,
                             seed=i)
            for i in range(cfg.candidates)))
        out = {**record, "candidates": list(texts), "teacher": teacher.name,
               "system_prompt": messages[0]["content"]}
        return [out], []

    return handle
