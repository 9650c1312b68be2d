"""The pure-torch core (``latentstitch.translation``, ``latentstitch.metrics``) is a library of
its own: importable and usable with Hydra, OmegaConf and Lightning absent."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ("hydra", "omegaconf", "lightning", "pytorch_lightning")

SCRIPT = f"""
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
import torch
from latentstitch import metrics
from latentstitch.translation import METHODS, TRANSLATORS

g = torch.Generator().manual_seed(0)
x = torch.randn(200, 16, generator=g)
q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
y = x @ q
for name, cls in TRANSLATORS.items():
    if name != "none":
        assert metrics.mean_cosine(cls().fit(x[:100], y[:100]).transform(x[100:]), y[100:]) > 0.99, name
rel = METHODS["relative"]().fit(x[:50], y[:50])
assert metrics.mean_cosine(rel.transform_source(x[100:]), rel.transform_target(y[100:])) > 0.99
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
assert not loaded, loaded
print("ok")
"""


def test_translation_and_metrics_import_without_hydra_or_lightning():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_every_method_declares_what_the_cell_reads():
    from latentstitch.translation import METHODS, TRANSLATORS, Method, ProjectingMethod, TranslatingMethod

    for name, cls in {**TRANSLATORS, **METHODS}.items():
        method = cls()
        assert isinstance(method, Method) and method.name == name
        assert isinstance(method, ProjectingMethod if method.projection_method else TranslatingMethod), name
    assert [n for n, c in METHODS.items() if not c.paired] == ["unsupervised"]
    assert [n for n, c in {**TRANSLATORS, **METHODS}.items() if c.projection_method] == ["relative"]
