"""UCF101-24 / JHMDB datasets ("ucf24", "jhmdb") from ACT pickles, with frames from JPEG folders or video files."""

import logging
import pickle
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from slowfast_bmvit.config import ConfigError, get_cfg
from slowfast_bmvit.datasets import build_dataset, construct_loader
from slowfast_bmvit.datasets.act_convert import (
    annotated_frames,
    save_act_pickle,
    subset_act_gt,
    ucf24_from_pyannot,
)
from slowfast_bmvit.datasets.video_io import VideoIndex, VideoReader, VideoReadError
from slowfast_bmvit.engine.evaluator import evaluate_detections

SHARED_UCF_VIDEOS = (
    "Basketball/v_Basketball_g01_c02", "Basketball/v_Basketball_g07_c04", "Biking/v_Biking_g01_c01",
    "CliffDiving/v_CliffDiving_g03_c01", "Fencing/v_Fencing_g01_c06", "HorseRiding/v_HorseRiding_g01_c03",
    "IceDancing/v_IceDancing_g02_c05", "SalsaSpin/v_SalsaSpin_g03_c01", "SkateBoarding/v_SkateBoarding_g02_c01",
)


def _level(frame: int) -> int:
    """Grey level that identifies 1-based frame `frame` in the synthetic media."""
    return 8 * frame


def _frame_numbers(inputs: torch.Tensor) -> list[int]:
    """Recover frame numbers from a clip normalised with mean 0, std 1: inputs [3, T, H, W] in [0, 1]."""
    return [round(float(level) * 255 / 8) for level in inputs.mean(dim=(0, 2, 3))]


def _tiny_gt(nframes: int = 12) -> dict:
    """Two videos annotated in 320x240 pixels; video A has two persons (labels 0 and 2) on frames 3-4."""
    tube = lambda frames, box: np.array([[f, *box] for f in frames], np.float32)  # noqa: E731
    return {
        "labels": ["brush_hair", "catch", "clap"],
        "train_videos": [["clap/B"]],
        "test_videos": [["brush_hair/A", "clap/B"]],
        "nframes": {"brush_hair/A": nframes, "clap/B": nframes},
        "resolution": {"brush_hair/A": (240, 320), "clap/B": (240, 320)},
        "gttubes": {
            "brush_hair/A": {0: [tube(range(2, 6), (32, 24, 160, 120))], 2: [tube([3, 4], (0, 0, 320, 240))]},
            "clap/B": {2: [tube(range(1, 11), (160, 120, 320, 240))]},
        },
    }


def _cfg(gt_file, frame_dir, source="frames", num_classes=3, crop=32):
    cfg = get_cfg()
    cfg.TRAIN.DATASET = cfg.TEST.DATASET = "jhmdb"
    cfg.ACT.GT_FILE = str(gt_file)
    cfg.ACT.FRAME_DIR = str(frame_dir)
    cfg.ACT.SOURCE = source
    cfg.MODEL.NUM_CLASSES = num_classes
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 2
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = crop
    cfg.DATA.MEAN, cfg.DATA.STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    cfg.DATA.RANDOM_FLIP = False
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.NUM_GPUS = 0
    cfg.TRAIN.BATCH_SIZE = cfg.TEST.BATCH_SIZE = 2
    return cfg


