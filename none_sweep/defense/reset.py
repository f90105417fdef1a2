"""Resetting compromised neurons, with the successors of each layer found from the model's fx graph.

For a compromised channel ``c`` of a monitored conv/linear layer:

* ``"zero"`` (published): its filter ``weight[c]`` and ``bias[c]``, the ``weight[c]``/``bias[c]`` of the
  BatchNorm that directly consumes the layer's output, and the input weights ``[:, c]`` of every next conv/linear
  are set to 0. BatchNorm running statistics are left alone, as published. With ReLU after it, the channel gets
  no gradient any more and stays pruned.
* ``"reinit"``: the filter and bias are re-drawn from PyTorch's default conv/linear initialisation
  (kaiming-uniform with ``a=√5``: ``U(-1/√fan_in, 1/√fan_in)``, seeded by ``generator``), the BatchNorm channel
  is fresh (weight 1, bias 0, running mean 0, running variance 1, as a newly built BatchNorm), and the next
  layers' input weights ``[:, c]`` are still zeroed. Zeroing the outgoing weights makes the network compute right
  after the reset exactly what ``"zero"`` computes (so clean accuracy does not drop from a random channel),
  while the fresh filter's nonzero output lets those outgoing weights receive gradient: the neuron starts silent
  and relearns from the (filtered) data, instead of staying dead.

Successors (planned once per model with :func:`plan_resets`, cached): starting at each call of the layer in the
fx graph, follow the output through channel-preserving ops only (activations, BatchNorm, pooling, dropout,
identity, ``contiguous``) to the next conv (whose ``in_channels`` must equal the layer's channels; grouped and
depthwise convs are handled by group) or linear layer. A conv's output reaches a linear layer only through a
flatten (``flatten(1)``, ``nn.Flatten()``, ``view/reshape(B, -1)``), and channel ``c`` then owns the input
features ``c*S:(c+1)*S`` with ``S = in_features / C``. The search stops at anything else, in particular at merges
(``+``, ``cat``): a residual branch (ResNet ``conv2``, the downsample conv) gets its BatchNorm reset but no
next-layer zeroing, as published. If the model cannot be traced, only the layer's own filter and bias are reset
(one warning per plan).
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._graph import CONV_TYPES, Layer, as_layer, layer_kind, trace
from .monitor import MonitoredLayer

RESET_MODES = ("zero", "reinit")

_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Dropout,
    nn.AlphaDropout,
    nn.Identity,
)
_SPATIAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.PReLU,
)
_ELEMENTWISE_FUNCTIONS = frozenset(
    {
        F.relu,
        F.relu_,
        torch.relu,
        torch.relu_,
        F.relu6,
        F.leaky_relu,
        F.elu,
        F.selu,
        F.gelu,
        F.silu,
        F.mish,
        F.hardswish,
        F.hardsigmoid,
        F.hardtanh,
        F.softplus,
        torch.sigmoid,
        torch.tanh,
        F.dropout,
        F.alpha_dropout,
    }
)
_SPATIAL_FUNCTIONS = frozenset(
    {
        F.max_pool1d,
        F.max_pool2d,
        F.max_pool3d,
        F.avg_pool1d,
        F.avg_pool2d,
        F.avg_pool3d,
        F.adaptive_avg_pool1d,
        F.adaptive_avg_pool2d,
        F.adaptive_avg_pool3d,
        F.adaptive_max_pool1d,
        F.adaptive_max_pool2d,
        F.adaptive_max_pool3d,
        F.dropout1d,
        F.dropout2d,
        F.dropout3d,
    }
)
_ELEMENTWISE_METHODS = frozenset({"relu", "relu_", "sigmoid", "tanh", "contiguous"})


@dataclass(frozen=True)
class Successor:
    """A layer that reads the monitored channels: channel ``c`` owns its inputs ``c*block:(c+1)*block``."""

    name: str
    block: int


@dataclass(frozen=True)
class LayerPlan:
    """What resetting one monitored layer touches besides its own filter: norms and successors, by name."""

    name: str
    norms: tuple[str, ...]
    successors: tuple[Successor, ...]


@dataclass(frozen=True)
class ResetPlan:
    """Per monitored layer, its :class:`LayerPlan`; ``traced`` is False when fx failed (filter-only resets).

    Plans hold module *names*, so a plan made on one model also serves a deep copy of it.
    """

    layers: dict[str, LayerPlan]
    traced: bool


_PLANS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, ...], ResetPlan]] = weakref.WeakKeyDictionary()


def plan_resets(model: nn.Module, layers: Sequence[MonitoredLayer]) -> ResetPlan:
    """Find each monitored layer's norms and successors from the fx graph (computed once per model, cached)."""
    key = tuple(layer.name for layer in layers)
    cached = _PLANS.setdefault(model, {})
    if key not in cached:
        cached[key] = _make_plan(model, layers)
    return cached[key]


