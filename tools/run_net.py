#!/usr/bin/env python3
"""Train and/or test a model from a config, PySlowFast-style.

    python tools/run_net.py --cfg configs/AVA/BMViT_MViTv2_S.yaml [KEY VALUE ...]

TRAIN.ENABLE runs training (with validation every TRAIN.EVAL_PERIOD epochs), then TEST.ENABLE runs the final test.
Multi-process jobs: NUM_GPUS processes per machine, --num_shards machines, --shard_id this machine's index,
--init_method tcp://<host of shard 0>:<port>; under `torchrun` or in a SLURM job step (`srun`, see
tools/slurm/train.sbatch) the launcher's environment variables are used instead.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.config import ConfigError  # noqa: E402
from slowfast_bmvit.utils.cli import exit_on_config_error, load_job_config, parse_args  # noqa: E402


def main(argv=None) -> None:
    args = parse_args("Train and test BMViT, MViTv2 and the two-stage baseline.", argv)
    for cfg_file in args.cfg_files:
        try:
            cfg = load_job_config(args, cfg_file)
        except ConfigError as err:
            exit_on_config_error(err)
        from slowfast_bmvit.engine.launch import run_job

        run_job(cfg, args.init_method)


if __name__ == "__main__":
    main()
