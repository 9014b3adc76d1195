"""RoIAlign: hand-computed values, a loop-by-loop reference of torchvision's semantics, gradients, dispatch."""

from __future__ import annotations

import math

import pytest
import torch

from slowfast_bmvit.models import roi_align as roi_align_module
from slowfast_bmvit.models.roi_align import roi_align, roi_align_pure_torch

# f[y, x] = 4y + x: linear, so bilinear samples inside the map equal 4y + x exactly.
RAMP = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)


def single(features, box, output_size=1, scale=1.0, sampling_ratio=0, aligned=True):
    rois = torch.tensor([[0.0, *box]], dtype=features.dtype)
    return roi_align_pure_torch(features, rois, output_size, scale, sampling_ratio, aligned)[0, 0]


def reference_roi_align(features, rois, output_size, scale, sampling_ratio, aligned):
    """torchvision's algorithm point by point, in float64 Python arithmetic."""
    oh, ow = output_size
    _, channels, height, width = features.shape

    def interpolate(image, y, x):
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return torch.zeros(channels, dtype=features.dtype)
        y, x = max(y, 0.0), max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_low = y_high = height - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_low = x_high = width - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        hy, hx = 1.0 - ly, 1.0 - lx
        return (
            hy * hx * image[:, y_low, x_low]
            + hy * lx * image[:, y_low, x_high]
            + ly * hx * image[:, y_high, x_low]
            + ly * lx * image[:, y_high, x_high]
        )

    out = torch.zeros(len(rois), channels, oh, ow, dtype=features.dtype)
    offset = 0.5 if aligned else 0.0
    for r, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        start_x, start_y = x1 * scale - offset, y1 * scale - offset
        roi_w, roi_h = x2 * scale - offset - start_x, y2 * scale - offset - start_y
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / oh, roi_w / ow
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / oh)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / ow)
        count = max(grid_h * grid_w, 1)
        for ph in range(oh):
            for pw in range(ow):
                total = torch.zeros(channels, dtype=features.dtype)
                for iy in range(grid_h):
                    y = start_y + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = start_x + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        total += interpolate(features[int(b)], y, x)
                out[r, :, ph, pw] = total / count
    return out


# ------------------------------------------------------------------------------------------ hand-computed values


def test_aligned_single_sample_is_the_box_centre_shifted_by_half_a_cell():
    # start = -0.5, length 4: the one sample sits at 1.5 on both axes -> 4 * 1.5 + 1.5.
    assert single(RAMP, (0, 0, 4, 4), sampling_ratio=1, aligned=True).item() == pytest.approx(7.5)


def test_unaligned_single_sample_is_the_box_centre():
    assert single(RAMP, (0, 0, 4, 4), sampling_ratio=1, aligned=False).item() == pytest.approx(10.0)


