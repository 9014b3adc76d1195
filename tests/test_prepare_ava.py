"""tools/prepare_ava.py: frames at 30 fps named as PySlowFast's script names them, frame lists the AVA loader reads,
and the pre-flight check of frame folders (in the tool and in the loader)."""

import filecmp
import shutil
import sys

import av
import cv2
import numpy as np
import pytest

from slowfast_bmvit.config import ConfigError, get_cfg
from slowfast_bmvit.datasets import build_dataset
from slowfast_bmvit.evaluation.ava_io import write_groundtruth_csv

TOOL_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOL_DIR))
import prepare_ava  # noqa: E402

# 2, 60 and 118 s into the 2-minute video vidA; 2 and 8 s into the 10-second video vidB.
KEYFRAME_SECONDS = {"vidA": (902, 960, 1018), "vidB": (902, 908)}
VIDEO_SECONDS = {"vidA": 120, "vidB": 10}


def _write_video(path, seconds=120, fps=25, size=(48, 64)):
    """A video whose grey level tells its second (2 x second) with a white square as the only person."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qmin": "1", "qmax": "1"}  # near-lossless: the grey levels stay readable
        for index in range(seconds * fps):
            image = np.full((*size, 3), 2 * (index // fps), np.uint8)
            image[12:36, 16:40] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 2-minute and a 10-second video prepared with PyAV as whole cuts (video second t stands for AVA's second
    900 + t), with a frame list for the keyframes of both."""
    root = tmp_path_factory.mktemp("ava")
    (root / "videos").mkdir()
    for name, seconds in VIDEO_SECONDS.items():
        _write_video(root / "videos" / f"{name}.mp4", seconds)
    annotations = root / "annotations"
    annotations.mkdir()
    rows = [(video, sec) for video, seconds in KEYFRAME_SECONDS.items() for sec in seconds]
    write_groundtruth_csv(str(annotations / "train.csv"), [r[0] for r in rows], [r[1] for r in rows],
                          np.tile([[0.25, 0.25, 0.625, 0.75]], (len(rows), 1)), [12] * len(rows), [0] * len(rows))
    (annotations / "labels.pbtxt").write_text('label {\n  name: "stand"\n  label_id: 12\n  label_type: PERSON_MOVEMENT\n}\n')
    status = prepare_ava.main(["--videos", str(root / "videos"), "--out", str(root), "--backend", "pyav",
                               "--start", "0", "--duration", "901", "--lists", f"train.csv={annotations / 'train.csv'}"])
    assert status == 0
    return root


def _ava_cfg(root):
    cfg = get_cfg()
    cfg.AVA.FRAME_DIR, cfg.AVA.FRAME_LIST_DIR = str(root / "frames"), str(root / "frame_lists")
    cfg.AVA.ANNOTATION_DIR = str(root / "annotations")
    cfg.AVA.TRAIN_LISTS, cfg.AVA.TRAIN_GT_BOX_LISTS, cfg.AVA.LABEL_MAP_FILE = ["train.csv"], ["train.csv"], "labels.pbtxt"
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 2
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = 32
    cfg.DATA.RANDOM_FLIP = False
    cfg.DATA.MEAN, cfg.DATA.STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    return cfg


def test_a_two_minute_video_gives_30_frames_a_second_named_as_pyslowfast(prepared):
    for video, seconds in VIDEO_SECONDS.items():
        names = sorted(p.name for p in (prepared / "frames" / video).iterdir())
        assert len(names) == 30 * seconds
        assert names[0] == f"{video}_000001.jpg" and names[-1] == f"{video}_{30 * seconds:06d}.jpg"
    # 25 fps -> 30 fps: output frame k shows the input frame whose time rounds to k or earlier (second 59 -> 2 x 59).
    frame = cv2.imread(str(prepared / "frames" / "vidA" / f"vidA_{59 * 30 + 1:06d}.jpg"))
    assert abs(int(frame[2, 2, 1]) - 2 * 59) <= 2
    lines = (prepared / "frame_lists" / "train.csv").read_text().splitlines()
    assert lines[0] == "original_vido_id video_id frame_id path labels"
    assert lines[1] == 'vidA 0 0 vidA/vidA_000001.jpg ""'
    assert lines[-1] == 'vidB 1 299 vidB/vidB_000300.jpg ""' and len(lines) == 1 + 3600 + 300


