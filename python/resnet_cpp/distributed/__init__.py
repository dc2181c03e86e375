"""Data-parallel training over MPI: ``mpirun -n N resnet-cpp train ...``.

N processes (ranks), on one machine or several, each hold the whole model. Every step, each
rank runs forward and backward on its own contiguous part of one global batch, the ranks
sum their gradients with one ``MPI_Allreduce`` over a flat buffer, and all apply the same
optimizer step, so the weights stay identical everywhere. Shuffling and augmentation are
keyed by the image's place in the global batch, so N ranks see the same global batches,
augmented alike, as one process with N times the batch (``--sync-bn`` makes the batch
statistics global too: then N ranks reproduce one process to float rounding).

The transport is MPI through mpi4py's buffer-protocol calls (``Allreduce``, ``Bcast``: no
pickling), installed with ``pip install "resnet_cpp[mpi]"`` beside an MPI library
(``apt-get install openmpi-bin libopenmpi-dev``). A single-process run never imports
mpi4py: ``rc.train.fit(..., distributed=None)`` (the default) turns data-parallel on only
when :func:`launched_by_mpi`.

API:
    rank, world_size    this process's rank and the number of ranks (from the launcher's
                        environment before :func:`init`, from MPI after; 0 and 1 alone)
    is_main()           rank 0: the rank that writes files and prints progress
    launched_by_mpi()   started by mpirun/mpiexec with more than one rank
    init()              start MPI (imports mpi4py) once; returns the world :class:`Group`
    Group               rank, size and the collectives training uses
    sync_batch_norm()   context: every BatchNorm2d of a model normalizes over all ranks

Failure: a rank that raises inside training prints its error and calls ``MPI_Abort``,
which makes the launcher stop every rank at once (instead of the others waiting forever in
a collective); a rank that dies is noticed by the launcher, which stops the rest. Only
rank 0 writes files, and checkpoints are written atomically, so the last one stays
loadable.
"""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Iterator

import numpy as np

__all__ = ["init", "is_main", "launched_by_mpi", "Group", "sync_batch_norm", "rank",
           "world_size"]

# (rank, size) environment variables set by the launchers we recognize: Open MPI's mpirun,
# Hydra (MPICH, Intel MPI) and srun --mpi=pmi2 (PMI), MVAPICH.
_LAUNCHER_ENV = (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"),
                 ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"))
# Ranks on this machine, to split its cores among them.
_LOCAL_SIZE_ENV = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")

_world: Group | None = None


def _launcher_rank_size() -> tuple[int, int]:
    for rank_var, size_var in _LAUNCHER_ENV:
        if size_var in os.environ:
            try:
                return int(os.environ.get(rank_var, "0")), int(os.environ[size_var])
            except ValueError:
                continue
    return 0, 1


def __getattr__(name: str):
    # Module attributes that follow init(): rc.distributed.rank, rc.distributed.world_size.
    if name == "rank":
        return _world.rank if _world is not None else _launcher_rank_size()[0]
    if name == "world_size":
        return _world.size if _world is not None else _launcher_rank_size()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def launched_by_mpi() -> bool:
    """True when a launcher started this process as one of several ranks (no MPI import)."""
    return _launcher_rank_size()[1] > 1


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return (_world.rank if _world is not None else _launcher_rank_size()[0]) == 0


def local_threads() -> int | None:
    """OpenMP threads per rank that share this machine's cores evenly among the ranks on
    it, or None when the launcher does not say how many there are."""
    for var in _LOCAL_SIZE_ENV:
        if var in os.environ:
            try:
                local = int(os.environ[var])
            except ValueError:
                continue
            return max(1, (os.cpu_count() or 1) // max(local, 1))
    return None


def init() -> Group:
    """Initialize MPI (through mpi4py) once and return the group of all ranks."""
    global _world
    if _world is None:
        try:
            import mpi4py
        except ImportError:
            raise ImportError('distributed training needs mpi4py and an MPI library: pip '
                              'install "resnet_cpp[mpi]" and apt-get install openmpi-bin '
                              "libopenmpi-dev") from None
        # Only the training thread calls MPI (the data loader's thread never does).
        mpi4py.rc.thread_level = "funneled"
        from mpi4py import MPI

        _world = Group(MPI.COMM_WORLD, MPI)
    return _world


class Group:
    """The ranks of one MPI communicator: ``rank``, ``size`` and the collectives training
    uses, all on contiguous NumPy arrays through the buffer protocol (no pickling)."""

    def __init__(self, comm, mpi) -> None:
        self.comm, self._mpi = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allreduce(self, buf: np.ndarray) -> None:
        """Sum ``buf`` (contiguous float32/float64/int64) over the ranks, in place."""
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)

    def broadcast(self, buf: np.ndarray, root: int = 0) -> None:
        """Overwrite ``buf`` (contiguous, same shape and dtype on every rank) with root's."""
        self.comm.Bcast(buf, root=root)

    def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
        """Root's ``data`` on every rank (the others pass None)."""
        n = np.array([len(data) if self.rank == root else 0], np.int64)
        self.broadcast(n, root)
        buf = np.frombuffer(data, np.uint8).copy() if self.rank == root \
            else np.empty(int(n[0]), np.uint8)
        self.broadcast(buf, root)
        return buf.tobytes()

    def barrier(self) -> None:
        self.comm.Barrier()

    @contextlib.contextmanager
    def fail_together(self, collective: tuple = ()) -> Iterator[None]:
        """Turn an exception on one rank into every rank stopping.

        ``collective``: exception types that every rank raises at the same point (they
        propagate normally); any other exception is printed with this rank's number and
        ends the whole job through ``MPI_Abort`` (exit status 130 after Ctrl-C, else 1),
        since the other ranks may be waiting in a collective this rank will never join.
        """
        try:
            yield
        except collective:
            raise
        except BaseException as e:
            interrupted = isinstance(e, KeyboardInterrupt)
            if not interrupted:
                traceback.print_exc(file=sys.stderr)
            what = "interrupted" if interrupted else f"failed: {type(e).__name__}: {e}"
            print(f"resnet-cpp: rank {self.rank} of {self.size} {what}; stopping all "
                  f"{self.size} ranks (checkpoints already written are kept)",
                  file=sys.stderr, flush=True)
            self.comm.Abort(130 if interrupted else 1)

    def __repr__(self) -> str:
        return f"Group(rank={self.rank}, size={self.size})"


@contextlib.contextmanager
def sync_batch_norm(model, group: Group) -> Iterator[None]:
    """Within the block, every ``BatchNorm2d`` of ``model`` computes its training
    statistics over all ranks' batches (synchronized BN; see
    ``functional.batch_norm2d(allreduce=)``); restored on exit."""
    from ..nn import BatchNorm2d

    layers = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    for m in layers:
        m.allreduce = group.allreduce
    try:
        yield
    finally:
        for m in layers:
            m.__dict__.pop("allreduce", None)
