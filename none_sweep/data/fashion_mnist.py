"""Fashion-MNIST, the default: read from the Debian package's IDX files, a torchvision-layout root, or a download.

The Debian package ``dataset-fashion-mnist`` makes the default config run offline; torchvision is only
needed when ``data.download`` is true.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..config.schema import DataConfig
from ..errors import DataError
from ._base import DatasetInfo, Splits, data_root, default_root, register_dataset
from .idx import find_idx, read_idx

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

INFO = DatasetInfo(
    name="fashion-mnist",
    num_classes=10,
    channels=1,
    size=28,
    mean=(0.2860,),
    std=(0.3530,),
    augmentation="crop",
)


@register_dataset(INFO)
def load_fashion_mnist(cfg: DataConfig, seed: int) -> Splits:
    """Both splits from the first folder holding all four IDX files; download only when allowed."""
    folders = _candidate_folders(cfg)
    folder = next((f for f in folders if _has_all_files(f)), None)
    if folder is None and cfg.download:
        folder = _download(data_root(cfg))
    if folder is None:
        raise DataError(_missing_message(cfg, folders))
    try:
        return read_idx_folder(folder)
    except DataError as exc:
        fix = (
            "reinstall them (apt-get install --reinstall dataset-fashion-mnist)"
            if folder == DEBIAN_DIR
            else f"restore the files in {folder}, or set data.download: true with an empty data.root"
        )
        raise DataError(f"{exc}; {fix}") from None


def read_idx_folder(folder: Path) -> Splits:
    """The four (Fashion-)MNIST IDX files in ``folder`` as uint8 ``[N, 1, 28, 28]`` images and int64 labels."""
    train_x, train_y, test_x, test_y = (_read(folder, stem) for stem in _STEMS)
    return Splits(train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long())


def _read(folder: Path, stem: str) -> Tensor:
    path = find_idx(folder, stem)
    if path is None:
        raise DataError(f"{folder}: missing {stem}(.gz)")
    return read_idx(path, ndim=3 if "images" in stem else 1)


def _candidate_folders(cfg: DataConfig) -> list[Path]:
    """With ``data.root``: torchvision's layout (or the files directly in it); else the Debian folder and our cache."""
    if cfg.root:
        root = data_root(cfg)
        return [root / "FashionMNIST" / "raw", root]
    return [DEBIAN_DIR, default_root() / "FashionMNIST" / "raw"]


def _has_all_files(folder: Path) -> bool:
    return all(find_idx(folder, stem) is not None for stem in _STEMS)


def _download(root: Path) -> Path:
    """Fetch through torchvision (which checks the archives' MD5) into ``root/FashionMNIST/raw``."""
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root), train=True, download=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"fashion-mnist: download into {root} failed ({type(exc).__name__}: {exc})") from None
    return root / "FashionMNIST" / "raw"


def _missing_message(cfg: DataConfig, folders: list[Path]) -> str:
    if cfg.root:
        return (
            f"fashion-mnist: no IDX files in {folders[0]} or {folders[1]}; put train-images-idx3-ubyte(.gz) etc. "
            "there (torchvision's layout), or set data.download: true"
        )
    return (
        f"fashion-mnist: no IDX files in {DEBIAN_DIR}; install them with `apt-get install -y dataset-fashion-mnist`, "
        "or set data.root to a folder in torchvision's layout (ROOT/FashionMNIST/raw), or data.download: true"
    )
