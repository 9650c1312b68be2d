"""Every translator and projection method round-trips through state_dict / save / load exactly."""

from __future__ import annotations

import pytest
import torch

from latentstitch.translation import (
    METHODS,
    TRANSLATORS,
    InverseRelativeTranslator,
    RelativeProjection,
    RelativeStitching,
    Translator,
    UnsupervisedTranslator,
)
from latentstitch.translation.state import Persistent


def _spaces(n: int = 400, dx: int = 12, dy: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dx, generator=gen) * 3 + 1
    y = torch.tanh(x @ torch.randn(dx, dy, generator=gen)) + 0.1 * torch.randn(n, dy, generator=gen)
    return x, y


def _fitted_methods() -> list[Persistent]:
    x, y = _spaces()
    methods: list[Persistent] = []
    for name, cls in TRANSLATORS.items():
        if name == "none":  # the identity needs equal widths
            methods.append(cls().fit(x[:, :10], y))
        else:
            methods.append(cls().fit(x, y))
    methods.append(RelativeStitching(projections=["cosine", "euclidean"], aggregation="sum").fit(x[:50], y[:50]))
    methods.append(InverseRelativeTranslator(prune_threshold=0.5, subsets=2).fit(x[:80], y[:80]))
    methods.append(UnsupervisedTranslator(clusters=4, repeats=2, qap_inits=2, neighbours=5, refine_iters=3).fit(x[:200], y[200:]))
    methods.append(
        UnsupervisedTranslator(init="gromov", gw_samples=50, repeats=2, neighbours=5, refine_iters=3).fit(x[:200], y[200:])
    )
    methods.append(RelativeProjection("cosine", center=True, top_k=5).fit(x[:30]))
    return methods


def _apply(method: Persistent, x: torch.Tensor) -> torch.Tensor:
    if isinstance(method, RelativeStitching):
        return method.transform_source(x)
    if isinstance(method, RelativeProjection):
        return method.transform(x)
    width = 10 if getattr(method, "name", "") == "none" else x.shape[1]  # the identity was fitted on 10 dims
    return method.transform(x[:, :width])  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", _fitted_methods(), ids=lambda m: type(m).__name__)
def test_save_load_gives_the_same_outputs(method, tmp_path):
    x, _ = _spaces(n=64, seed=1)
    path = method.save(tmp_path / "method.safetensors")
    loaded = type(method).load(path)
    assert type(loaded) is type(method) and loaded.config() == method.config()
    assert torch.equal(_apply(loaded, x), _apply(method, x))
    rebuilt = type(method)(**method.config()).load_state_dict(method.state_dict())
    assert torch.equal(_apply(rebuilt, x), _apply(method, x))
    if isinstance(method, RelativeStitching):
        assert torch.equal(loaded.transform_target(x[:, :10]), method.transform_target(x[:, :10]))


def test_the_base_class_loads_any_translator_and_refuses_other_methods(tmp_path):
    x, y = _spaces()
    ortho = TRANSLATORS["ortho"]().fit(x, y).save(tmp_path / "ortho.safetensors")
    assert type(Translator.load(ortho)).__name__ == "OrthoTranslator"
    relative = METHODS["relative"]().fit(x[:40], y[:40]).save(tmp_path / "relative.safetensors")
    with pytest.raises(ValueError, match="is not a Translator"):
        Translator.load(relative)


def test_an_unfitted_method_has_no_state():
    for cls in (*TRANSLATORS.values(), *METHODS.values()):
        with pytest.raises(RuntimeError, match="not fitted"):
            cls().state_dict()


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2, 2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="not a saved latentstitch method"):
        Translator.load(tmp_path / "w.safetensors")
