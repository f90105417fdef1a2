"""Poisoning attacks behind one contract (see docs/architecture.md and :class:`Attack`).

Importing the package registers: ``none`` (clean training), ``badnets``, ``blend``, ``sig`` (clean-label),
``label_consistent`` (clean-label, perturbed against a surrogate the training layer supplies) and ``wanet``. All-to-all is ``attack.mode: all_to_all`` on any dirty-label attack, not a separate name.
"""

from . import badnets, blend, clean, label_consistent, sig, wanet  # noqa: F401  (registration)
from ._base import (
    ALL_TO_ALL,
    ALL_TO_ONE,
    ATTACKS,
    Attack,
    NoParams,
    PoisonedData,
    Surrogate,
    SurrogateRequest,
    TriggeredSet,
    create_attack,
    injects_trigger,
    params_class,
    path_params,
    poison_count,
    seeded_generator,
)
from .badnets import BadNets, BadNetsParams
from .blend import Blend, BlendParams
from .clean import NoAttack
from .label_consistent import LabelConsistent, LabelConsistentParams
from .sig import Sig, SigParams
from .wanet import WaNet, WaNetParams

__all__ = [
    "ALL_TO_ALL",
    "ALL_TO_ONE",
    "ATTACKS",
    "Attack",
    "BadNets",
    "BadNetsParams",
    "Blend",
    "BlendParams",
    "LabelConsistent",
    "LabelConsistentParams",
    "NoAttack",
    "NoParams",
    "PoisonedData",
    "Sig",
    "SigParams",
    "Surrogate",
    "SurrogateRequest",
    "TriggeredSet",
    "WaNet",
    "WaNetParams",
    "create_attack",
    "injects_trigger",
    "params_class",
    "path_params",
    "poison_count",
    "seeded_generator",
]
