"""Sweeps: space files, the Ray Tune trainable, strict Optuna search, baseline, preflight and the runner.

Ray and Optuna are imported by the submodules that need them (``search``, ``runner``, ``trainable``), so
``from none_sweep.sweep import load_space`` stays light.
"""

from .space import Constraint, Objective, Param, SweepSpace, load_space, space_from_dict
from .storage import SweepStorage

__all__ = ["Constraint", "Objective", "Param", "SweepSpace", "SweepStorage", "load_space", "space_from_dict"]