def test_the_ava_loader_reads_the_prepared_frames(prepared):
    dataset = build_dataset("ava", _ava_cfg(prepared), "train")
    assert len(dataset) == 5
    for index in range(len(dataset)):
        sample = dataset[index]
        second = sample["meta"]["sec"] - 900
        grey = sample["inputs"][1, :, 0, 0] * 255  # corner pixels of the 4 frames around the keyframe
        assert np.allclose(grey.numpy(), 2 * np.clip(second + np.array([-4, -2, 0, 2]) / 30, 0, None).astype(int),
                           atol=1.5), (sample["meta"], grey)
        assert sample["boxes"].shape == (1, 4)


def test_a_second_run_skips_complete_folders(prepared, capsys):
    before = (prepared / "frames" / "vidA" / "vidA_000100.jpg").stat().st_mtime_ns
    assert prepare_ava.main(["--videos", str(prepared / "videos"), "--out", str(prepared), "--backend", "pyav",
                             "--start", "0", "--duration", "901"]) == 0
    assert "vidA: 3600 frames (already there)" in capsys.readouterr().out
    assert (prepared / "frames" / "vidA" / "vidA_000100.jpg").stat().st_mtime_ns == before


def test_preflight_names_a_missing_and_a_short_frame_folder(prepared, tmp_path, capsys):
    root = tmp_path / "ava"
    shutil.copytree(prepared / "annotations", root / "annotations")
    shutil.copytree(prepared / "frames" / "vidB", root / "frames" / "vidB")  # vidA has no folder
    for frame in range(200, 300):  # vidB stops at 6.7 s: its keyframe at 8 s (frame 240) has no frame
        (root / "frames" / "vidB" / f"vidB_{frame + 1:06d}.jpg").unlink()
    status = prepare_ava.main(["--check", "--out", str(root), "--lists",
                               f"train.csv={root / 'annotations' / 'train.csv'}"])
    out = capsys.readouterr().out
    assert status == 1
    assert f"missing: {root / 'frames' / 'vidA'}" in out
    assert f"short:   {root / 'frames' / 'vidB'}: 200 frames, 241 needed" in out
    # With the frame lists of the complete extraction, the loader refuses to start.
    cfg = _ava_cfg(root)
    shutil.copytree(prepared / "frame_lists", root / "frame_lists", dirs_exist_ok=True)
    with pytest.raises(ConfigError, match=r"^AVA\.FRAME_DIR: 1 of 2 videos have no frames \(e\.g\. vidA\); 1 stop "
                                          r"early \(e\.g\. vidB: 200 frames, 241 needed\)"):
        build_dataset("ava", cfg, "train")


def test_a_frame_folder_with_a_gap_is_reported_and_the_list_stops_before_it(tmp_path, capsys):
    """Frames 1-5 and 7-12: five consecutive frames, the list holds exactly those, and the check names the folder
    and the absent frame file (the frames after the gap would otherwise shift onto the wrong times)."""
    folder = tmp_path / "frames" / "vidC"
    folder.mkdir(parents=True)
    for frame in [*range(1, 6), *range(7, 13)]:
        (folder / f"vidC_{frame:06d}.jpg").write_bytes(b"\xff\xd8 frame")
    (folder / "notes.txt").write_text("not a frame")
    assert prepare_ava.count_frames(str(tmp_path / "frames"), "vidC") == 5
    (tmp_path / "videos.txt").write_text("vidC.mp4\n")
    status = prepare_ava.main(["--check", "--out", str(tmp_path), "--lists", f"train.csv={tmp_path / 'videos.txt'}"])
    out = capsys.readouterr().out
    assert status == 1
    assert "train.csv: 1 videos, 5 frames; 1 have a gap (e.g. vidC: frame 6 is missing)" in out
    assert f"gap:     {folder}: vidC_000006.jpg is missing; the list stops before it (6 later frame files left " \
           f"out)" in out
    rows = (tmp_path / "frame_lists" / "train.csv").read_text().splitlines()[1:]
    assert [row.split()[3] for row in rows] == [f"vidC/vidC_{frame:06d}.jpg" for frame in range(1, 6)]


def test_a_frame_folder_without_its_first_frame_is_one_gap_not_a_missing_folder(tmp_path, capsys):
    """Frame files 2 and 3 only: the folder exists and holds frames, so the check reports one gap at frame 1 (and no
    'have no frames'), and the list is empty for it."""
    folder = tmp_path / "frames" / "nofirst"
    folder.mkdir(parents=True)
    for frame in (2, 3):
        (folder / f"nofirst_{frame:06d}.jpg").write_bytes(b"\xff\xd8 frame")
    (tmp_path / "videos.txt").write_text("nofirst.mp4\n")
    status = prepare_ava.main(["--check", "--out", str(tmp_path), "--lists", f"train.csv={tmp_path / 'videos.txt'}"])
    out = capsys.readouterr().out
    assert status == 1
    assert "train.csv: 1 videos, 0 frames; 1 have a gap (e.g. nofirst: frame 1 is missing)" in out
    assert "have no frames" not in out and "missing: " not in out
    assert f"gap:     {folder}: nofirst_000001.jpg is missing; the list stops before it (2 later frame files left " \
           f"out)" in out


