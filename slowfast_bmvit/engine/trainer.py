"""The training loop: epochs of optimisation, validation every TRAIN.EVAL_PERIOD, checkpoints, exact resume.

The loop's schedule lives here too: after which epochs it saves and validates (`is_checkpoint_epoch`,
`is_eval_epoch`, upstream's rule, multigrid-aware) and after which iterations it saves mid-epoch
(`is_checkpoint_iter`). What a checkpoint holds and how a run resumes from it is engine/checkpoint.py's.

A run is resumable at any checkpoint: the data order and augmentation are pure functions of (RNG_SEED, epoch,
sample index) (datasets/samplers.py), and a mid-epoch checkpoint (TRAIN.CHECKPOINT_ITER_PERIOD) stores the
iteration, the batch size and the generator states, so a killed run that resumes reaches the same weights as one
that was not killed (on CPU with DETERMINISTIC True). Resumed with another number of processes it goes on at the
same sample; with another TRAIN.BATCH_SIZE too, when the samples done are a multiple of the new batch size (else
it stops with one line).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import torch
from tqdm import tqdm

from slowfast_bmvit.datasets import clip_position, construct_loader, prepare_datasets, set_loader_epoch
from slowfast_bmvit.models import build_model, unwrap_model
from slowfast_bmvit.utils.complexity import log_model_info
from slowfast_bmvit.utils.logging import setup_logging
from slowfast_bmvit.visualization.tensorboard import open_tensorboard

from . import checkpoint as cu
from . import distributed as du
from .amp import autocast_context, device_of
from .evaluator import evaluate_detections
from .inference import run_inference
from .lr_policy import get_lr_at_epoch
from .meters import TrainMeter, log_json_stats
from .multigrid import MultigridSchedule
from .optimizer import construct_optimizer, set_lr
from .task import DetectionTask, move_batch, uses_input_boxes

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (or, with SOLVER.CLIP_GRAD_L2NORM, gradient norm); the message names
    the step."""


def is_checkpoint_epoch(cfg, cur_epoch: int, multigrid_schedule: Sequence[Sequence[Any]] | None = None) -> bool:
    """Save after 0-based epoch `cur_epoch`? The last epoch always; under a multigrid long cycle about
    MULTIGRID.EVAL_FREQ times per stage, ending on the stage's last epoch; otherwise every
    TRAIN.CHECKPOINT_PERIOD epochs (0: only the last). Upstream's rule."""
    return _is_periodic_epoch(cfg, cur_epoch, multigrid_schedule, cfg.TRAIN.CHECKPOINT_PERIOD)


def is_eval_epoch(cfg, cur_epoch: int, multigrid_schedule: Sequence[Sequence[Any]] | None = None) -> bool:
    """Validate after 0-based epoch `cur_epoch`? As `is_checkpoint_epoch` with TRAIN.EVAL_PERIOD."""
    return _is_periodic_epoch(cfg, cur_epoch, multigrid_schedule, cfg.TRAIN.EVAL_PERIOD)


def _is_periodic_epoch(cfg, cur_epoch: int, multigrid_schedule, period: int) -> bool:
    if cur_epoch + 1 == cfg.SOLVER.MAX_EPOCH:
        return True
    if multigrid_schedule is not None:
        previous_end = 0
        for stage in multigrid_schedule:
            end = stage[-1]
            if cur_epoch < end:
                stage_period = max((end - previous_end) // cfg.MULTIGRID.EVAL_FREQ + 1, 1)
                return (end - 1 - cur_epoch) % stage_period == 0
            previous_end = end
    return period > 0 and (cur_epoch + 1) % period == 0


def is_checkpoint_iter(cfg, cur_iter: int) -> bool:
    """Save a mid-epoch checkpoint after 0-based iteration `cur_iter`? Every TRAIN.CHECKPOINT_ITER_PERIOD
    iterations (0: never). The loop skips it on an epoch's last iteration, where the epoch checkpoint goes."""
    period = cfg.TRAIN.CHECKPOINT_ITER_PERIOD
    return period > 0 and (cur_iter + 1) % period == 0


def _check_finite(scalars: dict[str, float], epoch: int, iteration: int, check_grad_norm: bool) -> None:
    """Raise when the (process-averaged) loss, or with `check_grad_norm` the gradient norm SOLVER.CLIP_GRAD_L2NORM
    measured, is not finite: every process sees the same averages, so all raise. Checked after the optimizer step
    (one read of the device per step); nothing has been saved since the last checkpoint, which stays intact. Under
    a GradScaler an infinite gradient is routine (the scaler skips that step), so only the loss is checked there."""
    if not math.isfinite(scalars["loss"]):
        terms = ", ".join(f"{name}={value:.4g}" for name, value in scalars.items() if name != "grad_norm")
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1}, iteration {iteration + 1}: {terms}. Lower SOLVER.BASE_LR, enable "
            f"SOLVER.CLIP_GRAD_L2NORM, or check the inputs; the last checkpoint is intact"
        )
    grad_norm = scalars.get("grad_norm")
    if check_grad_norm and grad_norm is not None and not math.isfinite(grad_norm):
        # Clipping by an infinite norm zeroes the step, by a NaN one fills the weights with NaN: stop here.
        raise NonFiniteLossError(
            f"non-finite gradient norm ({grad_norm}) at epoch {epoch + 1}, iteration {iteration + 1} with a finite "
            f"loss; lower SOLVER.BASE_LR or check the inputs; the last checkpoint is intact")