@pytest.fixture
def jpeg_dataset(tmp_path):
    """Frames of 64x48 (annotation 320x240) whose grey level encodes the frame number."""
    for video in ("brush_hair/A", "clap/B"):
        folder = tmp_path / "frames" / video
        folder.mkdir(parents=True)
        for frame in range(1, 13):
            image = np.full((48, 64, 3), _level(frame), np.uint8)
            cv2.imwrite(str(folder / f"{frame:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    save_act_pickle(_tiny_gt(), tmp_path / "gt.pkl")
    return tmp_path


def test_jpeg_folders_give_annotated_keyframes_centred_clips_and_targets(jpeg_dataset):
    cfg = _cfg(jpeg_dataset / "gt.pkl", jpeg_dataset / "frames")
    dataset = build_dataset("jhmdb", cfg, "test")
    assert [tuple(k) for k in dataset.keyframes] == [(0, f) for f in (2, 3, 4, 5)] + [(1, f) for f in range(1, 11)]

    sample = dataset[1]  # video A, frame 3: two persons
    assert sample["inputs"].shape == (3, 4, 32, 32)
    # 4 frames every 2 centred on frame 3: 3 - 4 + [0, 2, 4, 6] = -1, 1, 3, 5 -> clamped to 1, 1, 3, 5.
    assert _frame_numbers(sample["inputs"]) == [1, 1, 3, 5]
    torch.testing.assert_close(sample["labels"], torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))
    assert sample["actor"].tolist() == [True, True]
    torch.testing.assert_close(sample["ori_boxes"], torch.tensor([[0.1, 0.1, 0.5, 0.5], [0, 0, 1.0, 1.0]]))
    torch.testing.assert_close(sample["boxes"], sample["ori_boxes"])  # square resize of the whole frame
    assert sample["meta"] == {"video": "brush_hair/A", "video_idx": 0, "sec": None, "frame": 3,
                              "orig_size": (240, 320), "crop_box": (0.0, 0.0, 1.0, 1.0)}
    assert _frame_numbers(dataset[13]["inputs"]) == [6, 8, 10, 12]  # video B, frame 10: clamped at 12 frames


def test_frame_strides_all_frames_and_train_split(jpeg_dataset):
    cfg = _cfg(jpeg_dataset / "gt.pkl", jpeg_dataset / "frames")
    cfg.ACT.TEST_FRAME_STRIDE = 3
    assert [tuple(k) for k in build_dataset("jhmdb", cfg, "test").keyframes] == \
        [(0, 2), (0, 5), (1, 1), (1, 4), (1, 7), (1, 10)]
    cfg.ACT.TEST_FRAME_STRIDE, cfg.ACT.TEST_ALL_FRAMES = 1, True
    dataset = build_dataset("jhmdb", cfg, "test")
    assert len(dataset) == 24
    empty = dataset[11]  # video A, frame 12: no person
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0, 3) and empty["meta"]["frame"] == 12
    cfg.ACT.TRAIN_FRAME_STRIDE = 4
    train = build_dataset("jhmdb", cfg, "train")
    assert [tuple(k) for k in train.keyframes] == [(0, 1), (0, 5), (0, 9)]  # index in train_videos: clap/B
    assert train[0]["meta"]["video"] == "clap/B"


def test_loader_batches_act_samples_with_frame_metadata(jpeg_dataset):
    cfg = _cfg(jpeg_dataset / "gt.pkl", jpeg_dataset / "frames")
    batch = next(iter(construct_loader(cfg, "test")))
    assert batch["inputs"].shape == (2, 3, 4, 32, 32)
    assert batch["metadata"].tolist() == [[0, 2], [0, 3], [0, 3]]  # one row per person: frame 2 (1), frame 3 (2)
    assert [len(t["boxes"]) for t in batch["targets"]] == [1, 2]


def test_configuration_errors_name_the_key(jpeg_dataset):
    cfg = _cfg(jpeg_dataset / "gt.pkl", jpeg_dataset / "frames", num_classes=24)
    with pytest.raises(ConfigError, match="MODEL.NUM_CLASSES: 24, but .*gt.pkl has 3 classes"):
        build_dataset("jhmdb", cfg, "test")
    cfg = _cfg(jpeg_dataset / "gt.pkl", jpeg_dataset / "frames")
    cfg.ACT.SPLIT = 2
    with pytest.raises(ConfigError, match="ACT.SPLIT: 2 outside 1..1"):
        build_dataset("jhmdb", cfg, "test")
    cfg = _cfg("", jpeg_dataset / "frames")
    with pytest.raises(ConfigError, match="ACT.GT_FILE"):
        build_dataset("ucf24", cfg, "test")


def test_missing_frame_folder_or_video_file_is_reported_with_its_path(jpeg_dataset):
    (jpeg_dataset / "frames" / "clap" / "B" / "00001.jpg").unlink()
    cfg = _cfg(jpeg_dataset / "gt.pkl", jpeg_dataset / "frames")
    assert _frame_numbers(build_dataset("jhmdb", cfg, "test")[4]["inputs"])[:2] == [2, 2]  # nearest frame used
    for path in sorted((jpeg_dataset / "frames" / "clap" / "B").iterdir()):
        path.unlink()
    (jpeg_dataset / "frames" / "clap" / "B").rmdir()
    with pytest.raises(FileNotFoundError, match="ACT.FRAME_DIR: 1 of the 2 test videos have no frame folder.*clap/B"):
        build_dataset("jhmdb", cfg, "test")
    cfg.ACT.SOURCE = "videos"
    with pytest.raises(FileNotFoundError, match="no video file .*brush_hair/A.mp4 or .*/A.mp4"):
        build_dataset("jhmdb", cfg, "test")


