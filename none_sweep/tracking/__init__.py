"""MLflow tracking of sweeps: the layout, the one writer (driver-side Ray callback) and the back-fill.

Import the submodules (``store``, ``callback``, ``sync``) where needed: they pull in MLflow and Ray.
"""

from .layout import ERROR_TAG, PARENT_TAG, POINT_TAG, ROLE_TAG, STATUS_TAG, SWEEP_TAG, TRIAL_ID_TAG

__all__ = ["ERROR_TAG", "PARENT_TAG", "POINT_TAG", "ROLE_TAG", "STATUS_TAG", "SWEEP_TAG", "TRIAL_ID_TAG"]
