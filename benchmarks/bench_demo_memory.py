"""Benchmark: tools/demo_net.py's peak memory does not grow with the video's length; its speed in clips/s.

Two generated videos of SynthAVA val scenes (the frames of data_synth's val videos, looped) of --minutes each
(default 1 and 10) run through `tools/demo_net.py` with a trained checkpoint, each in a fresh process that reports
its own peak RSS (getrusage) when done. A large DEMO.STRIDE (--stride frames between keyframes) keeps the run cheap
while every frame is still decoded twice, drawn and encoded; a last run at DEMO.STRIDE 8 (--speed-stride) on the
shortest video measures clips/s at the demo's keyframe rate. Then the demo runs on each of --inputs (default: a
SynthAVA val video and ../shared/data/videos/vtest.avi) at its default DEMO.STRIDE, and the annotated video is
decoded back and compared with the input: frame count and size. Writes Markdown tables.

    python benchmarks/bench_demo_memory.py                        # after `make demo`: its checkpoint and SynthAVA
    python benchmarks/bench_demo_memory.py --minutes 1 10 --stride 150 --out benchmarks/results/demo_memory.md
    python benchmarks/bench_demo_memory.py NUM_GPUS 1             # on a GPU (bf16 autocast)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from provenance import provenance_line, publish

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FPS = 30


def write_video(path: str, frame_dirs: list[str], num_frames: int) -> None:
    """`num_frames` frames of the folders' JPEGs, in order and looped, as H.264 at 30 fps."""
    import cv2

    from slowfast_bmvit.visualization.video_writer import H264Writer

    files = [f for folder in frame_dirs for f in sorted(glob.glob(os.path.join(folder, "*.jpg")))]
    if not files:
        raise SystemExit(f"no frames in {frame_dirs}: run `make demo` first (it generates SynthAVA)")
    first = cv2.imread(files[0])
    with H264Writer(path, first.shape[1], first.shape[0], FPS, crf=23) as writer:
        for index in range(num_frames):
            writer.write(cv2.cvtColor(cv2.imread(files[index % len(files)]), cv2.COLOR_BGR2RGB))


