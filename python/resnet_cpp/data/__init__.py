"""Datasets and batching: readers, ``load_dataset``, ``channel_stats``, ``DataLoader``.

    train, test = load_dataset("bundled")            # small Fashion-MNIST subset, shipped
    mean, std = channel_stats(train)
    loader = DataLoader(train, 128, augment=True, mean=mean, std=std, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:                             # x float32 (B,C,H,W), y int64 (B,)
            ...
"""
from __future__ import annotations

from .datasets import (
    BUNDLED_PATH,
    DATASET_NAMES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    MAX_CLASSES,
    Dataset,
    channel_stats,
    load_dataset,
)
from .images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDataset,
    ImageLoader,
    Preprocess,
    image_files,
    image_folder,
    load_image_folder,
)
from .loader import DataLoader
from .readers import (
    MAX_PAYLOAD_BYTES,
    RestrictedUnpickler,
    UnsafePickleError,
    read_cifar_batch,
    read_cifar_meta,
    read_idx,
    read_idx_pair,
    read_npz,
    restricted_load,
)

__all__ = [
    "BUNDLED_PATH",
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_CLASSES",
    "MAX_PAYLOAD_BYTES",
    "DataLoader",
    "Dataset",
    "ImageDataset",
    "ImageLoader",
    "Preprocess",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "channel_stats",
    "image_files",
    "image_folder",
    "load_dataset",
    "load_image_folder",
    "read_cifar_batch",
    "read_cifar_meta",
    "read_idx",
    "read_idx_pair",
    "read_npz",
    "restricted_load",
]
