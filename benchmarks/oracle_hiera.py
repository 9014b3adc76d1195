#!/usr/bin/env python3
"""Oracle: `slowfast_bmvit.models.hiera.Hiera` against FAIR's official `hiera-transformer`, same weights, same clip.

The official package imports timm, which imports torchvision, which does not load beside this package's CPU torch,
so this runs in an environment of its own (about 5.5 GB; `.venv-oracle/` is git-ignored):

    python3 -m venv .venv-oracle
    .venv-oracle/bin/python -m pip install torch==2.14.1 torchvision==0.29.1 hiera-transformer==0.1.4 \\
        timm==1.0.31 fvcore==0.1.5.post20221221 iopath==0.1.10
    PYTHONPATH=$PWD OMP_NUM_THREADS=2 .venv-oracle/bin/python benchmarks/oracle_hiera.py \\
        [--only NAME ...] [--write-reference tests/data/hiera_tiny_reference.pt]

For each case it builds the official model, gives every tensor of its state_dict random values (its init plus
N(0, 0.02) noise, so that the 0.001-scaled head is not near zero), loads that state_dict into this package's
Hiera with strict=True (key for key, shape for shape), runs both in fp32 on the same random clip (train mode
without dropout or drop path, so the head returns logits; no gradients) and compares:
- logits: the classifier output (mean-pooled last stage -> norm -> head);
- tokens: the official last-stage features (`return_intermediates`, rerolled to [B, T', H', W', C], then `norm`)
  against `forward_features` (permuted to the same layout).
Cases: hiera_base_16x224 and hiera_large_16x224 as published (Q_POOL 3), and both at 16x256 with q_pool 2 (the
BMViT backbones; the official factories fix input_size, so these are built with `Hiera(...)` and the factories'
arguments). The table goes to benchmarks/results/hiera_oracle.md.

`--write-reference` also writes the small tensors that tests/test_hiera.py checks in the default suite: a tiny
video Hiera (width 4, stages 1-2-1-1, two 4x32x32 clips) with q_pool 3, q_pool 2 and joint position embeddings, and the
state_dict of the official video MAE model of the same encoder (decoder of width 8), all produced by the official
code.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from provenance import provenance_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The official video models' fixed arguments (hiera_base_16x224 and the models built on it).
VIDEO_ARGS = dict(q_stride=(1, 2, 2), mask_unit_size=(1, 8, 8), patch_kernel=(3, 7, 7), patch_stride=(2, 4, 4),
                  patch_padding=(1, 3, 3), sep_pos_embed=True)
WIDTHS = {"base": dict(embed_dim=96, num_heads=1, stages=(2, 3, 16, 3)),
          "large": dict(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4))}
# name -> (official factory or None, width, frames, pixels, q_pool)
CASES = {
    "hiera_base_16x224": ("hiera_base_16x224", "base", 16, 224, 3),
    "hiera_large_16x224": ("hiera_large_16x224", "large", 16, 224, 3),
    "hiera_base_16x256_qpool2": (None, "base", 16, 256, 2),
    "hiera_large_16x256_qpool2": (None, "large", 16, 256, 2),
}
TINY = dict(embed_dim=4, num_heads=1, stages=(1, 2, 1, 1), num_classes=5)
TINY_INPUT = (2, 3, 4, 32, 32)


def randomise(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's state_dict with N(0, 0.02) noise added to every tensor (also written back to the model)."""
    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for value in state.values():
            value.add_(torch.randn(value.shape, generator=generator) * 0.02)
    return {key: value.clone() for key, value in state.items()}


def ours_config(width: dict, frames: int, pixels: int, q_pool: int, num_classes: int = 400,
                sep_pos_embed: bool = True):
    from slowfast_bmvit.config import load_config

    return load_config(None, [
        "NUM_GPUS", "0", "MODEL.NUM_CLASSES", str(num_classes), "MODEL.DROPOUT_RATE", "0.0",
        "DATA.NUM_FRAMES", str(frames), "DATA.TRAIN_CROP_SIZE", str(pixels), "DATA.TEST_CROP_SIZE", str(pixels),
        "HIERA.EMBED_DIM", str(width["embed_dim"]), "HIERA.NUM_HEADS", str(width["num_heads"]),
        "HIERA.STAGES", str(list(width["stages"])), "HIERA.Q_POOL", str(q_pool),
        "HIERA.SEP_POS_EMBED", str(sep_pos_embed),
    ])