def test_two_by_two_bins_with_two_samples_per_side():
    # Samples at 0, 1 (first bin) and 2, 3 (second bin) on each axis.
    out = single(RAMP, (0, 0, 4, 4), output_size=2, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(out, torch.tensor([[2.5, 4.5], [10.5, 12.5]], dtype=torch.float64))


def test_non_square_output_and_spatial_scale():
    # The box (0, 0, 8, 4) at scale 0.5 is (0, 0, 4, 2) in cells; 1 x 2 bins, one sample each (aligned=False).
    out = single(RAMP, (0, 0, 8, 4), output_size=(1, 2), scale=0.5, sampling_ratio=1, aligned=False)
    # y sample at 1; x samples at 1 and 3.
    torch.testing.assert_close(out, torch.tensor([[5.0, 7.0]], dtype=torch.float64))


def test_sampling_ratio_changes_the_result_on_a_non_linear_map():
    impulse = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    impulse[0, 0, 0, 0] = 1.0
    box = (0, 0, 3, 3)  # aligned: start -0.5, length 3
    # Adaptive: ceil(3 / 1) = 3 samples per side at 0, 1, 2; only (0, 0) hits the impulse -> 1/9.
    assert single(impulse, box, sampling_ratio=0).item() == pytest.approx(1 / 9)
    # One sample per side at 1.0: bilinear weight 0 on cell 0.
    assert single(impulse, box, sampling_ratio=1).item() == pytest.approx(0.0)
    # Two per side at 0.25 and 1.75: per-axis weight (0.75 + 0) / 2 = 0.375, squared.
    assert single(impulse, box, sampling_ratio=2).item() == pytest.approx(0.375**2)


def test_adaptive_grid_is_chosen_per_roi():
    impulse = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    impulse[0, 0, 0, 0] = 1.0
    rois = torch.tensor([[0, 0, 0, 3, 3], [0, 0, 0, 1, 1]], dtype=torch.float64)
    out = roi_align_pure_torch(impulse, rois, 1, 1.0, 0, True)
    # Second box: start -0.5, length 1, one sample at 0.0 -> exactly the impulse.
    torch.testing.assert_close(out.flatten(), torch.tensor([1 / 9, 1.0], dtype=torch.float64))


def test_samples_beyond_minus_one_are_zero_and_count_in_the_average():
    ones = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    # aligned=False, x from -4 to 4 with two samples: x = -2 (outside: zero) and 2; y samples 1 and 3.
    assert single(ones, (-4, 0, 4, 4), sampling_ratio=2, aligned=False).item() == pytest.approx(0.5)


def test_samples_between_minus_one_and_zero_clamp_to_the_first_cell():
    # x samples at -1 (kept, clamped to 0) and 1; y samples 1 and 3 (mean 8 from the 4y term).
    assert single(RAMP, (-2, 0, 2, 4), sampling_ratio=2, aligned=False).item() == pytest.approx(8.5)
    # Shift by -0.2: x = -1.2 is dropped (zero), x = 0.8 is kept; the average still divides by 4 samples.
    expected = ((4 * 1 + 0.8) + (4 * 3 + 0.8)) / 4
    assert single(RAMP, (-2.2, 0, 1.8, 4), sampling_ratio=2, aligned=False).item() == pytest.approx(expected)


def test_samples_between_last_cell_and_size_clamp_to_the_last_cell():
    # y samples at 3.0 and 4.0 (= H: kept, clamped to 3); x samples 1 and 3 -> 4 * 3 + 2.
    assert single(RAMP, (0, 2.5, 4, 4.5), sampling_ratio=2, aligned=False).item() == pytest.approx(14.0)
    # y = 4.25 > H is dropped.
    expected = ((4 * 2.75 + 1) + (4 * 2.75 + 3)) / 4
    assert single(RAMP, (0, 2, 4, 5), sampling_ratio=2, aligned=False).item() == pytest.approx(expected)


def test_small_boxes_grow_to_one_cell_only_without_alignment():
    # aligned=False: a 0.2-cell box is widened to 1 cell, the sample lands at 1.5.
    assert single(RAMP, (1, 1, 1.2, 1.2), sampling_ratio=1, aligned=False).item() == pytest.approx(7.5)
    # aligned=True: start 0.5, length 0.2, one adaptive sample at 0.6.
    assert single(RAMP, (1, 1, 1.2, 1.2), sampling_ratio=0, aligned=True).item() == pytest.approx(3.0)


def test_inverted_box_pools_to_zero_when_aligned():
    assert single(RAMP, (3, 3, 1, 1), sampling_ratio=0, aligned=True).item() == 0.0


def test_batch_index_selects_the_image_and_channels_are_kept():
    features = torch.stack([RAMP[0], 100 + RAMP[0]]).repeat(1, 3, 1, 1)  # [2, 3, 4, 4]
    features[:, 1] *= -1
    rois = torch.tensor([[1, 0, 0, 4, 4], [0, 0, 0, 4, 4]], dtype=torch.float64)
    out = roi_align_pure_torch(features, rois, 1, 1.0, 1, True)
    assert out.shape == (2, 3, 1, 1)
    torch.testing.assert_close(out[:, :, 0, 0], torch.tensor([[107.5, -107.5, 107.5], [7.5, -7.5, 7.5]]).double())


def test_no_rois_give_an_empty_result():
    out = roi_align(torch.rand(2, 5, 4, 4), torch.zeros(0, 5), 7, 1 / 32)
    assert out.shape == (0, 5, 7, 7)


def test_malformed_inputs_are_rejected_with_their_shape():
    with pytest.raises(ValueError, match=r"\[R, 5\]"):
        roi_align(torch.rand(1, 1, 4, 4), torch.zeros(3, 4), 2, 1.0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        roi_align(torch.rand(1, 4, 4), torch.zeros(3, 5), 2, 1.0)


# ---------------------------------------------------------------------------------- against the reference loops


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 3])
def test_matches_the_reference_on_random_boxes_partly_outside_the_map(aligned, sampling_ratio):
    generator = torch.Generator().manual_seed(7 + sampling_ratio + 10 * aligned)
    features = torch.randn(2, 3, 5, 6, generator=generator, dtype=torch.float64)
    scale = 0.5
    # Corners in input pixels (map = 10 x 12 pixels): from well outside to well inside, including tiny boxes.
    corners = torch.rand(12, 4, generator=generator, dtype=torch.float64) * 18 - 4
    x1, x2 = torch.minimum(corners[:, 0], corners[:, 2]), torch.maximum(corners[:, 0], corners[:, 2])
    y1, y2 = torch.minimum(corners[:, 1], corners[:, 3]), torch.maximum(corners[:, 1], corners[:, 3])
    x2[:3] = x1[:3] + 0.3  # sub-cell widths
    batch = torch.randint(0, 2, (12,), generator=generator).double()
    rois = torch.stack([batch, x1, y1, x2, y2], dim=1)
    for output_size in [(2, 2), (3, 2)]:
        expected = reference_roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
        actual = roi_align_pure_torch(features, rois, output_size, scale, sampling_ratio, aligned)
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_float32_matches_the_float64_reference():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(1, 4, 7, 7, generator=generator)
    rois = torch.tensor([[0, 10, 20, 150, 200], [0, -30, -10, 80, 240], [0, 100, 100, 101, 130]])
    expected = reference_roi_align(features.double(), rois.double(), (7, 7), 1 / 32, 0, True)
    actual = roi_align_pure_torch(features, rois, 7, 1 / 32, 0, True)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_chunked_gather_gives_the_same_result(monkeypatch):
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(2, 3, 6, 6, generator=generator, dtype=torch.float64)
    rois = torch.tensor([[i % 2, i, 0, i + 3, 5] for i in range(5)], dtype=torch.float64)
    whole = roi_align_pure_torch(features, rois, 2, 1.0, 0, True)
    monkeypatch.setattr(roi_align_module, "_GATHER_BUDGET", 2 * 3 * 36)  # two RoIs per chunk
    torch.testing.assert_close(roi_align_pure_torch(features, rois, 2, 1.0, 0, True), whole)