def _make_plan(model: nn.Module, layers: Sequence[MonitoredLayer]) -> ResetPlan:
    graph = trace(model)
    if graph is None:
        warnings.warn(
            f"{type(model).__name__} cannot be traced with torch.fx; NONE resets will zero or re-draw only each "
            "compromised neuron's own filter and bias (no BatchNorm or next-layer slices)",
            stacklevel=3,
        )
        return ResetPlan({layer.name: LayerPlan(layer.name, (), ()) for layer in layers}, traced=False)
    modules = dict(model.named_modules())
    calls: dict[str, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(str(node.target), []).append(node)
    plans = {layer.name: _layer_plan(layer, calls.get(layer.name, []), modules) for layer in layers}
    return ResetPlan(plans, traced=True)


def _layer_plan(layer: MonitoredLayer, starts: list[fx.Node], modules: dict[str, nn.Module]) -> LayerPlan:
    norms: dict[str, None] = {}
    successors: dict[Successor, None] = {}
    for start in starts:
        for user in start.users:  # only a BatchNorm that reads the layer's output directly is "its" norm
            if user.op == "call_module" and isinstance(modules[str(user.target)], _BatchNorm) and _reads(user, start):
                norms.setdefault(str(user.target), None)
        for successor in _follow(start, layer, modules):
            successors.setdefault(successor, None)
    return LayerPlan(layer.name, tuple(norms), tuple(successors))


def _reads(node: fx.Node, source: fx.Node) -> bool:
    """Whether ``node``'s main input (first argument) is ``source``; anything else is a merge or a side input."""
    return bool(node.args) and node.args[0] is source


def _follow(start: fx.Node, layer: MonitoredLayer, modules: dict[str, nn.Module]) -> list[Successor]:
    """Walk from ``start`` through channel-preserving nodes; collect the conv/linear layers reached."""
    found: list[Successor] = []
    todo = [(start, user, False) for user in start.users]
    seen: set[tuple[fx.Node, bool]] = set()
    while todo:
        source, node, flat = todo.pop()
        if (node, flat) in seen or not _reads(node, source):
            continue
        seen.add((node, flat))
        step = _classify(node, modules, flat)
        if step in ("keep", "flatten"):
            todo += [(node, user, flat or step == "flatten") for user in node.users]
        elif step in ("conv", "linear"):
            successor = _as_successor(str(node.target), modules[str(node.target)], layer, flat)
            found += [successor] if successor is not None else []
    return found


def _classify(node: fx.Node, modules: dict[str, nn.Module], flat: bool) -> str:
    """``keep`` (channels preserved), ``flatten``, ``conv``, ``linear`` or ``stop`` for one graph node.

    After a flatten only elementwise ops keep the channel blocks; pooling and norms would mix them.
    """
    if node.op == "call_module":
        module = modules[str(node.target)]
        kind = layer_kind(module)
        if kind is not None:
            return kind
        if isinstance(module, nn.Flatten):
            return "flatten" if (module.start_dim, module.end_dim) == (1, -1) else "stop"
        if isinstance(module, _ELEMENTWISE_MODULES):
            return "keep"
        return "keep" if not flat and isinstance(module, (*_SPATIAL_MODULES, _BatchNorm)) else "stop"
    if node.op == "call_function":
        if node.target in _ELEMENTWISE_FUNCTIONS:
            return "keep"
        if node.target is torch.flatten:
            return "flatten" if _flatten_args(node) else "stop"
        return "keep" if not flat and node.target in _SPATIAL_FUNCTIONS else "stop"
    if node.op == "call_method":
        if node.target in _ELEMENTWISE_METHODS:
            return "keep"
        if node.target == "flatten":
            return "flatten" if _flatten_args(node) else "stop"
        if node.target in ("view", "reshape"):
            return "flatten" if _batch_flatten_shape(node) else "stop"
    return "stop"


def _flatten_args(node: fx.Node) -> bool:
    """``flatten(x, 1)`` / ``x.flatten(1)`` with the default ``end_dim=-1``."""
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return bool(start == 1 and end == -1)


def _batch_flatten_shape(node: fx.Node) -> bool:
    """``x.view(B, -1)`` or ``x.reshape((B, -1))``: keep the batch dim, flatten the rest."""
    shape = node.args[1:]
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return bool(len(shape) == 2 and shape[1] == -1)


def _as_successor(name: str, module: nn.Module, layer: MonitoredLayer, flat: bool) -> Successor | None:
    """The input block that channel ``c`` of ``layer`` owns in ``module``, if the shapes say it is one."""
    channels = layer.channels
    if isinstance(module, CONV_TYPES):
        ok = layer.kind == "conv" and not flat and module.in_channels == channels
        return Successor(name, 1) if ok else None
    in_features = as_layer(module).weight.shape[1]
    if layer.kind == "linear":
        return Successor(name, 1) if in_features == channels else None
    if flat and in_features % channels == 0:
        return Successor(name, in_features // channels)
    return None


def reset_neurons(
    model: nn.Module,
    compromised: dict[str, Tensor],
    mode: str,
    layers: Sequence[MonitoredLayer],
    generator: torch.Generator | None = None,
    *,
    plan: ResetPlan | None = None,
) -> dict[str, int]:
    """Reset the ``compromised`` channels (layer name → int64 indices) in place; returns neurons reset per layer.

    ``plan`` defaults to :func:`plan_resets` (cached per model). ``generator`` seeds the ``"reinit"`` draws (its
    device decides where they are drawn); ``None`` uses torch's global RNG.
    """
    if mode not in RESET_MODES:
        raise ValueError(f"mode must be one of {RESET_MODES}, got {mode!r}")
    plan = plan if plan is not None else plan_resets(model, layers)
    unknown = sorted(set(compromised) - set(plan.layers))
    if unknown:
        raise ValueError(f"compromised names layers that are not monitored: {unknown}")
    counts: dict[str, int] = {}
    with torch.no_grad():
        for name, channels in compromised.items():
            idx = torch.unique(channels.long().flatten())
            _reset_layer(model, plan.layers[name], idx, mode, generator)
            counts[name] = int(idx.numel())
    return counts


def _reset_layer(model: nn.Module, plan: LayerPlan, idx: Tensor, mode: str, generator: torch.Generator | None) -> None:
    if idx.numel() == 0:
        return
    module = as_layer(model.get_submodule(plan.name))
    own = idx.to(module.weight.device)
    if mode == "zero":
        module.weight[own] = 0
        if module.bias is not None:
            module.bias[own] = 0
    else:
        _redraw(module, own, generator)
    for norm_name in plan.norms:
        _reset_norm(model.get_submodule(norm_name), own, mode)
    for successor in plan.successors:
        _zero_inputs(model.get_submodule(successor.name), idx, successor.block)


def _redraw(module: Layer, idx: Tensor, generator: torch.Generator | None) -> None:
    """Re-draw rows ``idx`` of weight and bias from ``U(-1/√fan_in, 1/√fan_in)`` (PyTorch's default init)."""
    weight = module.weight
    bound = 1.0 / math.sqrt(weight[0].numel())
    device = generator.device if generator is not None else weight.device

    def draw(*shape: int) -> Tensor:
        return (torch.rand(shape, generator=generator, device=device) * 2 - 1) * bound

    weight[idx] = draw(idx.numel(), *weight.shape[1:]).to(weight)
    bias = module.bias
    if bias is not None:
        bias[idx] = draw(idx.numel()).to(bias)


def _reset_norm(norm: nn.Module, idx: Tensor, mode: str) -> None:
    """Zero the affine slice (``zero``) or make the channel a fresh BatchNorm channel (``reinit``)."""
    if not isinstance(norm, _BatchNorm):  # plans only name BatchNorms; anything else is another model's plan
        raise TypeError(f"expected a BatchNorm, got {type(norm).__name__}")
    fresh = mode == "reinit"
    weight, bias = norm.weight, norm.bias  # both parameters when affine, both None otherwise
    if isinstance(weight, Tensor) and isinstance(bias, Tensor):
        weight[idx] = 1.0 if fresh else 0.0
        bias[idx] = 0.0
    mean, var = norm.running_mean, norm.running_var  # both buffers when tracking, both None otherwise
    if fresh and mean is not None and var is not None:
        mean[idx] = 0.0
        var[idx] = 1.0


def _zero_inputs(module: nn.Module, idx: Tensor, block: int) -> None:
    """Zero what input channels ``idx`` feed: the column block of a linear layer, or the (grouped) conv slices."""
    layer = as_layer(module)
    weight = layer.weight
    idx = idx.to(weight.device)
    if isinstance(layer, CONV_TYPES):
        weight[_conv_input_mask(weight.shape[0], weight.shape[1], layer.groups, idx)] = 0
    else:
        columns = (idx[:, None] * block + torch.arange(block, device=weight.device)).flatten()
        weight[:, columns] = 0


def _conv_input_mask(out_channels: int, per_group: int, groups: int, idx: Tensor) -> Tensor:
    """Bool ``[out, in/groups]``: the (output, local input) pairs that read input channels ``idx``.

    Input channel ``c`` is local input ``c % per_group`` of group ``c // per_group``, read by that group's
    outputs only; for ``groups == 1`` this is the whole column ``[:, c]``.
    """
    by_group = torch.zeros(groups, per_group, dtype=torch.bool, device=idx.device)
    by_group[idx // per_group, idx % per_group] = True
    return by_group.repeat_interleave(out_channels // groups, dim=0)
