#!/usr/bin/env python3
"""Generate SynthAVA, the built-in AVA-format dataset (frames, frame lists, GT CSVs, label map, exclusions).

    python tools/make_synth_ava.py --root ./data_synth/synthava --seed 0 --num-train-videos 24 --num-val-videos 8
    python tools/make_synth_ava.py --cfg configs/SYNTH/BMViT_demo.yaml      # the SYNTH.* values of a config
    python tools/make_synth_ava.py --root ./data_synth/clean --clutter 0.3 --limb-thickness 0.1 --max-people 3

Defaults come from the SYNTH.* keys (of --cfg when given); flags override them. The same seed and sizes give
byte-identical files. An existing complete dataset with the same parameters is left as is (exit 0); one with other
parameters is an error unless --overwrite.
"""

import argparse
import logging
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.config import ConfigError, get_cfg, load_config  # noqa: E402
from slowfast_bmvit.datasets.synthetic import (  # noqa: E402
    describe,
    ensure_synth_ava,
    generate_synth_ava,
    scene_style,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cfg", default=None, help="config file whose SYNTH.* keys give the defaults")
    parser.add_argument("--root", default=None, help="output folder (SYNTH.ROOT)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (SYNTH.SEED)")
    parser.add_argument("--num-train-videos", type=int, default=None, help="SYNTH.NUM_TRAIN_VIDEOS")
    parser.add_argument("--num-val-videos", type=int, default=None, help="SYNTH.NUM_VAL_VIDEOS")
    parser.add_argument("--video-seconds", type=int, default=None, help="SYNTH.VIDEO_SECONDS (>= 4)")
    parser.add_argument("--frame-size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                        help="SYNTH.FRAME_SIZE in pixels")
    parser.add_argument("--clutter", type=float, default=None, help="SYNTH.CLUTTER (background texture, 0..4)")
    parser.add_argument("--limb-thickness", type=float, default=None, help="SYNTH.LIMB_THICKNESS (of the height)")
    parser.add_argument("--max-people", type=int, default=None, help="SYNTH.MAX_PEOPLE (1-4)")
    parser.add_argument("--occluder-probability", type=float, default=None, help="SYNTH.OCCLUDER_PROBABILITY")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering videos in parallel")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --root")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        cfg = load_config(args.cfg, []) if args.cfg else get_cfg()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    synth = cfg.SYNTH
    for key, value in (("ROOT", args.root), ("SEED", args.seed), ("NUM_TRAIN_VIDEOS", args.num_train_videos),
                       ("NUM_VAL_VIDEOS", args.num_val_videos), ("VIDEO_SECONDS", args.video_seconds),
                       ("FRAME_SIZE", args.frame_size), ("CLUTTER", args.clutter),
                       ("LIMB_THICKNESS", args.limb_thickness), ("MAX_PEOPLE", args.max_people),
                       ("OCCLUDER_PROBABILITY", args.occluder_probability)):
        if value is not None:
            synth[key] = value
    start = time.perf_counter()
    if os.path.exists(synth.ROOT):
        if args.overwrite:
            shutil.rmtree(synth.ROOT)
        else:
            try:
                paths = ensure_synth_ava(cfg)
            except ConfigError as err:
                print(f"error: {err} (or pass --overwrite)", file=sys.stderr)
                return 2
            print(f"SynthAVA already at {paths.root}: {describe(paths)['stats']}")
            return 0
    try:
        paths = generate_synth_ava(synth.ROOT, synth.SEED, synth.NUM_TRAIN_VIDEOS, synth.NUM_VAL_VIDEOS,
                                   synth.VIDEO_SECONDS, synth.FRAME_SIZE, num_workers=args.workers,
                                   style=scene_style(synth))
    except (ValueError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"SynthAVA written to {paths.root} in {time.perf_counter() - start:.1f} s: {describe(paths)['stats']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
