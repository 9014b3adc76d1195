#!/usr/bin/env python3
"""Speed, memory and compute of the detection models on the CPU or a CUDA GPU, one table row per setting.

    python benchmarks/bench_speed.py --device cpu --models ava --impls folded sdpa explicit --train-batch 1
    python benchmarks/bench_speed.py --device cuda --models ava two_stage demo --dtypes bf16 --train-batch auto
    python benchmarks/bench_speed.py --rows ava:folded,sdpa,explicit:bf16:off:off ava:folded:bf16:on:off ...

Models: "ava" (configs/AVA/BMViT_MViTv2_S.yaml, 16x256), "two_stage" (configs/AVA/MViTv2_S_two_stage.yaml, MViTv2-S +
RoI head at 16x224 on 2 given boxes a clip) and "demo" (configs/SYNTH/BMViT_demo.yaml). For every (model, dtype,
compile, activation checkpointing) the attention implementations of --impls run on ONE model (same weights,
`attention_impl` switches between them) and their timed iterations alternate, so that the ratios between them are
measured side by side even when other processes share the CPU. Per row:
- inference: eval mode under torch.inference_mode: batch-1 latency (median) and clips/s at --infer-batch;
- training: one full step as the trainer runs it (forward, bipartite matching loss or RoI BCE, backward, gradient
  clipping, AdamW) on synthetic clips with 1-3 persons each, at --train-batch (CUDA: "auto" doubles the batch until
  it no longer fits, then times the largest that did); clips/s from the median step time;
- peak memory of a training step (CUDA: max_memory_allocated; CPU: peak resident set during the step minus before);
- GFLOPs: fvcore multiply-adds of one clip's forward (utils/complexity.py, attention counted unpadded);
- MFU = 3 x 2 x multiply-adds per clip x training clips/s / the measured matrix rate (CUDA: a bf16 8192^3 matmul on
  random data; CPU: a float32 2048^3 matmul at the same thread count);
- the SDPA kernel that ran (utils/profiling.sdpa_kernels) and how far the backbone's output tokens of a batch-1
  clip are from those of "explicit" (largest absolute difference, and ||difference|| / ||explicit||);
- warm-up seconds: the untimed first calls of the group (with torch.compile, its compilation), shared by its rows;
  --compiled-inference off times compiled groups in training only, one compilation instead of three.
On the CPU the table also gives CPU seconds per batch-1 clip (process time): with one thread it is the throughput
measure that other jobs on the machine disturb least. --loss-share B times the bipartite matching and the loss
(forward and backward) against a whole training step at batch B on the first model; --profile K lists the K kernels
that take the most device time in a CUDA training step. The results are appended to --out with the command,
machine, versions and date; --json also writes them machine-readable after every group, so that a run cut short
keeps what it measured (--from-json renders such a file into --out).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from typing import Any, Callable

import torch

from provenance import cpu_model, today

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from slowfast_bmvit.config import load_config  # noqa: E402
from slowfast_bmvit.engine.optimizer import construct_optimizer  # noqa: E402
from slowfast_bmvit.engine.task import DetectionTask  # noqa: E402
from slowfast_bmvit.models import get_model_class  # noqa: E402
from slowfast_bmvit.models.attention import attention_impl  # noqa: E402
from slowfast_bmvit.utils.complexity import count_gflops  # noqa: E402
from slowfast_bmvit.utils.profiling import sdpa_kernels  # noqa: E402

MODELS = {
    "ava": ("configs/AVA/BMViT_MViTv2_S.yaml", "BMViT MViTv2-S (AVA, 16x256)"),
    "two_stage": ("configs/AVA/MViTv2_S_two_stage.yaml", "MViTv2-S + RoI head (AVA, 16x224, 2 boxes)"),
    "demo": ("configs/SYNTH/BMViT_demo.yaml", "BMViT demo (SynthAVA, 8x112)"),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BOXES_PER_CLIP = 2  # RoIs a clip for the two-stage model (AVA has about 2-3 persons a keyframe)


# ---------------------------------------------------------------------------------------------- inputs and steps


def model_cfg(name: str, device: torch.device, act_checkpoint: bool):
    path = os.path.join(REPO, MODELS[name][0])
    return load_config(path, ["NUM_GPUS", "1" if device.type == "cuda" else "0", "MODEL.ACT_CHECKPOINT",
                              str(act_checkpoint)])


def synthetic_batch(cfg, batch: int, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """A collated detection batch of random clips with 1-3 persons a clip (two-stage: BOXES_PER_CLIP RoIs a clip)."""
    generator = torch.Generator().manual_seed(seed)
    size, frames, classes = cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.NUM_FRAMES, cfg.MODEL.NUM_CLASSES
    inputs = torch.randn(batch, 3, frames, size, size, generator=generator)
    targets, rois, labels = [], [], []
    for index in range(batch):
        persons = BOXES_PER_CLIP if cfg.MODEL.MODEL_NAME == "MViTRoI" else 1 + index % 3
        centre = 0.25 + 0.5 * torch.rand(persons, 2, generator=generator)
        extent = 0.1 + 0.3 * torch.rand(persons, 2, generator=generator)
        label = (torch.rand(persons, classes, generator=generator) < 0.05).float()
        label[:, 0] = 1.0
        targets.append({"boxes": torch.cat([centre, extent], 1).to(device),
                        "labels": label.to(device), "actor": torch.ones(persons, dtype=torch.bool, device=device)})
        corners = torch.cat([centre - extent / 2, centre + extent / 2], 1) * size
        rois.append(torch.cat([torch.full((persons, 1), float(index)), corners], 1))
        labels.append(label)
    return {"inputs": inputs.to(device), "targets": targets, "boxes": torch.cat(rois).to(device),
            "labels": torch.cat(labels).to(device)}


def autocast(device: torch.device, dtype: torch.dtype):
    return nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def forward(model, batch: dict[str, Any]):
    if getattr(model, "uses_input_boxes", False):
        return model(batch["inputs"], batch["boxes"])
    return model(batch["inputs"])


def backbone_tokens(model, batch: dict[str, Any]) -> torch.Tensor:
    """The backbone's output tokens in float32 on the host (where the attention implementations can differ: at
    initialisation the heads squash differences, BMViT's box head even starts at zero)."""
    return model.backbone.forward_features(batch["inputs"])[0].float().cpu()


