"""The pictures shown beside each result."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from unetbg.web import render


def test_checkerboard_alternates_cells():
    board = render.checkerboard(32, 48, cell=16)
    assert board.shape == (32, 48, 3) and board.dtype == np.uint8
    assert board[0, 0, 0] == 255 and board[0, 16, 0] == 204 and board[16, 16, 0] == 255


def test_on_checkerboard_shows_board_where_transparent():
    rgb = data.astronaut()[:64, :64]
    alpha = np.zeros((64, 64), np.uint8)
    alpha[:, 32:] = 255
    out = np.asarray(render.on_checkerboard(Image.fromarray(np.dstack([rgb, alpha]), "RGBA")))
    assert out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out[:, 32:], rgb[:, 32:])
    np.testing.assert_array_equal(out[:, :32], render.checkerboard(64, 64)[:, :32])


def test_opaque_results_pass_through_as_rgb():
    mask = Image.fromarray(np.full((10, 12), 200, np.uint8), "L")
    out = render.on_checkerboard(mask)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (200, 200, 200)


def test_overlay_tints_in_proportion_to_probability():
    rgb = data.astronaut()[:40, :50]
    prob = np.zeros((40, 50), np.float32)
    prob[:, 25:] = 1.0
    out = np.asarray(render.overlay(rgb, prob, color=(255, 0, 0), strength=0.5)).astype(int)
    np.testing.assert_array_equal(out[:, :25], rgb[:, :25])
    expected = np.rint(rgb[:, 25:].astype(float) * 0.5 + np.array([255, 0, 0]) * 0.5)
    assert np.abs(out[:, 25:] - expected).max() <= 1


def test_overlay_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="does not match"):
        render.overlay(data.astronaut(), np.zeros((10, 10), np.float32))


def test_preview_only_shrinks():
    big = Image.fromarray(data.astronaut()).resize((2048, 1024))
    assert render.preview(big, 1024).size == (1024, 512)
    small = Image.fromarray(data.astronaut()[:100, :80])
    assert render.preview(small, 1024) is small