def _clip_gradients(cfg, model: torch.nn.Module) -> torch.Tensor | None:
    """Clip by value and/or by global L2 norm (SOLVER.CLIP_GRAD_*); the norm before clipping, on the device, or None."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if cfg.SOLVER.CLIP_GRAD_VAL:
        torch.nn.utils.clip_grad_value_(parameters, cfg.SOLVER.CLIP_GRAD_VAL)
    if cfg.SOLVER.CLIP_GRAD_L2NORM:
        return torch.nn.utils.clip_grad_norm_(parameters, cfg.SOLVER.CLIP_GRAD_L2NORM)
    return None


def _step_scalars(losses: dict[str, torch.Tensor], grad_norm: torch.Tensor | None) -> dict[str, float]:
    """The loss terms (and the gradient norm) averaged over processes: one collective and one device-to-host read
    for all of them, the step's only wait on the device besides the matching's copy (and GradScaler's own check)."""
    values = [value.detach().float() for value in losses.values()]
    names = list(losses)
    if grad_norm is not None:
        values.append(grad_norm.detach().float())
        names.append("grad_norm")
    return dict(zip(names, du.all_reduce_mean(torch.stack(values)).tolist()))


def _short_cycle_note(cfg, multigrid: MultigridSchedule | None) -> str:
    """How the short cycle changes the batches, for the epoch log line ("" without it)."""
    if multigrid is None or not cfg.MULTIGRID.SHORT_CYCLE:
        return ""
    shapes = (multigrid.short_cycle_shape(position) for position in range(3))
    return ", short cycle: " + ", ".join(f"{batch} x {crop} px" for batch, crop in shapes)


def train_epoch(cfg, loader, model, task: DetectionTask, optimizer, scaler, meter: TrainMeter, epoch: int,
                start_iter: int, iters_per_epoch: int, device: torch.device) -> None:
    """One epoch from iteration `start_iter` (non-zero when resuming mid-epoch) to `iters_per_epoch`; the caller has
    given `meter` the epoch's clip position (`meter.start_epoch`)."""
    model.train()
    if cfg.TRAIN.FREEZE_BACKBONE:
        # A frozen backbone is a fixed function: no gradients (models/build.py), and in eval mode its BatchNorm
        # statistics (the convolutional stem's) stay as loaded and its dropout / drop-path stays off.
        unwrap_model(model).backbone.eval()
    progress = tqdm(total=iters_per_epoch, initial=start_iter, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                    disable=not du.is_master_proc(), leave=False, dynamic_ncols=True)
    meter.iter_tic()
    for iteration, batch in enumerate(loader, start=start_iter):
        batch = move_batch(batch, device)
        meter.data_toc()
        lr = get_lr_at_epoch(cfg, epoch + iteration / iters_per_epoch)
        set_lr(optimizer, lr)
        with autocast_context(cfg, device):
            losses = task.losses(model, batch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(losses["loss"]).backward()
            scaler.unscale_(optimizer)
            grad_norm = _clip_gradients(cfg, model)
            scaler.step(optimizer)
            scaler.update()
        else:
            losses["loss"].backward()
            grad_norm = _clip_gradients(cfg, model)
            optimizer.step()
        # Checked after the step so that the host does not wait for the forward before queueing the backward; a
        # non-finite loss stops the run before anything is saved.
        scalars = _step_scalars(losses, grad_norm)
        _check_finite(scalars, epoch, iteration, check_grad_norm=scaler is None)
        grad_norm = scalars.pop("grad_norm", None)
        meter.iter_toc()
        meter.update_stats(scalars, lr, batch["inputs"].shape[0] * du.get_world_size(), grad_norm=grad_norm)
        meter.log_iter_stats(epoch, iteration)
        progress.update(1)
        progress.set_postfix(loss=f"{scalars['loss']:.3f}", lr=f"{lr:.2e}")
        if is_checkpoint_iter(cfg, iteration) and iteration + 1 < iters_per_epoch:
            cu.save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, epoch, cfg, scaler=scaler,
                               iter_in_epoch=iteration + 1)
        meter.iter_tic()
    progress.close()
    meter.log_epoch_stats(epoch)
    meter.reset()


def validate(cfg, loader, model, task: DetectionTask, epoch: int, writer=None) -> dict | None:
    """Detections on the validation split and its official metric (on the main process; None elsewhere), also
    written to the TensorBoard `writer` when given."""
    detections = run_inference(cfg, loader, model, task, desc=f"val {epoch + 1}")
    if not du.is_master_proc():
        return None
    result = evaluate_detections(cfg, loader.dataset.dataset, detections, "val")
    stats = {"_type": "val_epoch", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}", "map": result["mAP"]}
    log_json_stats(stats, cfg.OUTPUT_DIR)
    if writer is not None:
        writer.add_stats(stats, epoch + 1)
        writer.add_evaluation("val", result, epoch + 1)
    logger.info("val epoch %d: mAP %.4f", epoch + 1, result["mAP"])
    return result


def train(cfg) -> torch.nn.Module:
    """Train `cfg.MODEL.MODEL_NAME` on TRAIN.DATASET; returns the trained model (unwrapped).

    With MULTIGRID.LONG_CYCLE / SHORT_CYCLE the solver keys are rewritten for the multigrid schedule (on a copy of
    `cfg`; the caller's config is left as it was); every epoch runs at its long-cycle shape, and under the short
    cycle every iteration at its short-cycle crop and batch size (the train loader does that).
    """
    multigrid = None
    if cfg.MULTIGRID.LONG_CYCLE or cfg.MULTIGRID.SHORT_CYCLE:
        multigrid = MultigridSchedule()
        cfg = multigrid.init(cfg.clone())
    du.seed_process(cfg.RNG_SEED, deterministic=cfg.DETERMINISTIC)
    setup_logging(cfg.OUTPUT_DIR, du.is_master_proc())
    if du.is_master_proc():
        logger.info("Training with config:\n%s", cfg.dump())
    device = device_of(cfg)
    model = build_model(cfg)
    task = DetectionTask(cfg, model).to(device)
    if cfg.LOG_MODEL_INFO and du.is_master_proc():
        log_model_info(unwrap_model(model), cfg, cfg.DATA.TRAIN_CROP_SIZE)
    writer = open_tensorboard(cfg, du.is_master_proc())
    optimizer = construct_optimizer(model, cfg)
    scaler = None
    if cfg.TRAIN.MIXED_PRECISION and cfg.TRAIN.MIXED_PRECISION_DTYPE == "float16":
        scaler = torch.amp.GradScaler(device.type)
    start = cu.load_train_checkpoint(cfg, model, optimizer, scaler)

    prepare_datasets(cfg, [cfg.TRAIN.DATASET] + ([cfg.TEST.DATASET] if cfg.TRAIN.EVAL_PERIOD > 0 else []))
    val_loader = None
    if cfg.TRAIN.EVAL_PERIOD > 0:
        val_loader = construct_loader(cfg, "val", model_reads_boxes=uses_input_boxes(model))
    train_loader = None
    if start.start_epoch >= cfg.SOLVER.MAX_EPOCH:
        logger.info("training already complete (%d of %d epochs in %s); nothing to train", start.start_epoch,
                    cfg.SOLVER.MAX_EPOCH, start.path)
    for epoch in range(start.start_epoch, cfg.SOLVER.MAX_EPOCH):
        shape_changed = False
        if multigrid is not None:
            cfg, shape_changed = multigrid.update_long_cycle(cfg, epoch)
        if train_loader is None or shape_changed:
            # Multigrid's long cycle changes clip shape and batch size between epochs: a new loader each time.
            train_loader = construct_loader(cfg, "train")
            iters_per_epoch = len(train_loader)
            meter = TrainMeter(iters_per_epoch, cfg, writer)
            logger.info("epoch %d: %d iterations of %d clips (%d x %d x %d)%s", epoch + 1, iters_per_epoch,
                        cfg.TRAIN.BATCH_SIZE, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE,
                        _short_cycle_note(cfg, multigrid))
        first_iter = 0
        if epoch == start.start_epoch:
            # The iteration to resume at, at this run's batch size (the checkpoint counts its own iterations).
            first_iter = start.first_iteration(cfg.TRAIN.BATCH_SIZE, cfg.MULTIGRID.SHORT_CYCLE)
            moved = first_iter != start.start_iter
            logger.info("Start epoch %d (iteration %d)%s", epoch + 1, first_iter,
                        f" of {cfg.TRAIN.BATCH_SIZE} clips: {start.path} stopped after {start.start_iter} iterations "
                        f"of {start.saved_batch_size} clips" if moved else "")
        set_loader_epoch(train_loader, epoch, first_iter)
        meter.start_epoch(clip_position(train_loader, epoch, first_iter))
        train_epoch(cfg, train_loader, model, task, optimizer, scaler, meter, epoch, first_iter, iters_per_epoch,
                    device)
        stages = multigrid.schedule if multigrid is not None else None
        if is_checkpoint_epoch(cfg, epoch, stages):
            cu.save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, epoch, cfg, scaler=scaler)
        if val_loader is not None and is_eval_epoch(cfg, epoch, stages):
            validate(cfg, val_loader, model, task, epoch, writer)
    if writer is not None:
        writer.close()
    return unwrap_model(model)
