"""Training checkpoints: PySlowFast's `.pyth` files, their names, atomic writes and the resume of training.

This module owns the file format below, from both sides: the trainer writes it (`save_checkpoint`) and resumes
from it (`load_train_checkpoint`), so what is written and what is read back stay side by side. Neighbours:
reading a file and loading weights into a model (shape-matched, other codebases' layouts) is
models/checkpoint_loading.py, the one reader of checkpoint files; choosing and checking the trained weights a
test or an inference tool runs on is engine/trained_checkpoint.py; when the trainer saves (TRAIN.CHECKPOINT_PERIOD,
TRAIN.CHECKPOINT_ITER_PERIOD) is the trainer's schedule (engine/trainer.py); the generator states come from
utils/seeding.py.

Files live in OUTPUT_DIR/checkpoints/:
    checkpoint_epoch_{E:05d}.pyth              after E completed epochs (upstream's name and meaning)
    checkpoint_epoch_{E:05d}_iter_{I:07d}.pyth after E completed epochs and I iterations of the next one
and hold a dict:
    "epoch"            0-based index of the last completed epoch (E - 1; -1 before the first), as upstream, so
                       upstream tools resume a mid-epoch file at the start of the unfinished epoch
    "model_state"      the bare model's state_dict (no DDP "module." prefix)
    "optimizer_state"  optimizer.state_dict()
    "cfg"              the run's config as YAML (cfg.dump())
    "scaler_state"     GradScaler state, when mixed precision uses one
    "iter"             mid-epoch files only: iterations of epoch E already trained (the trainer skips them)
    "batch_size"       the global batch size (TRAIN.BATCH_SIZE of the epoch in progress): a mid-epoch resume with
                       another batch size starts at the same sample (iter x batch_size), or is refused when that
                       sample is not a multiple of the new batch size
    "rng_states"       per rank, the Python / numpy / torch (/ CUDA) generator states at saving time; restored on
                       resume with the same world size, so augmentation and dropout continue as if uninterrupted.
                       Data order itself needs no state: the EpochSampler's order (datasets/samplers.py) depends
                       only on (RNG_SEED, epoch), and the trainer skips the first "iter" batches.

Writes are atomic: the main process writes a hidden temporary file in the same folder, flushes and fsyncs it, then
renames it over the final name, so a kill at any moment leaves either the old set of checkpoints or the new one.
Names that do not match the patterns above (temporary files) and files that are not complete archives (e.g. a
copy interrupted half-way) are never picked up. Auto-resume falls back to the previous checkpoint, with a
warning, when the newest one cannot be read.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Any

import torch
import yaml

from slowfast_bmvit.models import unwrap_model
from slowfast_bmvit.models.checkpoint_loading import CheckpointError, load_checkpoint, read_checkpoint_file
from slowfast_bmvit.utils.seeding import capture_rng_state, restore_rng_state

from .distributed import all_gather_objects, get_rank, get_world_size, is_master_proc

logger = logging.getLogger(__name__)

# Folder of the checkpoints inside OUTPUT_DIR.
CHECKPOINT_SUBDIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^checkpoint_epoch_(\d{5,})(?:_iter_(\d{7,}))?\.pyth$")
_TEMP_PREFIX = ".tmp."


# ------------------------------------------------------------------ names and discovery


def get_checkpoint_dir(output_dir: str) -> str:
    """OUTPUT_DIR/checkpoints."""
    return os.path.join(output_dir, CHECKPOINT_SUBDIR)


def checkpoint_name(completed_epochs: int, iter_in_epoch: int | None = None) -> str:
    """File name after `completed_epochs` epochs and, mid-epoch, `iter_in_epoch` iterations of the next one."""
    if iter_in_epoch is None:
        return f"checkpoint_epoch_{completed_epochs:05d}.pyth"
    return f"checkpoint_epoch_{completed_epochs:05d}_iter_{iter_in_epoch:07d}.pyth"


def _progress(name: str) -> tuple[int, int] | None:
    """(completed epochs, iterations into the next epoch) encoded in a checkpoint file name, or None."""
    match = _CHECKPOINT_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def _is_complete_archive(path: str) -> bool:
    # torch.save writes a zip archive whose directory sits at the end: a truncated file has none.
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def list_checkpoints(output_dir: str) -> list[str]:
    """Paths of the complete checkpoints in OUTPUT_DIR/checkpoints, oldest to newest (by epoch, then iteration).

    Temporary files and files that are not complete archives are left out (the latter with a warning).
    """
    folder = get_checkpoint_dir(output_dir)
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        progress = _progress(name)
        if progress is None:
            continue
        path = os.path.join(folder, name)
        if not _is_complete_archive(path):
            logger.warning("ignoring %s: not a complete checkpoint file (truncated or not written by torch.save)", path)
            continue
        found.append((progress, path))
    return [path for _, path in sorted(found)]


def get_last_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint in OUTPUT_DIR/checkpoints, or None."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


# ------------------------------------------------------------------ saving


def _fsync_folder(folder: str) -> None:
    # Makes the rename itself durable; not every platform/file system can open a folder for this.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_torch_save(obj: Any, path: str) -> None:
    """torch.save `obj` to `path` so that `path` is either absent/old or complete: write a hidden temporary file
    in the same folder, flush and fsync it, then os.replace it onto `path`."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f"{_TEMP_PREFIX}{name}.{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_folder(folder)


def _remove_leftovers(folder: str, keep: str) -> None:
    """Delete temporary files of killed writers and mid-epoch checkpoints older than the two newest checkpoints
    (epoch checkpoints are never deleted)."""
    names = os.listdir(folder)
    stale = [n for n in names if n.startswith(_TEMP_PREFIX)]
    ordered = sorted((p, n) for n in names if (p := _progress(n)) is not None)
    stale += [name for progress, name in ordered[:-2] if progress[1] > 0 and name != keep]
    for name in stale:
        try:
            os.remove(os.path.join(folder, name))
        except OSError as err:
            logger.warning("could not delete the stale file %s: %s", os.path.join(folder, name), err)


def save_checkpoint(
    path_dir: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    cfg,
    scaler: Any = None,
    iter_in_epoch: int | None = None,
) -> str | None:
    """Save a checkpoint into path_dir/checkpoints (path_dir is the job's OUTPUT_DIR, as upstream).

    Collective: call it on every process (it gathers each rank's generator states); only the main process
    writes. Returns the written path on the main process, None elsewhere.

    Args:
        epoch: 0-based index of the epoch being trained (upstream's `cur_epoch`).
        iter_in_epoch: None after the whole epoch (file checkpoint_epoch_{epoch+1:05d}.pyth); else the number of
            iterations of `epoch` done so far (>= 1), for a mid-epoch checkpoint.
        scaler: the float16 GradScaler, if any.
    After a successful write, mid-epoch checkpoints older than the two newest checkpoints are deleted.
    """
    if iter_in_epoch is not None and iter_in_epoch < 1:
        raise ValueError(f"iter_in_epoch must be >= 1 for a mid-epoch checkpoint, got {iter_in_epoch}")
    rng_states = all_gather_objects(capture_rng_state())
    if not is_master_proc():
        return None
    completed_epochs = epoch + 1 if iter_in_epoch is None else epoch
    checkpoint: dict[str, Any] = {
        "epoch": completed_epochs - 1,
        "model_state": unwrap_model(model).state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "cfg": cfg.dump(),
        "rng_states": rng_states,
        "batch_size": int(cfg.TRAIN.BATCH_SIZE),
    }
    if scaler is not None:
        checkpoint["scaler_state"] = scaler.state_dict()
    if iter_in_epoch is not None:
        checkpoint["iter"] = iter_in_epoch
    folder = get_checkpoint_dir(path_dir)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, checkpoint_name(completed_epochs, iter_in_epoch))
    atomic_torch_save(checkpoint, path)
    _remove_leftovers(folder, keep=os.path.basename(path))
    logger.info("saved checkpoint %s", path)
    return path


