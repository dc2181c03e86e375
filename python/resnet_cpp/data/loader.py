"""DataLoader: deterministic shuffled batches, optional augmentation, background prefetch.

Every batch is a pure function of (seed, epoch, batch index): the epoch's permutation comes
from SeedSequence([seed, epoch, _SHUFFLE]) and the batch's augmentation seed from
SeedSequence([seed, epoch, batch, _AUGMENT]). So ``iter_from(k)`` yields exactly the tail of
a full epoch, and a run resumed from a checkpoint sees the same data as one never stopped.
With ``shard=(index, count)`` (data-parallel training) each process takes its contiguous
part of every batch, and images are augmented by their place in the whole batch, so the
processes' parts together are exactly the batch one process would see.

Batches are gathered and scaled (and normalized, without augmentation) in a daemon thread
and handed over through a bounded queue of ``prefetch`` batches; augmentation, which runs
OpenMP threads in C++, happens in the consumer's thread. The thread stops when the epoch
ends, when the iterator is closed, or when the iterator is garbage collected (abandoned
mid-epoch); an exception raised while building a batch is re-raised in the consumer at
that batch.
"""
from __future__ import annotations

import queue
import threading
import weakref
from typing import Any, Callable, Iterator

import numpy as np

from ..functional.augment import random_crop_flip
from .datasets import Dataset

__all__ = ["DataLoader"]

