"""Training: the epoch plan, the device-resident loop, checkpoints, metrics and the shared pre-training cache."""

from .checkpoint import load_state, save_state
from .metrics import compare_to_baseline, detection_scores
from .pretrain_cache import PretrainCache, prefix_key
from .run import EpochReport, ExperimentRun, RunResult
from .schedule import EpochPlan, build_plan
from .variants import VariantsRun

__all__ = [
    "EpochPlan",
    "EpochReport",
    "ExperimentRun",
    "PretrainCache",
    "RunResult",
    "VariantsRun",
    "build_plan",
    "compare_to_baseline",
    "detection_scores",
    "load_state",
    "prefix_key",
    "save_state",
]