# --------------------------------------------------------------------------------------------------- gradients


def test_gradcheck_float64():
    features = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, -1.0, 0.5, 7.0, 6.0], [1, 2.0, 1.0, 4.5, 3.0]], dtype=torch.float64)

    def pooled(x):
        return roi_align_pure_torch(x, rois, (2, 3), 0.75, 0, True)

    assert torch.autograd.gradcheck(pooled, (features,))


def test_gradient_scatters_the_bilinear_weights_and_leaves_boxes_alone():
    features = torch.zeros(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 1.2, 1.2]], dtype=torch.float64, requires_grad=True)
    roi_align_pure_torch(features, rois, 1, 1.0, 1, True).sum().backward()
    # One sample at (0.6, 0.6): weights 0.16, 0.24, 0.24, 0.36 on the 2 x 2 cells around it.
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[:2, :2] = torch.tensor([[0.16, 0.24], [0.24, 0.36]])
    torch.testing.assert_close(features.grad[0, 0], expected)
    assert rois.grad is None


# ---------------------------------------------------------------------------------------------------- dispatch


def test_uses_torchvision_when_it_runs(monkeypatch):
    calls = []

    def fake_torchvision(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        calls.append((output_size, spatial_scale, sampling_ratio, aligned, rois.dtype))
        return torch.full((len(rois), features.shape[1], *output_size), 3.0)

    monkeypatch.setattr(roi_align_module, "_TORCHVISION_ROI_ALIGN", fake_torchvision)
    monkeypatch.setattr(roi_align_module, "_DEVICES_WITHOUT_TORCHVISION_KERNEL", set())
    out = roi_align(torch.rand(1, 2, 4, 4), torch.tensor([[0, 0, 0, 2, 2]], dtype=torch.float64), 2, 0.5, 0, False)
    assert calls == [((2, 2), 0.5, 0, False, torch.float32)]
    assert torch.equal(out, torch.full((1, 2, 2, 2), 3.0))


def test_falls_back_once_torchvision_has_no_kernel_for_the_device(monkeypatch):
    calls = []

    def kernelless_torchvision(*args):
        calls.append(1)
        raise NotImplementedError("Could not run 'torchvision::roi_align' with arguments from the 'CPU' backend")

    monkeypatch.setattr(roi_align_module, "_TORCHVISION_ROI_ALIGN", kernelless_torchvision)
    monkeypatch.setattr(roi_align_module, "_DEVICES_WITHOUT_TORCHVISION_KERNEL", set())
    rois = torch.tensor([[0.0, 0, 0, 4, 4]])
    for _ in range(2):
        out = roi_align(RAMP.float(), rois, 2, 1.0, 2, True)
        torch.testing.assert_close(out[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    assert calls == [1]  # the missing kernel is remembered, not retried


def _working_torchvision_roi_align():
    try:
        from torchvision.ops import roi_align as torchvision_roi_align

        torchvision_roi_align(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5), 1, 1.0, 0, True)
    except Exception as error:  # noqa: BLE001 - any failure means "cannot compare here"
        pytest.skip(f"torchvision.ops.roi_align does not run here ({type(error).__name__}: {error}); the "
                    "hand-computed and reference-loop tests above cover the semantics")
    return torchvision_roi_align


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_matches_torchvision(aligned, sampling_ratio):
    torchvision_roi_align = _working_torchvision_roi_align()
    generator = torch.Generator().manual_seed(11)
    features = torch.randn(2, 8, 7, 10, generator=generator, dtype=torch.float64)
    corners = torch.rand(20, 4, generator=generator, dtype=torch.float64) * 400 - 40
    boxes = torch.cat([torch.minimum(corners[:, :2], corners[:, 2:]), torch.maximum(corners[:, :2], corners[:, 2:])], 1)
    rois = torch.cat([torch.randint(0, 2, (20, 1), generator=generator).double(), boxes], dim=1)
    expected = torchvision_roi_align(features, rois, (7, 7), 1 / 32, sampling_ratio, aligned)
    actual = roi_align_pure_torch(features, rois, (7, 7), 1 / 32, sampling_ratio, aligned)
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9)


def test_low_precision_features_are_pooled_in_float32():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(1, 4, 16, 16, generator=generator)
    rois = torch.tensor([[0, 100.3, 37.7, 411.9, 250.2]])
    exact = roi_align(features, rois, 7, 1 / 32)
    low = roi_align(features.bfloat16(), rois, 7, 1 / 32)
    assert low.dtype == torch.bfloat16
    # Only the inputs' and the result's rounding remain (coordinates in bfloat16 would be off by ~1/8 cell).
    torch.testing.assert_close(low.float(), roi_align(features.bfloat16().float(), rois, 7, 1 / 32).bfloat16().float())
    torch.testing.assert_close(low.float(), exact, rtol=0.02, atol=0.02)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        autocast = roi_align_pure_torch(features, rois, 7, 1 / 32)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, exact)