def run_child(video: str, output: str, cfg: str, opts: list[str]) -> dict:
    """Run the demo in a fresh process; returns its summary, wall time and peak RSS."""
    command = [sys.executable, os.path.abspath(__file__), "--child", video, output, cfg, *opts]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"demo run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(video: str, output: str, cfg_file: str, opts: list[str]) -> None:
    """In the measured process: the demo's own steps (config, input, model, checkpoint, run), then the peak RSS."""
    from slowfast_bmvit.config import assert_and_infer_cfg, load_config
    from slowfast_bmvit.datasets.frame_stream import open_frame_source
    from slowfast_bmvit.datasets.label_maps import column_names_from_cfg
    from slowfast_bmvit.engine.trained_checkpoint import load_trained_checkpoint
    from slowfast_bmvit.engine.demo import run_demo
    from slowfast_bmvit.models import build_model

    import torch

    cfg = assert_and_infer_cfg(load_config(cfg_file, opts))
    source = open_frame_source(video)
    model = build_model(cfg).eval()
    load_trained_checkpoint(cfg, model)
    samples, running = [], threading.Event()

    def sample_rss() -> None:  # resident set size every 0.2 s, MB
        while not running.wait(0.2):
            with open("/proc/self/statm") as statm:
                samples.append(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    start = time.perf_counter()
    sampler.start()
    summary = run_demo(cfg, model, source, output, column_names_from_cfg(cfg), show_progress=False)
    wall = time.perf_counter() - start
    running.set()
    sampler.join()
    tenths = [max(part) for part in np.array_split(np.array(samples), 10) if len(part)]
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() and cfg.NUM_GPUS > 0 else None
    print(json.dumps({"frames": summary.frames_out, "keyframes": summary.keyframes, "detections": summary.detections,
                      "tracks": summary.tracks, "wall_s": wall, "gpu_mb": gpu, "rss_by_tenth_mb": tenths,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def decoded_against_input(input_path: str, video: str) -> dict:
    """Frame count and size of the input (as the demo reads it) and of the annotated video decoded with PyAV."""
    import av

    from slowfast_bmvit.datasets.frame_stream import open_frame_source

    source = open_frame_source(input_path)
    with av.open(video) as container:
        frames = [frame.to_ndarray(format="rgb24").shape for frame in container.decode(container.streams.video[0])]
    return {"input_frames": source.num_frames, "input_size": f"{source.width}x{source.height}",
            "output_frames": len(frames), "output_size": f"{frames[0][1]}x{frames[0][0]}" if frames else "-"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default=os.path.join(REPO, "configs", "SYNTH", "BMViT_demo.yaml"))
    parser.add_argument("--frames", default=os.path.join(REPO, "data_synth", "synthava_demo", "frames"),
                        help="SynthAVA frame folder whose val_* videos make the generated videos")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--stride", type=int, default=150, help="DEMO.STRIDE of the memory runs (frames)")
    parser.add_argument("--speed-stride", type=int, default=8, help="DEMO.STRIDE of the clips/s run (0: skip it)")
    parser.add_argument("--inputs", nargs="*", default=[
        os.path.join(REPO, "data_synth", "synthava_demo", "frames", "val_0003"),
        os.path.join(REPO, "..", "shared", "data", "videos", "vtest.avi")],
        help="videos or frame folders run at the config's DEMO.STRIDE, their outputs decoded back and compared")
    parser.add_argument("--out", default=None, help="write the Markdown table here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (e.g. NUM_GPUS 1)")
    args = parser.parse_args()

    frame_dirs = sorted(glob.glob(os.path.join(args.frames, "val_*")))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        videos = {}
        for minutes in sorted(args.minutes):
            videos[minutes] = os.path.join(folder, f"synthava_{minutes:g}min.mp4")
            start = time.perf_counter()
            write_video(videos[minutes], frame_dirs, int(round(minutes * 60 * FPS)))
            print(f"generated {videos[minutes]} in {time.perf_counter() - start:.0f} s", flush=True)
        runs = [(minutes, args.stride) for minutes in sorted(args.minutes)]
        if args.speed_stride > 0:
            runs.append((min(args.minutes), args.speed_stride))
        for minutes, stride in runs:
            opts = ["DEMO.STRIDE", str(stride), *args.opts]
            result = run_child(videos[minutes], os.path.join(folder, f"out_{minutes:g}_{stride}"), args.cfg, opts)
            result.update(minutes=minutes, stride=stride)
            rows.append(result)
            print(json.dumps(result), flush=True)

        checks = []
        for index, path in enumerate(p for p in args.inputs if os.path.exists(p)):
            output = os.path.join(folder, f"input_{index}")
            result = run_child(path, output, args.cfg, list(args.opts))
            checks.append({**result, "input": os.path.relpath(os.path.abspath(path), REPO),
                           **decoded_against_input(path, os.path.join(output, "annotated.mp4"))})
            print(json.dumps(checks[-1]), flush=True)

    memory_runs = [r for r in rows if r["stride"] == args.stride]
    shortest, longest = memory_runs[0], memory_runs[-1]
    growth = longest["peak_rss_mb"] / shortest["peak_rss_mb"] - 1
    device = "GPU" if any(opt == "NUM_GPUS" for opt in args.opts) else "CPU"
    lines = [
        "| video | frames | DEMO.STRIDE | keyframes (clips) | person detections | tracks | wall s | clips/s | "
        "frames/s | peak RSS MB | RSS MB, highest in each tenth of the run |"
        + (" peak GPU MB |" if device == "GPU" else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|" + ("---:|" if device == "GPU" else ""),
    ]
    for r in rows:
        lines.append(f"| {r['minutes']:g} min | {r['frames']} | {r['stride']} | {r['keyframes']} | {r['detections']} | "
                     f"{r['tracks']} | {r['wall_s']:.1f} | {r['keyframes'] / r['wall_s']:.2f} | "
                     f"{r['frames'] / r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{' '.join(f'{v:.0f}' for v in r['rss_by_tenth_mb'])} |"
                     + (f" {r['gpu_mb']:.0f} |" if device == "GPU" else ""))
    verdict = (f"Peak RSS, {longest['minutes']:g} min vs {shortest['minutes']:g} min video: {growth:+.1%} "
               f"({'under' if abs(growth) < 0.10 else 'NOT under'} the 10 % bound).")
    header = [
        "# tools/demo_net.py: peak memory against video length, and speed",
        "",
        "Each row runs the demo's steps (config, input, model, trained checkpoint of `make demo`, `run_demo`) in a "
        "fresh process on a generated H.264 video of SynthAVA val scenes (160x128, 30 fps); peak RSS is getrusage's, "
        "the tenths column the highest RSS sampled (every 0.2 s) in each tenth of the run. Every frame is decoded "
        "twice (detection, drawing), drawn and encoded whatever DEMO.STRIDE; clips/s counts keyframe clips (each a "
        "flip-averaged forward pass, as the demo config tests) per second of the whole run.",
        "",
        f"Command: `python benchmarks/bench_demo_memory.py {' '.join(sys.argv[1:])}`".rstrip(),
        provenance_line(f"The demo ran on the {device}."),
    ]
    text = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n\n" + verdict + "\n"
    if checks:
        table = ["| input | input frames, size | annotated.mp4 decoded: frames, size | keyframes | person detections | "
                 "tracks | clips/s | peak RSS MB |", "|---|---|---|---:|---:|---:|---:|---:|"]
        for c in checks:
            table.append(f"| {c['input']} | {c['input_frames']}, {c['input_size']} | {c['output_frames']}, "
                         f"{c['output_size']} | {c['keyframes']} | {c['detections']} | {c['tracks']} | "
                         f"{c['keyframes'] / c['wall_s']:.2f} | {c['peak_rss_mb']:.0f} |")
        same = all(c["input_frames"] == c["output_frames"] and c["input_size"] == c["output_size"] for c in checks)
        text += ("\nThe demo on given inputs (the config's DEMO.STRIDE), its video decoded back with PyAV:\n\n"
                 + "\n".join(table) + f"\n\nFrame count and size of every annotated video "
                 f"{'equal' if same else 'DIFFER FROM'} the input's.\n")
    publish(text, args.out)


if __name__ == "__main__":
    main()
