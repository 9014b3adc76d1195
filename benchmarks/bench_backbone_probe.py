#!/usr/bin/env python3
"""How fast a backbone learns SynthAVA's actions, detection left out: a classifier on ground-truth person crops.

Every annotated person of a SynthAVA split is cut out of its clip (the demo's 8 frames x stride 4 around the
keyframe; a square of 1.6x the box's longer side centred on the keyframe box, resized to --crop pixels), and a
backbone + linear layer is trained on the 9 evaluated classes with sigmoid BCE (AdamW, constant lr, random
horizontal flips). After each epoch it prints the val class mAP: the mean over the classes of the AP of the
per-person scores (`error_analysis.average_precision`), the "class mAP given box" of tools/diagnose_bmvit.py
without the detector. Backbones:
    mvit: configs/SYNTH/BMViT_demo.yaml's MViT (plus --opts overrides, e.g. MVIT.CONV_STEM_CHANNELS [16,32] ...),
          mean of its output tokens -> linear;
    cnn:  a 4-layer 3D CNN with BatchNorm (3x5x5 then 3x3x3 kernels, 32-64-128-128 channels), global average
          pooling -> linear: the reference for how quickly the data can be learned.

    .venv/bin/python benchmarks/bench_backbone_probe.py --backbone mvit --crop 112 --epochs 3 [--opts K V ...]

One row per run is appended to benchmarks/results/backbone_probe.md (per-epoch val mAP, wall time, date and machine,
command).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from provenance import machine_description, today

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from slowfast_bmvit.config import assert_and_infer_cfg, load_config  # noqa: E402
from slowfast_bmvit.datasets.frame_io import decode_image  # noqa: E402
from slowfast_bmvit.datasets.synthetic import SynthAvaPaths  # noqa: E402
from slowfast_bmvit.datasets.synthetic_render import EVALUATED_CLASSES, FPS  # noqa: E402
from slowfast_bmvit.evaluation.error_analysis import average_precision  # noqa: E402
from slowfast_bmvit.models.mvit import MViT  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "SYNTH", "BMViT_demo.yaml")
RESULTS = os.path.join(REPO, "benchmarks", "results", "backbone_probe.md")
FRAME_OFFSETS = tuple(range(-16, 16, 4))  # the demo's 8 x 4 sampling around the keyframe
CROP_SCALE = 1.6  # crop side / longer box side: room for the motion over the clip
CLASS_IDS = [c[0] for c in EVALUATED_CLASSES]


def load_crops(paths: SynthAvaPaths, split: str, crop: int, mean: float,
               std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(clips [P, 3, 8, crop, crop] normalised, labels [P, 9] multi-hot) for the P annotated persons of a split."""
    csv = os.path.join(paths.annotation_dir, paths.train_groundtruth if split == "train" else paths.val_groundtruth)
    rows = pd.read_csv(csv, header=None, names=["video", "sec", "x1", "y1", "x2", "y2", "action", "person"])
    clips, labels = [], []
    for (video, sec), keyframe_rows in tqdm(rows.groupby(["video", "sec"]), desc=f"{split} crops", unit="keyframe"):
        keyframe = (int(sec) - 900) * FPS
        images = []  # read once for every person of the keyframe
        for offset in FRAME_OFFSETS:
            path = os.path.join(paths.frame_dir, video, f"{video}_{keyframe + offset + 1:06d}.jpg")
            image = decode_image(path)
            if image is None:
                raise FileNotFoundError(f"cannot read frame {path}")
            images.append(image)
        height, width = images[0].shape[:2]
        for _, group in keyframe_rows.groupby("person"):
            x1, y1, x2, y2 = group.iloc[0][["x1", "y1", "x2", "y2"]].astype(float)
            scale = crop / (CROP_SCALE * max((x2 - x1) * width, (y2 - y1) * height))
            cx, cy = (x1 + x2) / 2 * width, (y1 + y2) / 2 * height
            warp = np.float32([[scale, 0, crop / 2 - cx * scale], [0, scale, crop / 2 - cy * scale]])
            clips.append(np.stack([cv2.warpAffine(image, warp, (crop, crop), borderMode=cv2.BORDER_REPLICATE)
                                   for image in images]))
            labels.append(np.isin(CLASS_IDS, group["action"].to_numpy()).astype(np.float32))
    clip_tensor = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float().div_(255).sub_(mean).div_(std)
    return clip_tensor, torch.from_numpy(np.stack(labels))


