"""The engine end to end on a tiny generated SynthAVA: resume after a kill, two processes vs one, tests, run_net."""

import hashlib
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import simplejson
import torch

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, load_config
from slowfast_bmvit.datasets.synthetic import generate_synth_ava
from slowfast_bmvit.engine import distributed as du
from slowfast_bmvit.engine.checkpoint import get_last_checkpoint, list_checkpoints
from slowfast_bmvit.engine.task import DetectionTask
from slowfast_bmvit.engine import tester
from slowfast_bmvit.engine.trainer import NonFiniteLossError, train
from slowfast_bmvit.models import build_model
from slowfast_bmvit.models.checkpoint_loading import CheckpointError
from slowfast_bmvit.utils.seeding import seed_everything

UNPATCHED_LOSSES = DetectionTask.losses

SYNTH_PARAMS = {"seed": 3, "num_train_videos": 4, "num_val_videos": 2, "video_seconds": 6, "frame_size": (48, 64)}

TINY_OPTS = [
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
    "MVIT.DEPTH", "2", "MVIT.EMBED_DIM", "16", "MVIT.PATCH_STRIDE", "[2, 4, 4]", "MVIT.DIM_MUL", "[[1, 2.0]]",
    "MVIT.CONV_STEM_CHANNELS", "[]", "MVIT.PATCH_KERNEL", "[3, 7, 7]", "MVIT.PATCH_PADDING", "[1, 3, 3]",
    "MVIT.HEAD_MUL", "[[1, 2.0]]", "MVIT.POOL_Q_STRIDE", "[[1, 1, 2, 2]]", "MVIT.POOL_KV_STRIDE_ADAPTIVE", "[1, 2, 2]",
    "BMVIT.PROJ_DIM", "16", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4", "SOLVER.MAX_EPOCH", "2",
    "SOLVER.WARMUP_EPOCHS", "0.5", "TRAIN.CHECKPOINT_PERIOD", "1", "DATA_LOADER.NUM_WORKERS", "0",
    "DETERMINISTIC", "True", "LOG_PERIOD", "1", "DEMO.NUM_VIS_KEYFRAMES", "2",
    "SYNTH.SEED", str(SYNTH_PARAMS["seed"]), "SYNTH.NUM_TRAIN_VIDEOS", str(SYNTH_PARAMS["num_train_videos"]),
    "SYNTH.NUM_VAL_VIDEOS", str(SYNTH_PARAMS["num_val_videos"]), "SYNTH.VIDEO_SECONDS",
    str(SYNTH_PARAMS["video_seconds"]), "SYNTH.FRAME_SIZE", "[48, 64]", "SYNTH.GENERATE_IF_MISSING", "False",
]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "synthava")
    generate_synth_ava(root, progress=False, **SYNTH_PARAMS)
    return root


def tiny_cfg(repo_root, synth_root, output_dir, *extra):
    opts = TINY_OPTS + ["SYNTH.ROOT", synth_root, "OUTPUT_DIR", str(output_dir), *extra]
    return assert_and_infer_cfg(load_config(str(repo_root / "configs" / "SYNTH" / "BMViT_demo.yaml"), opts))


def initial_weights(cfg):
    """The weights `train(cfg)` starts from in a single process: it seeds RNG_SEED before building the model."""
    seed_everything(cfg.RNG_SEED, deterministic=cfg.DETERMINISTIC)
    return {key: value.clone() for key, value in build_model(cfg).state_dict().items()}


def final_weights(output_dir):
    checkpoint = torch.load(get_last_checkpoint(str(output_dir)), map_location="cpu", weights_only=True)
    return checkpoint["epoch"], checkpoint["model_state"]


def json_losses(output_dir, kind="train_iter"):
    rows = []
    with open(os.path.join(output_dir, "json_stats.log")) as handle:
        for line in handle:
            stats = simplejson.loads(line)
            if stats["_type"] == kind:
                rows.append(stats)
    return rows


# The demo's convolutional stem (BatchNorm running statistics are state too), at the tiny config's token stride.
CONV_STEM_OPTS = ("MVIT.CONV_STEM_CHANNELS", "[4]", "MVIT.PATCH_KERNEL", "[3, 3, 3]", "MVIT.PATCH_STRIDE",
                  "[2, 2, 2]", "MVIT.PATCH_PADDING", "[1, 1, 1]")


