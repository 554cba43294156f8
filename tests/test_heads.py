import numpy as np
import pytest

from wscl.method.heads import UNAVAILABLE, HeadBook, assign_greedy, assign_hungarian, bind_dreams, count_matrix


def test_count_matrix_counts_argmax_per_class_and_blanks_taken_heads():
    predicted = np.array([2, 2, 3, 0, 3, 3])
    rows = np.array([0, 0, 0, 1, 1, 1])
    free = np.array([False, True, True, True])
    C = count_matrix(predicted, rows, 2, free)
    assert C.tolist() == [[UNAVAILABLE, 0, 2, 1], [UNAVAILABLE, 0, 0, 2]]


def test_greedy_takes_global_maximum_first_then_blanks_row_and_column():
    C = np.array([[5, 4, 0],
                  [4, 0, 0]])
    # (0,0)=5 first; row 1 then only has zeros left, the first of which is head 1.
    assert assign_greedy(C).tolist() == [0, 1]
    assert assign_hungarian(C).tolist() == [1, 0]  # 4 + 4 > 5 + 0


def test_greedy_ties_go_to_first_in_row_major_order():
    C = np.array([[3, 3], [3, 3]])
    assert assign_greedy(C).tolist() == [0, 1]


def test_assignment_picks_most_activated_free_head():
    # Class 0's images mostly land on head 0, which is taken: the most-activated *free* head wins.
    predicted = np.array([0, 0, 0, 0, 4, 4, 2, 1, 1, 1])
    rows = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    free = np.array([False, True, True, True, True])
    for assign in (assign_greedy, assign_hungarian):
        heads = assign(count_matrix(predicted, rows, 2, free))
        assert heads.tolist() == [4, 1]


def test_assigned_heads_are_never_reassigned_and_dreams_disappear():
    book = HeadBook(n_classes=4, n_heads=4, dream_binding=np.array([7, 8, 9, 6]))
    assert book.dreaming_heads() == [(0, 7), (1, 8), (2, 9), (3, 6)]
    book.assign(np.array([0, 1]), np.array([0, 2]))
    assert book.dreaming_heads() == [(1, 8), (3, 6)]
    with pytest.raises(ValueError, match="already assigned"):
        book.assign(np.array([2, 3]), np.array([2, 3]))
    C = count_matrix(np.array([2, 2, 0, 0]), np.array([0, 0, 1, 1]), 2, book.free_heads)
    heads = assign_greedy(C)
    assert set(heads.tolist()) == {1, 3}


def test_dream_binding_draws_distinct_classes_from_larger_aux_set():
    binding = bind_dreams(10, 12, np.random.default_rng(0))
    assert len(set(binding.tolist())) == 10 and binding.min() >= 0 and binding.max() < 12
    assert binding.tolist() == bind_dreams(10, 12, np.random.default_rng(0)).tolist()
    short = bind_dreams(5, 3, np.random.default_rng(0))
    assert sorted(short[:3].tolist()) == [0, 1, 2] and short[3:].tolist() == [-1, -1]


def test_as_many_dream_classes_as_heads_binds_head_h_to_class_h():
    assert bind_dreams(6, 6, np.random.default_rng(3)).tolist() == list(range(6))
