import torch

from wscl.method.augment import random_crop_flip


def test_crop_and_flip_move_a_known_pattern_and_are_seeded():
    img = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    img[:, 0, 2, 3] = 255  # one bright pixel
    out1 = random_crop_flip(img, torch.Generator().manual_seed(0), padding=2)
    out2 = random_crop_flip(img, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out1, out2)
    assert out1.shape == img.shape
    # Each output holds the pixel at most once, displaced by at most the padding (or mirrored).
    positions = set()
    for sample in out1[:, 0]:
        ys, xs = torch.nonzero(sample == 255, as_tuple=True)
        assert len(ys) <= 1
        if len(ys):
            assert abs(int(ys[0]) - 2) <= 2
            positions.add((int(ys[0]), int(xs[0])))
    assert len(positions) > 5  # crops differ across the batch
    mirrored = [(y, x) for y, x in positions if abs(x - (7 - 3)) <= 2 and abs(x - 3) > 2]
    assert mirrored  # some were flipped: the pixel landed near the mirrored column


def test_zero_padding_fills_the_border():
    img = torch.full((16, 3, 6, 6), 200, dtype=torch.uint8)
    out = random_crop_flip(img, torch.Generator().manual_seed(1), padding=4)
    assert (out == 0).any() and (out == 200).any()
