"""Loading PySlowFast `.pyth` checkpoints, VideoMAE checkpoints and plain state dicts into a model, shape-matched.

Rules (PySlowFast's, see docs/PYSLOWFAST_COMPAT.md):
- a tensor whose name and shape match loads;
- a relative-position table (`...attn.rel_pos_{t,h,w}`) whose row count differs is resized by 1-D linear
  interpolation (align_corners=False): that is how a 224-pixel checkpoint serves a 256-pixel model;
- any other tensor whose shape differs is offered to the module that owns it: a module with a method
  `resize_checkpoint_tensor(name, value, shape) -> Tensor | None` (`name` relative to that module) may return it
  resized, e.g. a backbone's absolute position embeddings of another input size (Hiera), and a module with
  `checkpoint_shape_hint(name, checkpoint_shape, model_shape) -> str | None` may say what decides a shape that still
  differs (the error message then names those config keys);
- a head tensor (`head.` / `heads.` / `projection.`...) whose shape differs, or any tensor the model lacks, is skipped
  and listed (e.g. the 400-class K400 head when fine-tuning on AVA);
- any other shape mismatch means the checkpoint is of another architecture: `CheckpointError`.

A classifier checkpoint loads into a model that holds the backbone under a prefix (BMViT's `backbone.`, the two-stage
model's) by giving `prefix="backbone."`, or by leaving `prefix=None`: the prefix under which most checkpoint tensors
find a model tensor of the same name is then used. DistributedDataParallel's `module.` prefix is removed from the
checkpoint and a DDP-wrapped model is unwrapped.

Checkpoints of other codebases are first renamed by their layout's converter (`CHECKPOINT_LAYOUTS`, recognised from
the keys): VideoMAE's fine-tuned and pre-training checkpoints become the names of models/vit.py
(`videomae_to_vit`; the key table is in docs/backbones/vit.md). What the converter drops is reported as unused.
The report is logged as three lines: what was loaded, the unused checkpoint tensors, the model tensors missing.
"""

from __future__ import annotations

import glob
import logging
import os
import pickle
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .attention import resize_rel_pos
from .build import unwrap_model

logger = logging.getLogger(__name__)

_REL_POS_KEY = re.compile(r"(^|\.)attn\.rel_pos_[thw]$")
# Checkpoint tensors under these module names may be skipped on a shape mismatch (task heads, not the backbone).
DEFAULT_HEAD_PREFIXES: tuple[str, ...] = ("head.", "heads.", "projection.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


@dataclass
class LoadReport:
    """What `load_checkpoint` did. Names are the model's state_dict keys (prefix included)."""

    source: str
    prefix: str
    epoch: int | None = None
    layout: str = ""  # the converted layout (e.g. "VideoMAE pre-training"); "" for this package's own names
    loaded: list[str] = field(default_factory=list)
    # (name, old, new): rel-pos tables and tensors resized by their module's `resize_checkpoint_tensor`.
    resized: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, reason)
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint did not provide

    def loaded_line(self) -> str:
        """What was loaded: source, layout, counts."""
        layout = f" ({self.layout} layout)" if self.layout else ""
        under = f" under prefix {self.prefix!r}" if self.prefix else ""
        return (f"{self.source}{layout}: loaded {len(self.loaded)} tensors{under}, {len(self.resized)} resized to the "
                f"model's input size, {len(self.skipped)} checkpoint tensors unused, {len(self.missing)} model tensors missing")

    def unused_line(self) -> str:
        """The checkpoint tensors not loaded, grouped by reason (the first five keys of each), or "" when none."""
        if not self.skipped:
            return ""
        by_reason: dict[str, list[str]] = {}
        for key, reason in self.skipped:
            by_reason.setdefault(reason, []).append(key)
        groups = []
        for reason, keys in by_reason.items():
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            groups.append(f"{', '.join(keys[:5])}{more} ({reason})" if len(keys) == 1
                          else f"{reason}: {', '.join(keys[:5])}{more}")
        return f"unused checkpoint tensors ({len(self.skipped)}): " + "; ".join(groups)

    def missing_line(self) -> str:
        """The model tensors the checkpoint did not provide (the first ten), or "" when none."""
        if not self.missing:
            return ""
        more = f" (+{len(self.missing) - 10} more)" if len(self.missing) > 10 else ""
        return f"model tensors not in the checkpoint ({len(self.missing)}): " + ", ".join(self.missing[:10]) + more

    def lines(self) -> list[str]:
        """The report as up to three lines: loaded, unused, missing (empty ones left out)."""
        return [line for line in (self.loaded_line(), self.unused_line(), self.missing_line()) if line]

    def summary(self) -> str:
        """The three lines joined into one."""
        return "; ".join(self.lines())


