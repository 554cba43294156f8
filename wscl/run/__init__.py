"""One training run: the per-task loop, checkpoints and resume, stop signals, the released model,
benchmarks of speed. Built on `method`."""
