"""The searched keys: one small class per param type, registered by the name a space file gives it.

Each class knows everything about its type, so nothing else in the project switches on a type name:

- which fields of a ``space`` entry it takes, and the checks on them (:meth:`Param.parse`, one message naming
  ``space[KEY].field``);
- how to ask an Optuna trial for a value (:meth:`Param.suggest`, define-by-run, which is what makes ``when``
  conditions possible) and the matching Optuna distribution (:meth:`Param.distribution`, for the study and
  the report's importances);
- the values a grid search visits, the edges checked when the file is loaded, whether a value is inside it,
  and its one-line description in the sweep header.

``when`` (a conditional key) is common to every type: a key is suggested only while each condition key holds
one of the listed values. A new type is one class here, decorated with ``@_registered``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import BaseTrial

from ...config.validation import fail
from ...errors import ConfigError
from ...registry import Registry
from ...text import did_you_mean
from .schema import ParamSpec

#: ``when``, resolved: (condition key, the values that enable the param), in file order.
Condition = tuple[tuple[str, tuple[Any, ...]], ...]


@dataclass(frozen=True, kw_only=True)
class Param(ABC):
    """A searched config key, validated. Subclasses declare ``type`` (the file's name) and ``takes`` (its fields)."""

    type: ClassVar[str]
    takes: ClassVar[tuple[str, ...]]
    key: str
    when: Condition = ()

    # ------------------------------------------------------------------ reading a space entry
    @classmethod
    def parse(cls, key: str, spec: ParamSpec, when: Condition = ()) -> Param:
        """The param for ``space[key]``; a field this type does not take is refused, naming it."""
        where = f"space[{key}]"
        for name in spec.given():
            if name not in cls.takes:
                raise fail(f"{where}.{name}", cls.refuse(where, name))
        return cls.build(where, key, spec, when)

    @classmethod
    def refuse(cls, where: str, name: str) -> str:
        """The message for field ``name``, which this type does not take."""
        return f"{where}: type {cls.type} takes {'/'.join(cls.takes)}, not {name}"

    @classmethod
    @abstractmethod
    def build(cls, where: str, key: str, spec: ParamSpec, when: Condition) -> Param:
        """Check the fields this type takes and make the param (``where`` is ``space[key]``, for messages)."""

    # ------------------------------------------------------------------ common to every type
    def active(self, current: Mapping[str, Any]) -> bool:
        """Whether the ``when`` condition holds for ``current`` (sampled values over the base config)."""
        return all(current.get(key) in allowed for key, allowed in self.when)

    def describe(self) -> str:
        """``uniform[0.01, 0.2] step 0.01 when defense.after_reset=finetune`` (the sweep header)."""
        text = self.body()
        if self.when:
            text += " when " + ", ".join(f"{k}={'|'.join(map(str, v))}" for k, v in self.when)
        return text

    def grid(self) -> list[Any]:
        """The values a grid search visits; only discrete types have them."""
        raise ConfigError(f"search.sampler grid needs discrete keys; space[{self.key}] is {self.type} without a step")

    def can_take(self, allowed: Sequence[Any]) -> bool:
        """Whether this key can be sampled equal to one of ``allowed`` (what a ``when`` on it needs)."""
        return any(self.contains(v) for v in allowed)

    # ------------------------------------------------------------------ what each type says
    @abstractmethod
    def suggest(self, trial: BaseTrial) -> Any:
        """Ask an Optuna trial for this key's value (the trial records :meth:`distribution`)."""

    @abstractmethod
    def distribution(self) -> BaseDistribution:
        """The Optuna distribution :meth:`suggest` samples from."""

    @abstractmethod
    def body(self) -> str:
        """The distribution in a few characters, without the condition."""

    @abstractmethod
    def edges(self) -> list[Any]:
        """Values checked at load time (a trial config is built at each): both ends, or every choice."""

    @abstractmethod
    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this key can take (points to evaluate must be)."""


PARAM_TYPES: Registry[type[Param]] = Registry("param type")
P = TypeVar("P", bound=Param)


def _registered(cls: type[P]) -> type[P]:
    PARAM_TYPES.add(cls.type, cls)
    return cls


def parse_param(key: str, spec: ParamSpec, when: Condition = ()) -> Param:
    """``space[key]`` as its registered type; an unknown or missing type names the choices."""
    where = f"space[{key}]"
    if not spec.type:
        raise fail(f"{where}.type", f"{where}.type is required: one of {PARAM_TYPES.names()}")
    if spec.type not in PARAM_TYPES:
        hint = did_you_mean(spec.type, PARAM_TYPES.names())
        raise fail(f"{where}.type", f"{where}.type must be one of {PARAM_TYPES.names()}, got {spec.type!r}{hint}")
    return PARAM_TYPES.get(spec.type).parse(key, spec, when)


def describe_param(p: Param) -> str:
    """The sweep header's text for ``p`` (see :meth:`Param.describe`)."""
    return p.describe()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(where: str, kind: str, spec: ParamSpec) -> tuple[float, float]:
    if spec.low is None or spec.high is None:
        raise fail(where, f"{where}: type {kind} needs both low and high")
    if spec.low > spec.high:
        raise fail(f"{where}.low", f"{where}: low ({spec.low:g}) must not exceed high ({spec.high:g})")
    return spec.low, spec.high


# --------------------------------------------------------------------------- the types
@_registered
@dataclass(frozen=True, kw_only=True)
class Uniform(Param):
    """A float anywhere in ``[low, high]``; given a ``step`` it is :class:`Quantized`."""

    type: ClassVar[str] = "uniform"
    takes: ClassVar[tuple[str, ...]] = ("low", "high", "step")
    low: float
    high: float

    @classmethod
    def build(cls, where: str, key: str, spec: ParamSpec, when: Condition) -> Param:
        if spec.step is not None:
            return Quantized.build(where, key, spec, when)
        low, high = _bounds(where, cls.type, spec)
        return cls(key=key, when=when, low=low, high=high)

    def suggest(self, trial: BaseTrial) -> Any:
        return trial.suggest_float(self.key, self.low, self.high)

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high)

    def body(self) -> str:
        return f"{self.type}[{self.low:g}, {self.high:g}]"

    def edges(self) -> list[Any]:
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        return _number(value) and self.low <= value <= self.high


