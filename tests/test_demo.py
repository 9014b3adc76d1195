"""tools/demo_net.py and engine/demo.py: keyframe clips, actor tracks, the annotated video and the detection files.

Videos are generated here; the models are a stand-in that finds the one bright person of a clip (so that boxes and
tracks have a known answer) and tiny random BMViTs saved as checkpoints (for the command line).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import weakref
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from torch import nn

from slowfast_bmvit.config import assert_and_infer_cfg, load_config
from slowfast_bmvit.datasets.frame_io import clip_frame_indices
from slowfast_bmvit.datasets.frame_stream import InputError, open_frame_source, read_clip
from slowfast_bmvit.datasets.label_maps import column_names_from_cfg
from slowfast_bmvit.engine.demo import (CSV_NAME, JSON_NAME, VIDEO_NAME, KeyframeResult, interpolate_keyframes,
                                        keyframe_clips, run_demo)
from slowfast_bmvit.evaluation.iou import iou_pairs
from slowfast_bmvit.evaluation.tubes import GreedyLinker
from slowfast_bmvit.models import build_model
from slowfast_bmvit.visualization.boxes import box_pixels
from slowfast_bmvit.visualization.tracks import TRACK_PALETTE, track_color, track_line_thickness

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import demo_net  # noqa: E402

DEMO_CFG = str(REPO / "configs" / "SYNTH" / "BMViT_demo.yaml")
TINY_OPTS = [
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
    "MVIT.DEPTH", "2", "MVIT.EMBED_DIM", "16", "MVIT.PATCH_STRIDE", "[2, 4, 4]", "MVIT.DIM_MUL", "[[1, 2.0]]",
    "MVIT.CONV_STEM_CHANNELS", "[]", "MVIT.PATCH_KERNEL", "[3, 7, 7]", "MVIT.PATCH_PADDING", "[1, 3, 3]",
    "MVIT.HEAD_MUL", "[[1, 2.0]]", "MVIT.POOL_Q_STRIDE", "[[1, 1, 2, 2]]", "MVIT.POOL_KV_STRIDE_ADAPTIVE", "[1, 2, 2]",
    "BMVIT.PROJ_DIM", "16", "TEST.BATCH_SIZE", "3", "TEST.FLIP_AVERAGE", "False", "DEMO.STRIDE", "6",
]
BACKGROUND = 40
PERSON = (230, 230, 230)


def tiny_cfg(*opts):
    return assert_and_infer_cfg(load_config(DEMO_CFG, TINY_OPTS + list(opts)))


def write_video(path, frames, fps=25):
    """Near-lossless H.264 (libx264, crf 0, yuv444p) written with PyAV directly."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"crf": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_variable_rate_video(path, frames, pts, time_base=Fraction(1, 30)):
    """Near-lossless H.264 in MP4 with frame i shown from timestamp pts[i] (in `time_base` units) on."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1 / time_base)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"crf": "0", "g": "8", "bf": "2"}
        stream.codec_context.time_base = time_base
        for frame, timestamp in zip(frames, pts):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = timestamp, time_base
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# A phone-style recording at 30 fps that drops to 10 fps: 20 frames 1/30 s apart, then 10 frames 3/30 s apart.
PHONE_PTS = [*range(20), *range(20, 48, 3)]


def shown_at(slot, pts=PHONE_PTS):
    """Index of the frame on screen at time slot / 30 s: the latest one whose timestamp is not later."""
    return max(i for i, timestamp in enumerate(pts) if timestamp <= slot)


def decode(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])]


def person_box(index, height=144, width=192):
    """(x1, y1, x2, y2) in pixels (exclusive ends) of the person walking left to right in frame `index`."""
    x1 = 10 + 2 * index
    return x1, 40, x1 + 28, 120


def walking_person_frames(num_frames=60, height=144, width=192):
    rng = np.random.default_rng(0)
    texture = rng.integers(-12, 13, size=(height, width, 1))
    frames = []
    for index in range(num_frames):
        frame = np.clip(BACKGROUND + texture, 0, 255).repeat(3, axis=2).astype(np.uint8)
        x1, y1, x2, y2 = person_box(index, height, width)
        frame[y1:y2, x1:x2] = PERSON
        frames.append(frame)
    return frames


class PersonFinder(nn.Module):
    """Stand-in set-prediction model: one triplet per clip, the box around the bright pixels of the clip's centre
    frame, p(actor) high when there are any, and "walk" (AVA id 14) as the top class."""

    def __init__(self, num_classes=80):
        super().__init__()
        self.num_classes = num_classes
        self.unused = nn.Parameter(torch.zeros(1))  # gives the model a device

    def token_grid(self, thw):
        return (1, 1, 1)

    def forward(self, clip):
        batch, _, time, height, width = clip.shape
        bright = clip[:, :, time // 2].mean(1) > 2.0  # normalised: (230/255 - 0.45) / 0.225 = 2.0; the wall < 0
        boxes, actor = torch.zeros(batch, 1, 4), torch.zeros(batch, 1, 2)
        for b in range(batch):
            rows, cols = torch.nonzero(bright[b], as_tuple=True)
            if len(rows):
                x1, x2 = cols.min() / width, (cols.max() + 1) / width
                y1, y2 = rows.min() / height, (rows.max() + 1) / height
                boxes[b, 0] = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
                actor[b, 0] = torch.tensor([-6.0, 6.0])
            else:
                actor[b, 0] = torch.tensor([6.0, -6.0])
        classes = torch.full((batch, 1, self.num_classes), -5.0)
        classes[..., 13] = 5.0  # walk
        return {"pred_boxes": boxes, "pred_actor": actor, "pred_classes": classes}


def save_checkpoint(cfg, model, output_dir):
    folder = Path(output_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "checkpoint_epoch_00001.pyth"
    torch.save({"epoch": 0, "model_state": model.state_dict(), "cfg": cfg.dump()}, path)
    return path


# ------------------------------------------------------------------------------------------------ clips
def test_keyframe_clips_follow_the_clip_rule_and_keep_only_the_window():
    num_frames, rate, stride, length = 4, 3, 5, 37
    alive = set()

    class Frame(np.ndarray):
        pass

    def frames():
        for index in range(length):
            frame = np.full(1, index).view(Frame)
            alive.add(index)
            weakref.finalize(frame, alive.discard, index)
            yield frame

    keys = []
    for key, clip in keyframe_clips(frames(), num_frames, rate, stride):
        keys.append(key)
        assert clip[:, 0].tolist() == clip_frame_indices(key, num_frames, rate, length).tolist()
        assert len(alive) <= num_frames * rate + 1  # the clip window, plus the frame just decoded
    assert keys == list(range(0, length, stride))


def test_interpolation_between_keyframes():
    before = KeyframeResult(10, np.array([[0.1, 0.1, 0.3, 0.5], [0.6, 0.6, 0.7, 0.7]]), np.array([3, 4]),
                            np.array([0.9, 0.8]), np.array([[0.2, 0.6], [0.5, 0.5]]))
    after = KeyframeResult(20, np.array([[0.3, 0.1, 0.5, 0.5], [0.0, 0.0, 0.2, 0.2]]), np.array([3, 7]),
                           np.array([0.9, 0.8]), np.array([[0.4, 0.2], [0.1, 0.9]]))
    boxes, ids, scores = interpolate_keyframes(before, after, 15)
    assert ids.tolist() == [3, 7]  # track 4 ends, track 7 starts: each shown on the half nearer to its keyframe
    np.testing.assert_allclose(boxes[0], [0.2, 0.1, 0.4, 0.5])
    np.testing.assert_allclose(scores[0], [0.3, 0.4])
    boxes, ids, _ = interpolate_keyframes(before, after, 12)
    assert ids.tolist() == [3, 4]
    np.testing.assert_allclose(boxes[0], [0.14, 0.1, 0.34, 0.5])
    assert interpolate_keyframes(before, None, 17)[1].tolist() == [3, 4]


def test_tracks_of_two_overlapping_people_do_not_swap():
    """Person A (track 0) is more confident; at frame 2 person B's detection scores higher and still overlaps A's
    last box enough to be linked: ACT's score rule gives it to A, the IoU rule keeps each person on its track."""
    frame1 = np.array([[1, 0.10, 0.1, 0.30, 0.9, 0.9], [1, 0.16, 0.1, 0.36, 0.9, 0.5]])
    frame2 = np.array([[2, 0.17, 0.1, 0.37, 0.9, 0.8], [2, 0.11, 0.1, 0.31, 0.9, 0.7]])
    for by, expected in (("score", [0, 1]), ("iou", [1, 0])):
        linker = GreedyLinker(0.3, 1, plus_one=False, keep_rows=False, by=by)
        assert linker.step(1, frame1).tolist() == [0, 1]
        assert linker.step(2, frame2).tolist() == expected, by
        assert linker.step(5, frame2[:1]).tolist() == [2]  # both tracks ended after a gap of 2 > max_gap 1


