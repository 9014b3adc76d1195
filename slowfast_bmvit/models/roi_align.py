"""RoIAlign (He et al., Mask R-CNN, 2017) with torchvision's semantics.

`roi_align` uses `torchvision.ops.roi_align` when torchvision imports and has a kernel for the tensor's device, and
the package's own pure-torch implementation otherwise. The fallback exists because torchvision is an optional
dependency: CPU-only installs (this project's development and CI machines among them) often lack it or carry a
build whose compiled ops do not load, and the two-stage baseline must still train and test there.

Semantics (torchvision's `roi_align`, which the fallback reproduces):
- A RoI (x1, y1, x2, y2) in input pixels is scaled by `spatial_scale`; with `aligned=True` 0.5 is subtracted
  afterwards, so that feature cell i is centred on continuous coordinate i (pixel-centre model). With
  `aligned=False` the RoI is not shifted and its width and height are clamped to at least 1 feature cell.
- The RoI is split into output_size bins; each bin averages a grid of sampling points placed at the centres of a
  regular sub-grid: `sampling_ratio` points per bin side, or ceil(roi_size / output_size) when sampling_ratio <= 0
  (adaptive, per RoI and per axis).
- A sampling point is bilinearly interpolated. A point with y < -1 or y > H (or x < -1 or x > W) contributes zero;
  otherwise its coordinates are clamped to [0, H-1] x [0, W-1] first. The bin value is the sum of the sampled values
  divided by the number of sampling points (also those that fell outside).
The fallback exploits that all of this is separable: bilinear weights, the validity test and the grid average each
factor into a y part and an x part, so every RoI reduces to two small interpolation matrices, A_y [oh, H] and
A_x [ow, W], and output = A_y @ features @ A_x^T. That is exact (up to float summation order), vectorised over RoIs
and differentiable by autograd with respect to the features. As in torchvision, no gradient flows to the boxes.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

OutputSize = Union[int, Sequence[int]]

# Upper bound on the per-chunk copy of the features gathered for the RoIs of the fallback (elements; 128 MiB of
# float32). Typical two-stage batches fit in one chunk; the bound only matters for large maps and many RoIs.
_GATHER_BUDGET = 1 << 25
# Feature dtypes pooled in float32 (sampling coordinates and box corners need more than their 8-11 bit mantissas).
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _import_torchvision_roi_align() -> Optional[Callable[..., Tensor]]:
    # Any failure counts as "absent": besides ImportError, a torchvision built for another torch (or for CUDA on a
    # CPU-only torch) fails while registering its compiled ops with RuntimeError or OSError.
    try:
        from torchvision.ops import roi_align as torchvision_roi_align
    except Exception:  # noqa: BLE001 - optional dependency, see above
        return None
    return torchvision_roi_align


_TORCHVISION_ROI_ALIGN = _import_torchvision_roi_align()
# Device types ("cpu", "cuda", ...) on which torchvision was found to have no kernel; the fallback serves them.
_DEVICES_WITHOUT_TORCHVISION_KERNEL: set[str] = set()


def _pair(output_size: OutputSize) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    height, width = output_size
    return int(height), int(width)


def _check_inputs(features: Tensor, rois: Tensor) -> None:
    if features.dim() != 4:
        raise ValueError(f"roi_align: features must be [B, C, H, W], got shape {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_align: rois must be [R, 5] (batch index, x1, y1, x2, y2), got {tuple(rois.shape)}")


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: OutputSize,
    spatial_scale: float,
    sampling_ratio: int = 0,
    aligned: bool = True,
) -> Tensor:
    """Pool a fixed-size feature patch for each RoI.

    Args:
        features: [B, C, H, W] feature map.
        rois: [R, 5] rows (batch index, x1, y1, x2, y2), box corners in input pixels.
        output_size: oh or (oh, ow), bins per RoI.
        spatial_scale: feature cells per input pixel (1 / the backbone stride, e.g. 1/32).
        sampling_ratio: sampling points per bin side; <= 0 picks ceil(roi_size / output_size) per RoI.
        aligned: shift the scaled RoI by -0.5 (pixel-centre model); False is the legacy Mask R-CNN behaviour.
    Returns:
        [R, C, oh, ow], in the dtype and on the device of `features`.
    """
    _check_inputs(features, rois)
    oh, ow = _pair(output_size)
    if features.dtype in _LOW_PRECISION:
        # Pool in float32, as torchvision's autocast kernel does: boxes rounded to bfloat16 would move by pixels.
        return roi_align(features.float(), rois, (oh, ow), spatial_scale, sampling_ratio, aligned).to(features.dtype)
    rois = rois.to(dtype=features.dtype)
    device_type = features.device.type
    if _TORCHVISION_ROI_ALIGN is not None and device_type not in _DEVICES_WITHOUT_TORCHVISION_KERNEL:
        try:
            return _TORCHVISION_ROI_ALIGN(features, rois, (oh, ow), spatial_scale, sampling_ratio, aligned)
        except NotImplementedError:
            # The dispatcher's answer for an op without a kernel for this backend; remember it, do not retry.
            _DEVICES_WITHOUT_TORCHVISION_KERNEL.add(device_type)
            logger.warning("torchvision.ops.roi_align has no %s kernel; using the pure-torch RoIAlign", device_type)
    return roi_align_pure_torch(features, rois, (oh, ow), spatial_scale, sampling_ratio, aligned)


def roi_align_pure_torch(
    features: Tensor,
    rois: Tensor,
    output_size: OutputSize,
    spatial_scale: float,
    sampling_ratio: int = 0,
    aligned: bool = True,
) -> Tensor:
    """The package's own RoIAlign: same arguments, result and semantics as `roi_align`, any device.

    Gradients flow to `features` (autograd); `rois` are treated as constants, as torchvision does. As torchvision
    under autocast, the pooling runs in float32 for float16 / bfloat16 features (bfloat16 sampling coordinates
    would be off by up to a quarter cell on a 64-cell map) and the result is cast back to their dtype.
    """
    _check_inputs(features, rois)
    oh, ow = _pair(output_size)
    if features.dtype in _LOW_PRECISION:
        pooled = roi_align_pure_torch(features.float(), rois, (oh, ow), spatial_scale, sampling_ratio, aligned)
        return pooled.to(features.dtype)
    with torch.autocast(device_type=features.device.type, enabled=False):
        return _separable_roi_align(features, rois.detach().to(features.dtype), oh, ow, spatial_scale,
                                    sampling_ratio, aligned)


def _separable_roi_align(
    features: Tensor, rois: Tensor, oh: int, ow: int, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> Tensor:
    """output[r] = A_y[r] @ features[batch[r]] @ A_x[r]^T for every RoI r, in the dtype of `features`."""
    num_rois, channels, height, width = rois.shape[0], *features.shape[1:]
    if num_rois == 0:
        return features.new_zeros((0, channels, oh, ow))
    row_weights = _interpolation_matrix(rois[:, 2], rois[:, 4], height, oh, spatial_scale, sampling_ratio, aligned)
    col_weights = _interpolation_matrix(rois[:, 1], rois[:, 3], width, ow, spatial_scale, sampling_ratio, aligned)
    batch_index = rois[:, 0].long()
    # Rows are contracted for all channels at once: per RoI one [oh, H] x [H, C*W] product, not C tiny ones.
    lines = features.transpose(1, 2).reshape(features.shape[0], height, channels * width)  # [B, H, C*W]

    chunk = max(1, _GATHER_BUDGET // max(1, channels * height * width))
    outputs = []
    for start in range(0, num_rois, chunk):
        rows = row_weights[start : start + chunk]  # [r, oh, H]
        cols = col_weights[start : start + chunk]  # [r, ow, W]
        count = rows.shape[0]
        per_roi = lines.index_select(0, batch_index[start : start + chunk])  # [r, H, C*W]
        pooled_rows = torch.bmm(rows, per_roi).view(count, oh, channels, width)
        pooled_rows = pooled_rows.transpose(1, 2).reshape(count, channels * oh, width)  # [r, C*oh, W]
        pooled = torch.bmm(pooled_rows, cols.transpose(1, 2))  # [r, C*oh, ow]
        outputs.append(pooled.view(count, channels, oh, ow))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _interpolation_matrix(
    low: Tensor,
    high: Tensor,
    size: int,
    bins: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Weights [R, bins, size] that average the bilinear samples of each bin along one axis.

    `low`, `high` [R] are the RoI's start and end along the axis in input pixels; `size` is the feature map's extent
    along it. Row b of a RoI's matrix, applied to a feature line, gives (sum of the bin's samples) / (their number),
    which is torchvision's bin value restricted to this axis.
    """
    offset = 0.5 if aligned else 0.0
    start = low * spatial_scale - offset
    length = high * spatial_scale - offset - start
    if not aligned:
        length = length.clamp(min=1.0)
    bin_size = length / bins  # [R]
    if sampling_ratio > 0:
        samples_per_bin = torch.full_like(bin_size, float(sampling_ratio))
    else:
        # A degenerate RoI (length <= 0, possible only with aligned=True) gets no samples and pools to zero.
        samples_per_bin = torch.ceil(length / bins).clamp(min=0.0)
    max_samples = max(1, int(samples_per_bin.max().item()))
    divisor = samples_per_bin.clamp(min=1.0)

    bin_index = torch.arange(bins, device=low.device, dtype=low.dtype)
    sample_index = torch.arange(max_samples, device=low.device, dtype=low.dtype)
    # Coordinates [R, bins, samples] in torchvision's operation order: start + b * bin + (s + .5) * bin / n.
    coords = (
        start[:, None, None]
        + bin_index[None, :, None] * bin_size[:, None, None]
        + (sample_index[None, None, :] + 0.5) * bin_size[:, None, None] / divisor[:, None, None]
    )
    counted = sample_index[None, None, :] < samples_per_bin[:, None, None]
    inside = (coords >= -1.0) & (coords <= size)
    coords = coords.clamp(min=0.0, max=size - 1)
    # On [0, size-1] the bilinear weight of feature line k is the tent max(0, 1 - |coord - k|): it puts 1 - frac on
    # floor(coord) and frac on floor(coord) + 1, and all of it on size - 1 at the clamped upper edge.
    positions = torch.arange(size, device=low.device, dtype=low.dtype)
    tent = (1.0 - (coords[..., None] - positions).abs()).clamp(min=0.0)  # [R, bins, samples, size]
    weights = (tent * (counted & inside)[..., None]).sum(dim=2)
    return weights / divisor[:, None, None]