# Stream tags keep the shuffle and augmentation random streams independent.
_SHUFFLE = 0x5EED_0001
_AUGMENT = 0x5EED_0002
_POLL_S = 0.05  # how often a blocked worker re-checks the stop flag


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _channel_vector(v: Any, c: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, c)
    if a.size != c:
        raise ValueError(f"{name} must have one value per channel ({c}), got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


class DataLoader:
    """Iterate a Dataset in batches ``(x float32 (B,C,H,W), y int64 (B,))``.

    Args:
        dataset: the Dataset to draw from.
        batch_size: images per batch (>= 1); the last batch may be smaller unless drop_last.
        shuffle: a fresh permutation each epoch (deterministic in (seed, epoch)).
        augment: random crop after zero-padding by ``padding`` pixels and, if ``flip``, a
            random horizontal flip (``functional.random_crop_flip``, in C++), applied on the
            [0,1] scale before normalization, so padded pixels are black as in torchvision.
        mean, std: per-channel normalization ``(x - mean) / std`` on the [0,1] scale
            (e.g. from ``channel_stats(train)``); None leaves x in [0,1].
        seed: base seed (>= 0) for shuffling and augmentation.
        drop_last: drop a final incomplete batch.
        prefetch: batches built ahead in a background thread; 0 builds them in the
            consumer's thread.
        shard: ``(index, count)``: yield only part ``index`` of ``count`` of every batch
            (contiguous, sizes differing by at most one; ``batch_size`` is then the whole
            batch over all parts). A batch smaller than ``count`` leaves some parts empty.
    Call ``set_epoch(epoch)`` before iterating each epoch; ``len(loader)`` is the number of
    batches per epoch and ``iter_from(k)`` resumes an epoch at batch k.
    """

    # What the loader reads; subclasses for other dataset types (images.ImageLoader) widen it.
    dataset_types: tuple = (Dataset,)

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = True,
                 augment: bool = False, padding: int = 4, flip: bool = True,
                 mean: Any = None, std: Any = None, seed: int = 0, drop_last: bool = False,
                 prefetch: int = 2, shard: tuple[int, int] = (0, 1)) -> None:
        if not isinstance(dataset, self.dataset_types):
            raise TypeError(f"dataset must be a resnet_cpp.data."
                            f"{' or '.join(t.__name__ for t in self.dataset_types)}, "
                            f"got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError(f"dataset {dataset.name!r} is empty")
        self.dataset = dataset
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.padding = _check_int(padding, "padding", 0)
        self.seed = _check_int(seed, "seed", 0)
        self.prefetch = _check_int(prefetch, "prefetch", 0)
        self.shuffle, self.augment, self.flip = bool(shuffle), bool(augment), bool(flip)
        self.drop_last = bool(drop_last)
        if not (isinstance(shard, tuple) and len(shard) == 2):
            raise TypeError(f"shard must be a tuple (index, count), got {shard!r}")
        count = _check_int(shard[1], "shard count", 1)
        index = _check_int(shard[0], "shard index", 0)
        if index >= count:
            raise ValueError(f"shard index must be < shard count {count}, got {index}")
        self.shard = (index, count)
        self.epoch = 0
        c = dataset.shape[0]
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if mean is None:
            self.mean = self.std = None
            self._scale = None
        else:
            m = _channel_vector(mean, c, "mean")
            s = _channel_vector(std, c, "std")
            if np.any(s <= 0):
                raise ValueError(f"std must be > 0, got {s.tolist()}")
            self.mean, self.std = m.astype(np.float32), s.astype(np.float32)
            # (x - mean) / std as one multiply-add per element: x * (1/std) + (-mean/std).
            self._scale = (1.0 / s).astype(np.float32).reshape(1, c, 1, 1)
            self._shift = (-m / s).astype(np.float32).reshape(1, c, 1, 1)
        if len(self) == 0:
            raise ValueError(f"drop_last with batch_size {self.batch_size} > "
                             f"{len(dataset)} images leaves no batch")

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation/augmentation the next iteration uses."""
        self.epoch = _check_int(epoch, "epoch", 0)

    def permutation(self, epoch: int | None = None) -> np.ndarray:
        """Sample order of an epoch (int64 (N,)); identity when shuffle is off."""
        epoch = self.epoch if epoch is None else _check_int(epoch, "epoch", 0)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        ss = np.random.SeedSequence([self.seed, epoch, _SHUFFLE])
        return np.random.Generator(np.random.PCG64(ss)).permutation(n)

    def augment_seed(self, epoch: int, batch: int) -> int:
        """Seed passed to random_crop_flip for one batch (63-bit, >= 0)."""
        ss = np.random.SeedSequence([self.seed, epoch, batch, _AUGMENT])
        return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))

    def batch_len(self, batch: int) -> int:
        """Images in batch ``batch`` of an epoch, over all shards."""
        return min(self.batch_size, len(self.dataset) - batch * self.batch_size)

    def shard_rows(self, batch: int) -> tuple[int, int]:
        """This shard's part of batch ``batch``: rows [lo, hi) of the epoch's order."""
        index, count = self.shard
        start, n = batch * self.batch_size, self.batch_len(batch)
        return start + n * index // count, start + n * (index + 1) // count

    def gather_batch(self, perm: np.ndarray, epoch: int, batch: int
                     ) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
        """Stage 1 of batch ``batch`` of the epoch ordered by ``perm`` (prefetch thread).

        Gathers this shard's images, scales them to [0,1] and, without augmentation,
        normalizes. Returns (x, y, None or, to augment, (seed, the first image's place in
        the whole batch)). NumPy only, no OpenMP.
        """
        lo, hi = self.shard_rows(batch)
        idx = perm[lo:hi]
        raw = self.dataset.raw[idx]
        y = self.dataset.labels[idx]
        if raw.dtype == np.uint8:  # to [0,1] as x / 255, as torchvision's ToTensor
            x = np.divide(raw, np.float32(255), dtype=np.float32)
        else:
            x = raw  # already a float32 copy made by the fancy index
        if self.augment:
            return x, y, (self.augment_seed(epoch, batch), lo - batch * self.batch_size)
        self._normalize(x)
        return x, y, None

    def finish_batch(self, item: tuple[np.ndarray, np.ndarray, tuple[int, int] | None]
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2 (consumer thread): random crop/flip, then normalization.

        random_crop_flip runs an OpenMP team of ``resnet_cpp.num_threads()`` threads; calling
        it from the training thread keeps one team at a time, where a second team started
        from the prefetch thread would oversubscribe the cores the model is using.
        """
        x, y, aug = item
        if aug is None or len(x) == 0:
            return x, y
        seed, first = aug
        x = random_crop_flip(x, padding=self.padding, flip=self.flip, seed=seed,
                             layout="NCHW", first_index=first)
        self._normalize(x)
        return x, y

    def make_batch(self, perm: np.ndarray, epoch: int, batch: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``batch`` of the epoch ordered by ``perm``: (x (B,C,H,W), y (B,))."""
        return self.finish_batch(self.gather_batch(perm, epoch, batch))

    def _normalize(self, x: np.ndarray) -> None:
        if self._scale is not None:
            x *= self._scale
            x += self._shift

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.iter_from(0)

    def iter_from(self, batch_index: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate the current epoch starting at batch ``batch_index`` (0 <= k <= len)."""
        start = _check_int(batch_index, "batch_index", 0)
        if start > len(self):
            raise ValueError(f"batch_index {start} is past the end of the epoch "
                             f"({len(self)} batches)")
        epoch, perm = self.epoch, self.permutation()
        batches = range(start, len(self))
        if self.prefetch == 0:
            return (self.make_batch(perm, epoch, b) for b in batches)
        gather = self.gather_batch

        def produce(b: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
            return gather(perm, epoch, b)

        return _PrefetchIterator(produce, self.finish_batch, batches, self.prefetch)

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset.name!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, augment={self.augment}, seed={self.seed}, "
                f"epoch={self.epoch}, batches={len(self)}, shard={self.shard})")


class _Failure:
    """Wraps an exception raised in the worker so the consumer can re-raise it."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless stopped; polls so an abandoned consumer cannot block the worker forever."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _worker(produce: Callable[[int], Any], batches: range, q: queue.Queue,
            stop: threading.Event) -> None:
    # Holds no reference to the _PrefetchIterator, so abandoning that lets it be collected.
    for b in batches:
        if stop.is_set():
            return
        try:
            item = produce(b)
        except BaseException as e:  # re-raised in the consumer
            _put(q, _Failure(e), stop)
            return
        if not _put(q, item, stop):
            return
    _put(q, _END, stop)


def _shutdown(stop: threading.Event, q: queue.Queue, thread: threading.Thread) -> None:
    stop.set()
    while True:  # free the queued batches now
        try:
            q.get_nowait()
        except queue.Empty:
            break
    if thread is not threading.current_thread():
        thread.join()


class _PrefetchIterator:
    """Consumer side of the prefetch queue; ``close()`` (or GC) stops the worker.

    The worker runs ``produce(b)`` for each batch index; ``finish`` runs on each item in
    the consumer's thread.
    """

    def __init__(self, produce: Callable[[int], Any], finish: Callable[[Any], Any],
                 batches: range, depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_worker, name="resnet_cpp-prefetch",
                                        args=(produce, batches, self._queue, self._stop),
                                        daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._queue,
                                           self._thread)
        self._finish = finish
        self._done = False

    def __iter__(self) -> _PrefetchIterator:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self._done:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError("DataLoader prefetch thread exited without "
                                       "finishing the epoch") from None
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.exc
        try:
            return self._finish(item)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the background thread and drop prefetched batches (idempotent)."""
        self._done = True
        self._finalizer()

    def __enter__(self) -> _PrefetchIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
