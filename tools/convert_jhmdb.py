#!/usr/bin/env python3
"""Convert JHMDB-21 per-frame ground truth to an ACT ground-truth pickle (the ACT.GT_FILE of "jhmdb").

    python tools/convert_jhmdb.py --gt groundtruths_jhmdb.zip --out data/jhmdb/JHMDB-GT.pkl

--gt is a zip archive or folder of `<Class>_<video>_<frame:05d>.txt` (or `<Class>/<video>/<frame:05d>.txt`) files with
lines `cls x1 y1 x2 y2` (cls 1-based), YOWO's export. Without --testlist every video is a test video of split 1
(YOWO's groundtruths_jhmdb is the split-1 test set); with it, listed videos are test and the others train.
nframes is each video's last annotated frame (JHMDB annotates every frame). Resolution 320x240.
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.datasets.act_convert import ActAnnotationError, jhmdb_from_frame_txts, save_act_pickle  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", required=True, help="zip archive or folder of per-frame ground-truth .txt files")
    parser.add_argument("--testlist", help="test videos (<Class>/<video> per line); default: all videos are test")
    parser.add_argument("--out", required=True, help="output ACT pickle")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        save_act_pickle(jhmdb_from_frame_txts(args.gt, args.testlist), args.out)
    except (ActAnnotationError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