@_registered
@dataclass(frozen=True, kw_only=True)
class LogUniform(Uniform):
    """A float in ``[low, high]``, uniform in its logarithm (learning rates); ``low`` must be positive."""

    type: ClassVar[str] = "loguniform"
    takes: ClassVar[tuple[str, ...]] = ("low", "high")

    @classmethod
    def refuse(cls, where: str, name: str) -> str:
        if name == "step":
            return f"{where}: loguniform cannot be quantised (Optuna ignores step on a log scale)"
        return super().refuse(where, name)

    @classmethod
    def build(cls, where: str, key: str, spec: ParamSpec, when: Condition) -> Param:
        low, high = _bounds(where, cls.type, spec)
        if low <= 0:
            raise fail(f"{where}.low", f"{where}: loguniform needs low > 0, got {low:g}")
        return cls(key=key, when=when, low=low, high=high)

    def suggest(self, trial: BaseTrial) -> Any:
        return trial.suggest_float(self.key, self.low, self.high, log=True)

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=True)


@dataclass(frozen=True, kw_only=True)
class Quantized(Uniform):
    """``low, low + step, ...`` up to ``high``: written ``type: uniform`` with a ``step`` (Optuna's float step).

    When ``high - low`` is no multiple of ``step`` the last value is :attr:`top`, below ``high``, as Optuna
    would make it; the distribution says so itself, so Optuna has nothing to adjust (or warn about).
    """

    step: float

    @classmethod
    def build(cls, where: str, key: str, spec: ParamSpec, when: Condition) -> Param:
        low, high = _bounds(where, cls.type, spec)
        if spec.step is None:
            raise fail(f"{where}.step", f"{where}.step is required for a quantised uniform")
        return cls(key=key, when=when, low=low, high=high, step=spec.step)

    @property
    def top(self) -> float:
        """The largest value on the grid (``high``, or the last step below it)."""
        return round(self.low + self._count() * self.step, 12)

    def _count(self) -> int:
        return math.floor((self.high - self.low) / self.step + 1e-9)

    def suggest(self, trial: BaseTrial) -> Any:
        return trial.suggest_float(self.key, self.low, self.top, step=self.step)

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.top, step=self.step)

    def body(self) -> str:
        return f"{super().body()} step {self.step:g}"

    def grid(self) -> list[Any]:
        return [round(self.low + i * self.step, 12) for i in range(self._count() + 1)]

    def edges(self) -> list[Any]:
        return [self.low, self.top]

    def contains(self, value: Any) -> bool:
        if not _number(value) or not self.low <= value <= self.top + 1e-12:
            return False
        k = (value - self.low) / self.step
        return abs(k - round(k)) < 1e-6