def test_online_linker_ids_agree_with_and_without_kept_rows():
    rng = np.random.default_rng(1)
    kept, lean = GreedyLinker(0.3, 2, plus_one=False), GreedyLinker(0.3, 2, plus_one=False, keep_rows=False)
    for frame in range(30):
        boxes = rng.uniform(0, 0.6, (4, 2))
        dets = np.column_stack([np.full(4, frame), boxes, boxes + 0.3, rng.uniform(0, 1, 4)])
        dets = dets[np.argsort(-dets[:, 5])][: rng.integers(0, 5)]
        assert kept.step(frame, dets).tolist() == lean.step(frame, dets).tolist()
    assert sorted(i for i, _ in kept.tubes()) == list(range(len(kept.tubes())))


# ------------------------------------------------------------------------------------------------ the run
@pytest.fixture(scope="module")
def walking_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("walking")
    frames = walking_person_frames()
    write_video(folder / "walk.mp4", frames)
    cfg = tiny_cfg("DATA.TEST_CROP_SIZE", "96", "BMVIT.NMS_IOU", "0.0")
    source = open_frame_source(folder / "walk.mp4")
    summary = run_demo(cfg, PersonFinder().eval(), source, folder / "out", column_names_from_cfg(cfg),
                       show_progress=False)
    with open(folder / "out" / CSV_NAME, newline="") as handle:
        rows = list(csv.reader(handle))
    return {"frames": frames, "cfg": cfg, "summary": summary, "rows": rows, "out": folder / "out",
            "json": json.loads((folder / "out" / JSON_NAME).read_text())}


