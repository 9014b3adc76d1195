"""PySlowFast's command line, shared by tools/run_net.py and the other tools.

`--cfg` takes one or more YAML files; as upstream, each file is a separate job run in order. Overrides are
`KEY VALUE` pairs, either trailing (`--cfg a.yaml SOLVER.BASE_LR 0.1`) or after `--opts`.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable, Sequence

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, load_config

# An upper-case dotted config key (e.g. SOLVER.BASE_LR) can never be a YAML path: it starts the overrides.
_KEY_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")


def build_parser(description: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
                 ) -> argparse.ArgumentParser:
    """PySlowFast's options; `add_arguments` lets a tool add its own before the trailing overrides."""
    parser = argparse.ArgumentParser(
        description=description,
        epilog="Example: python tools/run_net.py --cfg configs/AVA/BMViT_MViTv2_S.yaml NUM_GPUS 8 "
        "TRAIN.BATCH_SIZE 64 OUTPUT_DIR ./output/bmvit_ava",
    )
    parser.add_argument("--cfg", dest="cfg_files", nargs="+", required=True, metavar="CFG",
                        help="one or more config files; each is run as a separate job, in order")
    parser.add_argument("--init_method", default="tcp://localhost:9999",
                        help="torch.distributed init method for multi-process jobs (tcp://host:port of shard 0); "
                             "not used under torchrun or SLURM, whose variables say where to meet")
    parser.add_argument("--num_shards", type=int, default=None,
                        help="number of machines (overrides NUM_SHARDS)")
    parser.add_argument("--shard_id", type=int, default=None,
                        help="index of this machine, 0..num_shards-1 (overrides SHARD_ID)")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--opts", dest="dash_opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs (same as trailing pairs)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.BASE_LR 0.1 (see slowfast_bmvit/config/defaults.py)")
    return parser


def parse_args(description: str, argv: Sequence[str] | None = None,
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """Parse argv; config files and override pairs are separated even when the pairs follow --cfg directly."""
    args = build_parser(description, add_arguments).parse_args(argv)
    files, opts = [], []
    for index, item in enumerate(args.cfg_files):
        if _KEY_PATTERN.match(item):
            opts = list(args.cfg_files[index:])
            break
        files.append(item)
    args.cfg_files = files
    args.opts = opts + list(args.opts or []) + list(args.dash_opts or [])
    if not args.cfg_files:
        raise SystemExit("error: --cfg needs at least one config file")
    return args


def load_job_config(args: argparse.Namespace, cfg_file: str):
    """The validated config of one job: file, then overrides, then the launch arguments."""
    cfg = load_config(cfg_file, args.opts)
    if args.num_shards is not None:
        cfg.NUM_SHARDS = args.num_shards
    if args.shard_id is not None:
        cfg.SHARD_ID = args.shard_id
    return assert_and_infer_cfg(cfg)


def exit_on_config_error(err: ConfigError) -> None:
    """Print a config error as one line on stderr and exit with status 2."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2)
