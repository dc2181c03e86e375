"""The training step on the GPU, used by ``rc.train.fit(..., device="cuda")``.

- Batches are finished on the host (augmentation, normalization) in a background thread and
  written into pinned (page-locked) host memory (:class:`PinnedBatches`), while the device
  runs the previous step.
- Each batch is copied to the device asynchronously on a copy stream; the compute stream
  waits for the copy with an event, not the host.
- The step (forward, loss, backward, optimizer update) is issued without waiting for the
  device; then the loss and the logits come back with one host synchronization.
- With ``cuda_graph=True`` the whole step is captured once per batch shape in a CUDA graph
  and replayed: one launch instead of hundreds. The optimizer's lr and step count live in
  device scalars written before each replay (``Optimizer.prepare_step``), and the host-side
  counters a step bumps (BN ``num_batches_tracked``) are replayed by the host. A batch of
  another size (an epoch's last) runs eagerly.
- Memory comes from the extension's caching allocator: after the first steps no step
  allocates device memory (``resnet_cpp._cuda.allocator_stats()``).
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from .. import backend

__all__ = ["PinnedBatches", "CudaTrainStep"]

_END = object()


class PinnedBatches:
    """Iterate ``(x, y)`` host batches copied into pinned memory by a background thread.

    ``depth`` pinned slots circulate: the consumer hands one back with :meth:`release` once
    the device has finished copying from it (after the step's synchronization).
    ``check_labels(y)`` runs on each batch in the thread (bad labels raise at that batch).
    """

    def __init__(self, batches, depth: int = 3, check_labels=None) -> None:
        self._cuda = backend.require_cuda()
        self._source = iter(batches)
        self._free: queue.Queue = queue.Queue()
        self._ready: queue.Queue = queue.Queue()
        self._slots: list = []
        self._depth = depth
        self._check = check_labels
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="resnet_cpp-pinned", daemon=True)
        self._thread.start()

    def _new_slot(self, x: np.ndarray, y: np.ndarray):
        return (self._cuda.pinned_empty(x.shape, "float32"), self._cuda.pinned_empty(y.shape, "int64"))

    def _slot(self, x: np.ndarray, y: np.ndarray):
        """A free pinned slot holding at least this batch (the first batch sizes the pool; a
        larger one, rare, gets a slot of its own)."""
        if len(self._slots) < self._depth:
            self._slots.append(self._new_slot(x, y))
            return self._slots[-1]
        if len(y) > len(self._slots[0][1]) or x.shape[1:] != self._slots[0][0].shape[1:]:
            return self._new_slot(x, y)
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    def _work(self) -> None:
        try:
            for x, y in self._source:
                y = np.asarray(y)
                if self._check is not None:
                    self._check(y)
                slot = self._slot(x, y)
                if slot is None:
                    return
                n = len(y)
                xs, ys = slot[0][:n], slot[1][:n]
                np.copyto(xs, x)
                np.copyto(ys, y, casting="same_kind")
                self._ready.put((slot, xs, ys))
            self._ready.put(_END)
        except BaseException as e:  # re-raised in the consumer at this batch
            self._ready.put(e)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def __iter__(self):
        return self

    def __next__(self):
        item = self._ready.get()
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def release(self, slot) -> None:
        if any(slot is s for s in self._slots):
            self._free.put(slot)

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a worker waiting to put
            try:
                self._ready.get_nowait()
            except queue.Empty:
                break
        self._thread.join()


class CudaTrainStep:
    """Runs training steps of ``model`` on the device; see the module docstring.

    Use as a context manager (it sets the extension's stream for the duration; each step
    selects it again, so several instances may alternate).
    ``step(x, y)`` takes a pinned host batch and returns ``(loss: float, logits: NumPy
    (N, K))``, read back with the step's one host synchronization.
    """

    def __init__(self, model, criterion, optimizer, cuda_graph: bool = True) -> None:
        self._cuda = backend.require_cuda()
        self.model, self.criterion, self.optimizer = model, criterion, optimizer
        self.cuda_graph = bool(cuda_graph)
        self._inputs: dict = {}    # batch shape -> (x, y) device arrays
        self._graphs: dict = {}    # batch shape -> _Captured
        self._host_out: dict = {}  # batch size -> pinned (loss, logits) for the read-back
        self.graph_replays = 0

    def __enter__(self) -> CudaTrainStep:
        c = self._cuda
        self._old_stream = c.current_stream()
        self.stream, self.copy_stream = c.create_stream(), c.create_stream()
        c.set_stream(self.stream)
        return self

    def __exit__(self, *exc) -> None:
        c = self._cuda
        c.synchronize()
        self._graphs.clear()
        c.set_stream(self._old_stream)
        c.destroy_stream(self.copy_stream)
        c.destroy_stream(self.stream)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        c = self._cuda
        if c.current_stream() != self.stream:  # another step object ran in between
            c.set_stream(self.stream)
        key = (x.shape, y.shape)
        first = key not in self._inputs
        if first:
            self._inputs[key] = (backend.empty(x.shape, np.float32, "cuda"),
                                 backend.empty(y.shape, np.int64, "cuda"))
            c.synchronize()  # its blocks may have served work still queued on the stream
        xd, yd = self._inputs[key]
        # The previous step has finished (its loss was read), so the inputs are free.
        xd.copy_from_numpy(x, non_blocking=True, stream=self.copy_stream)
        yd.copy_from_numpy(y, non_blocking=True, stream=self.copy_stream)
        c.stream_wait(self.stream, self.copy_stream)
        self.optimizer.prepare_step()
        if first or not self.cuda_graph:
            loss, logits = self._body(xd, yd)  # the first step of a shape runs eagerly
        elif key not in self._graphs:
            cap = self._graphs[key] = _Captured(c, self.model, lambda: self._body(xd, yd))
            cap.graph.replay()
            loss, logits = cap.outputs
        else:
            cap = self._graphs[key]
            cap.replay_host_effects()
            cap.graph.replay()
            self.graph_replays += 1
            loss, logits = cap.outputs
        return self._read(loss, logits)

    def _body(self, xd, yd):
        self.model.zero_grad()  # backward adds into .grad (captured too: memsets)
        logits = self.model(xd)
        loss = self.criterion(logits, yd)
        self.model.backward(self.criterion.backward(), need_dx=False)
        self.optimizer.apply_step()
        return loss, logits

    def _read(self, loss, logits) -> tuple[float, np.ndarray]:
        c = self._cuda
        n = logits.shape[0]
        if n not in self._host_out:
            self._host_out[n] = (c.pinned_empty((), "float32"), c.pinned_empty(logits.shape, "float32"))
        loss_h, logits_h = self._host_out[n]
        loss.copy_to_numpy(loss_h, non_blocking=True)
        logits.copy_to_numpy(logits_h, non_blocking=True)
        c.synchronize()  # the step's one host wait
        return float(loss_h), logits_h


class _Captured:
    """One captured step: the graph, its outputs, and the host counters a step advances."""

    def __init__(self, cuda, model, body) -> None:
        counters = [(m, name) for m in model.modules() for name, b in m._buffers.items()
                    if isinstance(b, np.ndarray) and b.dtype.kind in "iu"]
        before = [int(getattr(m, name)) for m, name in counters]
        self.graph = cuda.CudaGraph()
        self.graph.begin()
        try:
            self.outputs = body()
        finally:
            self.graph.end()
        self._deltas = [(m, name, int(getattr(m, name)) - b0)
                        for (m, name), b0 in zip(counters, before)]

    def replay_host_effects(self) -> None:
        for m, name, delta in self._deltas:
            getattr(m, name)[...] += delta
