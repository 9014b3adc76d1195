#!/usr/bin/env python3
"""Train and/or test a model from a config, PySlowFast-style.

    python tools/run_net.py --cfg configs/AVA/BMViT_MViTv2_S.yaml [KEY VALUE ...]

TRAIN.ENABLE runs training (with validation every TRAIN.EVAL_PERIOD epochs), then TEST.ENABLE runs the final test.
Multi-process jobs: NUM_GPUS processes per machine, --num_shards machines, --shard_id this machine's index,
--init_method tcp://<host of shard 0>:<port>; under `torchrun` or in a SLURM job step (`srun`, see
tools/slurm/train.sbatch) the launcher's environment variables are used instead.
A config error, or an error the package raises while the job runs (a missing file, a checkpoint that does not fit,
an unreadable frame, ...), is printed as one line on stderr with a non-zero exit status; --debug shows the
traceback.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.config import ConfigError  # noqa: E402
from slowfast_bmvit.utils.cli import (  # noqa: E402
    exit_on_config_error,
    exit_on_package_error,
    load_job_config,
    parse_args,
)


def main(argv=None) -> None:
    args = parse_args("Train and test BMViT, MViTv2 and the two-stage baseline.", argv)
    for cfg_file in args.cfg_files:
        try:
            cfg = load_job_config(args, cfg_file)
        except ConfigError as err:
            exit_on_config_error(err)
        from slowfast_bmvit.engine.launch import run_job

        try:
            run_job(cfg, args.init_method)
        except Exception as err:
            exit_on_package_error(err, args.debug)
            raise


if __name__ == "__main__":
    main()
