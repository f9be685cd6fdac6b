"""Models: ResNet-26 with per-task BatchNorm/heads, its partitioned variant, resource accounting."""

from mtl.models.factory import MODELS, build_model, task_specs
from mtl.models import resnet as _resnet  # noqa: F401  (registers "resnet26")
from mtl.models import partitioned as _partitioned  # noqa: F401  (registers "partitioned_resnet26")

__all__ = ["MODELS", "build_model", "task_specs"]
