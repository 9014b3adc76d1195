"""Models: the MViTv2, ViT and Hiera backbones / classifiers, BMViT, and the two-stage baseline, behind MODEL_REGISTRY."""

from .build import MODEL_REGISTRY, build_model, get_model_class, unwrap_model  # noqa: F401

# Importing a model module registers its classes.
from . import mvit  # noqa: F401,E402
from . import vit  # noqa: F401,E402
from . import hiera  # noqa: F401,E402
from . import bmvit  # noqa: F401,E402
from . import two_stage  # noqa: F401,E402
