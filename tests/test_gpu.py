"""The CUDA path: the same numbers as the CPU, mixed precision that trains and resumes, the kernels that really run.

Run on a machine with a GPU: `pytest -m gpu` (benchmarks/gpu_check.sh runs these, then the speed benchmark). Without
CUDA every test here is skipped, with the reason. TF32 stays off for the float32 comparisons, so that float32
means float32 (relative errors ||cuda - cpu|| / ||cpu|| under 1e-3).
"""

from __future__ import annotations

import logging
import os
import warnings

import pytest
import torch

from slowfast_bmvit.config import load_config
from slowfast_bmvit.engine.checkpoint import get_last_checkpoint
from slowfast_bmvit.engine.optimizer import construct_optimizer
from slowfast_bmvit.engine.task import DetectionTask
from slowfast_bmvit.engine.trainer import train
from slowfast_bmvit.models import get_model_class
from slowfast_bmvit.models.attention import attention_impl
from slowfast_bmvit.utils.profiling import sdpa_kernels
from test_engine import final_weights, synth_root, tiny_cfg, train_killed_at_step  # noqa: F401  (synth_root: fixture)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run `pytest -m gpu` on one)"),
]

logger = logging.getLogger(__name__)
CUDA = torch.device("cuda")
AVA_CONFIG = "configs/AVA/BMViT_MViTv2_S.yaml"


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def ava_model(repo_root, *opts: str):
    cfg = load_config(str(repo_root / AVA_CONFIG), ["NUM_GPUS", "1", *opts])
    torch.manual_seed(0)
    return cfg, get_model_class(cfg.MODEL.MODEL_NAME)(cfg)


def synthetic_batch(cfg, batch: int, seed: int = 0) -> dict:
    """Random clips with 1-3 actors each, pinned and moved as the trainer's loader and move_batch do."""
    generator = torch.Generator().manual_seed(seed)
    size = cfg.DATA.TRAIN_CROP_SIZE
    inputs = torch.randn(batch, 3, cfg.DATA.NUM_FRAMES, size, size, generator=generator)
    targets = []
    for index in range(batch):
        persons = 1 + index % 3
        boxes = torch.cat([0.3 + 0.4 * torch.rand(persons, 2, generator=generator),
                           0.1 + 0.3 * torch.rand(persons, 2, generator=generator)], 1)
        labels = (torch.rand(persons, cfg.MODEL.NUM_CLASSES, generator=generator) < 0.05).float()
        labels[:, 0] = 1.0
        targets.append({key: value.pin_memory().to(CUDA, non_blocking=True) for key, value in
                        {"boxes": boxes, "labels": labels, "actor": torch.ones(persons, dtype=torch.bool)}.items()})
    return {"inputs": inputs.pin_memory().to(CUDA, non_blocking=True), "targets": targets}


def relative_error(got: torch.Tensor, reference: torch.Tensor) -> float:
    return ((got.double().cpu() - reference.double()).norm() / reference.double().norm()).item()


@pytest.mark.parametrize("impl", ["folded", "sdpa", "explicit"])
def test_ava_bmvit_cuda_forward_equals_the_cpu_forward_in_float32(repo_root, impl):
    cfg, model = ava_model(repo_root)
    model.eval()
    clip = torch.randn(1, 3, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE,
                       generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), attention_impl(model, "explicit"):
        cpu_tokens = model.backbone.forward_features(clip)[0]
        cpu_out = model(clip)
    model.to(CUDA)
    with torch.no_grad(), attention_impl(model, impl):
        cuda_tokens = model.backbone.forward_features(clip.to(CUDA))[0]
        cuda_out = model(clip.to(CUDA))
    assert relative_error(cuda_tokens, cpu_tokens) < 1e-3
    for key in ("pred_boxes", "pred_actor", "pred_classes"):
        assert relative_error(cuda_out[key], cpu_out[key]) < 1e-3, key


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_the_sdpa_backend_in_use_is_logged_and_folded_attention_is_fused(repo_root, dtype):
    cfg, model = ava_model(repo_root)
    model.to(CUDA).eval()
    clip = torch.randn(1, 3, cfg.DATA.NUM_FRAMES, 256, 256, device=CUDA)
    used = {}
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        for impl in ("folded", "sdpa", "explicit"):
            with attention_impl(model, impl):
                used[impl] = sdpa_kernels(lambda: model(clip))
    logger.info("SDPA backends on %s, %s: %s", torch.cuda.get_device_name(), dtype, used)
    print(f"SDPA backends on {torch.cuda.get_device_name()}, {dtype}: {used}")
    assert used["explicit"] == []
    assert used["folded"] and "math" not in used["folded"], used
    if dtype != torch.float32:
        # No mask, one head dim (a multiple of 8) for q, k and v: a flash kernel (PyTorch's own or cuDNN's), not the
        # memory-efficient one that the additive-mask path gets.
        assert set(used["folded"]) <= {"flash", "cudnn"}, used


