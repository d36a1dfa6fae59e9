"""The seed networks, their registry and the checkpoint format.

Importing this package registers every model family.
"""

# registration order is the order users see in `segstudio models`
from segstudio.models import fcn, deeplab, deconvnet, unet, ensemble  # noqa: F401, I001
from segstudio.models.adapt import AdaptReport, adapt_to_classes
from segstudio.models.registry import (
    ModelSpec,
    count_parameters,
    describe_models,
    get_model,
    get_spec,
    get_training_model,
    list_models,
)

__all__ = [
    "AdaptReport",
    "ModelSpec",
    "adapt_to_classes",
    "count_parameters",
    "describe_models",
    "get_model",
    "get_spec",
    "get_training_model",
    "list_models",
]
