"""Every config key does something or is refused: the guard against keys that are accepted and ignored.

`KeyRecordingCfgNode` is a CfgNode that records each leaf key the code reads. GUARD_RUNS are short runs that
together go through the package's features, each from the defaults plus the overrides it lists (TINY_OPTS first).
The guard asserts that every key of `get_cfg()` was read by some run or is refused unless at its default
(`config/validation.py`: REFUSED_UNLESS_DEFAULT, REFUSED_VALUES), and that each refused key stops a run with one
line naming it.

A feature with keys of its own joins by appending a GuardRun: its overrides switch the feature on, and its action
(train + test by default) runs the code that reads them.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np
import pytest
import simplejson
import torch
from fvcore.common.config import CfgNode

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, get_cfg, load_config
from slowfast_bmvit.config.validation import REFUSED_UNLESS_DEFAULT, REFUSED_VALUES
from slowfast_bmvit.datasets.act_convert import save_act_pickle
from slowfast_bmvit.engine.distributed import plan_launch
from slowfast_bmvit.engine.launch import run_job
from slowfast_bmvit.models import build_model

# ------------------------------------------------------------------ the recorder


class KeyRecordingCfgNode(CfgNode):
    """A CfgNode that adds the full name of every leaf it hands out to `KeyRecordingCfgNode.read`.

    Reads are attribute access, item access and `get`; copies (`clone`, deepcopy, pickling) keep recording.
    Iterating, `dump()` and `dict(...)` do not count as reads.
    """

    read: set[str] = set()

    def __init__(self, init_dict=None, key_list=None, new_allowed=False):
        super().__init__(init_dict, key_list, new_allowed)
        self.__dict__["_key_prefix"] = "".join(f"{key}." for key in key_list or [])

    def __getitem__(self, name):
        value = super().__getitem__(name)
        if not isinstance(value, CfgNode):
            KeyRecordingCfgNode.read.add(self.__dict__["_key_prefix"] + name)
        return value

    def get(self, name, default=None):
        return self[name] if name in self else default


def leaf_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for name, value in node.items():
        keys.extend(leaf_keys(value, f"{prefix}{name}.") if isinstance(value, CfgNode) else [prefix + name])
    return keys


# ------------------------------------------------------------------ the runs

SYNTH_OPTS = ("TRAIN.DATASET", "synthava", "TEST.DATASET", "synthava", "SYNTH.SEED", "3", "SYNTH.NUM_TRAIN_VIDEOS",
              "4", "SYNTH.NUM_VAL_VIDEOS", "2", "SYNTH.VIDEO_SECONDS", "6", "SYNTH.FRAME_SIZE", "[48, 64]",
              "AVA.FULL_TEST_ON_VAL", "True", "AVA.TEST_USE_GT_BOXES", "True")
# A two-block MViT on 4 x 32 x 32 clips, one epoch of three batches, in this process.
TINY_OPTS = (
    "DETECTION.ENABLE", "True", "NUM_GPUS", "0", "DATA_LOADER.NUM_WORKERS", "0", "DETERMINISTIC", "True",
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
    "MVIT.DEPTH", "2", "MVIT.EMBED_DIM", "16", "MVIT.DIM_MUL", "[[1, 2.0]]", "MVIT.HEAD_MUL", "[[1, 2.0]]",
    "MVIT.POOL_Q_STRIDE", "[[1, 1, 2, 2]]", "MVIT.POOL_KV_STRIDE_ADAPTIVE", "[1, 2, 2]", "MVIT.PATCH_PADDING",
    "[1, 3, 3]", "BMVIT.PROJ_DIM", "16", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4", "SOLVER.MAX_EPOCH", "1",
    "TRAIN.EVAL_PERIOD", "1", "LOG_PERIOD", "1", "DEMO.NUM_VIS_KEYFRAMES", "1",
)


def train_and_test(cfg, workdir: Path) -> None:
    """tools/run_net.py's job: training (with validation) then the test, in this process."""
    run_job(cfg, None)


def fine_tune_from_a_checkpoint(cfg, workdir: Path) -> None:
    """Train from the weights of a checkpoint file that has an epoch, as a K400 -> AVA fine-tuning does."""
    path = workdir / "init.pyth"
    model = build_model(cfg)
    torch.save({"epoch": 5, "model_state": model.state_dict(), "optimizer_state": {}}, path)
    cfg.TRAIN.CHECKPOINT_FILE_PATH = str(path)
    run_job(cfg, None)


