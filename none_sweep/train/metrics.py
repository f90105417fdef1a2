"""Backdoor metrics: clean accuracy, ASR, robust accuracy, DER/RIR, poison-detection precision/recall.

Definitions follow the paper and BackdoorBench; the triggered test set already excludes target-class
images for all-to-one attacks (see :meth:`none_sweep.attacks.Attack.triggered_test`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Fraction of ``predictions == labels``; None for an empty set (e.g. no attack)."""
    if labels.numel() == 0:
        return None
    return (predictions == labels).float().mean().item()


def detection_scores(removed: torch.Tensor, poisoned_idx: torch.Tensor) -> dict[str, float | None]:
    """Precision and recall of the removed samples against the indices the attack really poisoned.

    With no poisoned sample there is nothing to detect: no keys at all (rather than a NaN or a 0 % that reads as
    a measurement, and is logged, reported and plotted as one). Precision is None when nothing was removed.
    """
    if poisoned_idx.numel() == 0:
        return {}
    poisoned = torch.zeros_like(removed, dtype=torch.bool)
    poisoned[poisoned_idx.to(removed.device)] = True
    hits = (removed & poisoned).sum().item()
    n_removed = int(removed.sum().item())
    n_poisoned = int(poisoned.sum().item())
    return {
        "poison_precision": hits / n_removed if n_removed else None,
        "poison_recall": hits / n_poisoned,
    }


def _gain(before: float | None, after: float | None) -> float:
    if before is None or after is None:
        return 0.0
    return max(0.0, before - after)


def compare_to_baseline(defended: Mapping[str, float | None], baseline: Mapping[str, float | None]) -> dict[str, float]:
    """Trade-off figures against the undefended run (same data, attack, model, seed).

    DER = [max(0, ASR_bd − ASR_def) − max(0, CA_bd − CA_def) + 1] / 2 (BackdoorBench);
    RIR is the same with robust accuracy gained instead of ASR lost. Each is left out where its backdoor figure
    is missing from either run (no trigger planted: natural backdoors): it would then only restate the drop.
    """
    ca_def, ca_bd = defended.get("clean_acc"), baseline.get("clean_acc")
    out: dict[str, float] = {}
    if ca_def is not None and ca_bd is not None:
        out["clean_acc_drop"] = ca_bd - ca_def
    asr_def, asr_bd = defended.get("asr"), baseline.get("asr")
    if asr_def is not None and asr_bd is not None:
        out["asr_reduction"] = asr_bd - asr_def
    ca_loss = _gain(ca_bd, ca_def)
    asr_lost = (baseline.get("asr"), defended.get("asr"))
    robust_gained = (defended.get("robust_acc"), baseline.get("robust_acc"))
    for name, (high, low) in (("der", asr_lost), ("rir", robust_gained)):
        if high is not None and low is not None:
            out[name] = (_gain(high, low) - ca_loss + 1.0) / 2.0
    return out


# --------------------------------------------------------------------------- the names a trial reports
#: Metrics every epoch report of a sweep trial carries (a scheduler may stop on these). ``clean_acc_drop``,
#: ``asr_reduction``, ``der`` and ``rir`` are against the sweep's undefended baseline.
EPOCH_METRICS = (
    "asr", "clean_acc", "robust_acc", "clean_acc_drop", "asr_reduction", "der", "rir",
    "loss", "lr", "removed_samples", "neurons_reset", "epoch_s",
)  # fmt: skip
#: Aggregates over a trial's attack variants (:mod:`.variants`; one attack: each equals its metric), by name:
#: (metric, how). Robust sweeps name these in objectives and constraints.
AGGREGATES: dict[str, tuple[str, str]] = {
    "asr_max": ("asr", "max"),
    "asr_mean": ("asr", "mean"),
    "clean_acc_min": ("clean_acc", "min"),
    "clean_acc_mean": ("clean_acc", "mean"),
    "clean_acc_drop_max": ("clean_acc_drop", "max"),
}
#: Metrics of a trial's final report (a sweep's objectives and constraints may name any of these).
FINAL_METRICS = (
    *EPOCH_METRICS, "poison_precision", "poison_recall", "poisoned_samples", "epochs", "wall_s", "pretrain_s",
    "pretrain_saved_s", "reasr", *AGGREGATES,
)  # fmt: skip
#: Metrics measured only when the attack plants a trigger (see ``none_sweep.attacks.injects_trigger``).
TRIGGER_METRICS = ("asr", "robust_acc", "asr_reduction", "der", "rir", "poison_precision", "poison_recall")


def backdoor_metric(metrics: Mapping[str, Any]) -> str | None:
    """The metric that stands for the backdoor in one line: ``asr`` where a trigger was injected and measured, else
    ``reasr`` where trigger inversion ran (natural backdoors), else None."""
    for key in ("asr", "reasr"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return key
    return None


def measures_reasr(mode: str, injects_trigger: bool) -> bool:
    """Whether a run measures ``reasr`` (trigger inversion) with ``evaluation.reasr`` ``mode``: ``always``, or
    ``auto`` when the attack plants no trigger (natural backdoors are then what there is to find)."""
    return mode == "always" or (mode == "auto" and not injects_trigger)