@_registered
@dataclass(frozen=True, kw_only=True)
class IntParam(Param):
    """An integer in ``[low, high]``, every ``step``-th one (default 1)."""

    type: ClassVar[str] = "int"
    takes: ClassVar[tuple[str, ...]] = ("low", "high", "step")
    low: int
    high: int
    step: int = 1

    @classmethod
    def build(cls, where: str, key: str, spec: ParamSpec, when: Condition) -> Param:
        low, high = _bounds(where, cls.type, spec)
        for name in ("low", "high", "step"):
            v = getattr(spec, name)
            if v is not None and not float(v).is_integer():
                raise fail(f"{where}.{name}", f"{where}.{name} must be an integer for type int, got {v:g}")
        return cls(key=key, when=when, low=int(low), high=int(high), step=int(spec.step or 1))

    @property
    def top(self) -> int:
        """The largest value on the grid (``high``, or the last step below it)."""
        return self.low + (self.high - self.low) // self.step * self.step

    def suggest(self, trial: BaseTrial) -> Any:
        return trial.suggest_int(self.key, self.low, self.top, step=self.step)

    def distribution(self) -> BaseDistribution:
        return IntDistribution(self.low, self.top, step=self.step)

    def body(self) -> str:
        return f"int[{self.low}, {self.high}]" + (f" step {self.step}" if self.step != 1 else "")

    def grid(self) -> list[Any]:
        return list(range(self.low, self.top + 1, self.step))

    def edges(self) -> list[Any]:
        return [self.low, self.top]

    def contains(self, value: Any) -> bool:
        if not _number(value) or not float(value).is_integer():
            return False
        return self.low <= value <= self.top and (int(value) - self.low) % self.step == 0


@_registered
@dataclass(frozen=True, kw_only=True)
class Choice(Param):
    """One of ``values`` (numbers, strings, booleans or null), unordered."""

    type: ClassVar[str] = "choice"
    takes: ClassVar[tuple[str, ...]] = ("values",)
    values: tuple[Any, ...]

    @classmethod
    def build(cls, where: str, key: str, spec: ParamSpec, when: Condition) -> Param:
        if not spec.values:
            raise fail(f"{where}.values", f"{where}.values must list at least one value for type choice")
        for i, v in enumerate(spec.values):
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise fail(f"{where}.values",
                           f"{where}.values entries must be numbers, strings, booleans or null, got {v!r}")  # fmt: skip
            earlier = [w for w in spec.values[:i] if w == v]
            if earlier:
                raise fail(f"{where}.values", f"{where}.values: {v!r} equals {earlier[0]!r} listed before it, and "
                                              f"Optuna stores a choice as its first equal value; list it once")  # fmt: skip
        return cls(key=key, when=when, values=tuple(spec.values))

    def suggest(self, trial: BaseTrial) -> Any:
        return trial.suggest_categorical(self.key, list(self.values))

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(list(self.values))

    def body(self) -> str:
        return f"choice{list(self.values)}"

    def grid(self) -> list[Any]:
        return list(self.values)

    def edges(self) -> list[Any]:
        return list(self.values)

    def contains(self, value: Any) -> bool:
        """Equal and of the same type: ``true`` is not the choice ``1``."""
        return any(value == v and type(value) is type(v) for v in self.values)

    def can_take(self, allowed: Sequence[Any]) -> bool:
        return any(v in allowed for v in self.values)
