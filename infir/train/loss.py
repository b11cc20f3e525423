"""Linear + cross-entropy in chunks: the [tokens, vocab] logits never exist in full.

With a 128k vocabulary one 4096-token micro-batch has ~2 GB of bf16 logits (4 GB in fp32). Here the
output projection, log-sum-exp, loss and both gradients are computed chunk by chunk in the forward
pass; backward only scales the stored gradients. Peak extra memory is one chunk of logits.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def _chunk_loss_and_grads(
    h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, z_loss: float, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One chunk: (ce_sum, z_sum, d loss/d h, d loss/d w) for hidden h [n, d] and weight w [V, d].

    Log-sum-exp and softmax run in fp32; the gradient of the logits goes back to h's dtype.
    """
    valid = y != IGNORE_INDEX  # (no early exit on all-ignored chunks: it would sync the GPU)
    logits = h @ w.t()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    lse = torch.logsumexp(logits, dim=-1)
    target = logits.gather(1, y.clamp(min=0)[:, None]).squeeze(1)
    ce = torch.where(valid, lse - target, 0.0).sum()
    zl = torch.where(valid, z_loss * lse.square(), 0.0).sum()
    if not need_grad:
        return ce, zl, None, None
    # d/dlogits of (lse - logit_y + z * lse^2) = softmax * (1 + 2 z lse) - onehot(y)
    onehot = torch.arange(w.shape[0], device=h.device)[None, :] == y[:, None]
    grad = torch.exp(logits - lse[:, None]) * (1 + 2 * z_loss * lse)[:, None] - onehot.to(logits.dtype)
    grad = torch.where(valid[:, None], grad, 0.0).to(h.dtype)
    return ce, zl, grad @ w, grad.t() @ h


_compiled_chunk = None


def _chunk_fn(device: torch.device):  # noqa: ANN202
    """On CUDA the chunk is compiled: the fp32 logits, softmax and one-hot are fused into two kernels
    around the matmuls instead of ~8 passes over [chunk, V] fp32 tensors (measured on an H100 in
    bench/RESULTS.md). On CPU it runs eagerly (tests, tiny models)."""
    global _compiled_chunk
    if device.type != "cuda":
        return _chunk_loss_and_grads
    if _compiled_chunk is None:
        _compiled_chunk = torch.compile(_chunk_loss_and_grads)  # a new length makes the shape dynamic
    return _compiled_chunk


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, z_loss: float,  # noqa: ANN001
                chunk_size: int, compute_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        n = hidden.shape[0]
        w = weight.to(compute_dtype)
        need_grad = hidden.requires_grad or weight.requires_grad
        grad_hidden = torch.zeros_like(hidden) if need_grad else None
        acc = torch.promote_types(weight.dtype, torch.float32)
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_grad else None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        ce_total = torch.zeros((), dtype=acc, device=hidden.device)
        chunk = _chunk_fn(hidden.device)
        for start in range(0, n, chunk_size):
            h = hidden[start : start + chunk_size].to(compute_dtype)
            ce, zl, gh, gw = chunk(h, w, labels[start : start + chunk_size], z_loss, need_grad)
            ce_total += ce
            total += ce + zl
            if need_grad:
                grad_hidden[start : start + chunk_size] = gh.to(hidden.dtype)
                grad_weight += gw.to(acc)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(ce_total)
        return total, ce_total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor, _grad_ce: torch.Tensor):  # noqa: ANN205
        grad_hidden, grad_weight = ctx.saved_tensors
        gh = grad_hidden * grad_total.to(grad_hidden.dtype) if ctx.needs_input_grad[0] else None
        gw = (grad_weight * grad_total).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    z_loss: float = 0.0,
    chunk_size: int = 4096,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss over labels != -100 of `hidden @ weight.T` (plus z_loss * logsumexp^2 per token).

    hidden: [..., d]; weight: [V, d]; labels: [...]. Returns (loss_sum, ce_sum): loss_sum carries the
    gradient and includes z-loss; ce_sum is the plain cross-entropy sum for logging. Divide by the
    token count of the whole optimizer step (token-level normalisation).
    compute_dtype: dtype of the matmuls (bf16 on GPU); log-softmax is always fp32.
    """
    d = hidden.shape[-1]
    cdt = compute_dtype or hidden.dtype
    return _ChunkedLinearCrossEntropy.apply(
        hidden.reshape(-1, d), weight, labels.reshape(-1), float(z_loss), int(chunk_size), cdt
    )


def reference_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                            z_loss: float = 0.0) -> torch.Tensor:
    """The same summed loss through full logits (for tests and for comparison)."""
    logits = hidden.reshape(-1, hidden.shape[-1]) @ weight.t()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    y = labels.reshape(-1)
    valid = y != IGNORE_INDEX
    lse = torch.logsumexp(logits, -1)
    ce = torch.nn.functional.cross_entropy(logits, y, ignore_index=IGNORE_INDEX, reduction="sum")
    return ce + z_loss * (lse.square() * valid).sum()
