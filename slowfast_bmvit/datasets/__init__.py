"""Datasets: AVA v2.2 (and SynthAVA, generated in its format), UCF101-24 and JHMDB-21, behind DATASET_REGISTRY."""

from .build import (  # noqa: F401
    DATASET_REGISTRY,
    build_dataset,
    clip_position,
    construct_loader,
    epoch_sampler,
    prepare_dataset,
    prepare_datasets,
    set_loader_epoch,
)

# Importing a dataset module registers its classes.
from . import ava  # noqa: F401,E402
from . import synthetic  # noqa: F401,E402
from . import act  # noqa: F401,E402