class MViTProbe(nn.Module):
    """MViT tokens [B, C, T', H', W'] -> mean over the grid -> Linear(C, num_classes)."""

    def __init__(self, cfg, num_classes: int):
        super().__init__()
        self.backbone = MViT(cfg, with_head=False)
        self.fc = nn.Linear(self.backbone.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.backbone.forward_features(x)
        return self.fc(tokens.mean(dim=(2, 3, 4)))


def cnn_probe(num_classes: int) -> nn.Module:
    """A small 3D CNN with BatchNorm (about 0.8 M parameters)."""
    def block(c_in, c_out, kernel, stride, padding):
        return [nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm3d(c_out), nn.ReLU()]
    return nn.Sequential(*block(3, 32, (3, 5, 5), (1, 2, 2), (1, 2, 2)), *block(32, 64, 3, (1, 2, 2), 1),
                         *block(64, 128, 3, 2, 1), *block(128, 128, 3, 2, 1),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(128, num_classes))


def class_map(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(clips[i:i + 32]) for i in range(0, len(clips), 32)]).sigmoid().numpy()
    aps = [average_precision(scores[:, c], labels[:, c].numpy()) for c in range(labels.shape[1])]
    return float(np.nanmean(aps)), aps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=("mvit", "cnn"), default="mvit")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides for the MViT (KEY VALUE ...)")
    parser.add_argument("--root", default=None, help="SynthAVA root (default: the demo config's SYNTH.ROOT)")
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default=None, help="name of the row (default: backbone and overrides)")
    args = parser.parse_args()

    cfg = load_config(CONFIG, ["DATA.TRAIN_CROP_SIZE", str(args.crop), "DATA.TEST_CROP_SIZE", str(args.crop),
                               *args.opts])
    assert_and_infer_cfg(cfg)
    root = args.root or os.path.join(REPO, cfg.SYNTH.ROOT)
    paths = SynthAvaPaths.under(root)
    if not os.path.isfile(os.path.join(root, paths.manifest)):
        sys.exit(f"no SynthAVA at {root}: run `make demo` (or tools/make_synth_ava.py) first")
    torch.manual_seed(args.seed)
    mean, std = cfg.DATA.MEAN[0], cfg.DATA.STD[0]
    train_x, train_y = load_crops(paths, "train", args.crop, mean, std)
    val_x, val_y = load_crops(paths, "val", args.crop, mean, std)
    model = MViTProbe(cfg, len(CLASS_IDS)) if args.backbone == "mvit" else cnn_probe(len(CLASS_IDS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    curve, start = [], time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for i in tqdm(range(0, len(order), args.batch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="step"):
            index = order[i:i + args.batch]
            clips = train_x[index]
            if torch.rand(()) < 0.5:
                clips = clips.flip(-1)
            loss = F.binary_cross_entropy_with_logits(model(clips), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        value, aps = class_map(model, val_x, val_y)
        curve.append(value)
        print(f"epoch {epoch + 1}: val class mAP {value:.3f} ("
              + ", ".join(f"{c[1].split(' ')[0]} {a:.2f}" for c, a in zip(EVALUATED_CLASSES, aps)) + ")", flush=True)
    minutes = (time.time() - start) / 60
    label = args.label or (args.backbone + (" " + " ".join(args.opts) if args.opts else ""))
    command = "benchmarks/bench_backbone_probe.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_header = not os.path.exists(RESULTS)
    with open(RESULTS, "a", encoding="utf-8") as f:
        if write_header:
            f.write("# Backbone probe: val class mAP of a classifier on SynthAVA ground-truth person crops\n\n"
                    "Written by benchmarks/bench_backbone_probe.py (see its docstring); SynthAVA of the demo config, "
                    f"{len(train_x)} train / {len(val_x)} val persons; trained on the CPU.\n\n"
                    "| probe | crop | batch | lr | val class mAP after each epoch | train min | measured | command |\n"
                    "|---|---:|---:|---:|---|---:|---|---|\n")
        f.write(f"| {label} | {args.crop} | {args.batch} | {args.lr:g} | "
                + " / ".join(f"{v:.3f}" for v in curve)
                + f" | {minutes:.1f} | {today()} on {machine_description()}, {torch.get_num_threads()} torch thread(s) "
                f"| `{command}` |\n")
    print(f"row appended to {RESULTS}")


if __name__ == "__main__":
    main()
