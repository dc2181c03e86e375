"""Data-parallel training (resnet_cpp.distributed): the pieces in one process, then real
2-rank runs under ``mpirun --allow-run-as-root --oversubscribe -n 2`` (1 thread per rank)
against one process with the whole batch. The mpirun tests need Open MPI and mpi4py
(.ci/run installs both) and skip without them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import resnet_cpp as rc
from resnet_cpp import _core, distributed
from resnet_cpp import checkpoint as ckpt
from resnet_cpp import functional as F

from tolerance import BACKWARD, FORWARD, assert_close

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpi_runs  # noqa: E402

# --------------------------------------------------------------------------- one process


class ThreadGroup:
    """n threads standing in for n processes: rank r's allreduce sums the n buffers in
    rank order and hands every rank the same total."""

    def __init__(self, n: int) -> None:
        self.n, self._bufs, self._barrier = n, [None] * n, threading.Barrier(n)

    def allreduce(self, rank: int):
        def run(buf: np.ndarray) -> None:
            self._bufs[rank] = buf.copy()
            self._barrier.wait()
            total = sum(self._bufs[1:], self._bufs[0].copy())
            self._barrier.wait()
            buf[...] = total
        return run

    def map(self, fn) -> list:
        """fn(rank) on n threads; the results in rank order (exceptions re-raised)."""
        out, errors = [None] * self.n, []

        def work(r: int) -> None:
            try:
                out[r] = fn(r)
            except BaseException as e:  # noqa: BLE001 (re-raised below)
                errors.append(e)
                self._barrier.abort()

        ts = [threading.Thread(target=work, args=(r,)) for r in range(self.n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise errors[0]
        return out


@pytest.mark.parametrize("relu,residual,layout", [(False, False, "NHWC"), (True, False, "NHWC"),
                                                  (True, True, "NHWC"), (True, False, "NCHW")])
@pytest.mark.parametrize("sizes", [(4, 4), (3, 3, 2), (1, 5)], ids=str)
def test_sync_bn_over_parts_equals_the_whole_batch(rng, relu, residual, layout, sizes):
    # Parts of one batch normalized "on different processes" (threads) with synchronized
    # statistics give the whole batch's forward, running stats and dx; dgamma/dbeta are
    # each part's share and sum to the whole's. (1, 5): a part of one image, 3x3 pixels.
    c, n = 5, sum(sizes)
    shape = (n, 3, 3, c) if layout == "NHWC" else (n, c, 3, 3)
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
    res = rng.standard_normal(shape).astype(np.float32) if residual else None
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    rm0, rv0 = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)

    rm, rv = rm0.copy(), rv0.copy()
    y, cache = F.batch_norm2d(x, gamma, beta, rm, rv, relu=relu, layout=layout, residual=res)
    dx, dgamma, dbeta, *dres = F.batch_norm2d_backward(dy, cache)

    cuts = np.cumsum((0,) + sizes)
    group = ThreadGroup(len(sizes))

    def part(r: int):
        s = slice(cuts[r], cuts[r + 1])
        prm, prv = rm0.copy(), rv0.copy()
        py, pc = F.batch_norm2d(np.ascontiguousarray(x[s]), gamma, beta, prm, prv, relu=relu,
                                layout=layout, allreduce=group.allreduce(r),
                                residual=None if res is None else np.ascontiguousarray(res[s]))
        return (py, prm, prv, *F.batch_norm2d_backward(np.ascontiguousarray(dy[s]), pc))

    parts = group.map(part)
    assert_close(np.concatenate([p[0] for p in parts]), y, **FORWARD, name="y")
    for p in parts:
        assert_close(p[1], rm, **FORWARD, name="running_mean")
        assert_close(p[2], rv, **FORWARD, name="running_var")
    assert_close(np.concatenate([p[3] for p in parts]), dx, **BACKWARD, name="dx")
    assert_close(sum(p[4] for p in parts), dgamma, **BACKWARD, name="dgamma")
    assert_close(sum(p[5] for p in parts), dbeta, **BACKWARD, name="dbeta")
    if residual:
        assert_close(np.concatenate([p[6] for p in parts]), dres[0], **BACKWARD, name="dres")


def test_sync_bn_needs_two_values_over_all_parts():
    x = np.ones((1, 1, 1, 3), np.float32)
    one = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^x: .*over all processes, got 1"):
        F.batch_norm2d(x, one, one, one.copy(), one.copy(), layout="NHWC",
                       allreduce=lambda buf: None)


def test_split_kernels_equal_the_fused_passes_bit_for_bit(rng, isa_threads):
    # stats(pivot = row 0) -> finalize -> apply is the training forward; backward_reduce ->
    # backward_apply the training backward (relu and add included).
    x = rng.standard_normal((4, 5, 3, 19)).astype(np.float32) + 2
    g, b = rng.uniform(0.5, 1.5, 19).astype(np.float32), rng.standard_normal(19).astype(np.float32)
    dy, add = (rng.standard_normal(x.shape).astype(np.float32) for _ in range(2))
    rm, rv = np.zeros(19, np.float32), np.ones(19, np.float32)
    y, mean, rstd = _core.batch_norm_forward_train(x, g, b, rm, rv, 0.1, 1e-5, True)
    rm2, rv2 = np.zeros(19, np.float32), np.ones(19, np.float32)
    s1, s2 = _core.batch_norm_stats(x, np.ascontiguousarray(x[0, 0, 0]))
    assert s1.dtype == np.float64 and s1.shape == (19,)
    m2, r2 = _core.batch_norm_finalize(s1, s2, np.ascontiguousarray(x[0, 0, 0]), x.size // 19,
                                       rm2, rv2, 0.1, 1e-5)
    y2 = _core.batch_norm_apply(x, g, b, m2, r2, True)
    for got, want in ((m2, mean), (r2, rstd), (rm2, rm), (rv2, rv), (y2, y)):
        np.testing.assert_array_equal(got, want)
    dx, dg, db = _core.batch_norm_backward(dy, x, g, mean, rstd, beta=b, relu=True, add=add)
    sdy, sdyx, dg2, db2 = _core.batch_norm_backward_reduce(dy, x, g, mean, rstd, beta=b,
                                                           relu=True)
    dx2 = _core.batch_norm_backward_apply(dy, x, g, mean, rstd, sdy, sdyx, x.size // 19,
                                          beta=b, relu=True, add=add)
    for got, want in ((dg2, dg), (db2, db), (dx2, dx)):
        np.testing.assert_array_equal(got, want)


C3 = np.ones(3, np.float32)
X = np.ones((2, 2, 2, 3), np.float32)
S = np.zeros(3)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: _core.batch_norm_stats(X, np.ones(4, np.float32)), ValueError, r"^pivot\b"),
    (lambda: _core.batch_norm_finalize(S.astype(np.float32), S, C3, 8, C3.copy(), C3.copy()),
     TypeError, r"^s1\b.*float64"),
    (lambda: _core.batch_norm_finalize(S, S, C3, 1, C3.copy(), C3.copy()), ValueError,
     r"^count\b"),
    (lambda: _core.batch_norm_apply(X, C3, C3, C3, np.ones(2, np.float32)), ValueError,
     r"^rstd\b"),
    (lambda: _core.batch_norm_backward_reduce(X, X, C3, C3, C3, relu=True), ValueError,
     r"^beta\b"),
    (lambda: _core.batch_norm_backward_apply(X, X, C3, C3, C3, S, S, 0), ValueError,
     r"^count\b"),
    (lambda: _core.batch_norm_backward_apply(X, X, C3, C3, C3, S, np.zeros(4), 8), ValueError,
     r"^sdyx\b"),
])
def test_split_kernels_reject_bad_arguments(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_crop_flip_first_index_gives_the_whole_batchs_choices(rng):
    x = rng.standard_normal((10, 2, 6, 6)).astype(np.float32)
    whole = F.random_crop_flip(x, padding=2, seed=99)
    part = F.random_crop_flip(np.ascontiguousarray(x[6:]), padding=2, seed=99, first_index=6)
    np.testing.assert_array_equal(part, whole[6:])
    assert not np.array_equal(F.random_crop_flip(np.ascontiguousarray(x[6:]), padding=2,
                                                 seed=99), whole[6:])
    with pytest.raises(ValueError, match=r"^first_index\b"):
        F.random_crop_flip(x, seed=1, first_index=-1)


def _shards_reassemble(make_loader, shards: int, epochs: int = 2) -> None:
    whole = make_loader((0, 1))
    parts = [make_loader((r, shards)) for r in range(shards)]
    for epoch in range(epochs):
        for loader in [whole] + parts:
            loader.set_epoch(epoch)
        for b, (w, *ps) in enumerate(zip(whole, *parts)):
            np.testing.assert_array_equal(np.concatenate([p[0] for p in ps]), w[0],
                                          err_msg=f"epoch {epoch} batch {b}")
            np.testing.assert_array_equal(np.concatenate([p[1] for p in ps]), w[1])
            assert max(len(p[1]) for p in ps) - min(len(p[1]) for p in ps) <= 1


@pytest.mark.parametrize("shards", [2, 3])
def test_loader_shards_are_the_batch_augmented_alike(shards):
    data = mpi_runs.tiny_data(70)  # 70 = 2 x 32 + 6: a short last batch
    _shards_reassemble(lambda shard: rc.data.DataLoader(
        data, 32, augment=True, seed=3, mean=[0.5] * 3, std=[0.25] * 3, shard=shard), shards)


def test_image_loader_shards_are_the_batch_augmented_alike(tmp_path):
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(7):
            size = (int(rng.integers(10, 20)), int(rng.integers(10, 20)))
            a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            image.fromarray(a).save(tmp_path / cls / f"{i}.png")
    data = rc.data.image_folder(tmp_path, rc.data.Preprocess(size=8))
    _shards_reassemble(lambda shard: data.make_loader(4, augment=True, seed=5, shard=shard), 3)


@pytest.mark.parametrize("shard,exc,pattern", [((1,), TypeError, r"^shard must be a tuple"),
                                               ((2, 2), ValueError, r"^shard index must be"),
                                               ((0, 0), ValueError, r"^shard count must be")])
def test_loader_rejects_bad_shards(shard, exc, pattern):
    with pytest.raises(exc, match=pattern):
        rc.data.DataLoader(mpi_runs.tiny_data(8), 4, shard=shard)


def test_rank_and_size_come_from_the_launcher(monkeypatch):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert (distributed.rank, distributed.world_size) == (0, 1)
    assert distributed.is_main() and not distributed.launched_by_mpi()
    assert distributed.local_threads() is None
    monkeypatch.setenv("PMI_RANK", "3")
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    assert (distributed.rank, distributed.world_size) == (3, 4)
    assert not distributed.is_main() and distributed.launched_by_mpi()
    assert distributed.local_threads() == max(1, (os.cpu_count() or 1) // 2)


def _env(threads: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI_", "PMIX_", "MV2_"))}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(rc.__path__[0]), HERE,
                                         env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def test_a_single_process_never_imports_mpi4py(tmp_path):
    code = ("import sys, mpi_runs; mpi_runs.run(sys.argv[1], batch=64, steps=2, epochs=1)\n"
            "from resnet_cpp import cli\n"
            "assert cli.main(['train', '--dataset', 'npz', '--data-dir', sys.argv[2], "
            "'--epochs', '1', '--max-steps', '1', '--no-progress', '--out', sys.argv[3]]) == 0\n"
            "print('mpi4py' in sys.modules)")
    npz = tmp_path / "tiny.npz"
    _write_npz(npz, 64)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "api"), str(npz),
                        str(tmp_path / "cli")], env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"


def _write_npz(path, n: int = 512) -> None:
    train, test = mpi_runs.tiny_data(n), mpi_runs.tiny_data(40, seed=2)
    np.savez(path, x_train=train.raw, y_train=train.labels, x_test=test.raw,
             y_test=test.labels)


def _params(path) -> dict:
    state = ckpt.load(path).model_state
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


# --------------------------------------------------------------------------- under MPI

HAVE_MPI = shutil.which("mpirun") is not None and \
    subprocess.run([sys.executable, "-c", "from mpi4py import MPI"],
                   capture_output=True).returncode == 0
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpirun (Open MPI) and mpi4py: "
                               "apt-get install openmpi-bin libopenmpi-dev; pip install mpi4py")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2", sys.executable,
          os.path.join(HERE, "mpi_runs.py")]


def _mpirun(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    r = subprocess.run(MPIRUN + list(args), env=_env(), capture_output=True, text=True,
                       timeout=timeout)
    return r, time.perf_counter() - t0


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """mpi_runs.py suite on 2 ranks (global batch 128 = 2 x 64, synchronized BN)."""
    if not HAVE_MPI:
        pytest.skip("needs mpirun and mpi4py")
    out = tmp_path_factory.mktemp("two_ranks")
    r, _ = _mpirun("suite", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return out


# Measured after 5 steps, against one process with the whole batch: SGD 1.2e-7 with
# synchronized BN, 4.8e-3 without it; Adam 6.4e-6 and 1.2e-2. Adam's tolerance is wider
# because it divides by sqrt(v): coordinates with tiny gradients turn rounding (here the
# per-rank sums' order and the BN statistics' pivot) into lr-sized differences.
TOLERANCE = {"sgd": 2e-6, "adam": 5e-5}


@needs_mpi
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_two_ranks_with_sync_bn_equal_one_rank_with_the_whole_batch(two_ranks, tmp_path,
                                                                    optimizer):
    kw = dict(mpi_runs.SUITE)[optimizer]
    h = mpi_runs.run(str(tmp_path), batch=128, distributed=False, **kw)
    assert h[-1]["step"] == 5
    two, one = _params(two_ranks / optimizer / "last.npz"), _params(tmp_path / "last.npz")
    for k in one:
        assert_close(two[k], one[k], rtol=0, atol=TOLERANCE[optimizer], name=k)
    meta = ckpt.load(two_ranks / optimizer / "last.npz").meta
    assert meta["position"]["batch_size"] == 128 and meta["position"]["world_size"] == 2
    assert meta["config"]["batch_size"] == 64 and meta["config"]["sync_bn"] is True


@needs_mpi
def test_resume_on_one_rank_continues_a_two_rank_run(two_ranks, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(two_ranks / "resume", run)
    pos = ckpt.load(run / "last.npz").meta["position"]
    assert (pos["epoch"], pos["batch"], pos["world_size"]) == (0, 4, 2)
    h = mpi_runs.run(str(run), batch=128, steps=None, epochs=2, resume=True, sync_bn=True,
                     distributed=False)  # the run's settings, sync_bn included
    whole = mpi_runs.run(str(tmp_path / "whole"), batch=128, steps=None, epochs=2,
                         distributed=False)
    assert [r["step"] for r in h] == [r["step"] for r in whole] == [4, 8]
    one, resumed = _params(tmp_path / "whole" / "last.npz"), _params(run / "last.npz")
    for k in one:
        assert_close(resumed[k], one[k], rtol=0, atol=TOLERANCE["sgd"], name=k)


@needs_mpi
def test_one_rank_through_the_data_parallel_path_is_bit_for_bit_one_process(tmp_path):
    # distributed=True on a single process (MPI world of 1): the flat gradient buffer, the
    # Allreduce and the sharded loader change no bit.
    code = ("import sys, mpi_runs; mpi_runs.run(sys.argv[1], batch=128, steps=5, epochs=2, "
            "distributed=True)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dp")], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    mpi_runs.run(str(tmp_path / "plain"), batch=128, steps=5, epochs=2, distributed=False)
    dp, plain = _params(tmp_path / "dp" / "last.npz"), _params(tmp_path / "plain" / "last.npz")
    for k in plain:
        np.testing.assert_array_equal(dp[k], plain[k], err_msg=k)


@needs_mpi
def test_cli_on_two_ranks_rank0_alone_writes_and_resume_on_one(tmp_path):
    npz, out = tmp_path / "tiny.npz", tmp_path / "run"
    _write_npz(npz, 128)  # 2 steps of 2 x 32 images per epoch
    r, _ = _mpirun("audit", "train", "--dataset", "npz", "--data-dir", str(npz), "--epochs",
                   "2", "--max-steps", "2", "--batch-size", "32", "--sync-bn",
                   "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    writes = {int(m[1]): m[2] for m in re.finditer(r"^rank (\d) writes: (.*)$", r.stdout, re.M)}
    assert writes[1] == "[]"
    assert str(out / "metrics.jsonl") in writes[0]  # the audit sees rank 0's writes
    assert r.stdout.count("global batch 64, synchronized BN") == 1
    assert len(re.findall(r"^stopped at max_steps=2: epoch 1/2", r.stdout, re.M)) == 1
    # The same run resumed by one process keeps the global batch: 64 images per step.
    from resnet_cpp import cli

    assert cli.main(["train", "--resume", str(out), "--no-progress", "--threads", "1"]) == 0
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [rec["step"] for rec in records] == [2, 4]
    meta = ckpt.load(out / "last.npz").meta
    assert meta["position"]["batch_size"] == 64 and meta["config"]["cli"]["batch_size"] == 64


@needs_mpi
@pytest.mark.parametrize("how,message", [
    ("kill", r"rank 1 with PID \d+ on node \S+ exited on signal 9"),
    ("raise", r"rank 1 of 2 failed: ValueError: bad data in this rank's shard \(injected\); "
              r"stopping all 2 ranks")])
def test_a_failing_rank_stops_every_rank(tmp_path, how, message):
    # Rank 1 dies or raises at step 20 (epoch 3 of a 1000-epoch run: 8 steps per epoch).
    r, seconds = _mpirun("fail", str(tmp_path), "--how", how, "--at", "20", timeout=60)
    assert r.returncode != 0
    assert re.search(message, r.stdout + r.stderr), r.stdout + r.stderr
    assert seconds < 30  # the whole run, startup included: no rank waits in a collective
    c = ckpt.load(tmp_path / "last.npz")  # verified checksum: written whole
    assert (c.meta["position"]["epoch"], c.meta["position"]["global_step"]) == (2, 16)
