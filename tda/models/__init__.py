"""Every model of tda, one way in: each module below registers its models in `tda.core.MODELS` where they are
defined, and `create_model` / `list_models` (tda.models.factory) build and list them all."""
from . import hattnet, tdan, tdaf, tasks, vg, pretrained, factory  # noqa: F401  (each registers its own models)
from .factory import TASKS, create_model, list_models

__all__ = ['TASKS', 'create_model', 'list_models']
