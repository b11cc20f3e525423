"""Diagnostic (not a speed benchmark): where a trained tiny InfiR-VL looks when it grounds an instruction.

For held-out icon instructions it prints, per LM layer x head, (1) the attention from the position that
predicts the click's x coordinate to the target element's patch and to the other elements' patches, and
(2) the attention from element patches to the instruction's colour word (target vs other elements).
A model that follows instructions shows heads with target >> others; one that clicks "some element"
does not. Assumes the toy screens: one patch per grid cell (screen_grid^2 == image tokens).

    python bench/vlm_attention.py RUN_DIR [--n 80]      # RUN_DIR from `infir vlm train ... --output RUN_DIR`
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from infir.vlm.dataset import ImageCache
from infir.vlm.evaluate import grounding_prompt_sample
from infir.vlm.model import load_vlm
from infir.vlm.processor import ConversationEncoder

CLICK_PREFIX = '<tool_call>{"name": "click", "arguments": {"point": ['


def patch_of(box: list[int], side: int) -> int:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return int(cy * side / 1000) * side + int(cx * side / 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=80, help="held-out icon instructions to average over")
    args = ap.parse_args()
    torch.set_num_threads(1)
    vlm, tok = load_vlm(args.run / "model")
    vlm.eval()
    # HF's eager attention returns the attention maps; the weights are the same files.
    hf = LlamaForCausalLM.from_pretrained(args.run / "model" / "lm", attn_implementation="eager").eval()
    enc = ConversationEncoder(tok, vlm.image_token_id, vlm.num_image_tokens)
    cache = ImageCache(vlm.preprocessing)
    side = math.isqrt(vlm.num_image_tokens)
    records = json.loads((args.run / "data" / "heldout_grounding.json").read_text())
    boxes: dict[str, list] = {}
    for r in records:
        boxes.setdefault(r["image"], []).append(r["bbox"])
    icons = [r for r in records if r["data_type"] == "icon"][: args.n]
    shape = (hf.config.num_hidden_layers, hf.config.num_attention_heads)
    to_target, to_others, match, nonmatch = (torch.zeros(shape) for _ in range(4))
    prefix = tok(CLICK_PREFIX, add_special_tokens=False)["input_ids"]
    with_colour = 0
    for r in icons:
        ids = torch.tensor([enc.encode(grounding_prompt_sample(r), add_generation_prompt=True)["input_ids"] + prefix])
        with torch.no_grad():
            out = hf(inputs_embeds=vlm.embed(ids, cache.stack([r["image"]])), output_attentions=True)
        slots = (ids[0] == vlm.image_token_id).nonzero().flatten()
        target = slots[patch_of(r["bbox"], side)]
        others = slots[[patch_of(b, side) for b in boxes[r["image"]] if b != r["bbox"]]]
        colour = r["instruction"].rsplit(" the ", 1)[-1].split()[0]
        words = [tok.decode([i]).strip() for i in ids[0].tolist()]
        colour_at = [i for i, w in enumerate(words) if w == colour]  # empty when the colour spans tokens
        with_colour += bool(colour_at)
        for layer, att in enumerate(out.attentions):
            att = att[0]  # heads x query x key
            to_target[layer] += att[:, -1, target]
            to_others[layer] += att[:, -1, others].mean(-1)
            if colour_at:
                match[layer] += att[:, target, colour_at[-1]]
                nonmatch[layer] += att[:, others, colour_at[-1]].mean(-1)
    torch.set_printoptions(precision=3, sci_mode=False)
    n = len(icons)
    print(f"{args.run}: {n} held-out icon instructions ({with_colour} with a one-token colour word); "
          "rows = layers, columns = heads")
    print("x-coordinate position -> target patch\n", to_target / n)
    print("x-coordinate position -> other element patches (mean)\n", to_others / n)
    print("target patch -> instruction colour word\n", match / max(1, with_colour))
    print("other element patches -> instruction colour word (mean)\n", nonmatch / max(1, with_colour))


if __name__ == "__main__":
    main()