def test_the_demo_forward_is_float32_on_the_cpu_and_bf16_autocast_on_a_gpu(tmp_path):
    """The demo's autocast comes from engine/amp.py: bf16 on a CUDA device whatever TRAIN.MIXED_PRECISION says,
    none on the CPU (even with TRAIN.MIXED_PRECISION, which the test path would follow)."""
    import contextlib
    import warnings

    from slowfast_bmvit.engine.amp import demo_autocast

    autocast_seen = []

    class RecordingFinder(PersonFinder):
        def forward(self, clip):
            autocast_seen.append((torch.is_autocast_enabled("cpu"), clip.dtype))
            return super().forward(clip)

    write_video(tmp_path / "walk.mp4", walking_person_frames(num_frames=12))
    cfg = tiny_cfg("TRAIN.MIXED_PRECISION", "True", "TRAIN.MIXED_PRECISION_DTYPE", "bfloat16")
    run_demo(cfg, RecordingFinder().eval(), open_frame_source(tmp_path / "walk.mp4"), tmp_path / "out",
             column_names_from_cfg(cfg), show_progress=False)
    assert autocast_seen and set(autocast_seen) == {(False, torch.float32)}
    assert isinstance(demo_autocast(torch.device("cpu")), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU-only torch disables a CUDA autocast with a warning
        on_gpu = demo_autocast(torch.device("cuda", 0))
    assert isinstance(on_gpu, torch.autocast) and on_gpu.device == "cuda" and on_gpu.fast_dtype == torch.bfloat16


def test_a_walking_person_keeps_one_track_id(walking_run):
    keyframes = walking_run["json"]["keyframes"]
    assert [k["frame"] for k in keyframes] == list(range(0, 60, 6))
    assert all(len(k["persons"]) == 1 for k in keyframes)
    assert {p["track"] for k in keyframes for p in k["persons"]} == {0}
    assert walking_run["summary"].tracks == 1 and walking_run["summary"].keyframes == 10
    # The boxes follow the person (the stand-in sees it at 96 x 96 px, so within a few pixels).
    for keyframe in keyframes:
        x1, y1, x2, y2 = person_box(keyframe["frame"])
        truth = np.array([x1 / 192, y1 / 144, x2 / 192, y2 / 144])
        assert iou_pairs(np.array(keyframe["persons"][0]["box"]), truth) > 0.85


def test_csv_rows_are_ava_rows_with_a_track_id(walking_run):
    rows = walking_run["rows"]
    assert len(rows) == 10  # one person and one action ("walk", score 0.99 * 0.998) per keyframe
    for row, keyframe in zip(rows, walking_run["json"]["keyframes"]):
        assert row[0] == "walk" and float(row[1]) == pytest.approx(keyframe["frame"] / 25, abs=1e-3)
        np.testing.assert_allclose([float(v) for v in row[2:6]], keyframe["persons"][0]["box"], atol=1e-4)
        assert int(row[6]) == 14 and float(row[7]) > 0.98 and int(row[8]) == 0


def test_annotated_video_has_the_input_frames_and_size(walking_run):
    decoded = decode(walking_run["out"] / VIDEO_NAME)
    assert len(decoded) == 60 and decoded[0].shape == (144, 192, 3)
    with av.open(str(walking_run["out"] / VIDEO_NAME)) as container:
        assert container.streams.video[0].average_rate == 25


def edge_pixels(image, box, inset):
    """Pixels along the bottom edge and the lower half of the side edges of a drawn box, `inset` pixels inwards."""
    height, width = image.shape[:2]
    left, top, right, bottom = box_pixels(box, height, width)
    middle = (top + bottom) // 2
    return np.concatenate([image[bottom - inset, left + 2:right - 1], image[middle:bottom - 1, left + inset],
                           image[middle:bottom - 1, right - inset]])


def test_drawn_box_edges_have_the_track_colour_where_the_csv_puts_them(walking_run):
    decoded = decode(walking_run["out"] / VIDEO_NAME)
    assert track_line_thickness(144, 192) == 2  # the line covers the edge pixel and the one inside it
    for row in walking_run["rows"]:
        frame = round(float(row[1]) * 25)
        box, colour = [float(v) for v in row[2:6]], np.array(track_color(int(row[8])))
        on_edge = np.abs(edge_pixels(decoded[frame], box, 0).astype(int) - colour).max(axis=1)
        assert np.mean(on_edge < 60) > 0.9, (frame, np.median(on_edge))
        # Three pixels further in lies the person (or the wall), not the outline.
        inside = np.abs(edge_pixels(decoded[frame], box, 3).astype(int) - colour).max(axis=1)
        assert np.mean(inside < 60) < 0.1


def test_frames_between_keyframes_show_the_interpolated_box(walking_run):
    decoded = decode(walking_run["out"] / VIDEO_NAME)
    keyframes = walking_run["json"]["keyframes"]
    before, after = keyframes[2]["persons"][0]["box"], keyframes[3]["persons"][0]["box"]
    frame = (keyframes[2]["frame"] + keyframes[3]["frame"]) // 2  # 15: half-way
    box = (np.array(before) + np.array(after)) / 2
    on_edge = np.abs(edge_pixels(decoded[frame], box, 0).astype(int) - np.array(TRACK_PALETTE[0])).max(axis=1)
    assert np.mean(on_edge < 60) > 0.9


# ------------------------------------------------------------------------------------------------ variable frame rate
def grey_frames(count, height=48, width=64):
    """Frame i is flat grey 10 + 5 i (i < 49)."""
    return [np.full((height, width, 3), 10 + 5 * i, np.uint8) for i in range(count)]


def grey_index(image):
    return round((float(image.mean()) - 10) / 5)


def test_a_variable_rate_video_plays_as_a_constant_rate_sequence(tmp_path, caplog):
    """Frames numbered by time at 30 fps, as `ffmpeg -fps_mode cfr` plays them: 48 frames, each 1/30 s slot showing
    the latest frame (the 10 fps stretch shows each frame three times), and every clip up to the last frame."""
    write_variable_rate_video(tmp_path / "phone.mp4", grey_frames(30), PHONE_PTS)
    with caplog.at_level("WARNING"):
        source = open_frame_source(tmp_path / "phone.mp4")
    assert (source.fps, source.num_frames) == (30, 48)
    assert "not a constant frame rate" in caplog.text and "18 frame numbers repeat the previous frame" in caplog.text
    frames = list(source.frames())
    assert [grey_index(f) for f in frames] == [shown_at(slot) for slot in range(48)]
    for center in (0, 21, 47):
        clip = read_clip(source, center, 4, 2)
        expected = clip_frame_indices(center, 4, 2, 48)
        assert [grey_index(f) for f in clip] == [shown_at(int(slot)) for slot in expected]
    # A constant-rate video plays frame for frame, without the warning.
    caplog.clear()
    write_variable_rate_video(tmp_path / "steady.mp4", grey_frames(12), range(12))
    with caplog.at_level("WARNING"):
        steady = open_frame_source(tmp_path / "steady.mp4")
    assert [grey_index(f) for f in steady.frames()] == list(range(12)) and steady.num_frames == 12
    assert "constant frame rate" not in caplog.text


def test_a_variable_rate_video_plays_as_ffmpeg_fps_mode_cfr_plays_it(tmp_path):
    """The independent reference: FFmpeg's own constant-rate output of the same file, frame for frame."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg (the test extras' ffmpeg build) is "
                                         "not installed")
    write_variable_rate_video(tmp_path / "phone.mp4", grey_frames(30), PHONE_PTS)
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "phone.mp4"),
                          "-fps_mode", "cfr", "-r", "30", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    by_ffmpeg = np.frombuffer(raw, np.uint8).reshape(-1, 48, 64, 3)
    ours = np.stack(list(open_frame_source(tmp_path / "phone.mp4").frames()))
    assert ours.shape == by_ffmpeg.shape == (48, 48, 64, 3)
    assert np.abs(ours.astype(int) - by_ffmpeg.astype(int)).max() <= 2


def test_a_mostly_slow_variable_rate_video_plays_at_its_fast_rate_as_ffmpeg_does(tmp_path):
    """60 frames at 30 fps, then 100 at 15 fps: FFmpeg's constant-rate output at the stream's own rate (no -r: 30 fps
    here) repeats frames of the slow stretch and leaves none out; so does the demo's reader."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg (the test extras' ffmpeg build) is "
                                         "not installed")
    pts = [*range(60), *range(60, 260, 2)]
    frames = [np.full((48, 64, 3), (i * 37) % 240, np.uint8) for i in range(len(pts))]  # neighbours differ
    write_variable_rate_video(tmp_path / "dim.mp4", frames, pts)
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "dim.mp4"),
                          "-fps_mode", "cfr", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    by_ffmpeg = np.frombuffer(raw, np.uint8).reshape(-1, 48, 64, 3)
    source = open_frame_source(tmp_path / "dim.mp4")
    ours = np.stack(list(source.frames()))
    assert source.fps == 30 and ours.shape == by_ffmpeg.shape == (259, 48, 64, 3)
    assert np.abs(ours.astype(int) - by_ffmpeg.astype(int)).max() <= 2


