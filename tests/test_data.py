import gzip
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.data.mnist import (
    MNIST_FILES,
    DataError,
    load_dir,
    make_split,
    parse_idx,
    read_file_bytes,
    resolve_mnist,
    write_idx,
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.booleans(), st.integers(0, 2**32 - 1))
def test_idx_round_trip(tmp_path_factory, shape, compressed, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if compressed else "a.idx")
    write_idx(path, array)
    out = parse_idx(read_file_bytes(path), str(path))
    assert out.shape == tuple(shape)
    np.testing.assert_array_equal(out, array)


def _idx_bytes(array):
    import struct

    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_truncated_data_is_named():
    raw = _idx_bytes(np.zeros((3, 4), np.uint8))
    with pytest.raises(DataError, match="f.idx: truncated IDX data"):
        parse_idx(raw[:-1], "f.idx")


def test_truncated_header():
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]), "f")


def test_wrong_magic():
    with pytest.raises(DataError, match="wrong magic number 0x12340803"):
        parse_idx(bytes([0x12, 0x34, 8, 3]) + b"\0" * 20, "f")


def test_trailing_bytes_are_corrupt():
    with pytest.raises(DataError, match="trailing bytes"):
        parse_idx(_idx_bytes(np.zeros((2,), np.uint8)) + b"x", "f")


def test_corrupt_gzip_is_named(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"hello world" * 100)[:-20])
    with pytest.raises(DataError, match="x.gz: truncated or corrupt gzip"):
        read_file_bytes(path)


def test_real_files_verify(mnist_path):
    m = resolve_mnist(mnist_path)
    assert m.train_images.shape == (60000, 28, 28) and m.test_labels.shape == (10000,)
    # spot check from the data README: training image 0 is a 5, row 5 as published
    assert int(m.train_labels[0]) == 5
    assert m.train_images[0, 5, 12:16].tolist() == [3, 18, 18, 18]


def test_wrong_checksum_is_rejected(mnist_path, tmp_path):
    for name in MNIST_FILES:
        shutil.copy(mnist_path / name, tmp_path / name)
    raw = bytearray((tmp_path / "t10k-labels-idx1-ubyte").read_bytes())
    raw[100] = (raw[100] + 1) % 10  # a valid-looking but wrong label
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: checksum mismatch"):
        load_dir(tmp_path)


def test_explicit_dir_never_falls_back(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_BENCH_DATA", raising=False)
    with pytest.raises(DataError, match="MNIST from --data-dir failed: .*missing"):
        resolve_mnist(tmp_path, cache_root=tmp_path / "cache")


def test_env_var_is_the_only_source(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_BENCH_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"\$MNIST_BENCH_DATA"):
        resolve_mnist(None, cache_root=tmp_path / "cache")


def test_all_sources_listed_when_all_fail(tmp_path, monkeypatch):
    import bench.data.mnist as data

    monkeypatch.delenv("MNIST_BENCH_DATA", raising=False)
    monkeypatch.setattr(data, "_torchvision_source", lambda root: (_ for _ in ()).throw(OSError("no network")))
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(DataError) as e:
        resolve_mnist(None, cache_root=tmp_path / "cache")
    msg = str(e.value)
    assert "cache" in msg and "torchvision downloader: no network" in msg and "npm is not on PATH" in msg


def test_cache_is_filled_and_used(mnist_path, tmp_path, monkeypatch):
    import bench.data.mnist as data

    monkeypatch.delenv("MNIST_BENCH_DATA", raising=False)
    monkeypatch.setattr(data, "_torchvision_source", lambda root: mnist_path)  # stands in for the download
    first = resolve_mnist(None, cache_root=tmp_path)
    assert first.source == "torchvision downloader"
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(MNIST_FILES)
    second = resolve_mnist(None, cache_root=tmp_path)
    assert second.source.startswith("cache")


def test_split_normalization_and_batches(mnist_path):
    import torch

    m = resolve_mnist(mnist_path)
    s = make_split(m.test_images, m.test_labels, "minmax", "cpu", limit=100)
    assert s.x.shape == (100, 1, 28, 28) and 0 <= float(s.x.min()) and float(s.x.max()) <= 1
    std = make_split(m.train_images, m.train_labels, "standard", "cpu", limit=20000)
    assert abs(float(std.x.mean())) < 0.05 and abs(float(std.x.std()) - 1) < 0.05
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    b1 = [y for _, y in s.batches(32, g1)]
    b2 = [y for _, y in s.batches(32, g2)]
    assert all(torch.equal(a, b) for a, b in zip(b1, b2))
    assert [len(y) for y in b1] == [32, 32, 32]  # shuffled: full batches only
    from collections import Counter

    assert not Counter(torch.cat(b1).tolist()) - Counter(s.y.tolist())  # drawn without replacement
    assert [len(y) for _, y in s.batches(32)] == [32, 32, 32, 4]  # in order: every sample


def test_tests_read_the_cache_the_main_job_filled(tmp_path, mnist_path):
    """Outside this repository's layout (no ../shared) and with MNIST_BENCH_DATA unset, the tests
    read data/MNIST/raw, which 'mnist-bench run' or 'mnist-bench data' fills."""
    from bench.cli import main

    from .conftest import mnist_dir

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    assert mnist_dir({}, checkout) is None
    assert main(["data", "--data-dir", str(mnist_path), "--cache", str(checkout / "data")]) == 0
    assert mnist_dir({}, checkout) == (checkout / "data" / "MNIST" / "raw").resolve()
    assert mnist_dir({"MNIST_BENCH_DATA": str(mnist_path)}, checkout) == mnist_path


def test_shift_augmentation_moves_whole_batches_by_a_seeded_random_offset():
    import torch

    from bench.data.mnist import MAX_SHIFT, augmenter

    assert augmenter("none", 0) is None
    x = torch.zeros(3, 1, 28, 28)
    x[:, :, 14, 14] = 1.0  # one lit pixel per image: where it lands is the shift
    moves = []
    for f in (augmenter("shift", 7), augmenter("shift", 7)):
        out = [f(x) for _ in range(20)]
        lit = [(o[0, 0] == 1).nonzero()[0].tolist() for o in out]
        assert all((o[0] == o[i]).all() for o in out for i in range(3))  # one shift for the whole batch
        moves.append([(r - 14, c - 14) for r, c in lit])
    assert moves[0] == moves[1]  # the same seed, the same shifts
    assert all(abs(dy) <= MAX_SHIFT and abs(dx) <= MAX_SHIFT for dy, dx in moves[0])
    assert len(set(moves[0])) > 3  # and they vary