def plan_two_machines(cfg, workdir: Path) -> None:
    """The launch plan of shard 1 of two machines with two GPUs each (nothing is started)."""
    plan = plan_launch(cfg, "tcp://127.0.0.1:1", environ={})
    assert (plan.world_size, plan.shard_id, plan.local_size, plan.backend) == (4, 1, 2, "nccl")


def build_classifier(cfg, workdir: Path) -> None:
    """The K400 MViT classifier (configs/Kinetics): built and run on one clip."""
    model = build_model(cfg).eval()
    with torch.no_grad():
        scores = model(torch.zeros(1, 3, cfg.DATA.NUM_FRAMES, 32, 32))
    assert scores.shape == (1, cfg.MODEL.NUM_CLASSES)


def demo_on_a_frame_folder(cfg, workdir: Path) -> None:
    """tools/demo_net.py's job on a folder of twelve frames, from a checkpoint of the (untrained) model."""
    from slowfast_bmvit.datasets.frame_stream import open_frame_source
    from slowfast_bmvit.datasets.label_maps import column_names_from_cfg
    from slowfast_bmvit.engine.trained_checkpoint import load_trained_checkpoint
    from slowfast_bmvit.engine.demo import run_demo

    model = build_model(cfg).eval()
    path = workdir / "trained.pyth"
    torch.save({"epoch": 1, "model_state": model.state_dict(), "cfg": cfg.dump()}, path)
    cfg.TEST.CHECKPOINT_FILE_PATH = str(path)
    frames = workdir / "frames"
    frames.mkdir()
    for index in range(12):
        cv2.imwrite(str(frames / f"{index + 1:06d}.jpg"), np.full((48, 64, 3), 20 * index, np.uint8))
    load_trained_checkpoint(cfg, model)
    summary = run_demo(cfg, model, open_frame_source(frames, cfg.DEMO.FOLDER_FPS), workdir / "demo",
                       column_names_from_cfg(cfg), str(path), show_progress=False)
    assert (workdir / "demo" / "detections.csv").exists(), summary


@dataclass(frozen=True)
class GuardRun:
    """One short run: TINY_OPTS, then `opts` ("{synth}", "{act}" and "{workdir}" are filled in), then `action`."""

    name: str
    opts: tuple[str, ...] = ()
    action: Callable[..., None] = train_and_test
    data: tuple[str, ...] = ("synth",)  # datasets the run needs: "synth" (SynthAVA), "act" (an ACT-format one)
    tiny: bool = True  # start from TINY_OPTS


