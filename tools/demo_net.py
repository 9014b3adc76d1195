#!/usr/bin/env python3
"""Run a trained BMViT on a video file or a folder of frames: an annotated video, actor tracks, detection files.

    python tools/demo_net.py --cfg configs/SYNTH/BMViT_demo.yaml --input VIDEO|FRAME_DIR [--output DIR] [KEY VALUE ...]

The weights are TEST.CHECKPOINT_FILE_PATH, else the newest checkpoint in OUTPUT_DIR/checkpoints (without one the
tool stops: it never draws the predictions of random weights). Writes DIR/annotated.mp4 (H.264, the input's frame
count, size and rate), DIR/detections.csv (AVA rows plus a track id) and DIR/detections.json, DIR defaulting to
OUTPUT_DIR/demo/<input name>, and prints a one-line summary. Keyframe spacing, tracking and drawing follow the
DEMO.* keys, batching TEST.BATCH_SIZE, the device NUM_GPUS (bf16 autocast on a GPU); class names come from
TEST.DATASET's label map (AVA 80 / 60 classes, UCF101-24, JHMDB, SynthAVA). slowfast_bmvit/engine/demo.py explains
each step.
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.config import ConfigError  # noqa: E402
from slowfast_bmvit.utils.cli import load_job_config, parse_args  # noqa: E402


def _add_arguments(parser) -> None:
    parser.add_argument("--input", required=True, metavar="VIDEO|FRAME_DIR",
                        help="a video file (anything FFmpeg decodes) or a folder of frame images (played at "
                             "DEMO.FOLDER_FPS)")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="output folder (default: OUTPUT_DIR/demo/<input name>)")


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args("Run a trained BMViT on a video: annotated video, actor tracks, detections.", argv,
                      _add_arguments, single_config_tool="demo_net.py")

    from slowfast_bmvit.datasets.frame_stream import InputError, open_frame_source
    from slowfast_bmvit.datasets.label_maps import column_names_from_cfg
    from slowfast_bmvit.engine.demo import run_demo
    from slowfast_bmvit.engine.trained_checkpoint import load_trained_checkpoint
    from slowfast_bmvit.models import build_model
    from slowfast_bmvit.models.checkpoint_loading import CheckpointError

    try:
        cfg = load_job_config(args, args.cfg_files[0])
        source = open_frame_source(args.input, cfg.DEMO.FOLDER_FPS)
        column_names = column_names_from_cfg(cfg)
        model = build_model(cfg).eval()
        checkpoint = load_trained_checkpoint(cfg, model)
        output_dir = args.output or os.path.join(cfg.OUTPUT_DIR, "demo", source.name)
        summary = run_demo(cfg, model, source, output_dir, column_names, checkpoint)
    except (ConfigError, CheckpointError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    print(summary.line(), flush=True)


if __name__ == "__main__":
    main()