# ----------------------------------------------------------------------------------------- other codebases' layouts


@dataclass(frozen=True)
class CheckpointLayout:
    """A checkpoint layout of another codebase, recognised from its keys and renamed to this package's names.

    matches(state) -> bool; convert(state) -> (renamed state, [(checkpoint key, reason) dropped]) and the name of
    the variant found (e.g. "VideoMAE fine-tuned"). A converter must leave this package's own names unchanged.
    """

    name: str
    matches: Callable[[Mapping[str, torch.Tensor]], bool]
    convert: Callable[[Mapping[str, torch.Tensor]], tuple[dict[str, torch.Tensor], list[tuple[str, str]], str]]


_VIDEOMAE_BLOCK_KEY = re.compile(r"^(encoder\.)?blocks\.\d+\.attn\.[qv]_bias$")
# Pre-training only: the decoder, its input projection and the mask token.
_VIDEOMAE_DECODER = ("decoder.", "encoder_to_decoder.", "mask_token")


def is_videomae_state(state: Mapping[str, torch.Tensor]) -> bool:
    """True for VideoMAE checkpoints (and this package's ViT): attention with separate `q_bias` / `v_bias`."""
    return any(_VIDEOMAE_BLOCK_KEY.match(key) for key in state)


def videomae_to_vit(
    state: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]], str]:
    """VideoMAE tensors under models/vit.py's names.

    Pre-training checkpoints (`encoder.*`): the `encoder.` prefix is removed and the decoder, `encoder_to_decoder`
    and `mask_token` are dropped. Fine-tuned checkpoints: `fc_norm.*` (the LayerNorm of the mean-pooled tokens)
    becomes `norm.*`, the final LayerNorm of models/vit.py, which serves the pooled vector and the token grid;
    `head.*` is kept (a detection model has none, and the loader reports it unused). Every other name is VideoMAE's.
    The fixed sinusoid table is not in VideoMAE's checkpoints (the model makes it).
    """
    pretraining = any(key.startswith("encoder.") for key in state)
    renamed: dict[str, torch.Tensor] = {}
    dropped: list[tuple[str, str]] = []
    for key, value in state.items():
        if pretraining and key.startswith(_VIDEOMAE_DECODER):
            dropped.append((key, "VideoMAE pre-training decoder"))
            continue
        name = key[len("encoder."):] if pretraining and key.startswith("encoder.") else key
        if name.startswith("fc_norm.") and "norm.weight" not in state:
            name = "norm." + name[len("fc_norm."):]
        renamed[name] = value
    return renamed, dropped, "VideoMAE pre-training" if pretraining else "VideoMAE fine-tuned"


# Tried in order; the first that matches converts the checkpoint.
CHECKPOINT_LAYOUTS: tuple[CheckpointLayout, ...] = (
    CheckpointLayout("VideoMAE", is_videomae_state, videomae_to_vit),
)


def convert_layout(
    state: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]], str]:
    """(state under this package's names, dropped (key, reason) pairs, layout name or "") via CHECKPOINT_LAYOUTS."""
    for layout in CHECKPOINT_LAYOUTS:
        if layout.matches(state):
            return layout.convert(state)
    return dict(state), [], ""