# ----------------------------------------------------------------------------------------------------- videos
def _write_video(path, num_frames, size=(48, 64)):
    """H.264 with B-frames and a keyframe every 5 frames; grey level encodes the frame number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "5", "bf": "2", "crf": "0"}
        for frame in range(1, num_frames + 1):
            image = np.full((*size, 3), _level(frame), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_reader_seeks_to_exact_frames_and_reads_ahead_on_forward_walks(tmp_path, monkeypatch):
    path = tmp_path / "v.mp4"
    _write_video(path, 30)
    reader = VideoReader(max_cached_frames=64)
    index = reader.index(path)
    assert index.num_frames == 30 and (index.height, index.width) == (48, 64)
    assert len(index.keyframe_pts) >= 6
    frames = reader.read(path, [27, 3, 3, 16])
    assert frames.shape == (4, 48, 64, 3) and frames.dtype == np.uint8
    assert [round(f.mean() / 8) for f in frames] == [27, 3, 3, 16]
    assert [round(f.mean() / 8) for f in VideoReader().read(path, [22, 23])] == [22, 23]  # seeks past frame 1

    decodes = []
    original = VideoReader._decode_from

    def counting_decode(self, path, index, first, last, seek):
        decodes.append(first)
        return original(self, path, index, first, last, seek)

    monkeypatch.setattr(VideoReader, "_decode_from", counting_decode)
    walker = VideoReader(max_cached_frames=64)
    for center in range(1, 31):
        clip = walker.read(path, np.clip(center + np.arange(-4, 4), 1, 30))
        assert [round(f.mean() / 8) for f in clip] == list(np.clip(center + np.arange(-4, 4), 1, 30))
    assert len(decodes) <= 2  # the first request, then one read-ahead covers the rest of the 30 frames
    with pytest.raises(VideoReadError, match="v.mp4 has frames 1..30; requested 1..31"):
        walker.read(path, [1, 31])
    assert pickle.loads(pickle.dumps(walker))._frames == {}  # caches stay in their process


def test_video_source_rescales_boxes_and_applies_the_short_video_policy(tmp_path):
    for video, size in (("A", (96, 128)), ("B", (48, 64))):
        _write_video(tmp_path / "videos" / f"{video}.mp4", 10, size)  # 10 frames, the annotation says 12
    save_act_pickle(_tiny_gt(), tmp_path / "gt.pkl")
    cfg = _cfg(tmp_path / "gt.pkl", tmp_path / "videos", source="videos")
    dataset = build_dataset("jhmdb", cfg, "test")
    sample = dataset[1]  # video A (128x96 file, 320x240 annotation), frame 3
    assert _frame_numbers(sample["inputs"]) == [1, 1, 3, 5]
    torch.testing.assert_close(sample["boxes"][0], torch.tensor([0.1, 0.1, 0.5, 0.5]))
    assert sample["meta"]["orig_size"] == (240, 320)
    # Video B ends at frame 10; keyframe 10 is inside it, its clip is clamped to the 10 frames.
    assert _frame_numbers(dataset[13]["inputs"]) == [6, 8, 10, 10]

    cfg.ACT.TEST_ALL_FRAMES = True
    dataset = build_dataset("jhmdb", cfg, "test")
    with pytest.raises(VideoReadError, match="B.mp4 has 10 frames but keyframe 12 of clap/B"):
        dataset[23]
    cfg.DATA.ON_BAD_FRAME = "skip"
    dataset = build_dataset("jhmdb", cfg, "test")
    assert _frame_numbers(dataset[23]["inputs"]) == [6, 8, 10, 10] and dataset.num_keyframes_past_video_end == 1


def _write_video_with_gap(path, present, size=(48, 64)):
    """H.264 at 25 fps holding only the frames `present` (1-based): timestamps (frame - 1) / 25 s, so the frames
    in between are lost from the file as after a damaged transfer; grey level encodes the frame number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "5", "bf": "2", "crf": "0"}
        stream.codec_context.time_base = Fraction(1, 25)
        for frame in present:
            picture = av.VideoFrame.from_ndarray(np.full((*size, 3), _level(frame), np.uint8), format="rgb24")
            picture.pts, picture.time_base = frame - 1, Fraction(1, 25)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_reader_numbers_frames_by_time_across_a_gap(tmp_path):
    path = tmp_path / "damaged.mp4"
    _write_video_with_gap(path, [*range(1, 9), *range(21, 31)])  # frames 9..20 lost
    reader = VideoReader(max_cached_frames=8)
    index = reader.index(path)
    assert index.num_frames == 30 and index.missing_frames.tolist() == list(range(9, 21))
    frames = reader.read(path, [8, 21, 30, 1])  # the frames after the gap keep their numbers
    assert [round(f.mean() / 8) for f in frames] == [8, 21, 30, 1]
    assert [round(f.mean() / 8) for f in VideoReader().read(path, [25, 21])] == [25, 21]  # seeks too
    with pytest.raises(VideoReadError, match=r"damaged.mp4: frames 9..20 are missing .*requested frame 12"):
        reader.read(path, [7, 12, 14])
    _write_video_with_gap(tmp_path / "one.mp4", [1, 2, 4, 5])
    with pytest.raises(VideoReadError, match=r"one.mp4: frame 3 is missing"):
        VideoReader().read(tmp_path / "one.mp4", [3])


