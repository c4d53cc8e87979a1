from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from services.embedder import export_onnx, onnx_file
from services.embedder.export_onnx import export_model, is_current
from services.embedder.onnx_embedder import OnnxEmbedder


def with_metadata(source: Path, target: Path, values: dict[str, str]) -> Path:
    """A copy of the model at ``source`` with some metadata values replaced."""
    export_onnx._write_metadata(source, target, values)
    return target


def leftovers(directory: Path) -> list[str]:
    """What an export left beside its target, the lock file aside."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


def test_is_current_refuses_missing_and_foreign_files(tmp_path: Path) -> None:
    assert not is_current(tmp_path / "none.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    assert not is_current(garbage)


def test_a_failed_export_leaves_the_old_file_and_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"the old file")

    def fake_fp32(path: Path) -> tuple[int, str]:
        path.write_bytes(b"half an export")
        return 256, "{}"

    def broken_quantize(source: Path, target: Path) -> None:
        target.write_bytes(b"half a quantisation")
        raise RuntimeError("quantiser crashed")

    monkeypatch.setattr(export_onnx, "_export_fp32", fake_fp32)
    monkeypatch.setattr(export_onnx, "_quantize", broken_quantize)
    with pytest.raises(RuntimeError, match="quantiser crashed"):
        export_model(target)
    assert target.read_bytes() == b"the old file"
    assert leftovers(tmp_path) == ["m.onnx"]


@pytest.mark.slow
def test_a_current_model_is_left_alone(onnx_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m.onnx"
    shutil.copyfile(onnx_model, copy)
    before = copy.stat()
    assert is_current(copy)
    assert export_model(copy) is False
    after = copy.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert export_onnx.main(["--output", str(copy)]) == 0


@pytest.mark.slow
def test_stale_models_are_not_current(onnx_model: Path, tmp_path: Path) -> None:
    recipe = with_metadata(onnx_model, tmp_path / "a.onnx", {onnx_file.META_RECIPE: "old"})
    source = with_metadata(onnx_model, tmp_path / "b.onnx", {onnx_file.META_SOURCE: "x==0"})
    assert not is_current(recipe)
    assert not is_current(source)


@pytest.mark.slow
def test_export_writes_a_self_contained_model_once(onnx_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "models" / "m.onnx"
    assert export_model(target) is True
    assert leftovers(target.parent) == ["m.onnx"]
    stamp = target.stat().st_mtime_ns
    assert export_model(target) is False
    assert target.stat().st_mtime_ns == stamp
    # The same recipe gives the same model: the same vectors as the shared one.
    texts = ["How do I reset the device?", "Hold the power button for ten seconds."]
    fresh = OnnxEmbedder(target, threads=1).embed(texts)
    shared = OnnxEmbedder(onnx_model, threads=1).embed(texts)
    assert abs(fresh - shared).max() < 1e-6
    # Forced, it writes again (atomically: a new file renamed over the old one).
    inode = target.stat().st_ino
    assert export_model(target, force=True) is True
    assert target.stat().st_ino != inode
    assert leftovers(target.parent) == ["m.onnx"]
    assert os.access(target, os.R_OK)
