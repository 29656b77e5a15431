"""Tests of the SongUNet backbone on latitude-longitude grids (xdiffsr.core.unet)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import pytest
import torch
import torch.nn.functional as F

from xdiffsr.core.layers import LatLonConv2d, PositionalEmbedding, UNetBlock
from xdiffsr.core.unet import SongUNet, UNetConfig
from xdiffsr.errors import ArgumentError


def _randomise(net: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Replace every parameter by random values so no layer is (near) zero or identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return net


def _tiny(channels: int = 2, res: tuple[int, int] = (16, 32), **kw) -> SongUNet:
    torch.manual_seed(0)
    cfg = dataclasses.replace(UNetConfig.tiny(channels, res), **kw)
    return SongUNet.from_config(cfg)


@pytest.mark.parametrize("res", [(16, 32), (8, 24), (32, 8)])
def test_output_shape_non_square(res):
    net = _tiny(3, res)
    x = torch.randn(2, 3, *res)
    y = net(x, torch.tensor([0.1, -0.5]))
    assert y.shape == (2, 3, *res)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_different_in_out_channels():
    cfg = dataclasses.replace(UNetConfig.tiny(4, (8, 16)), out_channels=1)
    y = SongUNet.from_config(cfg)(torch.randn(2, 4, 8, 16), torch.zeros(()))
    assert y.shape == (2, 1, 8, 16)


@pytest.mark.parametrize("res", [(10, 32), (16, 30), (2, 32)])
def test_indivisible_resolution_raises(res):
    with pytest.raises(ArgumentError, match=r"img_resolution.*divisible by 2\*\*\(levels-1\) = 4"):
        UNetConfig.tiny(1, res)


def test_wrong_input_shape_raises():
    net = _tiny(2, (16, 32))
    with pytest.raises(ArgumentError, match="x must have shape"):
        net(torch.zeros(1, 2, 16, 16), torch.zeros(1))


@pytest.mark.parametrize(
    "kw",
    [{"attn_levels": (3,)}, {"dropout": 1.0}, {"embedding_type": "learned"},
     {"channel_mult": ()}, {"model_channels": 0}, {"attn_head_channels": 3}],
)
def test_bad_config_raises(kw):
    with pytest.raises(ArgumentError):
        dataclasses.replace(UNetConfig.tiny(1, (16, 32)), **kw)


def test_config_json_roundtrip():
    cfg = UNetConfig.paper()
    d = json.loads(json.dumps(cfg.to_dict()))
    assert UNetConfig.from_dict(d) == cfg
    assert d["channel_mult"] == [1, 2, 4, 8, 16]
    with pytest.raises(ArgumentError, match="unknown keys"):
        UNetConfig.from_dict({**d, "attn_resolutions": [16]})
    with pytest.raises(ArgumentError, match="missing required keys"):
        UNetConfig.from_dict({"in_channels": 1})


def test_paper_config_values_and_parameter_count():
    cfg = UNetConfig.paper()
    assert (cfg.in_channels, cfg.out_channels, cfg.img_resolution) == (13, 13, (128, 256))
    assert (cfg.model_channels, cfg.channel_mult, cfg.num_blocks) == (64, (1, 2, 4, 8, 16), 4)
    assert (cfg.attn_levels, cfg.dropout) == ((2, 3, 4), 0.1)
    with torch.device("meta"):
        net = SongUNet.from_config(cfg)
    n = sum(p.numel() for p in net.parameters())
    print(f"paper SongUNet parameters: {n}")
    assert 350e6 <= n <= 450e6
    # attention exactly at 32x64, 16x32 and 8x16 (the three coarsest of 128x256 ... 8x16)
    attn = {name.split("_")[0] for name, b in {**net.enc, **net.dec}.items() if b.num_heads}
    assert attn == {"32x64", "16x32", "8x16"}


def test_tiny_config_is_small():
    n = sum(p.numel() for p in SongUNet.from_config(UNetConfig.tiny(1)).parameters())
    assert 10_000 <= n <= 100_000


def test_conv_circular_in_lon_zero_in_lat():
    """One 3x3 all-ones conv on a delta at (lat 0, lon 0): the support is rows {0, 1} (no
    wrap to row H-1) and columns {W-1, 0, 1} (wrap in longitude)."""
    h, w = 6, 8
    conv = LatLonConv2d(1, 1, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    x = torch.zeros(1, 1, h, w)
    x[0, 0, 0, 0] = 1.0
    y = conv(x)[0, 0]
    expected = torch.zeros(h, w)
    expected[:2][:, [w - 1, 0, 1]] = 1.0
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    # A row-0 field does not leak into the last row, a column-0 field reaches column W-1.
    top = torch.zeros(1, 1, h, w)
    top[..., 0, :] = 1.0
    assert conv(top)[0, 0, -1].abs().max() == 0
    left = torch.zeros(1, 1, h, w)
    left[..., 0] = 1.0
    assert conv(left)[0, 0, :, -1].abs().min() > 0


def test_conv_resampling():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    down = LatLonConv2d(1, 1, 0, down=True)(x)
    torch.testing.assert_close(down, F.avg_pool2d(x, 2))
    up = LatLonConv2d(1, 1, 0, up=True)(down)
    torch.testing.assert_close(up, down.repeat_interleave(2, -1).repeat_interleave(2, -2))


@pytest.mark.parametrize("shift", [4, 12, -8])
def test_longitude_shift_equivariance(shift):
    """Rolling the input in longitude by a multiple of 2**(levels-1) = 4 rolls the output."""
    net = _randomise(_tiny(2, (8, 32))).double().eval()
    x = torch.randn(2, 2, 8, 32, dtype=torch.float64)
    s = torch.tensor([0.3, -1.0], dtype=torch.float64)
    with torch.no_grad():
        y = net(x, s)
        y_shift = net(x.roll(shift, dims=-1), s)
    torch.testing.assert_close(y_shift, y.roll(shift, dims=-1), rtol=1e-10, atol=1e-10)
    assert y.std() > 1e-3  # the output is not trivially constant


def test_no_equivariance_where_not_expected():
    """Sanity check that the equivariance test can fail: odd longitude shifts (average
    pooling) and latitude shifts (zero padding, no wrap) do not commute with the network."""
    net = _randomise(_tiny(2, (8, 32))).double().eval()
    x = torch.randn(1, 2, 8, 32, dtype=torch.float64)
    s = torch.zeros(1, dtype=torch.float64)
    with torch.no_grad():
        y = net(x, s)
        for dim, k in ((-1, 1), (-2, 4)):
            diff = (net(x.roll(k, dims=dim), s) - y.roll(k, dims=dim)).abs().max()
            assert diff > 1e-3


def test_batch_members_independent():
    net = _randomise(_tiny(2, (8, 16))).eval()
    x, s = torch.randn(3, 2, 8, 16), torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        y = net(x, s)
        y1 = net(x[1:2], s[1:2])
    torch.testing.assert_close(y[1:2], y1, rtol=1e-5, atol=1e-5)


def test_noise_label_broadcast_and_effect():
    net = _randomise(_tiny(1, (8, 16))).eval()
    x = torch.randn(2, 1, 8, 16)
    with torch.no_grad():
        a = net(x, torch.tensor(0.7))
        b = net(x, torch.tensor([0.7, 0.7]))
        c = net(x, torch.tensor([-2.0, -2.0]))
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3


def test_positional_embedding_formula():
    emb = PositionalEmbedding(8)(torch.tensor([0.0, 2.0]))
    freqs = torch.tensor([1.0, 10000 ** (-1 / 3), 10000 ** (-2 / 3), 1e-4])
    expected = torch.cat([torch.sin(2 * freqs), torch.cos(2 * freqs)])
    torch.testing.assert_close(emb[1], expected)
    torch.testing.assert_close(emb[0], torch.cat([torch.zeros(4), torch.ones(4)]))


@pytest.mark.parametrize("num_heads", [1, 2])
def test_attention_matches_naive_softmax(num_heads):
    torch.manual_seed(1)
    block = UNetBlock(8, 8, 4, attention=True, num_heads=num_heads)
    _randomise(block, seed=2)
    x = torch.randn(2, 8, 3, 4)
    b, c, h, w = x.shape
    qkv = block.qkv(x).reshape(b, num_heads, c // num_heads, 3, h * w)
    q, k, v = qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]  # (B, heads, c, HW)
    scores = torch.einsum("bhcq,bhck->bhqk", q, k) / math.sqrt(c // num_heads)
    ref = torch.einsum("bhqk,bhck->bhcq", scores.softmax(-1), v).reshape(b, c, h, w)
    torch.testing.assert_close(block.attend(x), ref, rtol=1e-5, atol=1e-5)


def test_dropout_eval_deterministic_train_random():
    net = _tiny(1, (8, 16), dropout=0.5)
    _randomise(net)
    x, s = torch.randn(2, 1, 8, 16), torch.zeros(2)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x, s), net(x, s), rtol=0, atol=0)
    net.train()
    with torch.no_grad():
        assert (net(x, s) - net(x, s)).abs().max() > 1e-4


def test_input_gradient_gradcheck():
    net = _randomise(_tiny(1, (4, 8)), scale=0.2).double().eval()
    x = torch.randn(1, 1, 4, 8, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.2], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda inp: net(inp, s), (x,), eps=1e-6, atol=1e-5)


def test_checkpoint_gives_same_gradients():
    net = _randomise(_tiny(2, (8, 16))).train()
    x = torch.randn(2, 2, 8, 16, requires_grad=True)
    s = torch.tensor([0.1, 0.4])
    grads = []
    for flag in (False, True):
        net.checkpoint = flag
        x.grad = None
        net.zero_grad()
        net(x, s).square().sum().backward()
        grads.append((x.grad.clone(), net.enc_in.weight.grad.clone()))
    assert grads[0][0].abs().max() > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fourier_embedding_and_heads_build():
    net = _tiny(1, (8, 16), embedding_type="fourier", channel_mult_noise=2,
                attn_head_channels=8)
    assert net.dec["2x4_in0"].num_heads == 2
    assert net(torch.randn(1, 1, 8, 16), torch.zeros(1)).shape == (1, 1, 8, 16)


def test_constructor_defaults_match_config():
    params = inspect.signature(SongUNet).parameters
    for field in dataclasses.fields(UNetConfig):
        assert params[field.name].kind is inspect.Parameter.KEYWORD_ONLY
        if field.default is not dataclasses.MISSING:
            assert params[field.name].default == field.default, field.name
    with pytest.raises(TypeError):
        SongUNet(1, 1, (8, 16))  # positional hyperparameters are not accepted


# ------------------------------------------------------------------ padding across the poles


def _across_poles(x: torch.Tensor, p: int, sign: torch.Tensor | None) -> torch.Tensor:
    """Reference: (B, C, H + 2p, W + 2p) built point by point from the geometry.

    Padded row ``i`` (``-p <= i < H + p``) at column ``j`` (``-p <= j < W + p``) is the grid
    point ``(i, j mod W)`` inside the grid; beyond a pole, the point on the other side of it: the
    row mirrored about the pole (``-1 - i`` or ``2H - 1 - i``) on the meridian 180 deg away
    (column ``j + W/2``), times ``sign`` per channel.
    """
    B, C, H, W = x.shape
    out = torch.empty(B, C, H + 2 * p, W + 2 * p, dtype=x.dtype)
    s = torch.ones(C, dtype=x.dtype) if sign is None else sign.to(x.dtype)
    for i in range(-p, H + p):
        for j in range(-p, W + p):
            if i < 0:
                val = x[:, :, -1 - i, (j + W // 2) % W] * s
            elif i >= H:
                val = x[:, :, 2 * H - 1 - i, (j + W // 2) % W] * s
            else:
                val = x[:, :, i, j % W]
            out[:, :, i + p, j + p] = val
    return out


def test_pole_padding_every_convolution_of_every_level():
    """Each 3x3 convolution of a pole-padded U-Net (all levels, encoder and decoder) equals a
    plain convolution of its input extended across the poles by the reference above; the input
    convolution flips the sign of the wind channels."""
    net = _randomise(_tiny(3, (16, 32), lat_padding="pole", vector_channels=(1,)))
    seen, checked = set(), []

    def hook(module, inputs, output):
        x = inputs[0]
        if module.down:
            x = F.avg_pool2d(x, 2)
        if module.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        ref = F.conv2d(_across_poles(x, 1, module.pole_sign), module.weight, module.bias)
        torch.testing.assert_close(output, ref, rtol=1e-5, atol=1e-5)
        seen.add(tuple(x.shape[-2:]))
        checked.append(module)

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, LatLonConv2d) and m.kernel == 3]
    net(torch.randn(2, 3, 16, 32), torch.tensor([0.3, -0.2]))
    for h in handles:
        h.remove()
    assert len(checked) == len(handles) > 10
    assert seen == {(16, 32), (8, 16), (4, 8)}  # every level of the tiny U-Net
    assert net.enc_in.pole_sign.tolist() == [1.0, -1.0, 1.0]
    assert net.enc["16x32_block0"].conv0.pole_sign is None  # hidden features: no sign


def test_pole_padding_differs_from_zeros_only_near_the_poles():
    """Same weights, zeros vs pole padding: the first convolution differs only in the edge rows."""
    conv_z = LatLonConv2d(2, 4, 3)
    conv_p = LatLonConv2d(2, 4, 3, lat_padding="pole", pole_sign=[1, -1])
    conv_p.load_state_dict(conv_z.state_dict())
    x = torch.randn(1, 2, 8, 16)
    d = (conv_z(x) - conv_p(x)).abs().amax(dim=(0, 1, 3))
    assert (d[1:-1] == 0).all() and (d[[0, -1]] > 1e-3).all()


def test_pole_padding_config_checks():
    with pytest.raises(ArgumentError, match="divisible by"):
        dataclasses.replace(UNetConfig.tiny(2, (16, 36)), lat_padding="pole")
    with pytest.raises(ArgumentError, match="lat_padding"):
        dataclasses.replace(UNetConfig.tiny(2, (16, 32)), lat_padding="reflect")
    with pytest.raises(ArgumentError, match="vector_channels"):
        dataclasses.replace(UNetConfig.tiny(2, (16, 32)), vector_channels=(2,))
    with pytest.raises(ArgumentError, match="pole_sign"):
        LatLonConv2d(2, 4, 3, lat_padding="pole", pole_sign=[1, 0.5])
    old = UNetConfig.tiny(2, (16, 32)).to_dict()
    for key in ("lat_padding", "vector_channels"):  # files written before the option load as zeros
        old.pop(key)
    assert UNetConfig.from_dict(old).lat_padding == "zeros"


def test_lat_embedding_starts_as_the_same_function_and_is_a_row_bias():
    """lat_embedding=True adds a zero (C, H) bias after the input convolution: with the other
    weights shared the network is unchanged until the bias moves; a bias is constant along
    longitude (longitude equivariance kept) and varies by row (the network learns latitude)."""
    plain = _randomise(_tiny(2, (8, 32))).double().eval()
    emb = _tiny(2, (8, 32), lat_embedding=True).double().eval()
    missing = emb.load_state_dict(plain.state_dict(), strict=False).missing_keys
    ch = emb.config.model_channels
    assert missing == ["lat_embed"] and emb.lat_embed.shape == (1, ch, 8, 1)
    x = torch.randn(2, 2, 8, 32, dtype=torch.float64)
    s = torch.tensor([0.3, -1.0], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(emb(x, s), plain(x, s), rtol=0, atol=0)
        emb.lat_embed.copy_(torch.randn(1, ch, 8, 1, dtype=torch.float64))
        y = emb(x, s)
        assert (y - plain(x, s)).abs().max() > 1e-3
        torch.testing.assert_close(emb(x.roll(4, -1), s), y.roll(4, -1), rtol=1e-10, atol=1e-10)
        # the same bias by hand: enc_in(x) + bias, then the rest of the network
        feats = []
        hook = emb.enc["8x32_block0"].register_forward_pre_hook(lambda m, a: feats.append(a[0]))
        emb(x, s)
        hook.remove()
        torch.testing.assert_close(feats[0], emb.enc_in(x) + emb.lat_embed)


def test_lat_embedding_config():
    cfg = dataclasses.replace(UNetConfig.tiny(2, (16, 32)), lat_embedding=True)
    assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ArgumentError, match="lat_embedding must be True or False, got 'yes'"):
        dataclasses.replace(cfg, lat_embedding="yes")
    old = UNetConfig.tiny(2, (16, 32)).to_dict()
    old.pop("lat_embedding")  # files written before the option: no embedding
    assert UNetConfig.from_dict(old).lat_embedding is False
    assert not hasattr(SongUNet.from_config(UNetConfig.from_dict(old)), "lat_embed")
