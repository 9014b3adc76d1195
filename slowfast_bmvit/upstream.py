"""Registration of this package into an importable upstream PySlowFast (`slowfast`).

After `register_into_pyslowfast()`, upstream's own tools can build this package's models and datasets by name
and read configs that use this package's keys:
- models into `slowfast.models.build.MODEL_REGISTRY` (absent in old releases such as pyslowfast 1.0);
- datasets into `slowfast.datasets.build.DATASET_REGISTRY` under the capitalised names upstream's
  `build_dataset` looks up;
- config keys missing from upstream's defaults added to `slowfast.config.defaults._C`, which upstream's
  `get_cfg()` clones, so YAML files written for this package load there too.
Names upstream already has are kept as upstream's unless `override=True`.
"""

from __future__ import annotations

import copy
import importlib
import logging
from dataclasses import dataclass, field

from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)


@dataclass
class RegistrationReport:
    """What `register_into_pyslowfast` did: names registered, kept (upstream's own), keys added, parts absent."""

    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    kept_upstream: list[str] = field(default_factory=list)
    config_keys_added: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"models registered: {', '.join(self.models) or 'none'}",
            f"datasets registered: {', '.join(self.datasets) or 'none'}",
            f"config keys added: {len(self.config_keys_added)}",
        ]
        if self.kept_upstream:
            parts.append(f"kept upstream's: {', '.join(self.kept_upstream)}")
        parts.extend(f"absent: {what}" for what in self.absent)
        return "; ".join(parts)


def _import_attribute(module_name: str, attribute: str):
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, attribute, None)


def _copy_registry(ours, theirs, names_out: list[str], kept: list[str], kind: str, override: bool) -> None:
    for name, obj in ours:
        if name in theirs._obj_map:
            if theirs._obj_map[name] is obj:
                continue
            if not override:
                kept.append(f"{kind} {name}")
                continue
            # fvcore's Registry refuses duplicates; replacing is an explicit user request.
            theirs._obj_map[name] = obj
        else:
            theirs.register(obj)
        names_out.append(name)


def _add_missing_keys(ours: CfgNode, theirs: CfgNode, prefix: str, added: list[str]) -> None:
    for key, value in ours.items():
        full_key = f"{prefix}{key}"
        if key not in theirs:
            theirs[key] = copy.deepcopy(value)
            added.append(full_key)
        elif isinstance(value, CfgNode) and isinstance(theirs[key], CfgNode):
            _add_missing_keys(value, theirs[key], full_key + ".", added)


def register_into_pyslowfast(override: bool = False) -> RegistrationReport:
    """Register this package's models, datasets and config keys into upstream PySlowFast.

    Args:
        override: replace upstream objects that share a name with ours (e.g. upstream's own "Ava").
    Returns:
        A RegistrationReport; what upstream lacks (e.g. a model registry in pyslowfast 1.0) is listed in `absent`
        and logged, never silently ignored.
    Raises:
        ImportError: when no `slowfast` package is importable.
    """
    try:
        importlib.import_module("slowfast")
    except ImportError as err:
        raise ImportError(
            "register_into_pyslowfast: PySlowFast (the `slowfast` package) is not importable; install it first"
        ) from err

    from slowfast_bmvit import datasets as our_datasets
    from slowfast_bmvit import models as our_models
    from slowfast_bmvit.config.defaults import get_cfg

    report = RegistrationReport()
    upstream_models = _import_attribute("slowfast.models.build", "MODEL_REGISTRY")
    if upstream_models is None:
        report.absent.append("slowfast.models.build.MODEL_REGISTRY (this PySlowFast has no model registry)")
    else:
        _copy_registry(our_models.MODEL_REGISTRY, upstream_models, report.models, report.kept_upstream, "model", override)

    upstream_datasets = _import_attribute("slowfast.datasets.build", "DATASET_REGISTRY")
    if upstream_datasets is None:
        report.absent.append("slowfast.datasets.build.DATASET_REGISTRY")
    else:
        _copy_registry(
            our_datasets.DATASET_REGISTRY, upstream_datasets, report.datasets, report.kept_upstream, "dataset", override
        )

    upstream_defaults = _import_attribute("slowfast.config.defaults", "_C")
    if upstream_defaults is None:
        report.absent.append("slowfast.config.defaults._C (upstream config defaults)")
    else:
        _add_missing_keys(get_cfg(), upstream_defaults, "", report.config_keys_added)

    logger.info("register_into_pyslowfast: %s", report.summary())
    for what in report.absent:
        logger.warning("register_into_pyslowfast: not available upstream: %s", what)
    return report