def test_demo_on_a_variable_rate_video_keeps_frame_count_and_times(tmp_path):
    """The walking person of a 30 fps recording that drops to 10 fps: the annotated video, the progress total and
    the JSON header all count 48 frames, and each keyframe's box is where the person is at the keyframe's time."""
    positions = walking_person_frames(num_frames=48)  # the person's place at each 1/30 s
    write_variable_rate_video(tmp_path / "phone.mp4", [positions[t] for t in PHONE_PTS], PHONE_PTS)
    cfg = tiny_cfg("DATA.TEST_CROP_SIZE", "96", "BMVIT.NMS_IOU", "0.0")
    source = open_frame_source(tmp_path / "phone.mp4")
    summary = run_demo(cfg, PersonFinder().eval(), source, tmp_path / "out", column_names_from_cfg(cfg),
                       show_progress=False)
    assert summary.frames_in == summary.frames_out == 48 and len(decode(tmp_path / "out" / VIDEO_NAME)) == 48
    header = json.loads((tmp_path / "out" / JSON_NAME).read_text())
    assert header["num_frames"] == 48 and header["fps"] == 30
    keyframes = header["keyframes"]
    assert [k["frame"] for k in keyframes] == list(range(0, 48, 6))
    with open(tmp_path / "out" / CSV_NAME, newline="") as handle:
        rows = list(csv.reader(handle))
    assert [float(row[1]) for row in rows] == pytest.approx([k / 30 for k in range(0, 48, 6)], abs=1e-3)
    for keyframe in keyframes:
        x1, y1, x2, y2 = person_box(PHONE_PTS[shown_at(keyframe["frame"])])
        truth = np.array([x1 / 192, y1 / 144, x2 / 192, y2 / 144])
        assert iou_pairs(np.array(keyframe["persons"][0]["box"]), truth) > 0.85, keyframe["frame"]


