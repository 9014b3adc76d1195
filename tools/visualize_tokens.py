#!/usr/bin/env python3
"""The supplement's Fig. 3 for one clip of a video: what each output token of a trained BMViT predicts.

    python tools/visualize_tokens.py --cfg configs/SYNTH/BMViT_demo.yaml --input VIDEO|FRAME_DIR --time SEC
        [--output PNG] [--slot S] [--max-tokens N] [--actor-thresh P] [KEY VALUE ...]

Left, over the keyframe (the frame at SEC, the centre of a DATA.NUM_FRAMES x DATA.SAMPLING_RATE clip): top, p(actor)
of every token of the central slot of the arranged grid; bottom, every token's box, yellow for the positive tokens
(p(actor) > --actor-thresh, default BMVIT.ACTOR_THRESH). Right, one row per positive token (at most --max-tokens,
highest p(actor) first): its last-block attention over the key grid, one tile per key time slice drawn over the
clip frame of that slice, "cls" the weight left on the class token. The model's weights are those demo_net.py
uses (TEST.CHECKPOINT_FILE_PATH, else the newest checkpoint in OUTPUT_DIR). Writes PNG (default
OUTPUT_DIR/tokens/<input name>_<SEC>s.png) and prints its path with the token counts.
"""

import logging
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.config import ConfigError  # noqa: E402
from slowfast_bmvit.utils.cli import load_job_config, parse_args  # noqa: E402

# Frames smaller than this (pixels, long side) are enlarged, nearest-neighbour, so that the tokens stay visible.
MIN_FIGURE_SIDE = 480


def _add_arguments(parser) -> None:
    parser.add_argument("--input", required=True, metavar="VIDEO|FRAME_DIR", help="video file or frame folder")
    parser.add_argument("--time", required=True, type=float, metavar="SEC", help="keyframe time in seconds")
    parser.add_argument("--output", default=None, metavar="PNG", help="figure path (default: OUTPUT_DIR/tokens/...)")
    parser.add_argument("--slot", type=int, default=None, help="temporal slot of the arranged tokens (default: the "
                        "central one)")
    parser.add_argument("--max-tokens", type=int, default=6, help="attention rows for at most this many positive "
                        "tokens (0: all)")
    parser.add_argument("--actor-thresh", type=float, default=None, help="positive tokens have p(actor) above this "
                        "(default: BMVIT.ACTOR_THRESH)")


def token_figure_for(cfg, model, source, seconds: float, thresh: float, slot=None, max_tokens: int = 6):
    """(figure uint8 RGB, TokenInspection) of the clip of `source` centred on the frame at `seconds`; positive
    tokens have p(actor) > thresh."""
    import cv2
    import numpy as np

    from slowfast_bmvit.datasets.frame_stream import read_clip
    from slowfast_bmvit.datasets.transforms import DetectionTransform, to_normalized_tensor
    from slowfast_bmvit.engine.token_inspection import inspect_tokens
    from slowfast_bmvit.models.postprocess import clip_to_frame
    from slowfast_bmvit.visualization.token_maps import token_attention_figure

    center = int(round(seconds * float(source.fps)))
    frames = read_clip(source, center, cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE)
    transform = DetectionTransform.from_cfg(cfg, "test")
    geometry = transform.geometry(source.height, source.width, None)
    clip = to_normalized_tensor(geometry.apply_to_frames(frames), transform.mean, transform.std, transform.bgr)
    device = next(model.parameters()).device
    result = inspect_tokens(model, clip[None].to(device), thresh, slot, max_tokens)

    import torch

    def on_frame(boxes):  # clip fractions -> frame fractions (identity for "square" resizing)
        flat = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
        return clip_to_frame(flat, geometry.crop_box).numpy()

    scale = max(1, math.ceil(MIN_FIGURE_SIDE / max(source.height, source.width)))
    enlarge = (lambda image: cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
    keyframe = enlarge(frames[cfg.DATA.NUM_FRAMES // 2])
    flat_prob = result.actor_prob.reshape(-1)
    titles = [f"p={flat_prob[i]:.2f} cls {w:.2f}" for i, w in zip(result.positive, result.cls_attention)]
    figure = token_attention_figure(
        keyframe, on_frame(result.boxes), result.actor_prob, thresh,
        [enlarge(frames[t]) for t in result.key_times], result.attention,
        on_frame(result.boxes.reshape(-1, 4)[result.positive]), titles)
    return figure, result


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args("Fig. 3 of the BMViT supplement for one clip: token confidences, boxes and attention.", argv,
                      _add_arguments, single_config_tool="visualize_tokens.py")

    from slowfast_bmvit.datasets.frame_stream import InputError, open_frame_source
    from slowfast_bmvit.engine.trained_checkpoint import load_trained_checkpoint
    from slowfast_bmvit.models import build_model
    from slowfast_bmvit.models.checkpoint_loading import CheckpointError
    from slowfast_bmvit.visualization.boxes import save_png

    try:
        cfg = load_job_config(args, args.cfg_files[0])
        source = open_frame_source(args.input, cfg.DEMO.FOLDER_FPS)
        model = build_model(cfg).eval()
        load_trained_checkpoint(cfg, model)
        thresh = cfg.BMVIT.ACTOR_THRESH if args.actor_thresh is None else args.actor_thresh
        figure, result = token_figure_for(cfg, model, source, args.time, thresh, args.slot, args.max_tokens)
    except (ConfigError, CheckpointError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    path = args.output or os.path.join(cfg.OUTPUT_DIR, "tokens", f"{source.name}_{args.time:g}s.png")
    save_png(figure, path)
    positive = int((result.actor_prob > thresh).sum())
    print(f"wrote {path}: {result.actor_prob.size} tokens in slot {result.slot}, {positive} with p(actor) > "
          f"{thresh:g} (max {result.actor_prob.max():.3f}); attention rows for {len(result.positive)}")


if __name__ == "__main__":
    main()
