import numpy as np
import pytest

from wscl.method.metrics import backward_transfer, final_average_accuracy, forgetting, forward_transfer, summary

nan = np.nan
R = np.array([[90.0, 20.0, nan],
              [60.0, 80.0, 30.0],
              [50.0, 70.0, 85.0]])
B = np.array([10.0, 12.0, 15.0])


def test_final_average_accuracy():
    assert final_average_accuracy(R) == pytest.approx((50 + 70 + 85) / 3)


def test_forgetting_trained_only_ignores_the_pretraining_entry():
    # task 0: max(90, 60, 50) - 50 = 40; task 1: max(80, 70) - 70 = 10 (R[0][1]=20 is pre-training)
    assert forgetting(R, include_pretraining=False) == pytest.approx((40 + 10) / 2)


# A pre-training entry (R[0][1] = 85, after a lucky head assignment) above every later accuracy on task 1.
LUCKY = np.array([[90.0, 85.0, nan],
                  [60.0, 80.0, 30.0],
                  [50.0, 70.0, 85.0]])


def test_forgetting_of_the_authors_code_counts_the_pretraining_entry():
    # Mammoth pads rows with zeros and takes each column's max over all rows: task 1 -> max(85, 80, 70) - 70
    assert forgetting(LUCKY, include_pretraining=True) == pytest.approx(((90 - 50) + (85 - 70)) / 2)
    assert forgetting(LUCKY, include_pretraining=False) == pytest.approx(((90 - 50) + (80 - 70)) / 2)


def test_summary_reports_the_fidelitys_forgetting_and_both_definitions():
    ref, cor = summary(LUCKY, B, reference=True), summary(LUCKY, B, reference=False)
    assert ref["forgetting"] == pytest.approx(27.5) and cor["forgetting"] == pytest.approx(25.0)
    for s in (ref, cor):
        assert (s["forgetting_incl_pretraining"], s["forgetting_trained_only"]) == pytest.approx((27.5, 25.0))


def test_backward_transfer():
    assert backward_transfer(R) == pytest.approx(((50 - 90) + (70 - 80)) / 2)


def test_forward_transfer_against_random_init():
    assert forward_transfer(R, B) == pytest.approx(((20 - 12) + (30 - 15)) / 2)


def test_single_task_has_no_transfer_or_forgetting():
    one = np.array([[77.0]])
    assert final_average_accuracy(one) == 77.0
    assert forgetting(one) == backward_transfer(one) == forward_transfer(one, np.array([5.0])) == 0.0


def test_random_init_baseline_uses_class_order_heads_under_reference(tiny, tmp_path):
    """[code] FWT's b_j: the random network scored with head = class index; [ours] the assigned heads."""
    import torch

    from wscl.run.trainer import Run
    for fidelity in ("reference", "corrected"):
        run = Run(tiny(fidelity=fidelity, training={"epochs": 1}, scenario={"n_tasks": 2}), tmp_path / fidelity,
                  quiet=True, log=lambda *_: None)
        metrics = run.run()
        rows = run.scenario.test_idx[1]
        logits = run.random_logits[1]
        classes = torch.as_tensor(run.tests.labels[rows])
        heads = torch.as_tensor(run.book.heads_of(run.tests.labels[rows]))
        expected = classes if fidelity == "reference" else heads
        b1 = 100.0 * float((logits.argmax(1) == expected).float().mean())
        assert metrics["class_il"]["random_init_accuracy"][1] == pytest.approx(b1)