# ------------------------------------------------------------------------------------------------ command line
def test_command_line_on_a_video_and_a_frame_folder(tmp_path, capsys):
    cfg = tiny_cfg("OUTPUT_DIR", str(tmp_path / "run"))
    save_checkpoint(cfg, build_model(cfg), tmp_path / "run")
    frames = walking_person_frames(num_frames=23, height=64, width=96)
    write_video(tmp_path / "clip.mp4", frames, fps=10)
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(frames):  # natural order: frame_2 before frame_10
        cv2.imwrite(str(folder / f"frame_{index}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    opts = TINY_OPTS + ["OUTPUT_DIR", str(tmp_path / "run"), "BMVIT.ACTOR_THRESH", "0.0"]
    demo_net.main(["--cfg", DEMO_CFG, "--input", str(tmp_path / "clip.mp4"), *opts])
    demo_net.main(["--cfg", DEMO_CFG, "--input", str(folder), "--output", str(tmp_path / "from_frames"), *opts])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("clip: 23 frames, 4 keyframes")
    assert lines[1].startswith("frames: 23 frames, 4 keyframes")
    for out in (tmp_path / "run" / "demo" / "clip", tmp_path / "from_frames"):
        decoded = decode(out / VIDEO_NAME)
        assert len(decoded) == 23 and decoded[0].shape == (64, 96, 3)
        keyframes = json.loads((out / JSON_NAME).read_text())["keyframes"]
        assert [k["frame"] for k in keyframes] == [0, 6, 12, 18]
        # ACTOR_THRESH 0 and TOP_K 10: the demo config's ten best tokens at every keyframe
        assert all(len(k["persons"]) == 10 for k in keyframes)
    video_json = json.loads((tmp_path / "run" / "demo" / "clip" / JSON_NAME).read_text())
    frames_json = json.loads((tmp_path / "from_frames" / JSON_NAME).read_text())
    assert video_json["fps"] == 10 and frames_json["fps"] == 30  # a folder plays at DEMO.FOLDER_FPS


def run_expecting_error(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        demo_net.main(["--cfg", DEMO_CFG, *argv])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture()
def trained_tiny(tmp_path):
    cfg = tiny_cfg("OUTPUT_DIR", str(tmp_path / "run"))
    path = save_checkpoint(cfg, build_model(cfg), tmp_path / "run")
    write_video(tmp_path / "ok.mp4", walking_person_frames(num_frames=8, height=64, width=96))
    return tmp_path, path


def test_bad_inputs_stop_with_one_line_naming_the_file(trained_tiny, capsys):
    tmp_path, _ = trained_tiny
    opts = TINY_OPTS + ["OUTPUT_DIR", str(tmp_path / "run")]
    missing = tmp_path / "missing.mp4"
    assert str(missing) in run_expecting_error(capsys, "--input", str(missing), *opts)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    line = run_expecting_error(capsys, "--input", str(empty), *opts)
    assert str(empty) in line and "empty" in line
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    line = run_expecting_error(capsys, "--input", str(garbage), *opts)
    assert str(garbage) in line and "not a readable video" in line
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "notes.txt").write_text("not a frame")
    line = run_expecting_error(capsys, "--input", str(no_images), *opts)
    assert str(no_images) in line and "no frame images" in line
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "000001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert str(broken / "000001.jpg") in run_expecting_error(capsys, "--input", str(broken), *opts)


def test_a_checkpoint_of_another_config_or_none_stops_with_one_line(trained_tiny, capsys):
    tmp_path, checkpoint = trained_tiny
    video = str(tmp_path / "ok.mp4")
    opts = TINY_OPTS + ["OUTPUT_DIR", str(tmp_path / "run")]
    line = run_expecting_error(capsys, "--input", video, *opts, "MVIT.EMBED_DIM", "24")  # other shapes
    assert str(checkpoint) in line
    line = run_expecting_error(capsys, "--input", video, *opts, "BMVIT.TOKEN_ARRANGEMENT", "center")  # same shapes
    assert str(checkpoint) in line and "BMVIT.TOKEN_ARRANGEMENT" in line
    line = run_expecting_error(capsys, "--input", video, *TINY_OPTS, "OUTPUT_DIR", str(tmp_path / "untrained"))
    assert "no trained checkpoint" in line and str(tmp_path / "untrained") in line
    assert not (tmp_path / "untrained" / "demo").exists()


def test_open_frame_source_reads_real_videos(shared_data):
    """vtest.avi (OpenCV's sample, MPEG-4 in AVI) and a UCF101-24 mp4: frame counts and sizes of the files."""
    source = open_frame_source(shared_data / "videos" / "vtest.avi")
    assert (source.num_frames, source.height, source.width, source.fps) == (795, 576, 768, 10)
    source = open_frame_source(shared_data / "ucf24" / "videos" / "v_Biking_g01_c01.mp4")
    frames = list(source.frames())
    assert len(frames) == source.num_frames == 151 and frames[0].shape == (256, 340, 3)
    # The clip declares an average rate of 25 fps; its timestamps step by 1001/30000 s (FFmpeg's r_frame_rate).
    with av.open(str(source.path)) as container:
        assert container.streams.video[0].average_rate == 25
        assert container.streams.video[0].guessed_rate == source.fps == Fraction(30000, 1001)
    with pytest.raises(InputError, match="no such video file"):
        open_frame_source(shared_data / "videos" / "absent.avi")