def _owner_methods(model: nn.Module, name: str, method: str) -> list[tuple[Callable, str]]:
    """(bound `method`, `name` relative to its module) of each module on `name`'s path that has one, innermost
    first."""
    parts = name.split(".")
    found = []
    for cut in range(len(parts) - 1, -1, -1):
        try:
            module = model.get_submodule(".".join(parts[:cut]))
        except AttributeError:
            continue
        bound = getattr(module, method, None)
        if callable(bound):
            found.append((bound, ".".join(parts[cut:])))
    return found


def _resize_by_owner(model: nn.Module, name: str, value: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """`value` resized by the `resize_checkpoint_tensor` of the innermost module on `name`'s path that has one and
    gives the model's shape; None when none does."""
    for resize, relative in _owner_methods(model, name, "resize_checkpoint_tensor"):
        resized = resize(relative, value, tuple(shape))
        if resized is not None and resized.shape == shape:
            return resized
    return None


def _mismatch_hint(model: nn.Module, name: str, value: torch.Tensor, shape: torch.Size) -> str:
    """What decides the shape of a tensor that does not fit, as " (...)" for the error message: the text of the
    `checkpoint_shape_hint(name, checkpoint_shape, model_shape)` of the innermost module on `name`'s path that gives
    one (e.g. the config keys that size a backbone's position table); "" when none does."""
    for hint, relative in _owner_methods(model, name, "checkpoint_shape_hint"):
        text = hint(relative, tuple(value.shape), tuple(shape))
        if text:
            return f" ({text})"
    return ""


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_MAGIC = b"\x80"  # torch.save's legacy format starts with a pickle protocol opcode


def _require_checkpoint_file(path: str) -> None:
    """Raise a one-line CheckpointError unless `path` is an existing file; a folder gets its own message, naming
    a `.pyth` file inside it (or inside its `checkpoints/` subfolder) when there is one."""
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "*.pyth")) + glob.glob(os.path.join(path, "checkpoints", "*.pyth")))
        hint = f" (e.g. {found[-1]})" if found else ""
        raise CheckpointError(f"{path}: is a folder; give the checkpoint file itself{hint}")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")


def read_checkpoint_file(path: str) -> dict[str, Any]:
    """The dict stored in a checkpoint file (`.pyth`, `.pt`, ...), read with `torch.load(weights_only=True)` onto the
    CPU: tensors, numbers, strings and plain containers only. The one reader of checkpoint files: the weights loader
    below and the training resume (engine/checkpoint.py) read a file through it, once.

    Raises:
        CheckpointError: one line naming the file when it is missing, a folder, empty, not a PyTorch file,
            truncated or corrupt, holds Python objects weights_only loading refuses, or is not a dict.
    """
    _require_checkpoint_file(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC)):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip nor its pickle format)")
    if head.startswith(_ZIP_MAGIC) and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (zip archive without its central directory)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if refused:
            raise CheckpointError(
                f"{path}: holds a Python object ({refused.group(1)}) that weights_only loading refuses; "
                "re-save the checkpoint with tensors, numbers, strings and plain containers only"
            ) from None
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (unreadable pickle data)") from None
    except Exception as err:  # a truncated zip, garbage bytes, I/O errors: all surface as one message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from None
    _require_mapping(checkpoint, path)
    return checkpoint


