"""Models by name: ``create_model(name, info)`` for registered families or ``torchvision:NAME``.

Importing this package registers every family (each module registers its names on import).
"""

from . import nin, resnet, small_cnn, vgg  # noqa: F401  (registration side effects)
from ._factory import MODELS, TORCHVISION_PREFIX, ModelFactory, check_model_name, create_model

__all__ = ["MODELS", "TORCHVISION_PREFIX", "ModelFactory", "check_model_name", "create_model"]
