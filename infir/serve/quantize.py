"""Weight-only quantization for CPU inference with torch's packed int8/int4 matmul kernels.

int8: one scale per output channel (symmetric, 127 levels), `aten._weight_int8pack_mm`.
int8-dynamic: int8 weights *and* per-token dynamically quantized int8 activations (fbgemm's
`quantized::linear_dynamic`, what `torch.ao.quantization.quantize_dynamic` uses): not weight-only,
but much faster on x86 CPUs and at batch sizes > 1 (measure in bench/quantization.py).
int4: asymmetric groups of `group_size` input features (scale + zero point per group),
`aten._weight_int4pack_mm_for_cpu` (the tinygemm layout). Both kernels take bfloat16 activations
on CPU (their float32 paths are slow), so inputs are cast to bf16 for the matmul and back.
Norms, embeddings, attention and linear biases (Qwen2's q/k/v) stay in the model's float dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from infir.utils.log import get_logger

log = get_logger(__name__)

QUANT_MODES = ("int8", "int4", "int8-dynamic")
_ACT_DTYPE = torch.bfloat16


def _keep_bias(module: nn.Module, bias: torch.Tensor | None) -> None:
    module.register_buffer("bias", None if bias is None else bias.detach().clone())


def _add_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return y if bias is None else y + bias.to(y.dtype)


class Int8WeightOnlyLinear(nn.Module):
    """y = x @ (q * scale)^T (+ bias) with q int8 [out, in] and one bf16 scale per output row."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        _keep_bias(self, bias)
        w = weight.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.out_dtype = weight.dtype
        # Round the scale to bf16 first, then quantize against that rounded scale: no hidden scale error.
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-10).to(_ACT_DTYPE)
        q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("qweight", q.contiguous())
        self.register_buffer("scales", scale.contiguous())

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (float; slow, for inspection and dtype/device queries)."""
        return (self.qweight.float() * self.scales.float()[:, None]).to(self.out_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(_ACT_DTYPE), self.qweight, self.scales)
        return _add_bias(y.to(x.dtype).reshape(*shape[:-1], self.out_features), self.bias)


class Int8DynamicLinear(nn.Module):
    """fbgemm's dynamic int8 linear: per-channel int8 weights, activations quantized per call."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        import warnings

        _keep_bias(self, bias)
        w = weight.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.out_dtype = weight.dtype
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-10).double()
        with warnings.catch_warnings():  # torch marks quantized tensors deprecated; the fbgemm op is current
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qw, None)
        # Kept for size accounting and inspection (the packed copy is what forward uses).
        self.register_buffer("qweight", qw.int_repr())
        self.register_buffer("scales", scale.float())

    @property
    def weight(self) -> torch.Tensor:
        return (self.qweight.float() * self.scales[:, None]).to(self.out_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, shape[-1]).float(), self._packed, True)
        return _add_bias(y.to(x.dtype).reshape(*shape[:-1], self.out_features), self.bias)


class Int4WeightOnlyLinear(nn.Module):
    """Group-wise asymmetric 4-bit weights: w = (q - 8) * scale + zero per group of input features."""

    def __init__(self, weight: torch.Tensor, group_size: int = 64, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        _keep_bias(self, bias)
        w = weight.detach().float()
        n, k = w.shape
        if k % group_size:
            raise ValueError(f"in_features {k} is not a multiple of group_size {group_size}")
        self.in_features, self.out_features, self.group_size = k, n, group_size
        self.out_dtype = weight.dtype
        groups = w.reshape(n, k // group_size, group_size)
        lo, hi = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp(min=1e-10).to(_ACT_DTYPE).float()
        q = torch.round((groups - lo) / scale).clamp(0, 15)
        zero = (lo + 8 * scale).to(_ACT_DTYPE).float()
        # Re-fit q against the rounded zero point so dequantization matches what was stored.
        q = torch.round((groups - zero) / scale + 8).clamp(0, 15).to(torch.int32).reshape(n, k)
        self.register_buffer("qweight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        scales_zeros = torch.stack([scale.reshape(n, -1), zero.reshape(n, -1)], dim=-1).transpose(0, 1)
        self.register_buffer("scales_zeros", scales_zeros.contiguous().to(_ACT_DTYPE))

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight, recovered by multiplying the identity (slow; inspection only)."""
        eye = torch.eye(self.in_features, dtype=_ACT_DTYPE)
        w_t = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.qweight, self.group_size, self.scales_zeros)
        return w_t.t().to(self.out_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.reshape(-1, shape[-1]).to(_ACT_DTYPE), self.qweight, self.group_size, self.scales_zeros
        )
        return _add_bias(y.to(x.dtype).reshape(*shape[:-1], self.out_features), self.bias)


class Int8Embedding(nn.Module):
    """Token lookup from int8 rows with one scale per row (may share its buffers with an int8 lm_head)."""

    def __init__(self, source: nn.Embedding | Int8WeightOnlyLinear) -> None:
        super().__init__()
        linear = source if isinstance(source, Int8WeightOnlyLinear) else Int8WeightOnlyLinear(source.weight)
        self.qweight, self.scales, self.out_dtype = linear.qweight, linear.scales, linear.out_dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return (self.qweight[ids].to(self.out_dtype) * self.scales[ids].to(self.out_dtype)[..., None])


def quantize_model(model: nn.Module, mode: str = "int8", group_size: int = 64,
                   include_lm_head: bool = True, include_embedding: bool = True) -> nn.Module:
    """Replace every nn.Linear (decoder projections and, by default, lm_head) in place; returns the model.

    Biases (Qwen2's q/k/v) are kept in float and added after the quantized matmul.

    The token embedding becomes int8 rows too; with tied weights and int8 it shares lm_head's buffers.
    """
    if mode not in QUANT_MODES:
        raise ValueError(f"unknown quantization {mode!r}; choose one of {', '.join(QUANT_MODES)}")
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or (name == "lm_head" and not include_lm_head):
                continue
            if mode == "int4" and child.in_features % group_size == 0:
                new: nn.Module = Int4WeightOnlyLinear(child.weight, group_size, bias=child.bias)
            elif mode == "int8-dynamic":
                new = Int8DynamicLinear(child.weight, bias=child.bias)
            else:
                new = Int8WeightOnlyLinear(child.weight, bias=child.bias)
            setattr(parent, name, new)
            replaced += 1
    body = getattr(model, "model", None)
    if include_embedding and isinstance(getattr(body, "embed_tokens", None), nn.Embedding):
        tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
        head = getattr(model, "lm_head", None)
        source = head if tied and isinstance(head, Int8WeightOnlyLinear) and head.bias is None else body.embed_tokens
        body.embed_tokens = Int8Embedding(source)
    log.info("quantized %d linear layers to %s weight-only", replaced, mode)
    return model


def model_bytes(model: nn.Module) -> int:
    """Bytes of all distinct parameters and buffers (tied weights counted once)."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())
