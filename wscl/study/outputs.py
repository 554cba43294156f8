"""File names of a study's tables and figures, one list used by the workflow rules, the aggregation and
the report. Light on purpose: the Snakefile imports it to plan the outputs."""

from __future__ import annotations

ALL_RUNS = "all_runs.csv"  # one row per run, in the tables folder
PILOT = "pilot.json"  # seeds chosen by precision: the pilot's sd of each comparison (study/comparisons.py)
SELECTION = "selection.json"  # the sweep points chosen on the tuning split (study/selection.py)
TABLE_FORMATS = ("csv", "md", "tex")  # each (benchmark, buffer) table in every format
# Every figure of a table, in report order (file: plots/<benchmark>_buffer<B>_<name>.png).
PLOTS = ("ablation", "forgetting_vs_accuracy", "avg_acc_curve", "task_accuracy", "accuracy_matrix", "frozen_blocks",
         "loss_curve")
COMPARISONS = "comparisons"  # per table: every paired comparison (a table and a figure of intervals against 0)
# Every caption file (report/<name>.rst): the figures above, a sweep's sensitivity figures and selection table, and
# the comparisons' figure.
CAPTIONED = (*PLOTS, "sensitivity", "selection", COMPARISONS)


def table_name(benchmark: str, buffer: int) -> str:
    """The stem of a table's files, also its id in the report."""
    return f"{benchmark}_buffer{buffer}"


def table_file(benchmark: str, buffer: int, fmt: str) -> str:
    return f"{table_name(benchmark, buffer)}.{fmt}"


def plot_file(benchmark: str, buffer: int, plot: str) -> str:
    return f"{table_name(benchmark, buffer)}_{plot}.png"


def selection_table_file(benchmark: str, buffer: int, fmt: str) -> str:
    """A swept table's selection: every sweep point with its tuning and test figures, the chosen one marked."""
    return f"{table_name(benchmark, buffer)}_selection.{fmt}"


def comparisons_table_file(benchmark: str, buffer: int, fmt: str) -> str:
    """A table's paired comparisons: seeds, difference with its interval, why it stopped, the answer."""
    return f"{table_name(benchmark, buffer)}_{COMPARISONS}.{fmt}"


def sensitivity_plot(key: str) -> str:
    """The sensitivity figure of one swept setting (its caption: report/sensitivity.rst)."""
    return f"sensitivity-{key}"


def caption_of(plot: str) -> str:
    """The caption file (report/<name>.rst) of a figure: one per kind, e.g. every sensitivity figure shares one."""
    return plot.split("-", 1)[0]