def official_outputs(model: torch.nn.Module, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [B, classes], normed last-stage tokens [B, T', H', W', C]) of an official Hiera."""
    model.train()
    with torch.no_grad():
        logits, intermediates = model(clip, return_intermediates=True)
        return logits, model.norm(intermediates[-1])


def our_outputs(model: torch.nn.Module, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(logits, normed last-stage tokens [B, T', H', W', C], seconds of the classifier forward) of ours."""
    model.train()
    with torch.no_grad():
        start = time.perf_counter()
        logits = model(clip)
        seconds = time.perf_counter() - start
        tokens, _ = model.forward_features(clip)
        return logits, tokens.permute(0, 2, 3, 4, 1), seconds


def run_case(name: str) -> dict:
    import hiera as official_hiera

    from slowfast_bmvit.models.hiera import Hiera

    factory, width_name, frames, pixels, q_pool = CASES[name]
    width = WIDTHS[width_name]
    torch.manual_seed(0)
    if factory is not None:
        official = getattr(official_hiera, factory)(pretrained=False)
    else:
        official = official_hiera.Hiera(input_size=(frames, pixels, pixels), num_classes=400, q_pool=q_pool,
                                        **VIDEO_ARGS, **width)
    state = randomise(official, seed=1)
    ours = Hiera(ours_config(width, frames, pixels, q_pool))
    ours_keys = ours.state_dict()
    same_layout = list(ours_keys) == list(state) and all(ours_keys[k].shape == v.shape for k, v in state.items())
    ours.load_state_dict(state, strict=True)
    clip = torch.randn(1, 3, frames, pixels, pixels, generator=torch.Generator().manual_seed(2))
    start = time.perf_counter()
    ref_logits, ref_tokens = official_outputs(official, clip)
    official_seconds = time.perf_counter() - start
    logits, tokens, our_seconds = our_outputs(ours, clip)
    row = {
        "name": name, "q_pool": q_pool, "clip": f"{frames}x{pixels}x{pixels}", "keys": len(state),
        "params": sum(v.numel() for v in state.values()), "same_layout": same_layout,
        "token_grid": "x".join(map(str, tokens.shape[1:4])), "channels": tokens.shape[-1],
        "logits_diff": (logits - ref_logits).abs().max().item(), "logits_max": ref_logits.abs().max().item(),
        "tokens_diff": (tokens - ref_tokens).abs().max().item(), "tokens_max": ref_tokens.abs().max().item(),
        "official_s": official_seconds, "ours_s": our_seconds,
    }
    print(row, flush=True)
    return row


def write_reference(path: str) -> None:
    """Tiny official models' weights, a clip and their outputs, for tests/test_hiera.py."""
    import hiera as official_hiera
    from hiera.hiera_mae import MaskedAutoencoderHiera

    frames, height, width = TINY_INPUT[2:]
    clip = torch.randn(*TINY_INPUT, generator=torch.Generator().manual_seed(3))
    reference = {"clip": clip, "tiny": dict(TINY), "made_by": " ".join(["benchmarks/oracle_hiera.py", *sys.argv[1:]]),
                 "official": f"hiera-transformer {official_version()}, torch {torch.__version__}"}
    for variant, q_pool, sep in (("q_pool3", 3, True), ("q_pool2", 2, True), ("joint_pos", 3, False)):
        torch.manual_seed(0)
        args = dict(VIDEO_ARGS, sep_pos_embed=sep)
        model = official_hiera.Hiera(input_size=(frames, height, width), q_pool=q_pool, **args, **TINY)
        state = randomise(model, seed=4)
        # Parameters do not depend on q_pool: the q_pool 2 model gets the same tensors, saved once.
        if variant == "q_pool2" and all(torch.equal(v, reference["q_pool3"]["state_dict"][k]) for k, v in state.items()):
            state = reference["q_pool3"]["state_dict"]
        logits, tokens = official_outputs(model, clip)
        reference[variant] = {"q_pool": q_pool, "sep_pos_embed": sep, "state_dict": state, "logits": logits,
                              "tokens": tokens}
    torch.manual_seed(0)
    mae = MaskedAutoencoderHiera(input_size=(frames, height, width), q_pool=2, decoder_embed_dim=8,
                                 decoder_depth=1, decoder_num_heads=1, **VIDEO_ARGS,
                                 **{k: v for k, v in TINY.items() if k != "num_classes"})
    reference["mae_state_dict"] = randomise(mae, seed=5)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(reference, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def official_version() -> str:
    from importlib.metadata import version

    return version("hiera-transformer")


def write_table(rows: list[dict], out: str, command: str) -> None:
    lines = [
        "# Hiera: this package against the official `hiera-transformer`",
        "",
        "Command (from the repository root, in the oracle environment described in benchmarks/oracle_hiera.py):",
        "",
        f"    {command}",
        "",
        f"Official package: hiera-transformer {official_version()} (torch {torch.__version__}, CPU, fp32).",
        provenance_line(),
        "",
        "Each row: the official model with random weights (its init + N(0, 0.02) noise on every tensor), the same",
        "state_dict loaded into `slowfast_bmvit.models.hiera.Hiera` with strict=True, one random clip. `logits`: the",
        "classifier outputs (train mode, no dropout / drop path); `tokens`: the normed last-stage tokens in raster",
        "order (official `return_intermediates` + `norm` against `forward_features`). Differences are max |a - b|,",
        "beside the largest |value| they are measured on. The last two columns time one forward of each model",
        "(the official one with `return_intermediates`); single timings, indicative only.",
        "",
        "| case | q_pool | clip | state_dict keys (same names, shapes) | params | tokens (T'xH'xW' x C) | "
        "max abs diff logits (max abs) | max abs diff tokens (max abs) | official s | ours s |",
        "|---|---:|---|---|---:|---|---|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['q_pool']} | {row['clip']} | {row['keys']} ({'yes' if row['same_layout'] else 'NO'}) "
            f"| {row['params']:,} | {row['token_grid']} x {row['channels']} | {row['logits_diff']:.2e} "
            f"({row['logits_max']:.2f}) | {row['tokens_diff']:.2e} ({row['tokens_max']:.2f}) | "
            f"{row['official_s']:.1f} | {row['ours_s']:.1f} |"
        )
    worst = max(max(r["logits_diff"], r["tokens_diff"]) for r in rows)
    lines += ["", f"Largest difference over all rows: {worst:.2e} (acceptance: <= 1e-4 in fp32).", "",
              "The default test suite checks a tiny video Hiera (q_pool 3, q_pool 2, joint position embeddings) and",
              "an official MAE state_dict against tests/data/hiera_tiny_reference.pt (tests/test_hiera.py), written",
              "in the same environment by",
              "",
              "    PYTHONPATH=$PWD .venv-oracle/bin/python benchmarks/oracle_hiera.py --only "
              "--write-reference tests/data/hiera_tiny_reference.pt"]
    with open(out, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), default=None, help="cases to run (default: all)")
    parser.add_argument("--write-reference", default=None, help="also write the tiny reference tensors here")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "hiera_oracle.md"))
    args = parser.parse_args()
    if args.write_reference:
        write_reference(args.write_reference)
    names = args.only if args.only is not None else list(CASES)
    rows = [run_case(name) for name in names]
    if rows:
        command = "PYTHONPATH=$PWD OMP_NUM_THREADS=2 .venv-oracle/bin/python benchmarks/oracle_hiera.py " + " ".join(
            sys.argv[1:])
        write_table(rows, args.out, command.strip())
        if max(max(r["logits_diff"], r["tokens_diff"]) for r in rows) > 1e-4 or not all(r["same_layout"] for r in rows):
            sys.exit("oracle: a difference above 1e-4 or a state_dict layout mismatch")


if __name__ == "__main__":
    main()
