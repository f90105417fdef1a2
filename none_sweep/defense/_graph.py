"""The model's dataflow graph via ``torch.fx``, shared by layer ordering and reset planning.

Reading the graph rather than module names is what lets NONE run on any architecture: the forward order of the
convs, the BatchNorm after a conv and the layer that reads a conv's channels all come from it. Tracing can fail
(data-dependent control flow, unsupported ops); callers then fall back to what ``named_modules()`` alone tells.
"""

from __future__ import annotations

import warnings
from typing import TypeAlias

import torch.fx as fx
from torch import nn

# Concrete tuples (not ``tuple[type[nn.Module], ...]``) so that ``isinstance(m, CONV_TYPES)`` narrows ``m`` for mypy.
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LINEAR_TYPES = (nn.Linear,)
Layer: TypeAlias = nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear


def layer_kind(module: nn.Module) -> str | None:
    """``"conv"``, ``"linear"`` or ``None``: the kinds of module whose output channels NONE can analyse and reset."""
    if isinstance(module, CONV_TYPES):
        return "conv"
    if isinstance(module, LINEAR_TYPES):
        return "linear"
    return None


def as_layer(module: nn.Module) -> Layer:
    """``module`` as the conv/linear layer it must be, so its ``weight``/``bias`` are typed tensors.

    Callers hold modules found by :func:`layer_kind`; anything else means a plan applied to another model.
    """
    if isinstance(module, CONV_TYPES + LINEAR_TYPES):
        return module
    raise TypeError(f"expected a conv or linear layer, got {type(module).__name__}")


class _Tracer(fx.Tracer):
    """fx's tracer, but every conv/linear is a leaf, including subclasses defined outside ``torch.nn``."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return layer_kind(m) is not None or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.Graph | None:
    """The symbolic graph of ``model``, or ``None`` when fx cannot trace it (any reason: the fallback is safe)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _Tracer().trace(model)
    except Exception:  # fx raises many unrelated types; every one means "use the fallback"
        return None


def forward_order(model: nn.Module, graph: fx.Graph | None) -> list[str]:
    """Names of the conv/linear modules in the order the forward pass first calls them.

    With a graph, modules that are never called (e.g. weights used functionally inside an attention module) are
    left out, since a hook on them would never fire. Without one, module registration order stands in for
    forward order, which is right for the usual ``__init__``-mirrors-``forward`` style.
    """
    modules = dict(model.named_modules())
    if graph is None:
        return [name for name, module in modules.items() if layer_kind(module) is not None]
    order: dict[str, None] = {}
    for node in graph.nodes:
        if node.op == "call_module" and layer_kind(modules[str(node.target)]) is not None:
            order.setdefault(str(node.target), None)
    return list(order)
