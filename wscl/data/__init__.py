"""Datasets: the canonical format, the benchmarks (download, verification, preparation), generated data and
the device-side image pools a phase trains on. Depends on `core` and `settings` only."""
