#!/usr/bin/env python3
"""Parameter count and GFLOPs of a config's model, for one test clip.

    python tools/model_stats.py --cfg configs/Kinetics/MViTv2_S_16x4.yaml [KEY VALUE ...]

Prints `params: <int>` and `gflops: <float>` on two lines (with --by-operator a third, `gflops_by_operator: op=x,
...`, e.g. to see the attention products' share). The clip is [1, 3, DATA.NUM_FRAMES, DATA.TEST_CROP_SIZE,
DATA.TEST_CROP_SIZE]; a model that reads person boxes (the two-stage baseline) gets --num-boxes boxes on it
(default 1; its RoI head's cost grows with them, the person detector's is not counted). The model is built on the
CPU in eval mode whatever NUM_GPUS says. GFLOPs are fvcore's (one multiply-add = one flop, as PySlowFast reports
them), scaled_dot_product_attention included.
"""

import logging
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.config import ConfigError  # noqa: E402
from slowfast_bmvit.models import get_model_class  # noqa: E402
from slowfast_bmvit.utils.cli import exit_on_config_error, load_job_config, parse_args  # noqa: E402
from slowfast_bmvit.utils.complexity import (  # noqa: E402
    count_gflops, count_parameters, example_inputs, flop_analysis,
)


def _model_and_inputs(cfg, num_boxes: int) -> tuple[torch.nn.Module, tuple]:
    """`cfg.MODEL.MODEL_NAME` in eval mode and the inputs of one test clip."""
    try:
        model = get_model_class(cfg.MODEL.MODEL_NAME)(cfg).eval()
    except ConfigError as err:
        exit_on_config_error(err)
    return model, example_inputs(model, cfg, cfg.DATA.TEST_CROP_SIZE, num_boxes)


def model_stats(cfg, num_boxes: int = 1) -> tuple[int, float]:
    """(parameters, GFLOPs of one test clip) of `cfg.MODEL.MODEL_NAME`."""
    model, inputs = _model_and_inputs(cfg, num_boxes)
    return count_parameters(model), count_gflops(model, inputs)


def gflops_by_operator(cfg, num_boxes: int = 1) -> dict[str, float]:
    """GFLOPs of one test clip per traced operator (fvcore's names, e.g. linear, scaled_dot_product_attention)."""
    model, inputs = _model_and_inputs(cfg, num_boxes)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        counts = flop_analysis(model, inputs).by_operator()
    return {name: count / 1e9 for name, count in sorted(counts.items(), key=lambda item: -item[1])}


def _add_arguments(parser) -> None:
    parser.add_argument("--num-boxes", type=int, default=1,
                        help="person boxes per clip for models that read boxes (two-stage)")
    parser.add_argument("--by-operator", action="store_true",
                        help="also print the GFLOPs of each operator (attention products, linears, ...)")


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(
        "Print the parameter count and GFLOPs of a config's model.", argv,
        _add_arguments,
    )
    for cfg_file in args.cfg_files:
        try:
            cfg = load_job_config(args, cfg_file, needs_devices=False)
        except ConfigError as err:
            exit_on_config_error(err)
        params, gflops = model_stats(cfg, args.num_boxes)
        print(f"params: {params}")
        print(f"gflops: {gflops:.3f}")
        if args.by_operator:
            parts = gflops_by_operator(cfg, args.num_boxes)
            print("gflops_by_operator: " + ", ".join(f"{name}={value:.3f}" for name, value in parts.items()))


if __name__ == "__main__":
    main()