def test_video_with_missing_frames_stops_under_error_and_skips_affected_keyframes_under_skip(tmp_path, caplog):
    tube = np.array([[f, 32, 24, 160, 120] for f in range(1, 31)], np.float32)
    gt = {"labels": ["brush_hair", "catch", "clap"], "train_videos": [["brush_hair/A"]],
          "test_videos": [["brush_hair/A"]], "nframes": {"brush_hair/A": 30},
          "resolution": {"brush_hair/A": (240, 320)}, "gttubes": {"brush_hair/A": {0: [tube]}}}
    save_act_pickle(gt, tmp_path / "gt.pkl")
    _write_video_with_gap(tmp_path / "videos" / "A.mp4", [*range(1, 9), *range(21, 31)])  # frames 9..20 lost
    cfg = _cfg(tmp_path / "gt.pkl", tmp_path / "videos", source="videos")
    dataset = build_dataset("jhmdb", cfg, "test")
    with pytest.raises(VideoReadError, match=r"A.mp4: frames 9..20 are missing .*first missing frame 9 of "
                                             r"brush_hair/A.*DATA.ON_BAD_FRAME skip"):
        dataset[0]  # keyframe 1 does not need the lost frames: the damaged video stops the run anyway

    cfg.DATA.ON_BAD_FRAME = "skip"
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset("jhmdb", cfg, "test")
    # The clip of keyframe f reads frames f-4, f-2, f, f+2 (NUM_FRAMES 4, SAMPLING_RATE 2, clamped to 1..30): it
    # needs one of the lost 9..20 exactly when f+2 >= 9 and f-4 <= 20, i.e. keyframes 7..24 (18 of 30) are skipped.
    assert dataset.keyframes_skipped[:, 1].tolist() == list(range(7, 25))
    assert dataset.keyframes[:, 1].tolist() == [*range(1, 7), *range(25, 31)] and len(dataset) == 12
    assert "skipped 18 of 30 keyframes whose clips need frames missing from 1 damaged video" in caplog.text
    assert "A.mp4, frames 9..20 are missing" in caplog.text
    assert _frame_numbers(dataset[6]["inputs"]) == [21, 23, 25, 27]  # keyframe 25: the pixels of frames 21..27
    assert _frame_numbers(dataset[5]["inputs"]) == [2, 4, 6, 8]  # keyframe 6
    # The skipped keyframes' ground truth still counts, as missed: perfect detections on the 12 tested keyframes
    # give brush_hair 12 TPs over 30 ground-truth boxes -> ACT AP = 1 * 12/30 = 0.4; the two classes without
    # ground truth have AP 0 -> frame-mAP 0.4 / 3.
    box = np.array([32, 24, 160, 120]) / np.array([320, 240, 320, 240])
    detections = [{"boxes": torch.from_numpy(box[None]), "class_scores": torch.tensor([[0.9, 0.0, 0.0]]),
                   "meta": {"video_idx": 0, "frame": int(frame), "orig_size": (240, 320)}}
                  for frame in dataset.keyframes[:, 1]]
    result = evaluate_detections(cfg, dataset, detections, "val")
    assert result["per_class"]["brush_hair"] == pytest.approx(0.4) and result["mAP"] == pytest.approx(0.4 / 3)


