"""Chunked linear + cross-entropy equals the full-logits loss, in value and gradients."""

from __future__ import annotations

import pytest
import torch

from infir.train.loss import IGNORE_INDEX, linear_cross_entropy, reference_cross_entropy


@pytest.mark.parametrize("z_loss", [0.0, 1e-3])
def test_chunked_loss_and_grads_match_full_logits(z_loss: float) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 37, 24, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(101, 24, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 101, (3, 37))
    labels[0, :5] = IGNORE_INDEX
    labels[2, 30:] = IGNORE_INDEX
    loss, ce = linear_cross_entropy(hidden, weight, labels, z_loss=z_loss, chunk_size=16)  # 111 tokens: 7 chunks
    (loss * 0.37).backward()
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = reference_cross_entropy(hidden, weight, labels, z_loss=z_loss)
    (ref * 0.37).backward()
    assert torch.allclose(loss, ref, rtol=1e-10)
    assert torch.allclose(ce, reference_cross_entropy(hidden, weight, labels), rtol=1e-10)
    assert torch.allclose(gh, hidden.grad, atol=1e-10)
    assert torch.allclose(gw, weight.grad, atol=1e-10)


def test_all_ignored_labels_give_zero_loss_and_grad() -> None:
    hidden = torch.randn(4, 8, requires_grad=True)
    weight = torch.randn(10, 8, requires_grad=True)
    loss, _ = linear_cross_entropy(hidden, weight, torch.full((4,), IGNORE_INDEX))
    loss.backward()
    assert float(loss) == 0.0 and float(hidden.grad.abs().sum()) == 0.0