# ------------------------------------------------------------------ resuming


@dataclass
class TrainStart:
    """Where training starts: 0-based epoch, iterations of that epoch already done (to skip) at the global batch
    size `saved_batch_size` of the run that saved them (None: not recorded) and the checkpoint it came from."""

    start_epoch: int = 0
    start_iter: int = 0
    path: str | None = None
    saved_batch_size: int | None = None

    def first_iteration(self, batch_size: int, short_cycle: bool = False) -> int:
        """The iteration of epoch `start_epoch` to resume at with global batch size `batch_size`.

        The epoch's data order does not depend on the batch size or the number of processes (datasets/samplers.py):
        the first `start_iter x saved_batch_size` samples of the epoch's permutation are trained, so the run goes on
        at that sample, which is iteration samples / batch_size.

        Raises:
            CheckpointError: that sample is not a multiple of `batch_size`, or the batch size changed under the
                multigrid short cycle (whose batches cycle through several sizes); one line naming the numbers.
        """
        if self.start_iter == 0 or self.saved_batch_size is None or self.saved_batch_size == batch_size:
            return self.start_iter
        samples = self.start_iter * self.saved_batch_size
        where = (f"{self.path} was saved {self.start_iter} iterations of {self.saved_batch_size} clips "
                 f"({samples} samples) into epoch {self.start_epoch + 1}")
        if short_cycle:
            raise CheckpointError(f"{where}; under MULTIGRID.SHORT_CYCLE it resumes only with TRAIN.BATCH_SIZE "
                                  f"{self.saved_batch_size} (this run: {batch_size})")
        if samples % batch_size:
            raise CheckpointError(f"{where}; TRAIN.BATCH_SIZE {batch_size} cannot resume at that sample (use a batch "
                                  f"size that divides {samples}, e.g. {self.saved_batch_size}, until the epoch ends)")
        return samples // batch_size


