"""Training checkpoints: PySlowFast's `.pyth` files, written atomically, with mid-epoch resume.

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
    "extra"            whatever the trainer passed as `extra` (e.g. best metric so far)

Writes are atomic: the main process writes a hidden temporary file in the same folder, flushes and fsyncs it, then
renames it over the final name, so a kill at any moment leaves either the old set of checkpoints or the new one.
Names that do not match the patterns above (temporary files) and files that are not complete archives (e.g. a
copy interrupted half-way) are never picked up. Auto-resume falls back to the previous checkpoint, with a
warning, when the newest one cannot be read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import random
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from slowfast_bmvit.models.checkpoint_loading import CheckpointError, load_checkpoint, require_checkpoint_file

from .distributed import all_gather_objects, get_rank, get_world_size, is_master_proc, unwrap_model

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


def has_checkpoint(output_dir: str) -> bool:
    """Whether OUTPUT_DIR/checkpoints holds a complete checkpoint."""
    return get_last_checkpoint(output_dir) is not None


# ------------------------------------------------------------------ schedule predicates


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
    iterations (0: never). The trainer skips it on an epoch's last iteration, where the epoch checkpoint goes."""
    period = cfg.TRAIN.CHECKPOINT_ITER_PERIOD
    return period > 0 and (cur_iter + 1) % period == 0


# ------------------------------------------------------------------ random generator states


def capture_rng_state() -> dict[str, Any]:
    """This process's Python, numpy, torch (and, once CUDA is in use, its current GPU's) generator states, in
    types `torch.load(weights_only=True)` accepts. Only the current GPU: querying every device would create a
    CUDA context on each GPU from every process."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the generators from a `capture_rng_state()` dict."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


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
    extra: dict[str, Any] | None = None,
) -> str | None:
    """Save a checkpoint into path_dir/checkpoints (path_dir is the job's OUTPUT_DIR, as upstream).

    Collective: call it on every process (it gathers each rank's generator states); only the main process
    writes. Returns the written path on the main process, None elsewhere.

    Args:
        epoch: 0-based index of the epoch being trained (upstream's `cur_epoch`).
        iter_in_epoch: None after the whole epoch (file checkpoint_epoch_{epoch+1:05d}.pyth); else the number of
            iterations of `epoch` done so far (>= 1), for a mid-epoch checkpoint.
        scaler: the float16 GradScaler, if any.
        extra: a small dict of trainer state to keep (tensors, numbers, strings and plain containers only, so
            that `weights_only` loading accepts it); `load_train_checkpoint` returns it as `TrainStart.extra`.
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
    if extra is not None:
        checkpoint["extra"] = extra
    folder = get_checkpoint_dir(path_dir)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, checkpoint_name(completed_epochs, iter_in_epoch))
    atomic_torch_save(checkpoint, path)
    _remove_leftovers(folder, keep=os.path.basename(path))
    logger.info("saved checkpoint %s", path)
    return path


# ------------------------------------------------------------------ loading


def read_checkpoint_file(path: str) -> dict[str, Any]:
    """The dict stored in a `.pyth` file, read with `weights_only=True` onto the CPU (as models.checkpoint_loading
    reads weights: tensors, numbers, strings and plain containers only).

    Raises:
        CheckpointError: one line naming the file when it is missing, truncated, corrupt, holds Python objects
            weights_only loading refuses, or is not a dict.
    """
    require_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"holds a Python object ({refused.group(1)}) that weights_only loading refuses" if refused else (
            "unreadable pickle data"
        )
        raise CheckpointError(f"{path}: not a usable checkpoint ({what})") from None
    except Exception as err:  # truncated zip, garbage bytes, I/O errors: all surface as one message
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_first_line(err)})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(checkpoint).__name__}, expected a dict)")
    return checkpoint


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


@dataclass
class TrainStart:
    """Where training starts: 0-based epoch, iterations of that epoch already done (to skip) at the global batch
    size `saved_batch_size` of the run that saved them (None: not recorded), the checkpoint it came from and the
    trainer's `extra` state saved with it."""

    start_epoch: int = 0
    start_iter: int = 0
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
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
        logger.info("%s: TRAIN.BATCH_SIZE is now %d, resuming at iteration %d", where, batch_size,
                    samples // batch_size)
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
        extra=dict(checkpoint.get("extra") or {}),
        saved_batch_size=_saved_batch_size(checkpoint),
    )


def _load_weights(path: str, model: torch.nn.Module, expect_complete: bool = False) -> None:
    """Shape-matched weights from `path` (models.checkpoint_loading; a classifier file finds a detector's
    backbone through the detected prefix). With `expect_complete` (resuming this run), anything not loaded is
    warned about: the model or config changed since the checkpoint was written."""
    # The loader reads the file itself, so its messages and report name the file; on resume the file is thus read
    # twice (once more for the optimizer state), which costs seconds once per job.
    report = load_checkpoint(path, unwrap_model(model))
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
        _load_weights(path, model, expect_complete=True)
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
    _load_weights(path, model)
    if cfg.TRAIN.CHECKPOINT_EPOCH_RESET:
        return TrainStart(path=path)
    checkpoint = read_checkpoint_file(path)
    if "epoch" not in checkpoint:
        return TrainStart(path=path)
    return _restore_training_state(path, checkpoint, optimizer, scaler)