def _require_mapping(obj: Any, source: str) -> None:
    """A checkpoint is a dict (of tensors, or holding one under "model_state" and the like)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: not a checkpoint (a {type(obj).__name__}, expected a dict of tensors)")


def _state_dict_of(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], int | None]:
    """The model state inside a loaded checkpoint object, and its epoch when recorded."""
    _require_mapping(obj, source)
    epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
    for key in ("model_state", "model", "module", "state_dict"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        keys = ", ".join(list(map(str, obj.keys()))[:8])
        raise CheckpointError(f"{source}: no model tensors found (top-level keys: {keys})")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state, epoch


def _detect_prefix(checkpoint_keys: Sequence[str], model_keys: Sequence[str]) -> str:
    """The prefix p maximising |{k in checkpoint : p + k in model}| ("" wins ties)."""
    votes: Counter[str] = Counter()
    model_set = set(model_keys)
    for key in checkpoint_keys:
        if key in model_set:
            votes[""] += 1
    suffix_index: dict[str, list[str]] = {}
    for model_key in model_keys:
        parts = model_key.split(".")
        for cut in range(1, len(parts)):
            suffix_index.setdefault(".".join(parts[cut:]), []).append(".".join(parts[:cut]) + ".")
    for key in checkpoint_keys:
        for prefix in suffix_index.get(key, ()):
            votes[prefix] += 1
    if not votes:
        return ""
    best = max(votes.values())
    return "" if votes[""] == best else max(votes, key=lambda p: (votes[p], -len(p)))


def load_checkpoint(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    model: nn.Module,
    prefix: str | None = None,
    head_prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES,
    source: str | None = None,
) -> LoadReport:
    """Load a PySlowFast checkpoint (or a state dict) into `model`, shape-matched; returns what happened.

    Args:
        path_or_state_dict: a `.pyth` / `.pt` file (`{"model_state": ...}` PySlowFast layout, or a plain state
            dict), or an in-memory checkpoint / state dict. Files are read with `read_checkpoint_file`.
        model: the model to fill in place (a DDP or compile wrapper is unwrapped).
        prefix: prepended to every checkpoint key to find the model key (e.g. "backbone."); None detects it.
        head_prefixes: checkpoint keys starting with one of these may be skipped on a shape mismatch.
        source: the name messages and the report give an in-memory checkpoint, e.g. the file it was read from
            (default "<state dict>"); a path names itself.
    Returns:
        LoadReport (also logged: what was loaded, the unused checkpoint tensors and the missing model tensors,
        a line each).
    Raises:
        CheckpointError: unreadable, truncated or non-checkpoint file; no tensor of the checkpoint fits the model;
            or a shape mismatch outside the relative-position tables and the heads (another architecture).
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = os.fspath(path_or_state_dict)
        obj = read_checkpoint_file(source)
    else:
        source, obj = source or "<state dict>", path_or_state_dict
    state, epoch = _state_dict_of(obj, source)
    state, dropped, layout = convert_layout(state)

    target = unwrap_model(model)
    model_state = target.state_dict()
    if prefix is None:
        prefix = _detect_prefix(list(state), list(model_state))
    report = LoadReport(source=source, prefix=prefix, epoch=epoch, layout=layout)
    report.skipped.extend(dropped)

    to_load: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for key, value in state.items():
        name = prefix + key
        if name not in model_state:
            report.skipped.append((key, "not in model"))
            continue
        expected = model_state[name]
        if value.shape == expected.shape:
            to_load[name] = value
        elif _REL_POS_KEY.search(name) and value.ndim == 2 and value.shape[1] == expected.shape[1]:
            to_load[name] = resize_rel_pos(value, expected.shape[0])
            report.resized.append((name, tuple(value.shape), tuple(expected.shape)))
        elif (resized := _resize_by_owner(target, name, value, expected.shape)) is not None:
            to_load[name] = resized
            report.resized.append((name, tuple(value.shape), tuple(expected.shape)))
        elif key.startswith(tuple(head_prefixes)):
            report.skipped.append((key, f"shape {tuple(value.shape)} != model {tuple(expected.shape)}"))
        else:
            mismatched.append(f"{key} {tuple(value.shape)} vs model {tuple(expected.shape)}"
                              + _mismatch_hint(target, name, value, expected.shape))

    if mismatched:
        shown = "; ".join(mismatched[:3]) + (f" (+{len(mismatched) - 3} more)" if len(mismatched) > 3 else "")
        raise CheckpointError(
            f"{source}: does not fit the model (another architecture?): {len(mismatched)} tensors differ in shape: "
            f"{shown}"
        )
    if not to_load:
        example = next(iter(state))
        raise CheckpointError(
            f"{source}: no tensor matches the model (another architecture?); checkpoint keys look like "
            f"{example!r}, model keys like {next(iter(model_state), '')!r}"
        )

    target.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    report.missing = [name for name in model_state if name not in to_load]
    for line in report.lines():
        logger.info(line)
    return report