GUARD_RUNS: list[GuardRun] = [
    GuardRun("bmvit", SYNTH_OPTS + ("TENSORBOARD.ENABLE", "True", "TEST.SAVE_RESULTS_PATH", "detections.pkl",
                                    "TEST.FLIP_AVERAGE", "True", "SOLVER.WARMUP_EPOCHS", "0.5")),
    GuardRun("bmvit_stem_multigrid_bf16", SYNTH_OPTS + (
        "MVIT.CONV_STEM_CHANNELS", "[4]", "MVIT.PATCH_KERNEL", "[3, 3, 3]", "MVIT.PATCH_STRIDE", "[2, 2, 2]",
        "MVIT.PATCH_PADDING", "[1, 1, 1]", "TRAIN.MIXED_PRECISION", "True", "SOLVER.OPTIMIZING_METHOD", "adamw",
        "MULTIGRID.LONG_CYCLE", "True", "MULTIGRID.SHORT_CYCLE", "True", "SOLVER.LR_POLICY",
        "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 1]", "SOLVER.LRS", "[1, 0.1]", "SOLVER.MAX_EPOCH", "2",
        "TRAIN.BATCH_SIZE", "1", "TEST.BATCH_SIZE", "1", "TRAIN.EVAL_PERIOD", "0",
        # The long cycle's first stage and the short cycle make batches of up to 16 clips: 18 training clips.
        "SYNTH.ROOT", "{workdir}/synthava", "SYNTH.NUM_TRAIN_VIDEOS", "6")),
    GuardRun("two_stage_fine_tuned", SYNTH_OPTS + (
        "MODEL.MODEL_NAME", "MViTRoI", "AVA.TEST_USE_GT_BOXES", "False", "AVA.DETECTION_SCORE_THRESH", "0.5",
        "DATA.RESIZE_MODE", "short_side", "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "TRAIN.AUTO_RESUME", "False",
        "TRAIN.CHECKPOINT_EPOCH_RESET", "True",
        "TRAIN.EVAL_PERIOD", "0"), action=fine_tune_from_a_checkpoint),
    GuardRun("jhmdb_from_videos", (
        "TRAIN.DATASET", "jhmdb", "TEST.DATASET", "jhmdb", "ACT.GT_FILE", "{act}/gt.pkl", "ACT.FRAME_DIR",
        "{act}/videos", "ACT.SOURCE", "videos", "MODEL.NUM_CLASSES", "3", "BMVIT.CLASS_LOSS", "ce",
        "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "2"), data=("act",)),
    GuardRun("ucf24_from_frames", (
        "TRAIN.DATASET", "ucf24", "TEST.DATASET", "ucf24", "ACT.GT_FILE", "{act}/gt.pkl", "ACT.FRAME_DIR",
        "{act}/frames", "MODEL.NUM_CLASSES", "3", "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "2",
        "TRAIN.EVAL_PERIOD", "0"), data=("act",)),
    GuardRun("bmvit_vit_cross_attention", SYNTH_OPTS + (
        "BMVIT.BACKBONE", "ViT", "VIT.PATCH_SIZE", "[2, 8, 8]", "VIT.EMBED_DIM", "16", "VIT.DEPTH", "2",
        "VIT.NUM_HEADS", "2", "VIT.POS_EMBED", "learned", "VIT.CONV_STEM_CHANNELS", "[4]", "BMVIT.PROJ_DIM", "0",
        "BMVIT.TOKEN_ARRANGEMENT", "center", "BMVIT.CLASS_HEAD", "cross_attention", "BMVIT.CROSS_ATTENTION_HEADS",
        "2", "SOLVER.LAYER_DECAY", "0.75", "TRAIN.EVAL_PERIOD", "0")),
    GuardRun("bmvit_hiera", SYNTH_OPTS + (
        "BMVIT.BACKBONE", "Hiera", "HIERA.EMBED_DIM", "4", "HIERA.STAGES", "[1, 2, 1, 1]", "HIERA.Q_POOL", "2",
        "HIERA.DROPPATH_RATE", "0.1", "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64",
        "TRAIN.EVAL_PERIOD", "0")),
    GuardRun("test_without_checkpoint", SYNTH_OPTS + ("TRAIN.ENABLE", "False", "TEST.ALLOW_RANDOM_WEIGHTS", "True")),
    GuardRun("demo_net", SYNTH_OPTS + ("DEMO.STRIDE", "4"), action=demo_on_a_frame_folder, data=()),
    GuardRun("launch_plan", ("NUM_GPUS", "2", "NUM_SHARDS", "2", "SHARD_ID", "1", "TRAIN.BATCH_SIZE", "8",
                             "TEST.BATCH_SIZE", "8"), action=plan_two_machines, data=(), tiny=False),
    GuardRun("kinetics_classifier", ("--cfg", "configs/Kinetics/MViTv2_S_16x4.yaml", "NUM_GPUS", "0",
                                     "DATA.NUM_FRAMES", "4", "MVIT.DEPTH", "2", "MVIT.DIM_MUL", "[[1, 2.0]]",
                                     "MVIT.HEAD_MUL", "[[1, 2.0]]", "MVIT.POOL_Q_STRIDE", "[[1, 1, 2, 2]]"),
             action=build_classifier, data=(), tiny=False),
]


def _write_act_dataset(root: Path) -> None:
    """Two 12-frame clips (64x48; as videos and as JPEG folders) with one person tube each, annotated in 320x240
    pixels, three classes."""
    tube = lambda frames, box: np.array([[f, *box] for f in frames], np.float32)  # noqa: E731
    gt = {
        "labels": ["brush_hair", "catch", "clap"],
        "train_videos": [["brush_hair/A"]],
        "test_videos": [["clap/B"]],
        "nframes": {"brush_hair/A": 12, "clap/B": 12},
        "resolution": {"brush_hair/A": (240, 320), "clap/B": (240, 320)},
        "gttubes": {"brush_hair/A": {0: [tube(range(1, 13), (32, 24, 160, 120))]},
                    "clap/B": {2: [tube(range(1, 13), (160, 120, 320, 240))]}},
    }
    save_act_pickle(gt, root / "gt.pkl")
    for video in gt["nframes"]:
        path = root / "videos" / f"{video}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for index in range(12):
                image = np.full((48, 64, 3), 16 * index, np.uint8)
                cv2.rectangle(image, (6, 5), (32, 24), (255, 255, 255), -1)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                folder = root / "frames" / video
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{index + 1:05d}.jpg"), image)
            container.mux(stream.encode())


def guard_config(run: GuardRun, repo_root: Path, places: dict[str, str]):
    """The validated config of `run`, as a KeyRecordingCfgNode (validation's own reads are not recorded)."""
    opts = [item.format(**places) for item in run.opts]
    cfg_file = None
    if opts[:1] == ["--cfg"]:
        cfg_file, opts = str(repo_root / opts[1]), opts[2:]
    base = [item.format(**places) for item in TINY_OPTS] if run.tiny else []
    opts = base + ["OUTPUT_DIR", places["workdir"], "SYNTH.ROOT", places["synth"]] + opts
    cfg = assert_and_infer_cfg(load_config(cfg_file, opts))
    return KeyRecordingCfgNode(copy.deepcopy(dict(cfg)))


@pytest.fixture(scope="module")
def guard_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("guard")


@pytest.fixture(scope="module")
def keys_read(repo_root, guard_root) -> dict[str, set[str]]:
    """Run GUARD_RUNS (each in guard_root/<name>); the keys each one read."""
    root = guard_root
    places = {"synth": str(root / "synthava"), "act": str(root / "act")}
    if any("act" in run.data for run in GUARD_RUNS):
        _write_act_dataset(root / "act")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reads = {}
    try:
        for run in GUARD_RUNS:
            workdir = root / run.name
            workdir.mkdir()
            cfg = guard_config(run, repo_root, {**places, "workdir": str(workdir)})
            KeyRecordingCfgNode.read = set()
            run.action(cfg, workdir)
            reads[run.name] = set(KeyRecordingCfgNode.read)
    finally:
        torch.set_num_threads(threads)
    return reads


REFUSED = {**REFUSED_UNLESS_DEFAULT, **{key: reason for key, (_, reason) in REFUSED_VALUES.items()}}


def test_every_key_is_read_by_a_run_or_refused_unless_default(keys_read):
    read = set().union(*keys_read.values())
    all_keys = set(leaf_keys(get_cfg()))
    unknown = sorted(set(REFUSED) - all_keys)
    assert not unknown, f"refused keys that are not config keys: {unknown}"
    unused = sorted(all_keys - read - set(REFUSED))
    assert not unused, (f"keys no run read and validation does not refuse: {unused}; make them do what their comment "
                        f"says (and add a GuardRun that uses them) or refuse them in config/validation.py")


def test_refused_keys_are_not_read(keys_read):
    """A key the code reads at its default value does something: it should not be on the refused list."""
    read = set().union(*keys_read.values())
    both = sorted((set(REFUSED_UNLESS_DEFAULT) & read) - set(REFUSED_VALUES))
    assert not both, f"read by the code yet refused unless default: {both}"


def test_the_runs_did_their_work(keys_read):
    """The runs reached the code the guard counts on: TensorBoard, the results file, multigrid, videos, launch."""
    assert {"TENSORBOARD.LOG_DIR", "TEST.SAVE_RESULTS_PATH"} <= keys_read["bmvit"]
    assert {"MULTIGRID.LONG_CYCLE_FACTORS", "MULTIGRID.SHORT_CYCLE_FACTORS", "BN.WEIGHT_DECAY",
            "TRAIN.MIXED_PRECISION_DTYPE", "SOLVER.BETAS"} <= keys_read["bmvit_stem_multigrid_bf16"]
    assert {"TRAIN.CHECKPOINT_EPOCH_RESET", "DETECTION.ROI_XFORM_RESOLUTION"} <= keys_read["two_stage_fine_tuned"]
    assert {"ACT.VIDEO_EXT", "ACT.DECODED_FRAME_CACHE"} <= keys_read["jhmdb_from_videos"]
    assert {"DIST_BACKEND", "SHARD_ID"} <= keys_read["launch_plan"]
    assert {"VIT.POS_EMBED_GRID", "BMVIT.CROSS_ATTENTION_HEADS"} <= keys_read["bmvit_vit_cross_attention"]
    assert {"HIERA.MASK_UNIT_ATTN", "HIERA.Q_POOL"} <= keys_read["bmvit_hiera"]
    assert {"DEMO.TRACK_IOU", "DEMO.VIDEO_CRF", "DEMO.FOLDER_FPS"} <= keys_read["demo_net"]


def _refused_value(key: str, default):
    if key in REFUSED_VALUES:
        return REFUSED_VALUES[key][0][0]
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default + 1
    if isinstance(default, str):
        return default + "_other"
    if isinstance(default, (list, tuple)):
        return [*default, 2] if not default or not isinstance(default[0], str) else [*default, "other"]
    if default is None:
        return 1
    raise AssertionError(f"{key}: no refused value for a default of type {type(default).__name__}")


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_each_refused_key_stops_with_one_line_naming_it(key):
    cfg = get_cfg()
    node = cfg
    *groups, name = key.split(".")
    for group in groups:
        node = node[group]
    node[name] = _refused_value(key, node[name])
    with pytest.raises(ConfigError) as error:
        assert_and_infer_cfg(cfg)
    message = str(error.value)
    assert message.startswith(f"{key}: ") and "\n" not in message, message


def test_the_recorder_counts_reads_and_nothing_else():
    KeyRecordingCfgNode.read = set()
    cfg = KeyRecordingCfgNode(copy.deepcopy(dict(get_cfg())))
    cfg.dump()
    dict(cfg.SOLVER)
    assert KeyRecordingCfgNode.read == set()
    clone = cfg.clone()
    assert clone.SOLVER.BASE_LR == get_cfg().SOLVER.BASE_LR
    assert clone.MVIT.get("DEPTH") == 16 and getattr(clone.TEST, "ENABLE")
    assert KeyRecordingCfgNode.read == {"SOLVER.BASE_LR", "MVIT.DEPTH", "TEST.ENABLE"}


def _json_stats(path: Path) -> list[dict]:
    with open(path) as handle:
        return [simplejson.loads(line) for line in handle]


def test_tensorboard_event_files_hold_the_json_stats_scalars_and_ap(keys_read, guard_root):
    """TENSORBOARD.ENABLE: the "bmvit" run's event files, read back with tensorboard's own reader."""
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = guard_root / "bmvit"
    events = EventAccumulator(str(run / "runs-synthava"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = {tag: {event.step: event.value for event in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    stats = _json_stats(run / "json_stats.log")
    iterations = [row for row in stats if row["_type"] == "train_iter"]
    assert len(iterations) == 3 and len(scalars["train_iter/loss"]) == 3
    for step, row in zip((4, 8, 12), iterations):  # the clips seen after each iteration of TRAIN.BATCH_SIZE 4
        for name in ("loss", "loss_bbox", "loss_class", "lr", "dt"):
            assert scalars[f"train_iter/{name}"][step] == pytest.approx(row[name], rel=1e-5), name
    epoch = next(row for row in stats if row["_type"] == "train_epoch")
    assert scalars["train_epoch/loss"][1] == pytest.approx(epoch["loss"], rel=1e-5)
    val = next(row for row in stats if row["_type"] == "val_epoch")
    assert scalars["val_epoch/map"][1] == pytest.approx(val["map"], rel=1e-5)
    test = simplejson.load(open(run / "test_results.json"))
    assert scalars["test/map"][1] == pytest.approx(test["mAP"], rel=1e-6)
    assert scalars["test/mAP"][1] == pytest.approx(test["mAP"], rel=1e-6)
    for name, ap in test["per_class"].items():
        assert scalars[f"test/AP/{name}"][1] == pytest.approx(ap, rel=1e-6, abs=1e-7), name
    assert {f"val/AP/{name}" for name in test["per_class"]} <= set(scalars)
    assert {"val/per_class_ap", "val/pr_curves", "test/per_class_ap", "test/pr_curves"} <= set(events.Tags()["images"])


def test_tensorboard_missing_is_one_line_naming_the_key(monkeypatch, tmp_path):
    import sys

    from slowfast_bmvit.visualization.tensorboard import TensorboardWriter

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were absent
    with pytest.raises(ConfigError, match=r"^TENSORBOARD\.ENABLE: the tensorboard package is not installed") as error:
        TensorboardWriter(str(tmp_path))
    assert "\n" not in str(error.value)


def test_saved_results_and_model_info_of_the_guard_run(keys_read, guard_root):
    """TEST.SAVE_RESULTS_PATH: the raw detections behind detections_test.csv; LOG_MODEL_INFO: the logged size."""
    run = guard_root / "bmvit"
    with open(run / "detections.pkl", "rb") as handle:
        clips = pickle.load(handle)
    assert clips and all(isinstance(clip["boxes"], np.ndarray) for clip in clips)
    num_boxes = sum(len(clip["boxes"]) for clip in clips)
    with open(run / "detections_test.csv") as handle:
        rows = [line.split(",") for line in handle if line.strip()]
    assert len(rows) == 9 * num_boxes  # every kept box x the 9 classes SynthAVA evaluates
    assert {(row[0], int(row[1])) for row in rows} <= {(clip["meta"]["video"], clip["meta"]["sec"]) for clip in clips}
    cfg = load_config(None, [item.format(synth="", act="") for item in TINY_OPTS] + list(SYNTH_OPTS))
    params = sum(p.numel() for p in build_model(cfg).parameters())
    assert f"model BMViT: {params:,} parameters" in (run / "stdout.log").read_text()
