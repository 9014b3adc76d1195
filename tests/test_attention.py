"""The attention kernels of models/attention.py: the folded relative-position formulation against the explicit one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from slowfast_bmvit.models.attention import (
    AUTO_ATTN_IMPL,
    BlockSpec,
    MultiScaleAttention,
    attention_impl,
    attention_weights,
    explicit_attention,
    folded_attention,
    pool_tokens,
    position_codes,
    rel_pos_bias,
    rel_pos_terms,
    sdpa_bias_attention,
)


def _inputs(q_thw, k_thw, s, head_dim, heads=2, batch=2, dtype=torch.float32):
    q = torch.randn(batch, heads, s + math.prod(q_thw), head_dim, dtype=dtype)
    k = torch.randn(batch, heads, s + math.prod(k_thw), head_dim, dtype=dtype)
    v = torch.randn(batch, heads, s + math.prod(k_thw), head_dim, dtype=dtype)
    tables = [torch.randn(2 * max(a, b) - 1, head_dim, dtype=dtype) for a, b in zip(q_thw, k_thw)]
    return q, k, v, tables


def _reference(q, k, v, scale, q_thw, k_thw, tables, s):
    """Float64 softmax(scale q k^T + bias) v, the bias zero on the class token's row and column."""
    q, k, v = q.double(), k.double(), v.double()
    logits = scale * q @ k.transpose(-2, -1)
    bias = rel_pos_bias(q[:, :, s:], q_thw, k_thw, *[None if t is None else t.double() for t in tables])
    if bias is not None:
        logits[:, :, s:, s:] += bias.reshape(logits[:, :, s:, s:].shape)
    return logits.softmax(-1) @ v


@pytest.mark.parametrize("s", [0, 1])
@pytest.mark.parametrize(
    "q_thw, k_thw, head_dim, axes",
    [
        ((2, 6, 4), (2, 3, 4), 13, (True, True, True)),  # odd head dim: q/k/v padded to a multiple of 8
        ((4, 4, 4), (2, 2, 2), 16, (True, True, True)),  # 16 + 6 channels -> 24
        ((2, 4, 4), (2, 2, 2), 8, (False, True, True)),  # spatial relative positions only
        ((2, 4, 4), (2, 4, 4), 8, (False, False, False)),  # none: plain attention through the same call
    ],
)
def test_folded_attention_equals_the_float64_definition_with_gradients(s, q_thw, k_thw, head_dim, axes):
    torch.manual_seed(0)
    q, k, v, tables = _inputs(q_thw, k_thw, s, head_dim)
    tables = [table if present else None for table, present in zip(tables, axes)]
    scale = head_dim**-0.5
    leaves = [q, k, v] + [t for t in tables if t is not None]
    for leaf in leaves:
        leaf.requires_grad_(True)
    terms = rel_pos_terms(q[:, :, s:], q_thw, k_thw, *tables)
    out = folded_attention(q, k, v, scale, terms, k_thw, axes, s)
    expected = _reference(q, k, v, scale, q_thw, k_thw, tables, s)
    assert out.shape == (*q.shape[:3], v.shape[-1])
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)

    weights = torch.randn_like(expected)
    folded_grads = torch.autograd.grad((out.double() * weights).sum(), leaves)
    expected_grads = torch.autograd.grad((expected * weights).sum(), leaves)
    for got, want in zip(folded_grads, expected_grads):
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-4, atol=1e-5)


def test_the_three_kernels_agree_in_float32():
    torch.manual_seed(1)
    q_thw, k_thw, s = (2, 8, 8), (2, 4, 4), 1
    q, k, v, tables = _inputs(q_thw, k_thw, s, 24)
    scale = 24**-0.5
    bias = rel_pos_bias(q[:, :, s:], q_thw, k_thw, *tables)
    explicit = explicit_attention(q, k, v, scale, bias, s)
    torch.testing.assert_close(sdpa_bias_attention(q, k, v, scale, bias, s), explicit, rtol=1e-5, atol=1e-5)
    terms = rel_pos_terms(q[:, :, s:], q_thw, k_thw, *tables)
    folded = folded_attention(q, k, v, scale, terms, k_thw, (True, True, True), s)
    torch.testing.assert_close(folded, explicit, rtol=1e-5, atol=1e-5)
    weights = attention_weights(q, k, scale, bias, s)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_position_codes_pick_each_keys_coordinates():
    codes = position_codes((2, 3, 4), (True, True, True), 1, 16, torch.device("cpu"), torch.float32)
    assert codes.shape == (1 + 24, 16)
    assert codes[0].abs().sum() == 0  # the class token takes no relative-position term
    assert (codes[:, 9:] == 0).all()  # the padding after kt + kh + kw = 9 columns
    for index in range(24):
        t, h, w = index // 12, (index // 4) % 3, index % 4
        expected = torch.zeros(16)
        expected[t] = expected[2 + h] = expected[5 + w] = 1
        torch.testing.assert_close(codes[1 + index], expected)
    spatial = position_codes((2, 3, 4), (False, True, True), 0, 8, torch.device("cpu"), torch.float32)
    assert spatial.shape == (24, 8) and (spatial.sum(1) == 2).all()


def _folded_module(head_dim: int = 16, impl: str = "folded") -> MultiScaleAttention:
    return MultiScaleAttention(BlockSpec(
        head_dim, head_dim, num_heads=1, input_size=(4, 16, 16), kernel_q=(3, 3, 3), kernel_kv=(3, 3, 3),
        stride_q=(1, 1, 1), stride_kv=(1, 4, 4), rel_pos_spatial=True, rel_pos_temporal=True, attn_impl=impl,
    ))


