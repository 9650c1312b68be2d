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


# -- fast paths, fallbacks and the single affine map (issue 7) -----------------------------------
# Stated tolerances: float64 latents agree with the float64 NumPy reference to 1e-8 (absolute, on
# outputs of order 1-10); float32 latents agree with the float64 NumPy reference run on the same
# float32 values to FLOAT32_RTOL of the largest output, on well-conditioned data.
FLOAT32_RTOL = 1e-5
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def related_spaces(n: int, dx: int, dy: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A target that is mostly an isometry of the source, plus a non-linear part and noise: X, X^T Y
    and the least-squares solution are all well-conditioned, as for spaces worth translating."""
    x = data(n, dx, seed)
    q = random_orthogonal(max(dx, dy), seed + 1)[:dx, :dy]
    mix = torch.randn(dx, dy, generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
    return x, x @ q * 2 + 0.3 * torch.tanh(x @ mix / dx**0.5) + 1 + 0.1 * data(n, dy, seed + 3)


def rel_max_diff(ours: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(ours.double().cpu().numpy() - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["affine", "linear", "lortho", "ortho"])
@pytest.mark.parametrize("dims", [(48, 32), (32, 48), (64, 64)])
def test_float32_matches_float64_reference_on_the_float32_fast_path(name, dims, device):
    x_all, y_all = related_spaces(1500, *dims, seed=40)
    x32, y32 = x_all.float(), y_all.float()
    t = TRANSLATORS[name]().fit(x32[500:].to(device), y32[500:].to(device))
    assert t._solver == ("svd-float32" if name == "ortho" else "cholesky-float32" + ("+svd-float32" if name == "lortho" else ""))
    out = t.transform(x32[:500].to(device))
    assert out.dtype == torch.float32 and out.device.type == device
    ref = numpy_translate(name, x32[500:].double().numpy(), y32[500:].double().numpy(), x32[:500].double().numpy())
    assert rel_max_diff(out, ref) < FLOAT32_RTOL


@pytest.mark.parametrize("name", ["affine", "linear", "lortho", "ortho"])
@pytest.mark.parametrize("scaling", ["standard", "none"])
def test_float64_matches_reference_to_1e_8_on_the_float64_fast_path(name, scaling):
    x_all, y_all = related_spaces(1500, 40, 30, seed=45)
    t = TRANSLATORS[name](scaling=scaling).fit(x_all[500:], y_all[500:])
    assert t._solver.startswith("svd-float64" if name == "ortho" else "cholesky-float64")
    ref = numpy_translate(name, x_all[500:].numpy(), y_all[500:].numpy(), x_all[:500].numpy(), scaling=scaling)
    assert np.abs(t.transform(x_all[:500]).numpy() - ref).max() < 1e-8


def nearly_collinear_float32(n: int = 1500, d: int = 32, gap: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the features repeat the other half up to ``gap``: kappa_2(X^T X) ~ 1e4, too high for float32
    normal equations, far inside float32's numerical rank."""
    base = data(n, d, 50)
    x = base.clone()
    x[:, d // 2 :] = base[:, : d // 2] + gap * data(n, d // 2, 51)
    y = torch.tanh(x @ torch.randn(d, 24, generator=torch.Generator().manual_seed(52), dtype=torch.float64) / 6) * 3
    return x.float(), y.float()


@pytest.mark.parametrize("name", ["affine", "linear", "lortho"])
def test_ill_conditioned_float32_falls_back_to_float64_normal_equations(name):
    x, y = nearly_collinear_float32()
    t = TRANSLATORS[name]().fit(x[300:], y[300:])
    assert t._solver.startswith("cholesky-float64"), t._solver
    out = t.transform(x[:300])
    assert out.dtype == torch.float32
    ref = numpy_translate(name, x[300:].double().numpy(), y[300:].double().numpy(), x[:300].double().numpy())
    assert rel_max_diff(out, ref) < FLOAT32_RTOL


def rank_deficient_float32() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like a ViT's mean-pooled LayerNorm features: every row sums to zero (rank d-1), in float32."""
    free = data(2000, 31, 35, torch.float32)
    x = torch.cat([free, -free.sum(1, keepdim=True)], dim=1)
    q = random_orthogonal(32, seed=36).float()
    return x, x @ q + 0.05 * data(2000, 32, 37, torch.float32), q


@pytest.mark.parametrize("name", ["affine", "linear", "lortho"])
def test_rank_deficient_float32_takes_min_norm_path_and_matches_reference(name):
    x, y, _ = rank_deficient_float32()
    t = TRANSLATORS[name]().fit(x[200:], y[200:])
    assert t._solver.startswith("gelsd-float64"), t._solver
    r = t.matrix[:-1] if name == "affine" else t.matrix
    assert torch.linalg.svdvals(r.double()).max() < 10  # the null direction is dropped, not fitted
    rcond = float(np.finfo(np.float32).eps) * 1800  # what the latents' precision can resolve
    ref = numpy_translate(name, x[200:].double().numpy(), y[200:].double().numpy(), x[:200].double().numpy(), rcond=rcond)
    assert rel_max_diff(t.transform(x[:200]), ref) < FLOAT32_RTOL


def test_underdetermined_float32_takes_min_norm_path():
    t = TRANSLATORS["linear"]().fit(data(20, 50, 16, torch.float32), data(20, 30, 17, torch.float32))
    assert t._solver == "gelsd-float64"


@pytest.mark.parametrize("name", ["affine", "linear", "lortho", "ortho", "none"])
@pytest.mark.parametrize("scaling", ["standard", "none"])
def test_transform_is_one_affine_map_equal_to_the_multi_pass_form(name, scaling):
    dy = 16 if name == "none" else 12
    x_anchors, y_anchors = related_spaces(400, 16, dy, seed=60)
    x_test = data(50, 16, 61)
    t = TRANSLATORS[name](scaling=scaling).fit(x_anchors, y_anchors)
    out = t.transform(x_test)
    assert t._shift is None  # means within a few standard deviations: everything is folded
    single = torch.addcmul(t.bias, x_test, t.weight) if name == "none" else torch.addmm(t.bias, x_test, t.weight)
    assert torch.equal(out, single)
    scaled = t.x_scaling.transform(x_test)
    mapped = scaled @ t.matrix[:-1] + t.matrix[-1] if name == "affine" else scaled @ t.matrix
    multi_pass = t.y_scaling.inverse_transform(mapped)
    assert torch.allclose(out, multi_pass, rtol=0, atol=1e-12 * multi_pass.abs().max())


def test_ortho_with_differing_dims_folds_padding_into_the_weight():
    x_anchors, y_anchors = related_spaces(400, 24, 16, seed=62)
    t = TRANSLATORS["ortho"]().fit(x_anchors, y_anchors)
    assert t.weight.shape == (24, 16) and t.matrix.shape == (24, 16)
    assert torch.allclose(t.matrix.T @ t.matrix, torch.eye(16, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_mean_is_not_folded_into_the_bias(dtype):
    """Anchors far from the origin (mean ~1e3 std): folding the mean into the bias would lose ~3 digits
    (measured in float32: 3e-6 of max |out| folded, 3e-7 centred first), so the input is centred first."""
    x_anchors, y_anchors = related_spaces(1500, 32, 24, seed=63)
    x_anchors, y_anchors = x_anchors + 1000.0, y_anchors - 500.0
    x_test = x_anchors[:300] + 0.1 * data(300, 32, 64)
    t = TRANSLATORS["linear"]().fit(x_anchors[300:].to(dtype), y_anchors[300:].to(dtype))
    assert t._shift is not None
    xa, ya, xt = (a.to(dtype).double().numpy() for a in (x_anchors[300:], y_anchors[300:], x_test))
    ref = numpy_translate("linear", xa, ya, xt)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert rel_max_diff(t.transform(x_test.to(dtype)), ref) < tol


def test_condition_bound_is_an_upper_bound_and_tight():
    from latentstitch.translation.solvers import spd_condition_bound

    for seed, spread in [(70, 1.0), (71, 30.0), (72, 1e4)]:
        x = data(600, 40, seed) * torch.logspace(0, np.log10(spread), 40, dtype=torch.float64)
        gram = x.T @ x
        eigenvalues = torch.linalg.eigvalsh(gram)
        kappa = float(eigenvalues[-1] / eigenvalues[0])
        bound = spd_condition_bound(gram, torch.linalg.cholesky(gram))
        assert kappa <= bound <= 2 * kappa


def test_finite_check_does_not_reject_values_whose_sum_overflows():
    big = torch.full((8, 4), 3e38)
    t = TRANSLATORS["none"](scaling="none").fit(big, big)
    assert torch.equal(t.transform(big), big)
    big[2, 1] = float("inf")
    with pytest.raises(TranslationError, match="NaN or inf"):
        t.transform(big)