def test_bf16_training_is_finite_and_the_loss_falls_over_50_steps(repo_root):
    cfg, model = ava_model(repo_root, "MVIT.DROPPATH_RATE", "0.0", "BMVIT.CLASS_DROPOUT", "0.0")
    model.to(CUDA).train()
    task = DetectionTask(cfg, model).to(CUDA)
    optimizer = construct_optimizer(model, cfg)
    batch = synthetic_batch(cfg, 2)
    losses = []
    for _ in range(50):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = task.losses(model, batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.SOLVER.CLIP_GRAD_L2NORM)
        optimizer.step()
        losses.append(loss.item())
    logger.info("bf16 losses: first %s, last %s", losses[:3], losses[-3:])
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_a_training_step_synchronises_twice_on_cuda(repo_root):
    """Ground truth for tests/test_host_syncs.py: CUDA's own synchronisation check during one warmed-up step."""
    cfg, model = ava_model(repo_root)
    model.to(CUDA).train()
    task = DetectionTask(cfg, model).to(CUDA)
    optimizer = construct_optimizer(model, cfg)
    batch = synthetic_batch(cfg, 2)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses = task.losses(model, batch)
        losses["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.SOLVER.CLIP_GRAD_L2NORM)
        optimizer.step()
        torch.stack([value.detach().float() for value in losses.values()] + [norm]).tolist()

    step()  # caches (relative-position indices, position codes) and the optimizer state are made here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    logger.info("synchronising calls in one step: %d %s", len(syncs), syncs)
    assert len(syncs) <= 2, syncs


def test_activation_checkpointing_cuts_training_memory(repo_root):
    peaks = {}
    for checkpointing in ("False", "True"):
        cfg, model = ava_model(repo_root, "MODEL.ACT_CHECKPOINT", checkpointing)
        model.to(CUDA).train()
        task = DetectionTask(cfg, model).to(CUDA)
        batch = synthetic_batch(cfg, 2)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = task.losses(model, batch)["loss"]
        loss.backward()
        torch.cuda.synchronize()
        peaks[checkpointing] = torch.cuda.max_memory_allocated()
        del model, task, batch, loss
        torch.cuda.empty_cache()
    logger.info("peak training memory at batch 2: %.2f GiB plain, %.2f GiB checkpointed",
                peaks["False"] / 2**30, peaks["True"] / 2**30)
    assert peaks["True"] < 0.6 * peaks["False"], peaks


def test_float16_with_grad_scaler_trains_and_resumes(repo_root, synth_root, tmp_path, monkeypatch):  # noqa: F811
    """The engine's float16 path on the GPU: a run killed in epoch 2 resumes (weights, optimizer, GradScaler) to
    what an uninterrupted run reaches, up to the GPU's non-deterministic reductions."""
    opts = ("NUM_GPUS", "1", "TRAIN.MIXED_PRECISION", "True", "TRAIN.MIXED_PRECISION_DTYPE", "float16",
            "DETERMINISTIC", "False", "DATA_LOADER.PIN_MEMORY", "True")
    reference = tmp_path / "uninterrupted"
    train(tiny_cfg(repo_root, synth_root, reference, *opts))
    checkpoint = torch.load(get_last_checkpoint(str(reference)), map_location="cpu", weights_only=True)
    assert checkpoint["scaler_state"]["scale"] > 0

    killed = tmp_path / "killed"
    cfg = tiny_cfg(repo_root, synth_root, killed, *opts)
    train_killed_at_step(cfg, monkeypatch, 5)  # in epoch 2
    assert os.path.basename(get_last_checkpoint(str(killed))) == "checkpoint_epoch_00001.pyth"
    train(cfg)
    epoch_a, weights_a = final_weights(reference)
    epoch_b, weights_b = final_weights(killed)
    assert epoch_a == epoch_b == 1
    for name in weights_a:
        if weights_a[name].is_floating_point():
            torch.testing.assert_close(weights_b[name], weights_a[name], rtol=1e-2, atol=1e-3, msg=name)