def test_folded_path_runs_the_cpu_flash_kernel_not_the_math_fallback():
    module = _folded_module()
    x = torch.randn(1, 1 + 4 * 16 * 16, 16)
    with torch.no_grad(), profile() as trace:
        module(x, (4, 16, 16))
    names = {event.key for event in trace.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
    assert "aten::_scaled_dot_product_attention_math" not in names


def test_auto_resolves_per_device_and_the_switch_restores_the_setting():
    module = _folded_module(impl="auto")
    assert module.resolved_impl(torch.device("cpu")) == AUTO_ATTN_IMPL["cpu"]
    assert module.resolved_impl(torch.device("meta")) == "sdpa"  # a device without a measurement
    with attention_impl(module, "explicit"):
        assert module.attn_impl == "explicit"
    assert module.attn_impl == "auto"
    with pytest.raises(ValueError, match="one of auto, folded, sdpa, explicit"):
        with attention_impl(module, "flash"):
            pass
    with pytest.raises(ValueError, match="attn_impl must be one of"):
        _folded_module(impl="fast")


def test_folded_bf16_autocast_stays_close_to_float32():
    torch.manual_seed(0)
    module = _folded_module()
    x = torch.randn(1, 1 + 4 * 16 * 16, 16)
    with torch.no_grad():
        reference, _ = module(x, (4, 16, 16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = module(x, (4, 16, 16))
    assert torch.isfinite(low).all()
    assert (low.float() - reference).norm() / reference.norm() < 2e-2
    assert F.cosine_similarity(low.float().flatten(), reference.flatten(), dim=0) > 0.999


@pytest.mark.parametrize("impl", ["folded", "sdpa"])
def test_training_after_an_inference_mode_forward(impl):
    """The cached index and position-code tensors made during an inference_mode forward must serve training."""
    module = _folded_module(impl=impl)
    x = torch.randn(1, 1 + 4 * 16 * 16, 16)
    with torch.inference_mode():
        module(x, (4, 16, 16))
    out, _ = module(x, (4, 16, 16))
    out.sum().backward()
    assert module.rel_pos_t.grad is not None and module.rel_pos_t.grad.abs().sum() > 0


def _pool_input_layouts(pool):
    """Record, for each call of `pool`, whether its input was dense channels-last and whether it was NCDHW."""
    seen = []
    pool.register_forward_pre_hook(lambda module, args: seen.append(
        (args[0].is_contiguous(memory_format=torch.channels_last_3d), args[0].is_contiguous())))
    return seen


@pytest.mark.parametrize("has_cls", [True, False])
def test_cpu_pooling_in_channels_last_equals_the_float64_ncdhw_definition(has_cls):
    """pool_tokens hands the CPU convolution and max-pool a channels-last grid (their fast layout); tokens, input
    gradient and the convolution's weight gradient equal a float64 NCDHW computation written out here."""
    torch.manual_seed(0)
    thw, heads, channels, s = (2, 6, 4), 2, 8, int(has_cls)
    conv = torch.nn.Conv3d(channels, channels, 3, stride=(1, 2, 2), padding=1, groups=channels, bias=False)
    maxpool = torch.nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
    conv_layouts, pool_layouts = _pool_input_layouts(conv), _pool_input_layouts(maxpool)
    x = torch.randn(2, heads, s + math.prod(thw), channels, requires_grad=True)

    def reference(tokens, weight):
        grid = tokens[:, :, s:].reshape(2 * heads, *thw, channels).permute(0, 4, 1, 2, 3)
        pooled = F.conv3d(grid, weight, stride=(1, 2, 2), padding=1, groups=channels)
        pooled = pooled.flatten(2).transpose(1, 2).reshape(2, heads, -1, channels)
        return torch.cat((tokens[:, :, :s], pooled), dim=2)

    out, out_thw = pool_tokens(x, conv, thw, has_cls)
    assert out_thw == (2, 3, 2)
    x64, weight64 = x.detach().double().requires_grad_(), conv.weight.detach().double().requires_grad_()
    expected = reference(x64, weight64)
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
    grad_out = torch.randn_like(expected)
    out.backward(grad_out.float())
    expected.backward(grad_out)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(conv.weight.grad.double(), weight64.grad, rtol=1e-5, atol=1e-6)

    skip, skip_thw = pool_tokens(x[:, 0].detach(), maxpool, thw, has_cls)
    grid = x[:, 0, s:].detach().reshape(2, *thw, channels).permute(0, 4, 1, 2, 3)
    expected_skip = F.max_pool3d(grid, (1, 3, 3), (1, 2, 2), (0, 1, 1)).flatten(2).transpose(1, 2)
    assert skip_thw == (2, 3, 2)
    assert torch.equal(skip[:, s:], expected_skip) and torch.equal(skip[:, :s], x[:, 0, :s].detach())
    assert conv_layouts == [(True, False)] and pool_layouts == [(True, False)]


def test_cpu_pooling_convolution_trains_bfloat16_on_an_ncdhw_grid():
    """Under CPU bf16 autocast with gradients the convolution gets an NCDHW grid (torch's channels-last bf16 kernel
    computes a wrong weight gradient: tests/test_engine.py checks the gradients of a whole model); without
    gradients, or in float32, it keeps the channels-last one."""
    conv = torch.nn.Conv3d(8, 8, 3, padding=1, groups=8, bias=False)
    layouts = _pool_input_layouts(conv)
    x = torch.randn(1, 2, 1 + 2 * 4 * 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pool_tokens(x, conv, (2, 4, 4), True)
        with torch.no_grad():
            pool_tokens(x, conv, (2, 4, 4), True)
    pool_tokens(x, conv, (2, 4, 4), True)
    assert layouts == [(False, True), (True, False), (True, False)]