class Trainer:
    """One training step as engine/trainer.py runs it (loss, backward, clipping, optimizer step)."""

    def __init__(self, cfg, model, device: torch.device, dtype: torch.dtype):
        self.cfg, self.model, self.device, self.dtype = cfg, model, device, dtype
        self.task = DetectionTask(cfg, model).to(device)
        self.optimizer = construct_optimizer(model, cfg)
        self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def step(self, batch: dict[str, Any]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.dtype):
            loss = self.task.losses(self.model, batch)["loss"]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.SOLVER.CLIP_GRAD_L2NORM:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.SOLVER.CLIP_GRAD_L2NORM)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()


# ---------------------------------------------------------------------------------------------- clocks and memory


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call, the device drained before and after."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


_LIBC = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def peak_memory_gib(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory of one call: CUDA max_memory_allocated, or the CPU's peak resident set minus the one before."""
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**30
    _LIBC.malloc_trim(0)  # hand freed heap pages back, so that this step's allocations show in the RSS again
    with open("/proc/self/clear_refs", "w") as clear:  # resets VmHWM to the current RSS
        clear.write("5")
    before = _vm_kib("VmRSS:")
    fn()
    return (_vm_kib("VmHWM:") - before) / 2**20


def matrix_rate(device: torch.device, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a large matmul on random data (CUDA: bf16 8192^3; CPU: float32 2048^3), median of runs."""
    size, repeats = (8192, 10) if device.type == "cuda" else (2048, 5)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    seconds = [timed(lambda: a @ b, device)[0] for _ in range(repeats)]
    return 2 * size**3 / statistics.median(seconds)


# Besides torch's own OutOfMemoryError, cuBLAS and cuDNN report a failed workspace allocation in their own words
# (cuDNN often as "no valid engine/algorithm" when every candidate needed more memory than was left).
_OOM_MESSAGES = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
                 "Unable to find a valid cuDNN algorithm")


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or any(text in str(error) for text in _OOM_MESSAGES)


# ---------------------------------------------------------------------------------------------- one group of rows


def largest_batch(trainer: Trainer, cfg, device: torch.device, start: int, limit: int) -> int:
    """The largest batch (start, 2 x start, ... <= limit) whose training step fits in device memory."""
    fits, batch = 0, start
    while batch <= limit:
        try:
            trainer.step(synthetic_batch(cfg, batch, device))
            synchronize(device)
            fits = batch
            batch *= 2
        except RuntimeError as error:
            if not is_oom(error):
                raise
            break
        finally:
            trainer.optimizer.zero_grad(set_to_none=True)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if not fits:
        raise RuntimeError(f"a training step of batch {start} does not fit in device memory")
    return fits


def run_group(args, name: str, impls: list[str], dtype_name: str, compiled: bool, checkpointing: bool,
              device: torch.device, gflops: dict[str, float], peak_rate: float) -> list[dict[str, Any]]:
    """Rows of `impls` for one (model, dtype, compile, checkpointing); their timed iterations interleaved."""
    dtype = DTYPES[dtype_name]
    cfg = model_cfg(name, device, checkpointing)
    torch.manual_seed(0)
    model = get_model_class(cfg.MODEL.MODEL_NAME)(cfg)
    if name not in gflops:
        size = cfg.DATA.TEST_CROP_SIZE
        clip = torch.zeros(1, 3, cfg.DATA.NUM_FRAMES, size, size)
        inputs = (clip, synthetic_batch(cfg, 1, torch.device("cpu"))["boxes"]) if getattr(
            model, "uses_input_boxes", False) else (clip,)
        gflops[name] = count_gflops(model, inputs)
    model.to(device)
    if compiled:
        model.compile()
    rows = {impl: {"model": name, "device": device.type, "attention": impl, "dtype": dtype_name,
                   "compile": compiled, "act_checkpoint": checkpointing, "gflops": gflops[name]} for impl in impls}

    one = synthetic_batch(cfg, 1, device, seed=1)
    started = time.perf_counter()
    # Checkpointing changes training only; --compiled-inference off leaves a compiled group one graph to compile
    # (the training step's) instead of three (batch 1, --infer-batch, training).
    if not checkpointing and not (compiled and args.compiled_inference == "off"):
        model.eval()
        many = synthetic_batch(cfg, args.infer_batch, device, seed=2) if args.infer_batch > 1 else None
        outputs = {}
        with torch.inference_mode(), autocast(device, dtype):
            for impl in impls:
                with attention_impl(model, impl):
                    for _ in range(args.warmup):
                        forward(model, one)
                    outputs[impl] = backbone_tokens(model, one)
                    rows[impl]["sdpa_kernel"] = "+".join(sdpa_kernels(lambda: forward(model, one))) or "-"
                    if many is not None:
                        forward(model, many)
            warmed = time.perf_counter()
            latency = {impl: [] for impl in impls}
            throughput = {impl: [] for impl in impls}
            for _ in range(args.iters):
                for impl in impls:
                    with attention_impl(model, impl):
                        latency[impl].append(timed(lambda: forward(model, one), device))
                        if many is not None:
                            throughput[impl].append(timed(lambda: forward(model, many), device)[0])
        for impl in impls:
            wall = statistics.median(t[0] for t in latency[impl])
            rows[impl]["latency_ms"] = 1000 * wall
            rows[impl]["cpu_s_per_clip"] = statistics.median(t[1] for t in latency[impl])
            rows[impl]["infer_batch"] = args.infer_batch
            rows[impl]["infer_clips_s"] = (args.infer_batch / statistics.median(throughput[impl]) if many is not None
                                           else 1 / wall)
            if "explicit" in outputs:
                difference = outputs[impl] - outputs["explicit"]
                rows[impl]["max_abs_diff"] = difference.abs().max().item()
                rows[impl]["rel_error"] = (difference.norm() / outputs["explicit"].norm()).item()

        for impl in impls:
            rows[impl]["warmup_s"] = warmed - started
    if args.train_batch != "0":
        model.train()
        trainer = Trainer(cfg, model, device, dtype)
        batches = {}
        started = time.perf_counter()
        for impl in impls:
            with attention_impl(model, impl):
                if args.train_batch == "auto":
                    # A compiled group reuses the batch its eager twin found (each new batch size recompiles).
                    key = (name, impl, dtype_name, checkpointing)
                    if key not in args.found_batches:
                        args.found_batches[key] = largest_batch(trainer, cfg, device, args.auto_start,
                                                                args.auto_limit)
                    batches[impl] = args.found_batches[key]
                else:
                    batches[impl] = int(args.train_batch)
                data = synthetic_batch(cfg, batches[impl], device, seed=3)
                for _ in range(args.warmup):
                    trainer.step(data)
                rows[impl]["peak_mem_gib"] = peak_memory_gib(lambda: trainer.step(data), device)
        for impl in impls:
            rows[impl]["warmup_s"] = rows[impl].get("warmup_s", 0.0) + time.perf_counter() - started
        steps = {impl: [] for impl in impls}
        by_size = {size: synthetic_batch(cfg, size, device, seed=3) for size in set(batches.values())}
        data = {impl: by_size[batches[impl]] for impl in impls}  # one copy per batch size: less memory held
        for _ in range(args.iters):
            for impl in impls:
                with attention_impl(model, impl):
                    steps[impl].append(timed(lambda: trainer.step(data[impl]), device)[0])
        for impl in impls:
            clips_s = batches[impl] / statistics.median(steps[impl])
            rows[impl].update(train_batch=batches[impl], train_clips_s=clips_s,
                              mfu=6e9 * gflops[name] * clips_s / peak_rate)
        del trainer, data, by_size
    model = None  # frees it before the next group (assigned, not deleted: the lambdas above close over it)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return list(rows.values())


# ---------------------------------------------------------------------------------------------- extra sections


def loss_share(args, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Seconds of a whole training step and of the matching + loss alone (forward and backward) at one batch."""
    name = args.models[0]
    cfg = model_cfg(name, device, False)
    torch.manual_seed(0)
    model = get_model_class(cfg.MODEL.MODEL_NAME)(cfg).to(device).train()
    trainer = Trainer(cfg, model, device, dtype)
    batch = synthetic_batch(cfg, args.loss_share, device, seed=4)
    small = synthetic_batch(cfg, 1, device, seed=4)
    trainer.step(small)  # warm-up (allocator, kernels) at batch 1: a CPU step at a large batch takes minutes
    step_seconds = [timed(lambda: trainer.step(batch), device)[0] for _ in range(args.loss_share_steps)]
    with torch.no_grad(), autocast(device, dtype):
        outputs = model(batch["inputs"])
    leaves = {key: value.detach().float().requires_grad_(key != "token_centres") for key, value in outputs.items()}

    def matching_and_loss() -> None:
        losses = trainer.task.criterion(leaves, batch["targets"])
        losses["loss"].backward()

    for _ in range(3):
        matching_and_loss()
    loss_seconds = [timed(matching_and_loss, device)[0] for _ in range(20)]
    step, loss = statistics.median(step_seconds), statistics.median(loss_seconds)
    tokens = outputs["pred_boxes"].shape[1]
    return {"model": name, "batch": args.loss_share, "tokens": tokens, "step_s": step, "loss_s": loss,
            "share": loss / step}


def profile_top_kernels(args, device: torch.device, dtype: torch.dtype, limit: int) -> list[tuple[str, float, int]]:
    """(kernel name, percent of device time, calls) of the `limit` costliest kernels of 3 training steps."""
    from torch.profiler import ProfilerActivity, profile

    name = args.models[0]
    cfg = model_cfg(name, device, False)
    model = get_model_class(cfg.MODEL.MODEL_NAME)(cfg).to(device).train()
    trainer = Trainer(cfg, model, device, dtype)
    batch = synthetic_batch(cfg, args.profile_batch, device)
    for _ in range(2):
        trainer.step(batch)
    synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        for _ in range(3):
            trainer.step(batch)
        synchronize(device)
    events = [e for e in trace.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.self_device_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    return [(e.key, 100.0 * e.self_device_time_total / total, e.count // 3) for e in events[:limit]]


# ---------------------------------------------------------------------------------------------- report


def machine_line(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), "
                f"CUDA {torch.version.cuda}, {os.cpu_count()} CPUs")
    return (f"{cpu_model()} CPU, {os.cpu_count()} logical CPUs (load average {os.getloadavg()[0]:.1f} at the start), "
            f"{torch.get_num_threads()} torch thread(s)")


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(args, device: torch.device, rows: list[dict], peak_rate: float, share: dict | None,
           kernels: list | None, machine: str, command: str, versions: str, date: str) -> str:
    rate_kind = "bf16 8192^3" if device.type == "cuda" else f"float32 2048^3, {torch.get_num_threads()} thread(s)"
    lines = [
        f"## {date}, {device.type.upper()}: {machine}",
        "",
        f"Command: `{command}`",
        "",
        f"Versions: {versions}. Matrix rate for MFU "
        f"(measured, {rate_kind} matmul): {peak_rate / 1e12:.3f} TFLOP/s. Medians of {args.iters} interleaved "
        f"iterations after {args.warmup} warm-up(s).",
        "",
        "| model | attention | SDPA kernel | dtype | compile | act. ckpt | GFLOPs/clip | batch-1 latency ms "
        "| CPU s/clip | infer batch | infer clips/s | train batch | train clips/s | peak mem GiB | MFU "
        "| tokens vs explicit: max abs diff, rel. error | warm-up s |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['attention']} | {row.get('sdpa_kernel', '-')} | {row['dtype']} | "
            f"{'on' if row['compile'] else 'off'} | {'on' if row['act_checkpoint'] else 'off'} | "
            f"{row['gflops']:.1f} | {fmt(row.get('latency_ms'), '.1f')} | "
            f"{fmt(row.get('cpu_s_per_clip') if device.type == 'cpu' else None, '.3g')} | "
            f"{fmt(row.get('infer_batch'), 'd')} | {fmt(row.get('infer_clips_s'), '.3g')} | "
            f"{fmt(row.get('train_batch'), 'd')} | {fmt(row.get('train_clips_s'), '.3g')} | "
            f"{fmt(row.get('peak_mem_gib'), '.2f')} | {fmt(row.get('mfu'), '.1%')} | "
            f"{fmt(row.get('max_abs_diff'), '.1e')}, {fmt(row.get('rel_error'), '.1e')} | "
            f"{fmt(row.get('warmup_s'), '.0f')} |")
    by_key = {(r["model"], r["dtype"], r["compile"], r["act_checkpoint"], r["attention"]): r for r in rows}
    ratios = []
    for row in rows:
        base = by_key.get((row["model"], row["dtype"], row["compile"], row["act_checkpoint"], "explicit"))
        if base is None or row is base or "latency_ms" not in row:
            continue
        # Three decimals: the target this is read against (1.3x) must not be met by rounding.
        speedup = base["latency_ms"] / row["latency_ms"]
        text = (f"{row['model']} {row['dtype']} {row['attention']}: batch-1 forward {speedup:.3f}x the explicit "
                f"path's throughput (wall)")
        if device.type == "cpu":
            text += f", {base['cpu_s_per_clip'] / row['cpu_s_per_clip']:.3f}x (CPU time)"
        if "train_clips_s" in row and "train_clips_s" in base:
            text += f"; training {row['train_clips_s'] / base['train_clips_s']:.3f}x"
        ratios.append("- " + text)
    if ratios:
        lines += ["", "Side by side (same model, same run):", *ratios]
    if share is not None:
        lines += ["", f"Matching + loss (forward and backward) against a whole training step, {share['model']} at "
                      f"batch {share['batch']} with {share['tokens']} tokens: {1000 * share['loss_s']:.1f} ms of "
                      f"{share['step_s']:.2f} s, {share['share']:.2%} of the step."]
    if kernels:
        lines += ["", f"Top kernels of a training step ({args.models[0]}, batch {args.profile_batch}, "
                      f"{args.dtypes[0]}):", "", "| kernel | share of device time | calls a step |", "|---|---:|---:|"]
        lines += [f"| `{name[:110]}` | {share_:.1f}% | {calls} |" for name, share_, calls in kernels]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["ava"])
    parser.add_argument("--impls", nargs="+", default=["folded", "sdpa", "explicit"],
                        choices=["folded", "sdpa", "explicit", "auto"])
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None,
                        help="default: fp32 on the CPU, bf16 on CUDA")
    parser.add_argument("--compile", nargs="+", choices=["off", "on"], default=["off"])
    parser.add_argument("--act-checkpoint", nargs="+", choices=["off", "on"], default=["off"])
    parser.add_argument("--rows", nargs="+", default=None, metavar="MODEL:IMPLS:DTYPE:COMPILE:CKPT",
                        help="groups to run instead of the product of the flags above, in this order, e.g. "
                             "ava:folded,sdpa,explicit:bf16:off:off ava:folded:bf16:on:off")
    parser.add_argument("--infer-batch", type=int, default=1)
    parser.add_argument("--train-batch", default="1", help='clips a training step, "auto" (CUDA) or 0 to skip')
    parser.add_argument("--auto-start", type=int, default=8)
    parser.add_argument("--auto-limit", type=int, default=256)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU torch threads (0: torch's default)")
    parser.add_argument("--loss-share", type=int, default=0, help="batch for the matching + loss share (0: skip)")
    parser.add_argument("--loss-share-steps", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, help="CUDA: list this many top kernels (0: skip)")
    parser.add_argument("--profile-batch", type=int, default=16)
    parser.add_argument("--compiled-inference", choices=["on", "off"], default="on",
                        help="off: compiled groups time training only (one compilation instead of three)")
    parser.add_argument("--time-budget", type=float, default=0, help="seconds; skip groups that would start later")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "speed.md"))
    parser.add_argument("--json", default="", help="also write the rows here as JSON (rewritten after each group)")
    parser.add_argument("--from-json", default="", help="only render a --json file of an earlier run into --out")
    args = parser.parse_args()
    args.found_batches = {}
    if args.from_json:
        with open(args.from_json) as handle:
            saved = json.load(handle)
        args.__dict__.update(saved["args"])
        # Files written before the date was saved render with today's.
        write_report(args, torch.device(saved["device"]), saved["rows"], saved["matrix_rate"], saved["loss_share"],
                     saved["top_kernels"], saved["machine"], saved["command"], saved["versions"],
                     saved.get("date", today()))
        return

    device = torch.device(args.device)
    if args.train_batch == "auto" and device.type != "cuda":
        parser.error("--train-batch auto searches the largest batch that fits in GPU memory: give a number on the CPU")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dtypes = args.dtypes or (["bf16"] if device.type == "cuda" else ["fp32"])
    started = time.perf_counter()
    peak_rate = matrix_rate(device, torch.bfloat16)
    print(f"matrix rate {peak_rate / 1e12:.3f} TFLOP/s", flush=True)
    groups = [(name, list(args.impls), dtype_name, compiled, checkpointing) for name in args.models
              for dtype_name in args.dtypes for compiled in args.compile for checkpointing in args.act_checkpoint]
    if args.rows:
        groups = []
        for spec in args.rows:
            name, impls, dtype_name, compiled, checkpointing = spec.split(":")
            if name not in MODELS or dtype_name not in DTYPES or {compiled, checkpointing} - {"on", "off"}:
                parser.error(f"--rows {spec}: expected MODEL:IMPLS:DTYPE:on|off:on|off")
            groups.append((name, impls.split(","), dtype_name, compiled, checkpointing))
        args.models = list(dict.fromkeys(group[0] for group in groups))
        args.dtypes = list(dict.fromkeys(group[2] for group in groups))
    if any(group[3] == "on" for group in groups) and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # A cache of its own, empty: the warm-up column then holds a cold compilation, not a cache read left by an
        # earlier run (set TORCHINDUCTOR_CACHE_DIR to time a warm one).
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_speed_inductor_")
    machine, command = machine_line(device), "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])
    versions, date = f"python {platform.python_version()}, torch {torch.__version__}", today()
    rows, gflops, failed = [], {}, []

    def save_json() -> None:
        if args.json:
            kept = {key: getattr(args, key) for key in ("iters", "warmup", "models", "dtypes", "profile_batch")}
            with open(args.json, "w") as handle:
                json.dump({"args": kept, "device": device.type, "machine": machine, "command": command,
                           "versions": versions, "date": date, "rows": rows,
                           "loss_share": share, "top_kernels": kernels, "matrix_rate": peak_rate}, handle, indent=1)

    # The short extra sections first, so that a run stopped at its time limit still has them.
    dtype = DTYPES[args.dtypes[0]]
    share = loss_share(args, device, dtype) if args.loss_share else None
    kernels = profile_top_kernels(args, device, dtype, args.profile) if args.profile and device.type == "cuda" else None
    save_json()
    for name, impls, dtype_name, compiled, checkpointing in groups:
        if args.time_budget and time.perf_counter() - started > args.time_budget:
            print(f"time budget spent: skipping {name} {impls} {dtype_name} compile {compiled} ckpt {checkpointing}",
                  flush=True)
            continue
        try:
            group = run_group(args, name, impls, dtype_name, compiled == "on", checkpointing == "on", device,
                              gflops, peak_rate)
        except Exception as error:  # noqa: BLE001  (one failed group must not cost the others' rows)
            traceback.print_exc()
            failed.append(f"{name} {','.join(impls)} {dtype_name} compile {compiled} ckpt {checkpointing}: "
                          f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            print(f"group failed: {failed[-1]}", flush=True)
            group = None
        if group is None:  # out of the except block, so that the traceback's frames (and tensors) are gone
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        for row in group:
            print(json.dumps(row), flush=True)
        rows += group
        save_json()
    write_report(args, device, rows, peak_rate, share, kernels, machine, command, versions, date)
    if failed:
        with open(args.out, "a") as handle:
            handle.write("\nGroups that failed in this run: " + "; ".join(failed) + ".\n")
        raise SystemExit("groups that failed (their tracebacks above): " + "; ".join(failed))


def write_report(args, device: torch.device, rows: list[dict], peak_rate: float, share: dict | None,
                 kernels: list | None, machine: str, command: str, versions: str, date: str) -> None:
    """Print the section (dated `date`, the day the run started) and append it to --out."""
    text = report(args, device, rows, peak_rate, share, kernels, machine, command, versions, date)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        fresh = not os.path.exists(args.out)
        with open(args.out, "a") as handle:
            if fresh:
                handle.write("# Speed, memory and compute (benchmarks/bench_speed.py)\n\n"
                             "Each section is one run of the script; compare rows within a section.\n\n")
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
