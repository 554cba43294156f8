"""File names of a study's tables and figures, one list used by the workflow rules, the aggregation and
the report. Light on purpose: the Snakefile imports it to plan the outputs."""

from __future__ import annotations

ALL_RUNS = "all_runs.csv"  # one row per run, in the tables folder
TABLE_FORMATS = ("csv", "md", "tex")  # each (benchmark, buffer) table in every format
# Every figure of a table, in report order (file: plots/<benchmark>_buffer<B>_<name>.png).
PLOTS = ("ablation", "forgetting_vs_accuracy", "avg_acc_curve", "task_accuracy", "accuracy_matrix", "frozen_blocks",
         "loss_curve")


def table_name(benchmark: str, buffer: int) -> str:
    """The stem of a table's files, also its id in the report."""
    return f"{benchmark}_buffer{buffer}"


def table_file(benchmark: str, buffer: int, fmt: str) -> str:
    return f"{table_name(benchmark, buffer)}.{fmt}"


def plot_file(benchmark: str, buffer: int, plot: str) -> str:
    return f"{table_name(benchmark, buffer)}_{plot}.png"