def _saved_batch_size(checkpoint: dict[str, Any]) -> int | None:
    """The global batch size a checkpoint was trained with: its "batch_size", else its config's TRAIN.BATCH_SIZE
    (files written before "batch_size" was recorded), else None."""
    if isinstance(checkpoint.get("batch_size"), int):
        return checkpoint["batch_size"]
    try:
        return int(yaml.safe_load(checkpoint.get("cfg") or "")["TRAIN"]["BATCH_SIZE"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _restore_optimizer(path: str, checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Load the optimizer's running state (momenta, step counts); hyper-parameters (weight decay, lr_scale,
    betas, ...) stay those of the current config."""
    if "optimizer_state" not in checkpoint:
        raise CheckpointError(
            f"{path}: has \"epoch\" but no \"optimizer_state\"; set TRAIN.CHECKPOINT_EPOCH_RESET True to load the "
            f"weights only"
        )
    hyper_parameters = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(checkpoint["optimizer_state"])
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: optimizer_state does not fit this optimizer ({_first_line(err)}); the parameter groups differ "
            f"(SOLVER.OPTIMIZING_METHOD, ZERO_WD_1D_PARAM, LAYER_DECAY, HEAD_LR_MULT or frozen parameters changed?). "
            f"Set TRAIN.CHECKPOINT_EPOCH_RESET True to load the weights only"
        ) from None
    for group, saved in zip(optimizer.param_groups, hyper_parameters):
        group.update(saved)


def _restore_training_state(
    path: str, checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer, scaler: Any
) -> TrainStart:
    """Optimizer, scaler, generator states and position of a checkpoint that carries "epoch"."""
    _restore_optimizer(path, checkpoint, optimizer)
    if scaler is not None:
        if "scaler_state" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler_state"])
        else:
            logger.warning("%s has no scaler_state; the GradScaler starts afresh", path)
    rng_states = checkpoint.get("rng_states")
    if rng_states is not None:
        if len(rng_states) == get_world_size():
            restore_rng_state(rng_states[get_rank()])
        else:
            logger.warning(
                "%s was saved by %d processes, this run has %d: random generators are not restored and a "
                "mid-epoch resume does not reproduce the interrupted epoch's data split",
                path,
                len(rng_states),
                get_world_size(),
            )
    return TrainStart(
        start_epoch=int(checkpoint["epoch"]) + 1,
        start_iter=int(checkpoint.get("iter", 0)),
        path=path,
        saved_batch_size=_saved_batch_size(checkpoint),
    )


def _load_weights(path: str, checkpoint: dict[str, Any], model: torch.nn.Module,
                  expect_complete: bool = False) -> None:
    """Shape-matched weights from `checkpoint`, read from `path` (models.checkpoint_loading; a classifier file finds
    a detector's backbone through the detected prefix). With `expect_complete` (resuming this run), anything not
    loaded is warned about: the model or config changed since the checkpoint was written."""
    report = load_checkpoint(checkpoint, unwrap_model(model), source=path)
    if expect_complete and (report.skipped or report.missing or report.resized):
        logger.warning("resuming from %s, which does not match the model exactly: %s", path, report.summary())


def _resume_from_output_dir(cfg, model, optimizer, scaler) -> TrainStart | None:
    """Resume from the newest readable checkpoint in OUTPUT_DIR (falling back past unreadable ones)."""
    candidates = list_checkpoints(cfg.OUTPUT_DIR)
    unreadable = []
    for path in reversed(candidates):
        try:
            checkpoint = read_checkpoint_file(path)
        except CheckpointError as err:
            logger.warning("cannot resume from %s (%s); trying the previous checkpoint", path, err)
            unreadable.append(path)
            continue
        logger.info("auto-resuming from %s", path)
        _load_weights(path, checkpoint, model, expect_complete=True)
        return _restore_training_state(path, checkpoint, optimizer, scaler)
    if unreadable:
        raise CheckpointError(
            f"TRAIN.AUTO_RESUME: no checkpoint in {get_checkpoint_dir(cfg.OUTPUT_DIR)} is readable "
            f"({', '.join(os.path.basename(p) for p in unreadable)}); move them away to start afresh"
        )
    return None


def load_train_checkpoint(
    cfg, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None
) -> TrainStart:
    """Initialise training state, upstream's rule:

    1. TRAIN.AUTO_RESUME and a checkpoint in OUTPUT_DIR: resume from the newest readable one (model, optimizer,
       scaler, generators, epoch and iteration).
    2. else TRAIN.CHECKPOINT_FILE_PATH: load its weights (shape-matched; a K400 classifier file into a detector's
       backbone); also resume its optimizer/scaler/epoch when the file has "epoch" and not
       TRAIN.CHECKPOINT_EPOCH_RESET.
    3. else start from scratch (epoch 0).
    Call it after seeding (resuming replaces the generator states).

    Raises:
        CheckpointError: unreadable TRAIN.CHECKPOINT_FILE_PATH, no readable checkpoint at all in OUTPUT_DIR, or an
            optimizer state that does not fit; the message names the file.
    """
    if cfg.TRAIN.AUTO_RESUME:
        start = _resume_from_output_dir(cfg, model, optimizer, scaler)
        if start is not None:
            return start
    path = cfg.TRAIN.CHECKPOINT_FILE_PATH
    if not path:
        logger.info("training from scratch (no checkpoint to resume and TRAIN.CHECKPOINT_FILE_PATH is empty)")
        return TrainStart()
    checkpoint = read_checkpoint_file(path)
    _load_weights(path, checkpoint, model)
    if cfg.TRAIN.CHECKPOINT_EPOCH_RESET or "epoch" not in checkpoint:
        return TrainStart(path=path)
    return _restore_training_state(path, checkpoint, optimizer, scaler)