def test_variable_frame_rate_video_is_refused_with_a_re_encoding_hint_not_as_damaged(tmp_path):
    """A phone-style video whose rate drops from 25 to 25/3 fps after frame 12: its frame numbers by time have six
    gaps of two, which the error attributes to the variable frame rate (with the ffmpeg remedy), not to lost data."""
    path = tmp_path / "videos" / "A.mp4"
    _write_video_with_gap(path, [*range(1, 13), *range(15, 31, 3)])  # 18 frames; 13, 14, 16, 17, ... 29 have none
    index = VideoReader().index(path)
    assert index.num_frames == 30 and index.num_gaps == 6 and index.looks_variable_rate
    hint = (r"\(its timestamps step as a variable-frame-rate video's do: 12 of the 30 frame numbers at 25 fps have no "
            r"frame, in 6 gaps; re-encode it at a constant frame rate, e.g. `ffmpeg -i in.mp4 -fps_mode cfr -r 25 "
            r"out.mp4`")
    with pytest.raises(VideoReadError, match=r"A.mp4: frames 13..14 are missing " + hint + r"\); requested frame 13"):
        VideoReader().read(path, [12, 13])
    tube = np.array([[f, 32, 24, 160, 120] for f in range(1, 31)], np.float32)
    gt = {"labels": ["brush_hair", "catch", "clap"], "train_videos": [["brush_hair/A"]],
          "test_videos": [["brush_hair/A"]], "nframes": {"brush_hair/A": 30},
          "resolution": {"brush_hair/A": (240, 320)}, "gttubes": {"brush_hair/A": {0: [tube]}}}
    save_act_pickle(gt, tmp_path / "gt.pkl")
    dataset = build_dataset("jhmdb", _cfg(tmp_path / "gt.pkl", tmp_path / "videos", source="videos"), "test")
    with pytest.raises(VideoReadError, match=r"A.mp4: frames 13..14 are missing " + hint + r"; first missing frame "
                                             r"13 of brush_hair/A\); .*DATA.ON_BAD_FRAME skip"):
        dataset[0]

    # Lost packets of a constant-rate video keep the damage wording: whole frames in one or two runs.
    _write_video_with_gap(tmp_path / "two_gaps.mp4", [*range(1, 6), *range(9, 20), *range(25, 31)])
    index = VideoReader().index(tmp_path / "two_gaps.mp4")
    assert index.num_gaps == 2 and not index.looks_variable_rate
    with pytest.raises(VideoReadError, match=r"frames 6..8 are missing \(lost from the file, by their timestamps\)"):
        VideoReader().read(tmp_path / "two_gaps.mp4", [7])


def test_variable_rate_rule_on_timestamps():
    """The documented rule of VideoIndex.looks_variable_rate, on timestamps in units of 1/30 s."""
    def index(pts):
        return VideoIndex.from_timestamps(pts, [0], 48, 64, Fraction(1, 30))

    one_gap = index([0, 1, 2, 3, 7, 8, 9])  # frames 5..7 lost
    assert one_gap.missing_frames.tolist() == [5, 6, 7] and not one_gap.looks_variable_rate
    assert index([0, 1, 3, 4, 6, 7, 9, 10]).looks_variable_rate  # three gaps
    half_steps = index([0, 2, 4, 6, 8, 11, 13, 15])  # a step of 1.5 frames: the rate changed, no frame lost
    assert half_steps.looks_variable_rate and half_steps.frame_rate == 15
    # One timestamp 1/30 s after another among steps of 4/30 s: too rare to set the rate, it falls on frame 11.
    rare_short = index([*range(0, 44, 4), 41, *range(44, 84, 4)])
    assert rare_short.num_frames == 21 and rare_short.dropped_frames == 1 and rare_short.looks_variable_rate
    # 60 frames at 30 fps, then 100 at 15 fps: the slow stretch holds most steps, yet every frame keeps a number of
    # its own at the fast rate (the median step would number at 15 fps and drop half of the fast frames).
    slow_majority = index([*range(60), *range(60, 260, 2)])
    assert slow_majority.frame_rate == 30 and slow_majority.dropped_frames == 0
    assert slow_majority.num_frames == 259 and len(slow_majority.frames) == 160
    constant = index(range(0, 40, 2))
    assert not constant.looks_variable_rate and constant.frame_rate == 15 and constant.num_frames == 20


