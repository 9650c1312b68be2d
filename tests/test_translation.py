"""Translators: recovery of known maps, dims both ways, min-norm least squares, dtypes, scaling,
and agreement with an independent NumPy implementation of the paper's recipe."""

import numpy as np
import pytest
import torch

from latentstitch.translation import TRANSLATORS, StandardScaling, TranslationError
from latentstitch.translation.numpy_reference import numpy_translate


def random_orthogonal(d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def data(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, d, dtype=torch.float64) + 2.0).to(dtype)


def test_ortho_recovers_rotation_without_scaling():
    q = random_orthogonal(32)
    x_anchors, x_test = data(400, 32, 1), data(200, 32, 2)
    t = TRANSLATORS["ortho"](scaling="none").fit(x_anchors, x_anchors @ q)
    assert torch.allclose(t.matrix, q, atol=1e-10)
    assert torch.allclose(t.transform(x_test), x_test @ q, atol=1e-10)


@pytest.mark.parametrize("name", ["linear", "affine"])
def test_linear_and_affine_recover_affine_map_under_standard_scaling(name):
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(20, 30, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    x_anchors, x_test = data(300, 20, 4), data(100, 20, 5)
    t = TRANSLATORS[name]().fit(x_anchors, x_anchors @ a + b)
    err = (t.transform(x_test) - (x_test @ a + b)).abs().max()
    assert err < 1e-9


def test_ortho_pads_narrow_source_and_recovers_isometric_embedding():
    q = random_orthogonal(24, seed=7)[:16]  # 16 -> 24 with orthonormal rows
    x_anchors, x_test = data(300, 16, 8), data(50, 16, 9)
    t = TRANSLATORS["ortho"](scaling="none").fit(x_anchors, x_anchors @ q)
    out = t.transform(x_test)
    assert out.shape == (50, 24)
    assert torch.allclose(out, x_test @ q, atol=1e-9)


def test_ortho_truncates_to_narrow_target():
    x_anchors, x_test = data(300, 24, 10), data(50, 24, 11)
    y_anchors = x_anchors @ random_orthogonal(24, seed=12)[:, :16]
    out = TRANSLATORS["ortho"]().fit(x_anchors, y_anchors).transform(x_test)
    assert out.shape == (50, 16)
    ref = numpy_translate("ortho", x_anchors.numpy(), y_anchors.numpy(), x_test.numpy())
    assert np.allclose(out.numpy(), ref, atol=1e-9)


@pytest.mark.parametrize("name", ["affine", "linear", "lortho", "ortho"])
@pytest.mark.parametrize("dims", [(48, 32), (32, 48), (40, 40)])
@pytest.mark.parametrize("scaling", ["standard", "none"])
def test_matches_numpy_reference_on_held_out_data(name, dims, scaling):
    dx, dy = dims
    x_anchors, x_test = data(500, dx, 13), data(300, dx, 14)
    mix = torch.randn(dx, dy, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    y_anchors = torch.tanh(x_anchors @ mix / dx**0.5) * 3 + 1  # a non-linear relation: nothing is exact
    ours = TRANSLATORS[name](scaling=scaling).fit(x_anchors, y_anchors).transform(x_test)
    ref = numpy_translate(name, x_anchors.numpy(), y_anchors.numpy(), x_test.numpy(), scaling=scaling)
    assert np.allclose(ours.numpy(), ref, atol=1e-8), np.abs(ours.numpy() - ref).max()


def test_underdetermined_linear_is_minimum_norm_and_interpolates():
    x_anchors, y_anchors = data(20, 50, 16), data(20, 30, 17)
    t = TRANSLATORS["linear"]().fit(x_anchors, y_anchors)
    xs, ys = t.x_scaling.transform(x_anchors), t.y_scaling.transform(y_anchors)
    assert torch.allclose(t.matrix, torch.linalg.pinv(xs) @ ys, atol=1e-8)  # min-norm
    assert torch.allclose(t.transform(x_anchors), y_anchors, atol=1e-8)  # exact on the anchors


def test_lortho_is_semi_orthogonal():
    t = TRANSLATORS["lortho"]().fit(data(300, 40, 18), data(300, 25, 19))
    assert torch.allclose(t.matrix.T @ t.matrix, torch.eye(25, dtype=torch.float64), atol=1e-10)


def test_affine_coincides_with_linear_after_standard_scaling():
    x_anchors, y_anchors, x_test = data(300, 20, 20), data(300, 12, 21), data(40, 20, 22)
    lin = TRANSLATORS["linear"]().fit(x_anchors, y_anchors).transform(x_test)
    aff = TRANSLATORS["affine"]().fit(x_anchors, y_anchors).transform(x_test)
    assert torch.allclose(lin, aff, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(TRANSLATORS))
def test_output_keeps_input_dtype_and_device(name, dtype):
    x_anchors, y_anchors = data(200, 16, 23, dtype), data(200, 16, 24, dtype)
    out = TRANSLATORS[name]().fit(x_anchors, y_anchors).transform(data(10, 16, 25, dtype))
    assert out.dtype == dtype and out.device == x_anchors.device and out.shape == (10, 16)
    assert torch.isfinite(out).all()


def test_float32_agrees_with_float64():
    x64, y64, t64 = data(400, 30, 26), data(400, 20, 27), data(100, 30, 28)
    a = TRANSLATORS["ortho"]().fit(x64.float(), y64.float()).transform(t64.float())
    b = TRANSLATORS["ortho"]().fit(x64, y64).transform(t64)
    assert torch.allclose(a.double(), b, atol=1e-4)


def test_scaling_round_trip_and_zero_std():
    x = data(100, 6, 29)
    x[:, 2] = 5.0  # constant dimension: std 0 counts as 1
    s = StandardScaling().fit(x)
    assert s.std[2] == 1.0 and torch.allclose(s.std[0], x[:, 0].std(unbiased=True))
    assert torch.allclose(s.inverse_transform(s.transform(x)), x, atol=1e-12)
    assert torch.allclose(s.transform(x).mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-12)


def test_identity_needs_equal_dims():
    with pytest.raises(TranslationError, match="translator=none needs equal dims"):
        TRANSLATORS["none"]().fit(data(50, 8, 30), data(50, 9, 31))
    x = data(50, 8, 32)
    assert torch.equal(TRANSLATORS["none"](scaling="none").fit(x, data(50, 8, 33)).transform(x), x)


def test_bad_inputs_raise_one_clear_error():
    x = data(50, 8, 34)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(TranslationError, match="NaN"):
        TRANSLATORS["ortho"]().fit(bad, x)
    with pytest.raises(TranslationError, match="differ in number"):
        TRANSLATORS["ortho"]().fit(x, x[:40])
    with pytest.raises(ValueError, match="scaling"):
        TRANSLATORS["ortho"](scaling="minmax")


def test_rank_deficient_float32_latents_do_not_blow_up_least_squares():
    """Mean-pooled LayerNorm features satisfy one linear constraint (rank d-1); the direction
    float32 cannot resolve must be dropped, not fitted to the noise (that gave singular values
    ~1e5 and ruined lortho)."""
    free = data(2000, 31, 35, torch.float32)
    x = torch.cat([free, -free.sum(1, keepdim=True)], dim=1)  # rank 31 in 32 dims, up to float32 rounding
    q = random_orthogonal(32, seed=36).float()
    y = x @ q + 0.05 * data(2000, 32, 37, torch.float32)
    for name in ("linear", "lortho"):
        assert torch.linalg.svdvals(TRANSLATORS[name]().fit(x, y).matrix.double()).max() < 10, name
    x_test = torch.cat([free[:200], x[:200, -1:]], dim=1)
    out = TRANSLATORS["lortho"]().fit(x[200:], y[200:]).transform(x_test)
    assert torch.nn.functional.cosine_similarity(out, x_test @ q, dim=1).mean() > 0.95

