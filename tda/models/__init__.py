"""Every model of tda, one way in: each module below registers its models in `tda.core.MODELS` where they are
defined, and `create_model` / `list_models` (tda.models.factory) build and list them all; `tda.models.outputs` is the
one output contract they are read through."""
from . import hattnet, tdan, tdaf, tasks, vg, pretrained, factory, outputs  # noqa: F401 (they register models)
from . import benchmark  # noqa: F401 (registers the query-free HAttNet classifiers)
from .factory import TASKS, create_model, list_models
from .outputs import CamModel, as_outputs, model_outputs

__all__ = ['TASKS', 'create_model', 'list_models', 'as_outputs', 'model_outputs', 'CamModel']
