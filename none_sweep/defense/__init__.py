"""NONE (Ding et al., NeurIPS 2022): find compromised neurons and poisoned samples, reset the neurons.

``find_monitored_layers`` → ``analyse`` (statistic + natural breaks) → ``removal_mask`` → ``reset_neurons``.
Everything works from ``named_modules()``, forward hooks and the fx graph, so any conv/linear model can be defended.
"""

from .analysis import DEFAULT_CACHE_BUDGET, Analysis, analyse
from .filtering import filters_samples, removal_mask
from .monitor import LAYER_TYPES, ChannelMaxRecorder, MonitoredLayer, channel_max, find_monitored_layers
from .natural_breaks import two_class_breaks
from .reset import RESET_MODES, LayerPlan, ResetPlan, Successor, plan_resets, reset_neurons
from .statistic import (
    ChannelClassStats,
    ClassMasks,
    channel_scores,
    class_masks,
    select_compromised,
    select_top,
    top_count,
)

__all__ = [
    "DEFAULT_CACHE_BUDGET",
    "LAYER_TYPES",
    "RESET_MODES",
    "Analysis",
    "ChannelClassStats",
    "ChannelMaxRecorder",
    "ClassMasks",
    "LayerPlan",
    "MonitoredLayer",
    "ResetPlan",
    "Successor",
    "analyse",
    "channel_max",
    "channel_scores",
    "class_masks",
    "filters_samples",
    "find_monitored_layers",
    "plan_resets",
    "removal_mask",
    "reset_neurons",
    "select_compromised",
    "select_top",
    "top_count",
    "two_class_breaks",
]