@dataclass
class TestedCheckpoint:
    """The checkpoint a test ran on, as test_results.json records it.

    path: the file (None only when TEST.ALLOW_RANDOM_WEIGHTS let a test run without one).
    epoch: completed training epochs of the weights (the E of checkpoint_epoch_E.pyth: the file's 0-based "epoch"
        + 1); None when the file records no epoch (e.g. a plain state dict).
    sha256: hex digest of the file's bytes, to tell two files of the same name apart.
    """

    path: str | None
    epoch: int | None = None
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "epoch": self.epoch, "sha256": self.sha256}


def file_sha256(path: str, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _test_checkpoint_path(cfg) -> str | None:
    """TEST.CHECKPOINT_FILE_PATH, else the newest complete checkpoint in OUTPUT_DIR, else
    TRAIN.CHECKPOINT_FILE_PATH, else None. No fallback to older files of OUTPUT_DIR: a test result must come from
    the checkpoint it claims."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return cfg.TEST.CHECKPOINT_FILE_PATH
    return get_last_checkpoint(cfg.OUTPUT_DIR) or cfg.TRAIN.CHECKPOINT_FILE_PATH or None


def _unfilled_tensors(report) -> list[str]:
    """What would stay random or unused after a load: the model tensors the file lacks and the file tensors the
    model had no place for, a phrase each (empty when the file filled the model exactly)."""
    problems = []
    if report.missing:
        more = f" (+{len(report.missing) - 5} more)" if len(report.missing) > 5 else ""
        problems.append(f"{len(report.missing)} model tensor(s) not in the file: {', '.join(report.missing[:5])}{more}")
    if report.skipped:
        more = f" (+{len(report.skipped) - 5} more)" if len(report.skipped) > 5 else ""
        shown = ", ".join(f"{key} ({reason})" for key, reason in report.skipped[:5])
        problems.append(f"{len(report.skipped)} file tensor(s) not loaded: {shown}{more}")
    return problems


def load_test_checkpoint(cfg, model: torch.nn.Module) -> TestedCheckpoint:
    """Load the weights to test: TEST.CHECKPOINT_FILE_PATH, else the newest complete checkpoint in OUTPUT_DIR,
    else TRAIN.CHECKPOINT_FILE_PATH. Every model tensor must come from the file: a model tensor the file lacks
    (e.g. the detection heads of a K400 classifier file), a file tensor the model has no place for (a deeper
    model's blocks, a head of another class count) or no file at all would test random weights, and is an error
    unless TEST.ALLOW_RANDOM_WEIGHTS (then a warning names them). Relative-position tables of another input size
    are resized, as in fine-tuning.

    Returns:
        the TestedCheckpoint (file, epoch, sha256) for test_results.json.
    Raises:
        CheckpointError: no checkpoint, an unreadable file, or one that does not fill the whole model; the message
            names the file and the tensors (never silently another file).
    """
    path = _test_checkpoint_path(cfg)
    if path is None:
        message = (f"no checkpoint to test: TEST.CHECKPOINT_FILE_PATH and TRAIN.CHECKPOINT_FILE_PATH are empty and "
                   f"{get_checkpoint_dir(cfg.OUTPUT_DIR)} holds no checkpoint")
        if not cfg.TEST.ALLOW_RANDOM_WEIGHTS:
            raise CheckpointError(f"{message}; set TEST.ALLOW_RANDOM_WEIGHTS True to test random weights")
        logger.warning("%s: testing randomly initialised weights (TEST.ALLOW_RANDOM_WEIGHTS)", message)
        return TestedCheckpoint(path=None)
    report = load_checkpoint(path, unwrap_model(model))
    problems = _unfilled_tensors(report)
    if problems:
        message = f"{path}: does not fit {type(unwrap_model(model)).__name__} exactly; " + "; ".join(problems)
        if not cfg.TEST.ALLOW_RANDOM_WEIGHTS:
            raise CheckpointError(f"{message}. Testing it would use random weights; set TEST.ALLOW_RANDOM_WEIGHTS "
                                  f"True to test anyway")
        logger.warning("%s; the model tensors not in the file keep their random initial values "
                       "(TEST.ALLOW_RANDOM_WEIGHTS)", message)
    tested = TestedCheckpoint(path=path, epoch=None if report.epoch is None else report.epoch + 1,
                              sha256=file_sha256(path))
    logger.info("testing %s (epoch %s, sha256 %s)", path, tested.epoch, tested.sha256)
    return tested


# Keys that decide what a trained model computes from its weights: a checkpoint trained under other values would
# load (most shapes agree) and then compute something else, so inference tools refuse the mismatch.
ARCHITECTURE_KEYS = (
    "MODEL.MODEL_NAME", "MODEL.NUM_CLASSES", "BMVIT.BACKBONE", "BMVIT.TOKEN_ARRANGEMENT", "BMVIT.BOX_REFERENCE",
    "BMVIT.CLASS_LOSS", "MVIT.MODE", "MVIT.POOL_FIRST", "MVIT.CLS_EMBED_ON", "MVIT.PATCH_KERNEL", "MVIT.PATCH_STRIDE",
    "MVIT.PATCH_PADDING", "MVIT.CONV_STEM_CHANNELS", "MVIT.DEPTH", "MVIT.EMBED_DIM", "MVIT.NUM_HEADS",
    "MVIT.DIM_MUL", "MVIT.HEAD_MUL", "MVIT.POOL_KV_STRIDE", "MVIT.POOL_KV_STRIDE_ADAPTIVE", "MVIT.POOL_Q_STRIDE",
    "MVIT.POOL_KVQ_KERNEL", "MVIT.USE_ABS_POS", "MVIT.SEP_POS_EMBED", "MVIT.REL_POS_SPATIAL", "MVIT.REL_POS_TEMPORAL",
    "MVIT.RESIDUAL_POOLING", "MVIT.DIM_MUL_IN_ATT", "MVIT.SEPARATE_QKV", "MVIT.REMOVE_Q_POOL_BLOCKS", "MVIT.NORM_STEM",
)
# Input keys a trained model expects as it was trained; other values run, with a warning.
INPUT_KEYS = ("DATA.NUM_FRAMES", "DATA.SAMPLING_RATE", "DATA.TEST_CROP_SIZE", "DATA.RESIZE_MODE", "DATA.MEAN",
              "DATA.STD", "AVA.BGR")


_MISSING = object()


def _config_value(cfg, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _normalised(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalised(item) for item in value]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def check_trained_config(cfg, path: str, saved_yaml: str) -> None:
    """Compare cfg with the config a checkpoint was trained under (its "cfg" YAML).

    Raises:
        CheckpointError: naming the file and the first ARCHITECTURE_KEYS that differ.
    A differing INPUT_KEYS value is logged as a warning.
    """
    import yaml

    try:
        saved = yaml.safe_load(saved_yaml)
    except yaml.YAMLError:
        logger.warning("%s: its stored config is not readable YAML; not compared with the current config", path)
        return
    if not isinstance(saved, dict):
        return

    def differences(keys):
        found = []
        for key in keys:
            then = _config_value(saved, key)
            if then is _MISSING:
                continue
            now = _config_value(cfg, key)
            if _normalised(then) != _normalised(now):
                found.append(f"{key} {then} (config: {now})")
        return found

    architecture = differences(ARCHITECTURE_KEYS)
    if architecture:
        raise CheckpointError(f"{path}: trained with another model config: {'; '.join(architecture[:3])}"
                              + (f" (+{len(architecture) - 3} more)" if len(architecture) > 3 else ""))
    inputs = differences(INPUT_KEYS)
    if inputs:
        logger.warning("%s was trained with other input settings: %s", path, "; ".join(inputs))


def load_trained_checkpoint(cfg, model: torch.nn.Module) -> str:
    """Load a trained model for inference tools (demo, export, token figures); returns the path.

    The checkpoint is TEST.CHECKPOINT_FILE_PATH, else the newest complete one in OUTPUT_DIR/checkpoints; a
    pre-training checkpoint (TRAIN.CHECKPOINT_FILE_PATH) is never used, nor random weights. Every tensor of the
    model must come from the file, and its stored config must agree on ARCHITECTURE_KEYS.

    Raises:
        CheckpointError: one line naming the file (or the places searched when there is none).
    """
    path = cfg.TEST.CHECKPOINT_FILE_PATH or get_last_checkpoint(cfg.OUTPUT_DIR)
    if not path:
        raise CheckpointError(
            f"no trained checkpoint: TEST.CHECKPOINT_FILE_PATH is empty and {get_checkpoint_dir(cfg.OUTPUT_DIR)} "
            f"holds none; train first (tools/run_net.py with this config) or set TEST.CHECKPOINT_FILE_PATH")
    checkpoint = read_checkpoint_file(path)
    if isinstance(checkpoint.get("cfg"), str):
        check_trained_config(cfg, path, checkpoint["cfg"])
    report = load_checkpoint(path, unwrap_model(model))
    problems = _unfilled_tensors(report)
    if report.resized:
        problems += [f"{len(report.resized)} tensor(s) resized: {', '.join(name for name, _, _ in report.resized[:5])}"]
    if problems:
        raise CheckpointError(f"{path}: does not fit {type(unwrap_model(model)).__name__} exactly; "
                              + "; ".join(problems) + "; another config?")
    return path