def train_killed_at_step(cfg, monkeypatch, step: int) -> None:
    """Run `train(cfg)` until it is killed (KeyboardInterrupt) as it starts its `step`-th training step (1-based,
    counted over all epochs); what it saved before stays on disk."""
    real_losses = DetectionTask.losses
    calls = {"n": 0}

    def dies_at_the_step(self, model, batch):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt("killed")
        return real_losses(self, model, batch)

    monkeypatch.setattr(DetectionTask, "losses", dies_at_the_step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(DetectionTask, "losses", real_losses)


@pytest.mark.parametrize("backbone_opts", [(), CONV_STEM_OPTS], ids=["patch_embedding", "conv_stem"])
def test_killed_run_resumes_to_the_same_weights(repo_root, synth_root, tmp_path, monkeypatch, backbone_opts):
    """12 clips, batch 4: 3 iterations per epoch, 2 epochs; the run dies in epoch 2 after a mid-epoch checkpoint."""
    reference = tmp_path / "uninterrupted"
    train(tiny_cfg(repo_root, synth_root, reference, "TRAIN.CHECKPOINT_ITER_PERIOD", "1", *backbone_opts))

    killed = tmp_path / "killed"
    cfg = tiny_cfg(repo_root, synth_root, killed, "TRAIN.CHECKPOINT_ITER_PERIOD", "1", *backbone_opts)
    train_killed_at_step(cfg, monkeypatch, 5)  # epoch 2, second iteration: after the checkpoint of its first
    newest = os.path.basename(get_last_checkpoint(str(killed)))
    assert newest == "checkpoint_epoch_00001_iter_0000001.pyth", list_checkpoints(str(killed))

    train(cfg)  # AUTO_RESUME picks the mid-epoch checkpoint up
    epoch_a, weights_a = final_weights(reference)
    epoch_b, weights_b = final_weights(killed)
    assert epoch_a == epoch_b == 1
    assert weights_a.keys() == weights_b.keys()
    if backbone_opts:
        assert any(name.endswith("patch_embed.stem.1.running_mean") for name in weights_a)
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    resumed_iters = [row["iter"] for row in json_losses(killed) if row["epoch"] == "2/2"]
    assert resumed_iters[-2:] == ["2/3", "3/3"]  # the resumed run did only what was left


def test_nan_loss_stops_with_a_clear_error(repo_root, synth_root, tmp_path, monkeypatch):
    cfg = tiny_cfg(repo_root, synth_root, tmp_path)
    real_losses = DetectionTask.losses

    def nan_losses(self, model, batch):
        losses = real_losses(self, model, batch)
        losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(DetectionTask, "losses", nan_losses)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1, iteration 1: .*loss_bbox="):
        train(cfg)


def test_non_finite_gradient_norm_stops_instead_of_a_silent_clipped_step(repo_root, synth_root, tmp_path, monkeypatch):
    """Clipping by an infinite norm would zero every gradient; the run stops with the step named instead."""
    cfg = tiny_cfg(repo_root, synth_root, tmp_path)  # the demo recipe clips at SOLVER.CLIP_GRAD_L2NORM 1.0

    def losses_with_an_infinite_gradient(self, model, batch):
        losses = UNPATCHED_LOSSES(self, model, batch)
        next(model.parameters()).register_hook(lambda gradient: gradient * float("inf"))
        return losses

    monkeypatch.setattr(DetectionTask, "losses", losses_with_an_infinite_gradient)
    with pytest.raises(NonFiniteLossError, match=r"^non-finite gradient norm \(inf\) at epoch 1, iteration 1 with a "
                                                 r"finite loss"):
        train(cfg)
    assert get_last_checkpoint(str(tmp_path)) is None


class _UnsynchronisedDDP(torch.nn.Module):
    """Stands in for DistributedDataParallel without its gradient all-reduce: each process follows its own shard."""

    def __init__(self, module, **ddp_arguments):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def _inference_on_five_clips(cfg):
    """Detections of the tested checkpoint on the first 5 test clips: 2 processes split them 3 + 3 (the sampler
    repeats one clip), and the gathering must drop the repeat and keep the dataset order."""
    from slowfast_bmvit.datasets import build_dataset, construct_loader
    from slowfast_bmvit.engine.trained_checkpoint import load_test_checkpoint
    from slowfast_bmvit.engine.inference import run_inference

    dataset = build_dataset(cfg.TEST.DATASET, cfg, "test", model_reads_boxes=False)
    five = torch.utils.data.Subset(dataset, range(5))
    five.collate_fn = dataset.collate_fn
    model = build_model(cfg)
    load_test_checkpoint(cfg, model)
    return run_inference(cfg, construct_loader(cfg, "test", dataset=five), model, DetectionTask(cfg, model))


def _train_test_and_report(cfg, test_cfg, unsynchronised=False):
    """Train `cfg`, test `test_cfg`, run `_inference_on_five_clips`; rank 0 returns what the test compares."""
    if unsynchronised:
        import slowfast_bmvit.models.build as model_build

        model_build.torch.nn.parallel.DistributedDataParallel = _UnsynchronisedDDP
    train(cfg)
    tester.test(test_cfg)
    detections = _inference_on_five_clips(test_cfg)
    if du.get_rank() != 0:
        return None
    with open(os.path.join(test_cfg.OUTPUT_DIR, "detections_test.csv")) as handle:
        rows = [line.strip().split(",") for line in handle]
    return {"losses": [row["loss"] for row in json_losses(cfg.OUTPUT_DIR)], "weights": final_weights(cfg.OUTPUT_DIR)[1],
            "test_rows": rows, "five": detections}


# Plain SGD: an update proportional to the gradient (AdamW's first steps are about lr x sign(gradient), so a tiny
# gradient difference can flip a whole step).
GLOO_OPTS = ("SOLVER.MAX_EPOCH", "1", "SOLVER.OPTIMIZING_METHOD", "sgd", "SOLVER.BASE_LR", "0.05",
             "SOLVER.MOMENTUM", "0.9", "BMVIT.ACTOR_THRESH", "0.0")


def _weight_gap(reference, other, initial):
    """||other - reference|| / ||reference - initial|| over the floating-point tensors: the gap between two runs
    relative to the distance training moved the weights."""
    keys = [key for key in reference if reference[key].is_floating_point()]
    gap = sum(float((other[k].double() - reference[k].double()).norm()) ** 2 for k in keys) ** 0.5
    moved = sum(float((reference[k].double() - initial[k].double()).norm()) ** 2 for k in keys) ** 0.5
    return gap / moved


def _single_and_double_runs(repo_root, synth_root, tmp_path, unsynchronised=False):
    one = tiny_cfg(repo_root, synth_root, tmp_path / "one", *GLOO_OPTS)
    torch.set_num_threads(1)
    initial = initial_weights(one)
    single = _train_test_and_report(one, one)
    single_five = _inference_on_five_clips(one)
    two = tiny_cfg(repo_root, synth_root, tmp_path / "two", *GLOO_OPTS)
    # The two processes test the single-process checkpoint: the same weights, so the same detections.
    two_test = tiny_cfg(repo_root, synth_root, tmp_path / "two", *GLOO_OPTS, "TEST.CHECKPOINT_FILE_PATH",
                        get_last_checkpoint(str(tmp_path / "one")))
    double = du.launch_cpu_processes(2, _train_test_and_report, two, two_test, unsynchronised)[0]
    return initial, single, single_five, double


# Same global batch (4 clips, 2 per process): the matched-actor losses are normalised by the actor count averaged
# over processes, but the actor cross-entropy is weighted per process, so one and two processes differ slightly
# (about 1.5 % of the distance the weights move in this run; about 60 % without the gradient all-reduce).
WEIGHT_GAP_TOLERANCE = 0.05


def test_two_gloo_processes_train_and_test_like_one(repo_root, synth_root, tmp_path):
    initial, single, single_five, double = _single_and_double_runs(repo_root, synth_root, tmp_path)
    assert len(single["losses"]) == len(double["losses"]) == 3
    for a, b in zip(single["losses"], double["losses"]):
        assert abs(a - b) <= 0.02 * abs(a), (single["losses"], double["losses"])
    assert _weight_gap(single["weights"], double["weights"], initial) < WEIGHT_GAP_TOLERANCE

    # Inference gathered from two processes equals one process's, row for row (the same checkpoint).
    assert len(single["test_rows"]) == len(double["test_rows"]) > 0
    for a, b in zip(single["test_rows"], double["test_rows"]):
        assert a[:2] == b[:2] and a[6] == b[6]
        np.testing.assert_allclose(np.array(a[2:6] + a[7:], float), np.array(b[2:6] + b[7:], float), atol=2e-3)
    assert [clip["meta"]["sec"] for clip in double["five"]] == [clip["meta"]["sec"] for clip in single_five]
    assert [clip["meta"]["video"] for clip in double["five"]] == [clip["meta"]["video"] for clip in single_five]
    assert len(single_five) == 5
    for a, b in zip(single_five, double["five"]):
        for key in ("boxes", "class_scores", "actor_scores"):
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_the_two_process_check_fails_without_the_gradient_all_reduce(repo_root, synth_root, tmp_path):
    """The negative control of the test above: without synchronised gradients the weights drift apart."""
    initial, single, _, double = _single_and_double_runs(repo_root, synth_root, tmp_path, unsynchronised=True)
    assert _weight_gap(single["weights"], double["weights"], initial) > 4 * WEIGHT_GAP_TOLERANCE


def test_test_writes_metric_detections_and_pictures(repo_root, synth_root, tmp_path):
    cfg = tiny_cfg(repo_root, synth_root, tmp_path, "SOLVER.MAX_EPOCH", "1", "BMVIT.ACTOR_THRESH", "0.0")
    train(cfg)
    result = tester.test(cfg)
    assert 0.0 <= result["mAP"] <= 1.0
    assert set(result["per_class"]) <= {"fall down", "get up", "jump/leap", "run/jog", "stand", "walk",
                                        "carry/hold (an object)", "hand wave", "talk to (e.g., self, a person, a group)"}
    with open(tmp_path / "detections_test.csv") as handle:
        rows = [line.strip().split(",") for line in handle]
    assert rows and all(len(row) == 8 for row in rows)
    assert {int(row[6]) for row in rows} == {5, 6, 7, 10, 12, 14, 17, 69, 79}  # every evaluated class has a row
    saved = simplejson.load(open(tmp_path / "test_results.json"))
    assert saved["mAP"] == pytest.approx(result["mAP"])
    assert (tmp_path / "per_class_ap.png").stat().st_size > 0
    assert len(os.listdir(tmp_path / "keyframes")) == 2
    # The other TEST.FLIP_AVERAGE setting tests the same checkpoint with other (averaged or single-view) scores.
    other = tiny_cfg(repo_root, synth_root, tmp_path, "SOLVER.MAX_EPOCH", "1", "BMVIT.ACTOR_THRESH", "0.0",
                     "TEST.FLIP_AVERAGE", str(not cfg.TEST.FLIP_AVERAGE))
    other_result = tester.test(other)
    assert 0.0 <= other_result["mAP"] <= 1.0
    with open(tmp_path / "detections_test.csv") as handle:
        other_rows = [line.strip().split(",") for line in handle]
    assert {tuple(row[:2]) for row in other_rows} == {tuple(row[:2]) for row in rows}  # the same keyframes
    assert sorted(other_rows) != sorted(rows)
    # The results name the tested checkpoint: the file, its epoch and the sha256 of its bytes.
    checkpoint = get_last_checkpoint(str(tmp_path))
    with open(checkpoint, "rb") as handle:
        sha256 = hashlib.sha256(handle.read()).hexdigest()
    assert saved["checkpoint"] == {"path": checkpoint, "epoch": 1, "sha256": sha256}

    # BMViT's test set is every annotated keyframe, not the keyframes where the person detector of the two-stage
    # baseline found someone (a threshold of 0.96 keeps 4 of the 6 val keyframes' detector boxes).
    with open(os.path.join(synth_root, "annotations", "synthava_val_v2.2.csv")) as handle:
        annotated = {tuple(line.split(",")[:2]) for line in handle}
    detected = tiny_cfg(repo_root, synth_root, tmp_path, "SOLVER.MAX_EPOCH", "1", "BMVIT.ACTOR_THRESH", "0.0",
                        "AVA.TEST_USE_GT_BOXES", "False", "AVA.DETECTION_SCORE_THRESH", "0.96")
    tester.test(detected)
    with open(tmp_path / "detections_test.csv") as handle:
        tested = {tuple(line.split(",")[:2]) for line in handle}
    assert len(annotated) == 6 and tested == annotated


def test_two_stage_baseline_trains_and_tests_through_run_net(repo_root, synth_root, tmp_path):
    command = [sys.executable, str(repo_root / "tools" / "run_net.py"), "--cfg",
               str(repo_root / "configs" / "SYNTH" / "BMViT_demo.yaml"), *TINY_OPTS, "SYNTH.ROOT", synth_root,
               "OUTPUT_DIR", str(tmp_path), "MODEL.MODEL_NAME", "MViTRoI", "SOLVER.MAX_EPOCH", "1",
               "AVA.TEST_USE_GT_BOXES", "False", "AVA.DETECTION_SCORE_THRESH", "0.5", "DATA.RESIZE_MODE", "short_side",
               "DATA.TRAIN_JITTER_SCALES", "[32, 40]"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("mAP@0.5IOU: ")
    assert 0.0 <= float(last_line.split(": ")[1]) <= 1.0
    assert (tmp_path / "detections_test.csv").stat().st_size > 0
    assert os.path.basename(get_last_checkpoint(str(tmp_path))) == "checkpoint_epoch_00001.pyth"


def _record_batch_shapes(monkeypatch):
    """Patch DetectionTask.losses to record (batch size, crop height, crop width) of every training step."""
    shapes = []
    real_losses = DetectionTask.losses

    def recording_losses(self, model, batch):
        shapes.append((batch["inputs"].shape[0], *batch["inputs"].shape[-2:]))
        return real_losses(self, model, batch)

    monkeypatch.setattr(DetectionTask, "losses", recording_losses)
    return shapes, real_losses


def test_multigrid_short_cycle_trains_at_cycling_crops_and_resumes(repo_root, synth_root, tmp_path, monkeypatch):
    """Crop 32 with factors (0.5, 0.707): crops 16, 23, 32 with batches 4, 2, 1 (B x S^2 about constant)."""
    opts = ("MULTIGRID.SHORT_CYCLE", "True", "MULTIGRID.EPOCH_FACTOR", "1.0", "TRAIN.BATCH_SIZE", "1",
            "SOLVER.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_ITER_PERIOD", "1")
    shapes, real_losses = _record_batch_shapes(monkeypatch)
    reference = tmp_path / "uninterrupted"
    train(tiny_cfg(repo_root, synth_root, reference, *opts))
    # 12 clips per epoch: batches of 4, 2, 1, 4 (7 + 4 = 11 clips); the last clip cannot fill a batch of 2.
    assert shapes == [(4, 16, 16), (2, 23, 23), (1, 32, 32), (4, 16, 16)] * 2

    shapes.clear()
    killed = tmp_path / "killed"
    calls = {"n": 0}

    def dies_at_the_seventh_step(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 7:  # epoch 2, third batch: its first two batches are in a mid-epoch checkpoint
            raise KeyboardInterrupt("killed")
        shapes.append((batch["inputs"].shape[0], *batch["inputs"].shape[-2:]))
        return real_losses(self, model, batch)

    monkeypatch.setattr(DetectionTask, "losses", dies_at_the_seventh_step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(repo_root, synth_root, killed, *opts))
    assert os.path.basename(get_last_checkpoint(str(killed))) == "checkpoint_epoch_00001_iter_0000002.pyth"
    shapes.clear()
    calls["n"] = -100
    train(tiny_cfg(repo_root, synth_root, killed, *opts))
    assert shapes == [(1, 32, 32), (4, 16, 16)]  # the resumed run goes on at the right place of the cycle
    epoch_a, weights_a = final_weights(reference)
    epoch_b, weights_b = final_weights(killed)
    assert epoch_a == epoch_b == 1
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


def test_multigrid_long_cycle_trains_at_changing_shapes(repo_root, synth_root, tmp_path, monkeypatch):
    from slowfast_bmvit.engine import trainer

    cfg = tiny_cfg(repo_root, synth_root, tmp_path, "MULTIGRID.LONG_CYCLE", "True",
                   "SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 4]", "SOLVER.LRS", "[1, 0.1]",
                   "SOLVER.MAX_EPOCH", "6", "TRAIN.CHECKPOINT_PERIOD", "100", "TRAIN.BATCH_SIZE", "1")
    shapes = []
    real_construct_loader = trainer.construct_loader

    def recording_construct_loader(cfg, split, *args):
        loader = real_construct_loader(cfg, split, *args)
        if split == "train":
            shapes.append((cfg.TRAIN.BATCH_SIZE, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, loader.batch_size,
                           tuple(next(iter(loader))["inputs"].shape[2:])))
        return loader

    monkeypatch.setattr(trainer, "construct_loader", recording_construct_loader)
    train(cfg)
    assert cfg.SOLVER.MAX_EPOCH == 6 and cfg.DATA.NUM_FRAMES == 4  # the caller's config is left untouched
    assert len(shapes) == 4, shapes  # (T, S) = (1, 23), (2, 23), (2, 32), (4, 32): one loader per stage
    for batch, frames, crop, loader_batch, clip_shape in shapes:
        assert clip_shape == (frames, crop, crop) and loader_batch == batch
        assert batch * frames * crop**2 <= 1 * 4 * 32**2 * 1.3  # B x T x S^2 about constant (rounding)
    assert shapes[-1][1:3] == (4, 32)  # the schedule ends at the full shape
    assert len({shape[1:3] for shape in shapes}) == 4
    final = torch.load(get_last_checkpoint(str(tmp_path)), map_location="cpu", weights_only=True)
    assert final["epoch"] == 8  # the schedule stretched 6 epochs to 9 (EPOCH_FACTOR 1.5)


def test_batch_size_larger_than_the_training_set_is_refused(repo_root, synth_root, tmp_path):
    cfg = tiny_cfg(repo_root, synth_root, tmp_path, "TRAIN.BATCH_SIZE", "16")
    with pytest.raises(ConfigError, match=r"^TRAIN.BATCH_SIZE: 16 is larger than the training set \(synthava: 12 "
                                          r"clips\); not one full batch per epoch$"):
        train(cfg)
    assert get_last_checkpoint(str(tmp_path)) is None  # nothing "trained", nothing saved


def _record_batch_keyframes(monkeypatch, die_at_step=None):
    """Patch DetectionTask.losses to record the (video, sec) keyframes of every training step; raise
    KeyboardInterrupt at step `die_at_step` (1-based, before it trains) when given."""
    steps = []

    def recording_losses(self, model, batch):
        if die_at_step is not None and len(steps) + 1 == die_at_step:
            raise KeyboardInterrupt("killed")
        steps.append([(meta["video"], meta["sec"]) for meta in batch["meta"]])
        return UNPATCHED_LOSSES(self, model, batch)

    monkeypatch.setattr(DetectionTask, "losses", recording_losses)
    return steps


def test_mid_epoch_resume_with_another_batch_size_goes_on_at_the_same_sample(repo_root, synth_root, tmp_path,
                                                                             monkeypatch, caplog):
    """12 clips; batch 2, killed after 2 iterations (4 samples, checkpointed): batch 4 resumes at iteration 1, so
    that the epoch trains every clip exactly once, and says so in one start line. Killed after 3 iterations (6
    samples), batch 4 cannot resume at the same sample: one line naming the numbers."""
    opts = ("SOLVER.MAX_EPOCH", "1", "TRAIN.CHECKPOINT_ITER_PERIOD", "1")
    steps = _record_batch_keyframes(monkeypatch, die_at_step=3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(repo_root, synth_root, tmp_path / "a", "TRAIN.BATCH_SIZE", "2", *opts))
    saved = get_last_checkpoint(str(tmp_path / "a"))
    assert os.path.basename(saved) == "checkpoint_epoch_00000_iter_0000002.pyth"
    before = [clip for step in steps for clip in step]
    steps = _record_batch_keyframes(monkeypatch)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(tiny_cfg(repo_root, synth_root, tmp_path / "a", "TRAIN.BATCH_SIZE", "4", *opts))
    starts = [record.getMessage() for record in caplog.records
              if "Start epoch" in record.getMessage() or "resuming at iteration" in record.getMessage()]
    assert starts == [f"Start epoch 1 (iteration 1) of 4 clips: {saved} stopped after 2 iterations of 2 clips"]
    assert [len(step) for step in steps] == [4, 4]
    after = [clip for step in steps for clip in step]
    assert len(before) == 4 and len(set(before + after)) == 12  # the 12 training clips, each once
    resumed = [row["iter"] for row in json_losses(tmp_path / "a")][-2:]
    assert resumed == ["2/3", "3/3"]

    _record_batch_keyframes(monkeypatch, die_at_step=4)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(repo_root, synth_root, tmp_path / "b", "TRAIN.BATCH_SIZE", "2", *opts))
    _record_batch_keyframes(monkeypatch)
    with pytest.raises(CheckpointError, match=r"saved 3 iterations of 2 clips \(6 samples\) into epoch 1; "
                                              r"TRAIN.BATCH_SIZE 4 cannot resume at that sample"):
        train(tiny_cfg(repo_root, synth_root, tmp_path / "b", "TRAIN.BATCH_SIZE", "4", *opts))


def test_validation_during_training_scores_the_weights_the_test_scores(repo_root, synth_root, tmp_path):
    cfg = tiny_cfg(repo_root, synth_root, tmp_path, "TRAIN.EVAL_PERIOD", "1", "BMVIT.ACTOR_THRESH", "0.0")
    train(cfg)
    validations = json_losses(tmp_path, "val_epoch")
    assert [row["epoch"] for row in validations] == ["1/2", "2/2"]
    assert all(0.0 <= row["map"] <= 1.0 for row in validations)
    # SynthAVA's test split is its val split (FULL_TEST_ON_VAL): the last validation saw the final weights.
    assert validations[-1]["map"] == pytest.approx(tester.test(cfg)["mAP"], rel=1e-5)  # json_stats: 6 digits


# One plain SGD step on the whole training set (12 clips, batch 12): the weights move by exactly
# -BASE_LR x the (clipped) gradient.
ONE_SGD_STEP = ("TRAIN.BATCH_SIZE", "12", "SOLVER.MAX_EPOCH", "1", "SOLVER.OPTIMIZING_METHOD", "sgd",
                "SOLVER.MOMENTUM", "0.0", "SOLVER.NESTEROV", "False", "SOLVER.WEIGHT_DECAY", "0.0",
                "SOLVER.LR_POLICY", "constant", "SOLVER.WARMUP_EPOCHS", "0.0", "SOLVER.BASE_LR", "0.5")


@pytest.mark.parametrize("clip_key, clip, measure", [
    ("SOLVER.CLIP_GRAD_L2NORM", 1e-3, lambda steps: sum(float(s.norm()) ** 2 for s in steps) ** 0.5),
    ("SOLVER.CLIP_GRAD_VAL", 1e-5, lambda steps: max(float(s.abs().max()) for s in steps)),
], ids=["l2_norm", "value"])
def test_gradient_clipping_bounds_the_step(repo_root, synth_root, tmp_path, clip_key, clip, measure):
    other_key = "SOLVER.CLIP_GRAD_VAL" if clip_key == "SOLVER.CLIP_GRAD_L2NORM" else "SOLVER.CLIP_GRAD_L2NORM"
    cfg = tiny_cfg(repo_root, synth_root, tmp_path, *ONE_SGD_STEP, clip_key, str(clip), other_key, "0.0")
    initial = initial_weights(cfg)
    train(cfg)
    final = final_weights(tmp_path)[1]
    steps = [final[key] - initial[key] for key in final if final[key].is_floating_point()]
    if clip_key == "SOLVER.CLIP_GRAD_L2NORM":  # the gradient norm is logged before clipping
        assert json_losses(tmp_path)[0]["grad_norm"] > 100 * clip
    else:  # many gradient entries were larger than the clip value
        assert sum(int((step.abs() > 0.5 * clip * 0.999).sum()) for step in steps) > 100
    # lr x clip, up to float32 rounding of w - lr x g (a step of 5e-6 on weights of about 0.1)
    assert measure(steps) == pytest.approx(0.5 * clip, rel=5e-3)


def test_frozen_backbone_keeps_its_weights_and_batchnorm_statistics(repo_root, synth_root, tmp_path):
    cfg = tiny_cfg(repo_root, synth_root, tmp_path, "SOLVER.MAX_EPOCH", "1", "TRAIN.FREEZE_BACKBONE", "True",
                   *CONV_STEM_OPTS)
    initial = initial_weights(cfg)
    train(cfg)
    final = final_weights(tmp_path)[1]
    backbone = [key for key in final if key.startswith("backbone.")]
    assert any(key.endswith("stem.1.running_mean") for key in backbone)
    for key in backbone:
        assert torch.equal(final[key], initial[key]), key
    heads = [key for key in final if not key.startswith("backbone.") and final[key].is_floating_point()]
    assert heads and all(not torch.equal(final[key], initial[key]) for key in heads if key.endswith("weight"))


def test_bfloat16_autocast_trains_on_the_cpu(repo_root, synth_root, tmp_path, monkeypatch):
    cfg = tiny_cfg(repo_root, synth_root, tmp_path, "SOLVER.MAX_EPOCH", "1", "TRAIN.MIXED_PRECISION", "True",
                   "TRAIN.MIXED_PRECISION_DTYPE", "bfloat16")
    seen = []

    def recording_losses(self, model, batch):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return UNPATCHED_LOSSES(self, model, batch)

    monkeypatch.setattr(DetectionTask, "losses", recording_losses)
    initial = initial_weights(cfg)
    train(cfg)
    assert seen == [(True, torch.bfloat16)] * 3
    losses = [row["loss"] for row in json_losses(tmp_path)]
    assert len(losses) == 3 and all(np.isfinite(losses))
    final = final_weights(tmp_path)[1]
    assert all(value.dtype == initial[key].dtype for key, value in final.items())  # float32 master weights
    assert not torch.equal(final["heads.classes.layers.0.weight"], initial["heads.classes.layers.0.weight"])


def test_training_already_complete_trains_nothing_and_returns_the_final_weights(repo_root, synth_root, tmp_path,
                                                                                monkeypatch, caplog):
    cfg = tiny_cfg(repo_root, synth_root, tmp_path, "SOLVER.MAX_EPOCH", "1")
    train(cfg)
    folder = tmp_path / "checkpoints"
    saved = {name: (folder / name).stat().st_mtime_ns for name in os.listdir(folder)}
    steps = _record_batch_keyframes(monkeypatch)
    with caplog.at_level(logging.INFO):
        model = train(cfg)
    assert steps == [] and "training already complete (1 of 1 epochs" in caplog.text
    assert {name: (folder / name).stat().st_mtime_ns for name in os.listdir(folder)} == saved
    final = final_weights(tmp_path)[1]
    assert all(torch.equal(value, final[key]) for key, value in model.state_dict().items())


def test_bfloat16_autocast_gradients_match_float32(repo_root, synth_root, tmp_path):
    """The first batch's gradients under CPU bf16 autocast agree with float32 within bf16 precision, tensor by
    tensor (the pooling convolutions' weight gradients included: torch's CPU kernel gets them wrong for a
    channels-last bf16 input). Tensors whose float32 gradient is zero up to rounding (the key norm's bias: a
    softmax ignores a shift of all keys) are left out."""
    from slowfast_bmvit.datasets import construct_loader, set_loader_epoch

    cfg = tiny_cfg(repo_root, synth_root, tmp_path)
    seed_everything(cfg.RNG_SEED, deterministic=True)
    model = build_model(cfg)
    task = DetectionTask(cfg, model)
    loader = construct_loader(cfg, "train")
    set_loader_epoch(loader, 0)
    batch = next(iter(loader))

    def gradients(bfloat16):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            task.losses(model, batch)["loss"].backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    exact, half = gradients(False), gradients(True)
    assert any(".attn.pool_k." in name for name in exact)
    for name, gradient in exact.items():
        if gradient.norm() > 1e-6:
            relative = float((half[name] - gradient).norm() / gradient.norm())
            assert relative < 0.3, (name, relative)
