#!/usr/bin/env python3
"""Parameter count and GFLOPs of a config's model, for one test clip.

    python tools/model_stats.py --cfg configs/Kinetics/MViTv2_S_16x4.yaml [KEY VALUE ...]

Prints `params: <int>` and `gflops: <float>` on two lines. The clip is [1, 3, DATA.NUM_FRAMES, DATA.TEST_CROP_SIZE,
DATA.TEST_CROP_SIZE]; a model that reads person boxes (the two-stage baseline) gets --num-boxes boxes on it
(default 1; its RoI head's cost grows with them, the person detector's is not counted). The model is built on the
CPU in eval mode whatever NUM_GPUS says. GFLOPs are fvcore's (one multiply-add = one flop, as PySlowFast reports
them), scaled_dot_product_attention included.
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from slowfast_bmvit.config import ConfigError  # noqa: E402
from slowfast_bmvit.models import get_model_class  # noqa: E402
from slowfast_bmvit.utils.cli import exit_on_config_error, load_job_config, parse_args  # noqa: E402
from slowfast_bmvit.utils.complexity import count_gflops, count_parameters  # noqa: E402


def model_stats(cfg, num_boxes: int = 1) -> tuple[int, float]:
    """(parameters, GFLOPs of one test clip) of `cfg.MODEL.MODEL_NAME`."""
    try:
        model = get_model_class(cfg.MODEL.MODEL_NAME)(cfg)
    except ConfigError as err:
        exit_on_config_error(err)
    size = cfg.DATA.TEST_CROP_SIZE
    clip = torch.zeros(1, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, size, size)
    inputs = (clip,)
    if getattr(model, "uses_input_boxes", False):
        # Boxes [R, 5] (batch index, x1, y1, x2, y2 in input pixels), spread over the frame.
        corners = torch.linspace(0, size / 2, num_boxes)
        inputs = (clip, torch.stack([torch.zeros(num_boxes), corners, corners, corners + size / 2,
                                     corners + size / 2], dim=1))
    return count_parameters(model), count_gflops(model, inputs)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(
        "Print the parameter count and GFLOPs of a config's model.", argv,
        lambda parser: parser.add_argument("--num-boxes", type=int, default=1,
                                           help="person boxes per clip for models that read boxes (two-stage)"),
    )
    for cfg_file in args.cfg_files:
        try:
            cfg = load_job_config(args, cfg_file, needs_devices=False)
        except ConfigError as err:
            exit_on_config_error(err)
        params, gflops = model_stats(cfg, args.num_boxes)
        print(f"params: {params}")
        print(f"gflops: {gflops:.3f}")


if __name__ == "__main__":
    main()
