"""Persistent loader workers: training with workers sees exactly the data of training without them, epoch after
epoch (the epoch reaches the long-lived workers through PerSampleSeeded's shared counter)."""

from slowfast_bmvit.engine.trainer import train
from test_engine import json_losses, synth_root, tiny_cfg  # noqa: F401  (synth_root is a fixture)


def test_two_persistent_workers_give_the_losses_of_the_main_process(repo_root, synth_root, tmp_path):  # noqa: F811
    losses = {}
    for workers in ("0", "2"):
        output = tmp_path / f"workers{workers}"
        train(tiny_cfg(repo_root, synth_root, output, "DATA_LOADER.NUM_WORKERS", workers, "TRAIN.EVAL_PERIOD", "0"))
        losses[workers] = [(row["epoch"], row["iter"], row["loss"]) for row in json_losses(output)]
    assert len(losses["0"]) == 6  # 2 epochs x 3 iterations
    assert losses["2"] == losses["0"]
