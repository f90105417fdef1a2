"""The trivial Ray Tune trainable of ``bench_overhead``, in a module that imports nothing heavy.

A Ray worker imports the module a trainable lives in; keeping torch out of this one lets ``bench_overhead``
separate Ray's own cost from the imports a real trial's process pays (``imports=True``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any


def epoch_result(epoch: int, final: bool) -> dict[str, Any]:
    """An epoch report shaped like ``none_sweep.sweep.trainable.epoch_metrics`` (same keys, fixed values)."""
    return {
        "asr": 0.5, "clean_acc": 0.9, "clean_acc_drop": 0.01, "epoch": epoch, "robust_acc": 0.4, "asr_reduction": 0.4,
        "der": 0.7, "rir": 0.3, "loss": 0.5, "lr": 0.01, "removed_samples": 10, "neurons_reset": 5, "epoch_s": 0.1,
        "round": 1, "phase": "finetune", "round_end": int(final), "final": int(final), "cached": 0, "node_id": "local",
    }  # fmt: skip


def trivial_trainable(config: dict[str, Any], *, reports: int, work_s: float, model_state: str | None,
                      imports: bool) -> None:  # fmt: skip
    """K reports; the last carries a checkpoint (``model_state.pt`` + ``outcome.json``) when ``model_state``.

    ``imports``: first import what the real trainable's process imports (torch, ``none_sweep.train``).
    """
    from ray import tune

    if imports:
        import none_sweep.train  # noqa: F401  (torch, the data registry, attacks, models, defense)
    for epoch in range(1, reports + 1):
        if work_s:
            time.sleep(work_s)
        final = epoch == reports
        metrics = epoch_result(epoch, final)
        if final and model_state:
            with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as folder:
                Path(folder, "model_state.pt").write_bytes(Path(model_state).read_bytes())
                Path(folder, "outcome.json").write_text(json.dumps({"final": True, "metrics": metrics}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)