def _write_raw_stream(path, seconds=4, fps=25, size=(48, 64)):
    """A raw MPEG-4 elementary stream (FFmpeg's m4v format; the UCF101-24 clips are such streams in .mp4 names): no
    container or stream duration, only packet timestamps. Grey level 2 x second, as `_write_video`."""
    with av.open(str(path), "w", format="m4v") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qmin": "1", "qmax": "1"}
        for index in range(seconds * fps):
            image = np.full((*size, 3), 2 * (index // fps), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_bad_videos_are_reported_one_line_each_and_the_others_extracted(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    _write_video(videos / "good.mp4", seconds=4)
    _write_raw_stream(videos / "raw.mp4", seconds=4)
    with av.open(str(videos / "raw.mp4")) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    (videos / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    (videos / "empty.mkv").touch()
    status = prepare_ava.main(["--videos", str(videos), "--out", str(tmp_path / "out"), "--backend", "pyav",
                               "--start", "1", "--duration", "2", "--jobs", "2"])
    captured = capsys.readouterr()
    assert status == 1
    failed = sorted(line for line in captured.err.splitlines() if "failed" in line)
    assert failed == ["error: 2 of 4 videos failed (each named above); the others are extracted",
                      f"failed: {videos / 'corrupt.mp4'}: not a readable video (Invalid data found when processing "
                      f"input)",
                      f"failed: {videos / 'empty.mkv'}: empty file (0 bytes), not a video"]
    assert "Traceback" not in captured.err
    assert "good: 60 frames" in captured.out and "raw: 60 frames" in captured.out
    for name in ("good", "raw"):  # seconds 1 .. 3: grey 2 for the first 30 frames, then 4
        frames = sorted((tmp_path / "out" / "frames" / name).iterdir())
        assert len(frames) == 60
        assert [round(cv2.imread(str(frames[k]))[2, 2, 1] / 2) for k in (0, 29, 31, 59)] == [1, 1, 2, 2]
    assert not (tmp_path / "out" / "frames" / "corrupt").exists()
    assert sorted(p.name for p in (tmp_path / "out" / "frames").iterdir()) == ["good", "raw"]  # no partial folders
    # An ffmpeg that fails: its exit status and last error line, for each video.
    broken = tmp_path / "broken_ffmpeg"
    broken.write_text("#!/bin/sh\necho 'some warning' >&2\necho 'Conversion failed!' >&2\nexit 3\n")
    broken.chmod(0o755)
    assert prepare_ava.main(["--videos", str(videos), "--out", str(tmp_path / "by_ffmpeg"), "--backend", "ffmpeg",
                             "--ffmpeg", str(broken), "--start", "1", "--duration", "2"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {videos / 'good.mp4'}: ffmpeg exited with status 3: Conversion failed!" in err
    assert "error: 4 of 4 videos failed" in err
    # A cut that starts after the end of a video is a failure too, not an empty folder.
    assert prepare_ava.main(["--videos", str(videos), "--out", str(tmp_path / "late"), "--backend", "pyav",
                             "--start", "10", "--duration", "2"]) == 1
    assert f"failed: {videos / 'good.mp4'}: no frames in the requested seconds 10 .. 12: the video is 4.00 s long" \
        in capsys.readouterr().err


def test_real_ucf24_raw_stream_without_duration_is_extracted(shared_data, tmp_path):
    """The UCF101-24 clips are raw MPEG-4 streams (no container or stream duration) at 29.97 fps: 3 s give 90
    frames, frame k the source frame shown at k / 30 s."""
    videos = tmp_path / "videos"
    videos.mkdir()
    source = shared_data / "ucf24" / "videos" / "v_Biking_g01_c01.mp4"
    (videos / source.name).symlink_to(source)
    assert prepare_ava.main(["--videos", str(videos), "--out", str(tmp_path / "out"), "--backend", "pyav",
                             "--start", "0", "--duration", "3"]) == 0
    frames = sorted((tmp_path / "out" / "frames" / source.stem).iterdir())
    assert len(frames) == 90
    with av.open(str(source)) as container:
        decoded = [f.to_ndarray(format="bgr24") for _, f in zip(range(91), container.decode(video=0))]
    for k in (0, 45, 89):  # source frame round(k x 29.97 / 30), the latest at or before k / 30 s (to rounding)
        difference = np.abs(cv2.imread(str(frames[k])).astype(int) - decoded[round(k * 0.999)].astype(int)).mean()
        assert difference < 3, (k, difference)


def test_real_video_at_10_fps_repeats_each_frame_three_times(shared_data, tmp_path):
    """vtest.avi (OpenCV sample, 10 fps, 79.5 s): seconds 20 .. 30 give 300 frames, each source frame 3 times, and a
    cut past the end gives 30 x what is left (70 .. 79.5 s: 285 frames)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "vtest.avi").symlink_to(shared_data / "videos" / "vtest.avi")
    assert prepare_ava.main(["--videos", str(videos), "--out", str(tmp_path / "a"), "--backend", "pyav",
                             "--start", "20", "--duration", "10"]) == 0
    frames = sorted((tmp_path / "a" / "frames" / "vtest").iterdir())
    assert len(frames) == 300
    for k in range(0, 300, 3):
        assert filecmp.cmp(frames[k], frames[k + 1], shallow=False) and filecmp.cmp(frames[k], frames[k + 2],
                                                                                  shallow=False)
    assert not filecmp.cmp(frames[0], frames[3], shallow=False)
    with av.open(str(shared_data / "videos" / "vtest.avi")) as container:
        source = [f.to_ndarray(format="bgr24") for i, f in zip(range(205), container.decode(video=0)) if i >= 200]
    for j in range(5):  # output frame 3j is source frame 200 + j (t = 20 + j / 10 s)
        difference = np.abs(cv2.imread(str(frames[3 * j])).astype(int) - source[j].astype(int)).mean()
        assert difference < 3, (j, difference)
    assert prepare_ava.main(["--videos", str(videos), "--out", str(tmp_path / "b"), "--backend", "pyav",
                             "--start", "70", "--duration", "901"]) == 0
    assert len(list((tmp_path / "b" / "frames" / "vtest").iterdir())) == 285


def _ffmpeg_executable() -> str:
    """ffmpeg on the PATH, else the static build the imageio-ffmpeg test package ships."""
    if shutil.which("ffmpeg"):
        return shutil.which("ffmpeg")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="no ffmpeg on the PATH and imageio-ffmpeg (the "
                                         "test extras' ffmpeg build) is not installed")
    return imageio_ffmpeg.get_ffmpeg_exe()


def _write_changing_video(path, seconds=20, fps=25, size=(48, 64)):
    """Every frame a different flat grey (5 levels apart), so a frame shown in the wrong slot is visible."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qmin": "1", "qmax": "1"}
        for index in range(seconds * fps):
            image = np.full((*size, 3), (5 * index) % 250, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_ffmpeg_and_pyav_give_the_same_frames(tmp_path):
    """PySlowFast's ffmpeg commands against the PyAV path, seconds 5 .. 15 of a 25 fps video: the same names, and in
    every 30 fps slot the same source frame."""
    videos = tmp_path / "videos"
    videos.mkdir()
    _write_changing_video(videos / "clip.mp4")
    for backend in ("ffmpeg", "pyav"):
        assert prepare_ava.main(["--videos", str(videos), "--out", str(tmp_path / backend), "--backend", backend,
                                 "--ffmpeg", _ffmpeg_executable(), "--start", "5", "--duration", "10"]) == 0
    by_ffmpeg = sorted((tmp_path / "ffmpeg" / "frames" / "clip").iterdir())
    by_pyav = sorted((tmp_path / "pyav" / "frames" / "clip").iterdir())
    assert [p.name for p in by_ffmpeg] == [p.name for p in by_pyav] and len(by_pyav) == 300
    for a, b in zip(by_ffmpeg, by_pyav):
        assert np.abs(cv2.imread(str(a)).astype(int) - cv2.imread(str(b)).astype(int)).mean() < 1.5, a.name
    assert (tmp_path / "ffmpeg" / "videos_15min" / "clip.mp4").is_file()


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --videos: not a folder: .*none$"):
        prepare_ava.main(["--videos", str(tmp_path / "none"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"^error: --lists train.csv=nothing.csv: expected NAME=SOURCE"):
        prepare_ava.main(["--check", "--out", str(tmp_path), "--lists", "train.csv=nothing.csv"])
