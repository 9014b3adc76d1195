"""BMViT in deployable form: ONNX and TorchScript files that map a clip to the triplets.

The exported function is `InferenceForm`: clip [B, 3, T, H, W] (normalised as DATA.MEAN / DATA.STD, frames resized
as the test resizes them) -> boxes [B, N, 4] (cx, cy, w, h) as fractions of the clip, p(actor) [B, N] and the class
probabilities [B, N, C] of the N triplets, as the test reads the model (flip-averaged when TEST.FLIP_AVERAGE).
Probabilities rather than logits: a deployment thresholds them directly, and they compare across runtimes (a logit
of an averaged probability near 0 or 1 magnifies float32 rounding). Post-processing (threshold, NMS, top-k, mapping
boxes to the frame) stays in Python: `postprocess_detections(as_model_outputs(...))`. The batch size is a dynamic
axis.

ONNX goes through `torch.onnx.export` (the torch.export-based exporter; needs the onnx and onnxscript packages);
onnxruntime, when installed, runs the file to check it. With TEST.FLIP_AVERAGE the clips and their mirror images
run as one batch, so the exported graph holds the network once.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from slowfast_bmvit.models import attention, unwrap_model
from slowfast_bmvit.models.flip_average import mirror_averaged_probabilities
from slowfast_bmvit.models.heads import check_class_activation, class_activation, class_probabilities

FORMATS = ("onnx", "torchscript")
OUTPUT_NAMES = ("boxes", "actor_prob", "class_prob")
TRIPLET_KEYS = ("pred_boxes", "pred_actor", "pred_classes")


class InferenceForm(nn.Module):
    """clip [B, 3, T, H, W] -> (boxes [B, N, 4], actor_prob [B, N], class_prob [B, N, C]) of a BMViT.

    boxes are (cx, cy, w, h) fractions of the clip; actor_prob is p(actor) (the actor softmax's index 1); class_prob
    the class probabilities (sigmoid or softmax of the logits, BMVIT.CLASS_LOSS). With `flip_average` the clips and
    their mirror images run as one batch (one copy of the network in an exported graph) and the two views are
    averaged token by token as the test averages them (models/flip_average.py).
    """

    def __init__(self, model: nn.Module, flip_average: bool = False, activation: str = "sigmoid"):
        super().__init__()
        self.model = unwrap_model(model)
        self.flip_average, self.activation = flip_average, check_class_activation(activation)

    @classmethod
    def from_cfg(cls, model: nn.Module, cfg) -> "InferenceForm":
        """TEST.FLIP_AVERAGE and BMVIT.CLASS_LOSS's class activation, as the test runs the model."""
        return cls(model, cfg.TEST.FLIP_AVERAGE, class_activation(cfg))

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.flip_average:
            outputs = self.model(clip)
            class_prob = class_probabilities(outputs["pred_classes"].float(), self.activation)
            return outputs["pred_boxes"].float(), outputs["pred_actor"].float().softmax(-1)[..., 1], class_prob
        batch = clip.shape[0]
        both = self.model(torch.cat([clip, clip.flip(-1)]))
        direct = {key: both[key][:batch] for key in TRIPLET_KEYS}
        mirrored = {key: both[key][batch:] for key in TRIPLET_KEYS}
        averaged = mirror_averaged_probabilities(direct, mirrored, self.model.token_grid(tuple(clip.shape[2:])),
                                                 self.activation)
        return averaged["pred_boxes"], averaged["actor_probs"][..., 1], averaged["class_probs"]


def as_model_outputs(boxes: torch.Tensor, actor_prob: torch.Tensor, class_prob: torch.Tensor,
                     activation: str = "sigmoid") -> dict[str, torch.Tensor]:
    """The exported outputs as a model's output dict (pred_boxes, pred_actor and pred_classes logits that map back
    to the probabilities), which `postprocess_detections` reads."""
    actor = actor_prob.double()
    pred_actor = torch.stack([torch.log1p(-actor), torch.log(actor)], dim=-1)
    classes = class_prob.double()
    pred_classes = torch.logit(classes) if activation == "sigmoid" else torch.log(classes)
    return {"pred_boxes": boxes, "pred_actor": pred_actor.float(), "pred_classes": pred_classes.float()}


def example_clip(cfg, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    """A random normalised clip [batch_size, 3, DATA.NUM_FRAMES, TEST_CROP_SIZE, TEST_CROP_SIZE]."""
    size = cfg.DATA.TEST_CROP_SIZE
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 3, cfg.DATA.NUM_FRAMES, size, size, generator=generator)


@contextmanager
def fresh_rel_pos_cache() -> Iterator[None]:
    """Empty the attention's relative-position index cache on the way out: tracing for torch.export fills it with
    the tracer's placeholder tensors, which later eager calls must not reuse."""
    try:
        yield
    finally:
        attention._rel_pos_index.cache_clear()


def export_torchscript(form: InferenceForm, clip: torch.Tensor, path: str | Path) -> Path:
    """Trace `form` on `clip` and save it (torch.jit.load reads it back, no Python source needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(form.eval(), clip, check_trace=False)
    traced.save(str(path))
    return path


# What `export_onnx` asks of torch.onnx.export: the torch.export-based exporter, a dynamic batch axis, the weights
# inside the one file. Older torch releases (2.4, for one) take only part of these.
ONNX_EXPORT_KEYWORDS = ("dynamo", "dynamic_shapes", "external_data")


def onnx_export_unavailable() -> str | None:
    """Why ONNX export cannot run with the installed packages (one line), or None when it can."""
    if importlib.util.find_spec("onnxscript") is None:
        return "ONNX export needs the onnx and onnxscript packages (pip install onnx onnxscript)"
    accepted = inspect.signature(torch.onnx.export).parameters
    missing = [keyword for keyword in ONNX_EXPORT_KEYWORDS if keyword not in accepted]
    if missing:
        return (f"ONNX export needs a torch.onnx.export that takes {', '.join(missing)} (torch {torch.__version__} "
                f"does not; newer releases do): upgrade torch, or export with --format torchscript")
    return None


def export_onnx(form: InferenceForm, clip: torch.Tensor, path: str | Path) -> Path:
    """Export `form` to ONNX with a dynamic batch axis named "batch"; input "clip", outputs OUTPUT_NAMES; the weights
    inside the one file (no side file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad(), fresh_rel_pos_cache():
        torch.onnx.export(form.eval(), (clip,), str(path), dynamo=True, input_names=["clip"],
                          output_names=list(OUTPUT_NAMES), dynamic_shapes={"clip": {0: batch}}, external_data=False,
                          verbose=False)
    return path


def run_exported(path: str | Path, fmt: str, clip: torch.Tensor) -> tuple[np.ndarray, ...]:
    """The exported model's three outputs for `clip` (ONNX through onnxruntime on the CPU)."""
    if fmt == "torchscript":
        with torch.no_grad():
            return tuple(output.numpy() for output in torch.jit.load(str(path))(clip))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return tuple(session.run(list(OUTPUT_NAMES), {"clip": clip.numpy()}))


@dataclass
class ExportCheck:
    """Largest absolute difference between the exported and the eager outputs, per output."""

    max_abs_diff: dict[str, float]

    def line(self) -> str:
        return ", ".join(f"{name} {diff:.2e}" for name, diff in self.max_abs_diff.items())


def compare_with_eager(form: InferenceForm, path: str | Path, fmt: str, clip: torch.Tensor) -> ExportCheck:
    with torch.no_grad():
        eager = [output.float().numpy() for output in form.eval()(clip)]
    exported = run_exported(path, fmt, clip)
    return ExportCheck({name: float(np.max(np.abs(a - b))) for name, a, b in zip(OUTPUT_NAMES, eager, exported)})


def interface_description(cfg, form: InferenceForm, clip: torch.Tensor, fmt: str, checkpoint: str) -> dict:
    """What a deployment needs to feed the file and read its outputs (written beside it as JSON)."""
    grid = form.model.token_grid(tuple(clip.shape[2:]))
    return {
        "format": fmt, "checkpoint": checkpoint, "model": cfg.MODEL.MODEL_NAME,
        "input": {"name": "clip", "shape": ["batch", 3, *clip.shape[2:]], "dtype": "float32",
                  "frames": cfg.DATA.NUM_FRAMES, "sampling_rate": cfg.DATA.SAMPLING_RATE,
                  "resize_mode": cfg.DATA.RESIZE_MODE, "mean_rgb": list(cfg.DATA.MEAN), "std_rgb": list(cfg.DATA.STD),
                  "channel_order": "BGR" if cfg.AVA.BGR else "RGB", "pixel_range": "[0, 1] before normalising"},
        "outputs": {"boxes": "[batch, N, 4] cx, cy, w, h as fractions of the clip",
                    "actor_prob": "[batch, N] p(actor)",
                    "class_prob": f"[batch, N, {cfg.MODEL.NUM_CLASSES}] p(class) ({form.activation}); column c = "
                                  f"AVA action id c + 1 (ACT label c)",
                    "tokens": int(np.prod(grid)), "token_grid": list(grid)},
        "postprocess": {"actor_thresh": cfg.BMVIT.ACTOR_THRESH, "nms_iou": cfg.BMVIT.NMS_IOU,
                        "top_k": cfg.BMVIT.TOP_K, "score_rule": cfg.BMVIT.SCORE_RULE,
                        "flip_averaged_inside": form.flip_average},
    }


def write_interface(path: str | Path, description: dict) -> Path:
    target = Path(f"{path}.json")
    target.write_text(json.dumps(description, indent=1) + "\n")
    return target
