"""Training and testing engine: loops, checkpoints, optimizer, LR policy, distributed launch, meters."""
