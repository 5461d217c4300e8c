__version__ = "0.1.0"


def __getattr__(name):
    "`tda.create_model` and `tda.list_models`, imported on first use so that `import tda` stays light."
    if name in ('create_model', 'list_models'):
        from . import models
        return getattr(models, name)
    raise AttributeError(f"module 'tda' has no attribute {name!r}")
