"""Datasets, the IDX reader, torchvision layouts and batch augmentation, on real files.

Fashion-MNIST comes from the Debian package; the torchvision datasets are small files written here in
each dataset's real on-disk format, so the loaders run exactly the code they run on the full data.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from none_sweep.config import DataConfig
from none_sweep.data import (
    DATASETS,
    augment_batch,
    crop_padding,
    dataset_info,
    load_dataset,
    normalize,
    read_idx,
)
from none_sweep.data.augment import random_crop, random_flip
from none_sweep.data.fashion_mnist import DEBIAN_DIR
from none_sweep.errors import ConfigError, DataError

needs_debian_fmnist = pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="needs the Debian package dataset-fashion-mnist",
)


# ------------------------------------------------------------------------------------------ file writers


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format: magic 00 00 08 ndim, big-endian dims, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_mnist_arrays(rng: np.random.Generator, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def cifar_batch(rng: np.random.Generator, n: int, classes: int, label_key: str) -> dict:
    """One CIFAR batch: ``data`` rows are 1024 R, 1024 G, 1024 B values (row-major 32×32)."""
    return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: rng.integers(0, classes, n).tolist()}


def write_cifar10(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    folder = root / "cifar-10-batches-py"
    batches = {f"data_batch_{i}": cifar_batch(rng, 4, 10, "labels") for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(rng, 5, 10, "labels")
    for name, batch in batches.items():
        write_pickle(folder / name, batch)
    write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return batches


def write_cifar100(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    folder = root / "cifar-100-python"
    batches = {"train": cifar_batch(rng, 6, 100, "fine_labels"), "test": cifar_batch(rng, 3, 100, "fine_labels")}
    for name, batch in batches.items():
        batch["coarse_labels"] = [label // 5 for label in batch["fine_labels"]]
        write_pickle(folder / name, batch)
    write_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    return batches


def write_gtsrb(root: Path, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """One training PPM per class (43 folders, as the real set) of varying size, and a 3-image test split."""
    base = root / "gtsrb"
    train_labels = []
    for cls in range(43):
        h, w = 25 + cls % 7, 30 + cls % 5
        folder = base / "GTSRB" / "Training" / f"{cls:05d}"
        folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"00000_{cls:05d}.ppm")
        (folder / f"GT-{cls:05d}.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n")
        train_labels.append(cls)
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    test_labels = [7, 42, 0]
    with open(base / "GT-final_test.csv", "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"])
        for i, cls in enumerate(test_labels):
            Image.fromarray(rng.integers(0, 256, (40 + i, 33, 3), dtype=np.uint8)).save(test_dir / f"{i:05d}.ppm")
            writer.writerow([f"{i:05d}.ppm", 33, 40 + i, 5, 5, 28, 35, cls])
    return train_labels, test_labels


@pytest.fixture(scope="module")
def fmnist():
    return load_dataset(DataConfig(), seed=0)


# ------------------------------------------------------------------------------------------ registry/info


def test_registry_lists_every_dataset():
    # bench.bench_sweep registers a synthetic "bench-*" set when its smoke test imports it
    shipped = {name for name in DATASETS.names() if not name.startswith("bench-")}
    assert shipped == {"fashion-mnist", "digits", "mnist", "cifar10", "cifar100", "gtsrb"}


@pytest.mark.parametrize(
    "name, classes, channels, size, augmentation",
    [
        ("fashion-mnist", 10, 1, 28, "crop"),
        ("mnist", 10, 1, 28, "crop"),
        ("digits", 10, 1, 8, "none"),
        ("cifar10", 10, 3, 32, "crop_flip"),
        ("cifar100", 100, 3, 32, "crop_flip"),
        ("gtsrb", 43, 3, 32, "crop"),
    ],
)
def test_dataset_info_is_static(name, classes, channels, size, augmentation):
    info = dataset_info(name)
    assert (info.num_classes, info.channels, info.size, info.augmentation) == (classes, channels, size, augmentation)
    assert len(info.mean) == len(info.std) == channels


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        dataset_info("cifar1O")


# ------------------------------------------------------------------------------------------ fashion-mnist


@needs_debian_fmnist
def test_fashion_mnist_from_debian_files(fmnist):
    assert fmnist.train_x.shape == (60000, 1, 28, 28) and fmnist.test_x.shape == (10000, 1, 28, 28)
    assert fmnist.train_x.dtype == torch.uint8 and fmnist.train_y.dtype == torch.int64
    assert torch.equal(torch.bincount(fmnist.train_y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(fmnist.test_y), torch.full((10,), 1000))
    assert fmnist.info.name == "fashion-mnist"
    assert abs(fmnist.train_x.float().mean().item() / 255 - fmnist.info.mean[0]) < 1e-3


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_root_in_torchvision_layout(tmp_path, gz):
    arrays = fake_mnist_arrays(np.random.default_rng(0))
    for stem, array in arrays.items():
        write_idx(tmp_path / "FashionMNIST" / "raw" / (stem + (".gz" if gz else "")), array, gz=gz)
    data = load_dataset(DataConfig(root=str(tmp_path)), seed=0)
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(data.test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())


def test_fashion_mnist_missing_root_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="download"):
        load_dataset(DataConfig(root=str(tmp_path / "nowhere")), seed=0)


def test_fashion_mnist_truncated_file_names_it(tmp_path):
    for stem, array in fake_mnist_arrays(np.random.default_rng(0)).items():
        write_idx(tmp_path / "FashionMNIST" / "raw" / stem, array)
    bad = tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-7])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_dataset(DataConfig(root=str(tmp_path)), seed=0)


# ------------------------------------------------------------------------------------------ IDX reader


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x.idx", array, gz=gz)
    assert torch.equal(read_idx(path, ndim=3), torch.from_numpy(array))


def test_idx_reader_rejects_wrong_magic(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 3) + b"\x00" * 12)  # float IDX
    with pytest.raises(DataError, match="x.idx.*magic"):
        read_idx(path)


def test_idx_reader_rejects_wrong_dimension_count(tmp_path):
    path = write_idx(tmp_path / "labels.idx", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match="1 dimensions, expected 3"):
        read_idx(path, ndim=3)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_rejects_truncated_file(tmp_path, gz):
    data = idx_bytes(np.ones((4, 5, 5), dtype=np.uint8))[:-3]
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_idx_reader_rejects_truncated_gzip(tmp_path):
    path = tmp_path / "x.idx.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((50, 5), dtype=np.uint8)))[:-10])
    with pytest.raises(DataError, match="x.idx.gz"):
        read_idx(path)


# ------------------------------------------------------------------------------------------ digits


def test_digits_stratified_seeded_split():
    data = load_dataset(DataConfig(name="digits"), seed=3)
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    assert int(data.train_x.max()) == 255 and int(data.train_x.min()) == 0
    assert torch.bincount(data.test_y, minlength=10).min() >= 35  # stratified: ~36 per class
    again = load_dataset(DataConfig(name="digits"), seed=3)
    other = load_dataset(DataConfig(name="digits"), seed=4)
    assert torch.equal(again.test_x, data.test_x)
    assert not torch.equal(other.test_x, data.test_x)


# ------------------------------------------------------------------------------------------ torchvision layouts


def test_mnist_from_torchvision_raw_layout(tmp_path):
    arrays = fake_mnist_arrays(np.random.default_rng(1))
    for stem, array in arrays.items():
        write_idx(tmp_path / "MNIST" / "raw" / stem, array)
    data = load_dataset(DataConfig(name="mnist", root=str(tmp_path)), seed=0)
    assert data.train_x.shape == (20, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(data.test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())


def test_cifar10_from_pickled_batches(tmp_path):
    batches = write_cifar10(tmp_path, np.random.default_rng(2))
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (5, 3, 32, 32)
    first = torch.from_numpy(batches["data_batch_1"]["data"][1].reshape(3, 32, 32))  # CHW in the file
    assert torch.equal(data.train_x[1], first)
    assert data.train_y.tolist() == sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    assert data.test_y.tolist() == batches["test_batch"]["labels"]


def test_cifar100_uses_fine_labels(tmp_path):
    batches = write_cifar100(tmp_path, np.random.default_rng(3))
    data = load_dataset(DataConfig(name="cifar100", root=str(tmp_path)), seed=0)
    assert data.train_x.shape == (6, 3, 32, 32)
    assert data.train_y.tolist() == batches["train"]["fine_labels"]
    assert torch.equal(data.test_x[2], torch.from_numpy(batches["test"]["data"][2].reshape(3, 32, 32)))


def test_cifar10_corrupt_batch_is_a_data_error_naming_the_folder(tmp_path):
    write_cifar10(tmp_path, np.random.default_rng(2))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)


def test_gtsrb_resizes_signs_to_32(tmp_path):
    train_labels, test_labels = write_gtsrb(tmp_path, np.random.default_rng(4))
    data = load_dataset(DataConfig(name="gtsrb", root=str(tmp_path)), seed=0)
    assert data.train_x.shape == (43, 3, 32, 32) and data.test_x.shape == (3, 3, 32, 32)
    assert data.train_y.tolist() == train_labels
    assert data.test_y.tolist() == test_labels


def test_gtsrb_missing_class_folder_is_a_data_error(tmp_path):
    write_gtsrb(tmp_path, np.random.default_rng(4))
    folder = tmp_path / "gtsrb" / "GTSRB" / "Training" / "00042"
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()
    with pytest.raises(DataError, match="42 class folders"):
        load_dataset(DataConfig(name="gtsrb", root=str(tmp_path)), seed=0)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "gtsrb"])
def test_missing_torchvision_data_says_download(tmp_path, name):
    with pytest.raises(DataError, match=f"{name}: no data in .*data.download: true"):
        load_dataset(DataConfig(name=name, root=str(tmp_path)), seed=0)


# ------------------------------------------------------------------------------------------ subsets


@needs_debian_fmnist
def test_subsets_are_sorted_and_sized(fmnist):
    a = load_dataset(DataConfig(train_subset=300, test_subset=50), seed=7)
    assert a.train_x.shape[0] == 300 and a.test_x.shape[0] == 50
    weights = torch.randn(28 * 28, dtype=torch.float64)
    full_keys = {float(k): i for i, k in enumerate(fmnist.train_x.view(60000, -1).double() @ weights)}
    positions = [full_keys[float(k)] for k in a.train_x.view(300, -1).double() @ weights]
    assert positions == sorted(positions)
    assert torch.equal(a.train_y, fmnist.train_y[positions])


def test_subsets_are_seeded():
    cfg = DataConfig(name="digits", train_subset=100, test_subset=30)
    a, b, c = (load_dataset(cfg, seed=s) for s in (7, 7, 8))
    assert a.train_x.shape == (100, 1, 8, 8) and a.test_y.shape == (30,)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)


def test_subset_larger_than_dataset_is_a_data_error():
    with pytest.raises(DataError, match="data.test_subset=400 exceeds the 360"):
        load_dataset(DataConfig(name="digits", test_subset=400), seed=0)


# ------------------------------------------------------------------------------------------ augmentation


def images(n: int = 16, size: int = 12, channels: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8)


@pytest.mark.parametrize("augmentation", ["crop", "crop_flip"])
def test_augment_is_deterministic_for_a_seeded_generator(augmentation):
    x = images()
    a = augment_batch(x, augmentation, torch.Generator().manual_seed(5))
    b = augment_batch(x, augmentation, torch.Generator().manual_seed(5))
    c = augment_batch(x, augmentation, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_augment_none_returns_the_batch():
    x = images()
    assert augment_batch(x, "none", torch.Generator().manual_seed(0)) is x


def test_random_crop_is_a_window_of_the_zero_padded_image():
    x, pad = images(n=32), 2
    out = random_crop(x, pad, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    h = x.shape[-1]
    windows = [
        {
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + h])
        }
        for i in range(len(x))
    ]
    assert all(windows), "every crop must be some window of its own padded image"
    assert len(set().union(*windows)) > 5, "offsets must vary per sample"


def test_crop_works_on_float_input():
    x = images().float() / 255
    out = augment_batch(x, "crop", torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == x.shape


def test_random_flip_flips_exactly_the_drawn_samples():
    x = images(n=64)
    out = random_flip(x, torch.Generator().manual_seed(9))
    chosen = torch.rand(64, generator=torch.Generator().manual_seed(9)) < 0.5
    assert 0 < int(chosen.sum()) < 64
    assert torch.equal(out[chosen], x[chosen].flip(-1))
    assert torch.equal(out[~chosen], x[~chosen])


def test_crop_flip_without_padding_only_flips():
    x = images(n=64)
    out = augment_batch(x, "crop_flip", torch.Generator().manual_seed(2), padding=0)
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all()) and same.any() and flipped.any()


def test_crop_padding_matches_common_practice():
    assert (crop_padding(32), crop_padding(28), crop_padding(8)) == (4, 3, 1)


def test_normalize_per_channel():
    info = dataset_info("cifar10")
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    out = normalize(x, info)
    assert out.dtype == torch.float32
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx(-info.mean[c] / info.std[c], rel=1e-5)
        assert out[1, c, 1, 1].item() == pytest.approx((1 - info.mean[c]) / info.std[c], rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_on_cuda_matches_shape_and_is_deterministic():
    x = images().cuda()
    a = augment_batch(x, "crop_flip", torch.Generator(device="cuda").manual_seed(0))
    b = augment_batch(x, "crop_flip", torch.Generator(device="cuda").manual_seed(0))
    assert a.is_cuda and torch.equal(a, b) and a.shape == x.shape


def test_a_trial_worker_does_not_pay_for_importing_scikit_learn() -> None:
    """Every fresh Ray worker imports the training core; scikit-learn (~5 s) loads only when digits is used."""
    import subprocess
    import sys

    code = "import sys, none_sweep.train, none_sweep.data; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
