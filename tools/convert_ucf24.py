#!/usr/bin/env python3
"""Convert the corrected UCF101-24 annotations to an ACT ground-truth pickle (the ACT.GT_FILE of "ucf24").

    python tools/convert_ucf24.py --pyannot pyannot.pkl --testlist testlist01.txt --out data/ucf24/UCF101v2-GT.pkl
    python tools/convert_ucf24.py --final-annots finalAnnots.mat --out data/ucf24/UCF101v2-GT.pkl

Split 1 only. Without --testlist, groups g01-g07 are test (UCF101's official split 1). Boxes become
(x, y, x + w, y + h) in 320x240 pixels; see slowfast_bmvit/datasets/act_convert.py for the conventions.
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.datasets.act_convert import (  # noqa: E402
    ActAnnotationError,
    save_act_pickle,
    ucf24_from_final_annots,
    ucf24_from_pyannot,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pyannot", help="corrected UCF101-24 pyannot.pkl")
    source.add_argument("--final-annots", help="corrected UCF101-24 finalAnnots.mat")
    parser.add_argument("--testlist", help="split-1 test list (testlist01.txt); default: groups g01-g07 are test")
    parser.add_argument("--out", required=True, help="output ACT pickle")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.pyannot:
            gt = ucf24_from_pyannot(args.pyannot, args.testlist)
        else:
            gt = ucf24_from_final_annots(args.final_annots, args.testlist)
        save_act_pickle(gt, args.out)
    except (ActAnnotationError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
