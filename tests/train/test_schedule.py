"""Learning-rate schedules: warmup + cosine, warmup-stable-decay, and the anneal decay."""

from __future__ import annotations

import pytest

from infir.train.schedule import lr_at


def test_warmup_then_cosine_reaches_floor() -> None:
    lrs = [lr_at(s, lr=1.0, total_steps=100, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.1)


def test_wsd_is_flat_then_decays_over_the_last_fraction() -> None:
    lrs = [lr_at(s, lr=2.0, total_steps=100, warmup_steps=5, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.0)
           for s in range(100)]
    assert set(lrs[5:80]) == {2.0}
    assert lrs[80] < 2.0 and lrs[-1] == pytest.approx(0.0)
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:], strict=False))


def test_anneal_decay_starts_at_peak_without_warmup() -> None:
    lrs = [lr_at(s, lr=1.0, total_steps=10, warmup_steps=100, schedule="decay", min_lr_ratio=0.0) for s in range(10)]
    assert lrs[0] == pytest.approx(0.9) and lrs[-1] == pytest.approx(0.0)
