"""The method, one module per concept of the paper: scenario, backbone, base learners, memories, wake,
dynamic freezing, NREM, plasticity, REM, sleep, heads, evaluation and metrics. Depends on `core`,
`settings` and `data`; never on `run`, `tracking` or `study`."""
