import numpy as np
import pytest
from scipy import stats

from wscl.study.reproduction import verdict


def test_verdict_keeps_its_rule():
    ours = [70.1, 72.3, 69.8, 71.0, 70.5]
    one = verdict(ours, 75.0, None)  # the paper gives no sd: a one-sample t interval
    ci = stats.ttest_1samp(ours, 75.0).confidence_interval(0.95)
    assert (one.low, one.high) == pytest.approx((ci.low - 75.0, ci.high - 75.0)) and one.verdict == "below"
    welch = verdict(ours, 71.0, 1.5)
    paper = np.random.default_rng(0).normal(size=5)
    paper = 71.0 + (paper - paper.mean()) / paper.std(ddof=1) * 1.5  # five seeds with exactly that mean and sd
    ci = stats.ttest_ind(ours, paper, equal_var=False).confidence_interval(0.95)
    assert (welch.low, welch.high) == pytest.approx((ci.low, ci.high)) and welch.verdict == "reproduced"
    assert verdict([70.0, 71.0], 71.0, 1.0).verdict == "too few seeds"


def test_paper_values_are_looked_up_by_benchmark_buffer_method_and_preset():
    from wscl.study.aggregate import paper_cells, reported_values
    reported = reported_values()
    cifar = {"final_avg_acc": (71.15, 2.15), "forgetting": (11.78, None)}
    # ER-ACE + WSCL's values belong to both WSCLs; other presets, methods and buffers have none.
    assert paper_cells(reported, "seq-cifar10", 200, "er_ace", "full") == cifar
    assert paper_cells(reported, "seq-cifar10", 200, "er_ace", "authors") == cifar
    assert paper_cells(reported, "seq-fg-imagenet", 1000, "er_ace", "full")["final_avg_acc"] == (20.51, 0.56)
    assert paper_cells(reported, "seq-cifar10", 200, "er_ace", "base") == {}
    assert paper_cells(reported, "seq-cifar10", 200, "derpp", "full") == {}
    assert paper_cells(reported, "seq-cifar10", 1000, "er_ace", "full") == {}
    assert paper_cells(reported, "seq-cifar100", 200, "er_ace", "full") == {}
    # Buffer-free Wake+REM: one accuracy per benchmark, whatever the buffer of the table.
    assert paper_cells(reported, "seq-tinyimg-half", 500, "er_ace", "wake_rem") == {"final_avg_acc": (25.68, None)}
    assert paper_cells(reported, "seq-cifar100", 500, "er_ace", "wake_rem") == {}


def test_tables_look_up_the_paper_under_the_benchmarks_reported_name():
    import pandas as pd

    from wscl.method.metrics import SUMMARY_KEYS
    from wscl.study.aggregate import summary_table
    runs = pd.DataFrame([{"method": "er_ace", "preset": preset, "fidelity": "reference", "buffer": 200, "seed": seed,
                          **{f"{s}_{m}": 70.0 + seed for s in ("class_il", "task_il") for m in SUMMARY_KEYS}}
                         for preset in ("base", "full") for seed in range(3)])
    table = summary_table(runs, "my-cifar", 200, "seq-cifar10").set_index("preset")
    assert table.loc["full", "paper_class_il_final_avg_acc"] == 71.15
    assert table.loc["full", "paper_class_il_forgetting"] == 11.78 and table.loc["full", "verdict_class_il_forgetting"]
    assert pd.isna(table.loc["base", "paper_class_il_final_avg_acc"])
    assert table.loc["base", "verdict_class_il_final_avg_acc"] == ""
    unreported = summary_table(runs, "my-cifar", 200, None)
    assert unreported["paper_class_il_final_avg_acc"].isna().all()
