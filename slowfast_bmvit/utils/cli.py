"""PySlowFast's command line, shared by tools/run_net.py and the other tools.

`--cfg` takes one or more YAML files; as upstream, each file is a separate job run in order. Overrides are
`KEY VALUE` pairs, either trailing (`--cfg a.yaml SOLVER.BASE_LR 0.1`) or after `--opts`.

Errors: a config error is one line on stderr and exit status 2. After the config is loaded, an error the package
raises itself (a `raise` statement in slowfast_bmvit: a missing file, a checkpoint that does not fit, an unreadable
frame, a non-finite loss, ...) is one line on stderr and exit status 1; `--debug` shows its traceback instead. Any
other exception (a bug, or an error inside a library) keeps its full traceback.
"""

from __future__ import annotations

import argparse
import linecache
import os
import re
import sys
from typing import Callable, Sequence

from tqdm import tqdm

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, check_devices, load_config

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
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of its one-line message")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--opts", dest="dash_opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs (same as trailing pairs)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.BASE_LR 0.1 (see slowfast_bmvit/config/defaults.py)")
    return parser


def parse_args(description: str, argv: Sequence[str] | None = None,
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
               single_config_tool: str | None = None) -> argparse.Namespace:
    """Parse argv; config files and override pairs are separated even when the pairs follow --cfg directly.
    `single_config_tool` names a tool that runs one config (e.g. "demo_net.py"): more config files are refused."""
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
    if single_config_tool is not None and len(args.cfg_files) != 1:
        raise SystemExit(f"error: {single_config_tool} takes one config file, got {len(args.cfg_files)}")
    return args


def load_job_config(args: argparse.Namespace, cfg_file: str, needs_devices: bool = True):
    """The validated config of one job: file, then overrides, then the launch arguments. With `needs_devices`
    (a job that runs the model where NUM_GPUS says) NUM_GPUS is also checked against the machine's CUDA devices."""
    cfg = load_config(cfg_file, args.opts)
    if args.num_shards is not None:
        cfg.NUM_SHARDS = args.num_shards
    if args.shard_id is not None:
        cfg.SHARD_ID = args.shard_id
    cfg = assert_and_infer_cfg(cfg)
    if needs_devices:
        check_devices(cfg)
    return cfg


def exit_on_config_error(err: ConfigError) -> None:
    """Print a config error as one line on stderr and exit with status 2."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2)


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A traceback formatted as text (how torch hands an exception over from another process) and one of its frames.
_TRACEBACK_START = "Traceback (most recent call last):"
_TRACEBACK_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in .*\n(?P<source>[^\n]*)', re.MULTILINE)


def _raised_by_package(filename: str, source_line: str) -> bool:
    inside = os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
    return inside and source_line.strip().startswith("raise")


def package_error_message(err: BaseException) -> str | None:
    """The one-line message of an error slowfast_bmvit raised itself, else None.

    "Raised itself" means the innermost traceback frame is a `raise` statement inside the package (a config or
    data error worded for the user), not an exception from a library call or a failed assertion. An exception that
    torch re-raises from another process (a DataLoader worker, or torch.multiprocessing.spawn's child N: then
    "process N: " leads the message) carries the original traceback as text and is judged by it.
    """
    if isinstance(err, ConfigError):
        return _one_line(str(err))
    if not isinstance(err, Exception):
        return None
    text = str(err)
    if _TRACEBACK_START in text:
        return _message_of_traceback_text(err, text)
    tb = err.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    if not _raised_by_package(filename, linecache.getline(filename, tb.tb_lineno)):
        return None
    return _one_line(err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else text)


def _message_of_traceback_text(err: Exception, text: str) -> str | None:
    """The message of a package error whose traceback another process formatted into `text`, else None."""
    frames = list(_TRACEBACK_FRAME.finditer(text))
    if not frames or not _raised_by_package(frames[-1]["file"], frames[-1]["source"]):
        return None
    # After the last frame come its indented source excerpt (and carets), then "Type: message".
    lines = text[frames[-1].end():].splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith(" ")):
        lines.pop(0)
    message = re.sub(r"^[\w.]+: ", "", " ".join(lines), count=1)
    index = getattr(err, "error_index", None)
    return _one_line(f"process {index}: {message}" if index is not None else message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def exit_on_package_error(err: BaseException, debug: bool) -> None:
    """Print an error the package raised itself as one line on stderr and exit (status 2 for a config error, else
    1). Returns, for the caller's bare `raise`, when the error is anything else or `debug` asks for tracebacks:

        except Exception as err:
            exit_on_package_error(err, args.debug)
            raise
    """
    message = None if debug else package_error_message(err)
    if message is None:
        return
    # A progress bar the error interrupted would otherwise share the terminal line with the message.
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2 if isinstance(err, ConfigError) else 1)
