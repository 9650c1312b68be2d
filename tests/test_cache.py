import json

import pytest
import torch

from latentstitch.cache import Cache, spec_key


def builder(calls, value=1.0):
    def build():
        calls.append(1)
        return {"x": torch.full((4, 3), value)}

    return build


def test_miss_then_hit_builds_once(tmp_path):
    calls = []
    spec = {"encoder": {"name": "cnn", "seed": 0}, "split": "train"}
    first = Cache(tmp_path).get_or_build("space", spec, builder(calls))
    second = Cache(tmp_path).get_or_build("space", spec, builder(calls, 2.0))  # a new process, same cache
    assert len(calls) == 1 and torch.equal(first["x"], second["x"])
    entry = Cache(tmp_path).entries("space")
    assert len(entry) == 1 and json.loads((entry[0] / "manifest.json").read_text())["spec"] == spec
    assert not list((tmp_path / "space").glob(".tmp-*"))


def test_key_depends_on_every_setting_but_not_on_key_order():
    assert spec_key("space", {"a": 1, "b": {"seed": 0}}) == spec_key("space", {"b": {"seed": 0}, "a": 1})
    assert spec_key("space", {"a": 1, "b": {"seed": 0}}) != spec_key("space", {"a": 1, "b": {"seed": 1}})
    assert spec_key("space", {"a": 1}) != spec_key("encoder", {"a": 1})


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest"])
def test_corrupted_entry_is_rebuilt(tmp_path, damage):
    calls = []
    Cache(tmp_path).get_or_build("space", {"k": 1}, builder(calls))
    entry = Cache(tmp_path).entries("space")[0]
    tensors = entry / "tensors.safetensors"
    if damage == "truncate":
        tensors.write_bytes(tensors.read_bytes()[:20])
    elif damage == "flip":
        raw = bytearray(tensors.read_bytes())
        raw[-1] ^= 0xFF
        tensors.write_bytes(bytes(raw))
    else:
        (entry / "manifest.json").unlink()
    rebuilt = Cache(tmp_path).get_or_build("space", {"k": 1}, builder(calls, 3.0))
    assert len(calls) == 2 and torch.all(rebuilt["x"] == 3.0)
    assert torch.all(Cache(tmp_path).get_or_build("space", {"k": 1}, builder(calls))["x"] == 3.0) and len(calls) == 2


def test_failed_build_leaves_no_entry(tmp_path):
    def fail():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        Cache(tmp_path).get_or_build("space", {"k": 2}, fail)
    assert Cache(tmp_path).entries("space") == []
    assert not list(tmp_path.rglob("*.safetensors"))