def test_millisecond_timestamps_of_a_29_97_fps_matroska_video_number_every_frame(tmp_path):
    """Matroska and WebM store timestamps in milliseconds: steps of 33 and 34 ms at 30000/1001 fps. Numbering by the
    median step (33 or 34) would drift by a frame every ~3 s and report frames as missing; the mean of the typical
    steps numbers all 120 frames, and each frame number reads its own picture (number = 16 x left grey level step +
    right grey level step, in steps of 16 that survive the colour conversion)."""
    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        stream.options = {"crf": "0", "g": "12"}
        for frame in range(1, 121):
            image = np.full((48, 64, 3), 16 * (frame // 16) + 8, np.uint8)
            image[:, 32:] = 16 * (frame % 16) + 8
            picture = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base == Fraction(1, 1000)
        steps = set(np.diff([packet.pts for packet in container.demux(stream) if packet.size]).tolist())
    assert steps == {33, 34}
    index = VideoReader().index(path)
    assert index.num_frames == 120 and not len(index.missing_frames)
    assert float(index.frame_rate) == pytest.approx(30000 / 1001, rel=1e-4)
    frames = [1, 46, 60, 90, 119, 120]
    read = VideoReader().read(path, frames)
    assert [16 * int(f[:, :32].mean() // 16) + int(f[:, 32:].mean() // 16) for f in read] == frames


# -------------------------------------------------------------------------------------------------------- real
@pytest.fixture(scope="module")
def real_ucf_cfg(shared_data, tmp_path_factory):
    annotations = shared_data / "ucf24" / "annotations"
    gt = ucf24_from_pyannot(annotations / "pyannot.pkl", annotations / "testlist01.txt")
    gt_file = tmp_path_factory.mktemp("ucf24") / "ucf24_shared_clips.pkl"
    save_act_pickle(subset_act_gt(gt, SHARED_UCF_VIDEOS), gt_file)
    with open(annotations / "pyannot.pkl", "rb") as file:
        raw = pickle.load(file)
    cfg = _cfg(gt_file, shared_data / "ucf24" / "videos", source="videos", num_classes=24, crop=256)
    cfg.TEST.DATASET = "ucf24"
    return cfg, raw


def test_real_ucf24_clips_load_with_annotated_frame_counts(real_ucf_cfg):
    cfg, raw = real_ucf_cfg
    dataset = build_dataset("ucf24", cfg, "test")
    assert type(dataset).__name__ == "Ucf24" and dataset.video_names == sorted(SHARED_UCF_VIDEOS)
    per_video = np.bincount(dataset.keyframes[:, 0], minlength=len(SHARED_UCF_VIDEOS))
    for video_idx, video in enumerate(dataset.video_names):
        frames = set()
        for tube in raw[video]["annotations"]:
            frames |= set(range(int(tube["sf"]) + 1, int(tube["ef"]) + 1))
        assert per_video[video_idx] == len(frames), video
        assert dataset.video_reader.num_frames(dataset.media_paths[video_idx]) == int(raw[video]["numf"])
    assert len(dataset) == 1357

    cfg = cfg.clone()
    cfg.DATA.NUM_FRAMES = 2
    dataset = build_dataset("ucf24", cfg, "test")
    for video_idx in range(len(dataset.video_names)):  # first and last keyframe of every clip decode
        for index in np.flatnonzero(dataset.keyframes[:, 0] == video_idx)[[0, -1]]:
            sample = dataset[int(index)]
            assert sample["inputs"].shape == (3, 2, 256, 256)
            assert len(sample["boxes"]) >= 1 and bool(sample["actor"].all())
            assert sample["labels"].argmax(1).tolist() == [raw[dataset.video_names[video_idx]]["label"]] * len(
                sample["labels"])


def test_real_ucf24_boxes_are_rescaled_to_the_340x256_clips(real_ucf_cfg):
    cfg, _ = real_ucf_cfg
    cfg = cfg.clone()
    cfg.DATA.NUM_FRAMES = 2
    cfg.DATA.RESIZE_MODE = "short_side"  # 340x256 -> short side 256 (scale 1), centre 256 square: x0 = 42
    dataset = build_dataset("ucf24", cfg, "test")
    video_idx = dataset.video_names.index("Basketball/v_Basketball_g01_c02")
    index = int(np.flatnonzero((dataset.keyframes[:, 0] == video_idx) & (dataset.keyframes[:, 1] == 64))[0])
    sample = dataset[index]
    # Annotation (x, y, w, h) = (189, 99, 47, 95) in 320x240 -> x * 340/320, y * 256/240 in the clip file.
    x1, y1, x2, y2 = 189 * 340 / 320, 99 * 256 / 240, 236 * 340 / 320, 194 * 256 / 240
    expected = torch.tensor([[(x1 - 42) / 256, y1 / 256, (x2 - 42) / 256, y2 / 256]])
    torch.testing.assert_close(sample["boxes"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(sample["ori_boxes"], torch.tensor([[189 / 320, 99 / 240, 236 / 320, 194 / 240]]))
    assert sample["meta"]["orig_size"] == (240, 320)
    assert sample["meta"]["crop_box"] == pytest.approx((42 / 340, 0.0, 298 / 340, 1.0))
    assert annotated_frames(dataset.gt["gttubes"]["Basketball/v_Basketball_g01_c02"])[0] == 64


def test_real_ucf24_video_reader_matches_sequential_decoding(shared_data):
    path = shared_data / "ucf24" / "videos" / "v_Basketball_g01_c02.mp4"
    with av.open(str(path)) as container:
        reference = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    reader = VideoReader(max_cached_frames=0)
    assert reader.num_frames(path) == len(reference) == 180
    for frames in ([100, 104, 108], [1, 2, 180], [64, 31, 97]):
        np.testing.assert_array_equal(reader.read(path, frames), np.stack([reference[f - 1] for f in frames]))


def _drop_packets(source, target, first_pts, last_pts):
    """Copy a video file without re-encoding, leaving out the packets with timestamps first_pts..last_pts."""
    with av.open(str(source)) as source_file, av.open(str(target), "w") as target_file:
        stream = source_file.streams.video[0]
        copy = target_file.add_stream_from_template(stream)
        for packet in source_file.demux(stream):
            if packet.size and not first_pts <= packet.pts <= last_pts:
                packet.stream = copy
                target_file.mux(packet)


def test_real_ucf24_clip_with_two_lost_gops_keeps_frame_numbers(real_ucf_cfg, shared_data, tmp_path):
    source = shared_data / "ucf24" / "videos" / "v_Basketball_g01_c02.mp4"
    with av.open(str(source)) as container:
        reference = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    index = VideoReader().index(source)
    assert index.num_frames == 180 and index.keyframe_pts.tolist() == index.pts[12 * np.arange(15)].tolist()
    # the two groups of pictures from keyframe 49 up to keyframe 73 (frames 49..72) are lost, as in a damaged copy
    videos = tmp_path / "videos"
    videos.mkdir()
    _drop_packets(source, videos / source.name, int(index.pts[48]), int(index.pts[71]))
    reader = VideoReader(max_cached_frames=0)
    damaged = reader.index(videos / source.name)
    assert damaged.num_frames == 180 and damaged.missing_frames.tolist() == list(range(49, 73))
    frames = [1, 48, 73, 100, 180]
    np.testing.assert_array_equal(reader.read(videos / source.name, frames),
                                  np.stack([reference[f - 1] for f in frames]))

    cfg, _ = real_ucf_cfg
    cfg = cfg.clone()
    for video in SHARED_UCF_VIDEOS:  # the other eight clips as they are
        name = video.split("/")[1] + ".mp4"
        if name != source.name:
            (videos / name).symlink_to(shared_data / "ucf24" / "videos" / name)
    cfg.ACT.FRAME_DIR = str(videos)
    dataset = build_dataset("ucf24", cfg, "test")
    video_idx = dataset.video_names.index("Basketball/v_Basketball_g01_c02")
    first = int(np.flatnonzero(dataset.keyframes[:, 0] == video_idx)[0])
    with pytest.raises(VideoReadError, match="v_Basketball_g01_c02.mp4: frames 49..72 are missing"):
        dataset[first]
