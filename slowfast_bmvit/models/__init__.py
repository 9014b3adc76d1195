"""Models: the MViTv2 backbone / classifier, BMViT, and the two-stage baseline, behind MODEL_REGISTRY."""

from .build import MODEL_REGISTRY, build_model, get_model_class  # noqa: F401

# Importing a model module registers its classes.
