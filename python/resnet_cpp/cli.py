"""The ``resnet-cpp`` command (also ``python -m resnet_cpp``).

Subcommands:
  train    train a ResNet (no arguments: ResNet-20 v1 on the bundled Fashion-MNIST subset
           for a short run), writing checkpoints and metrics.jsonl to --out
  eval     accuracy, per-class accuracy and confusion matrix of a checkpoint
  predict  top classes of image files / folders (Pillow) or of a .npy array of images
  export   a checkpoint (any format) to ONNX and/or safetensors
  plot     DIR/curves.png from DIR/metrics.jsonl (needs matplotlib)
  info     the build: ISA paths, OpenMP threads, CUDA and the devices
train, eval and predict take --device cpu|cuda (default cpu).
Every failure prints one line to stderr naming the file or option, without a traceback
(``--debug`` shows it): exit code 2 for usage errors (the command line is wrong: a bad or
conflicting option, a file or directory it names that does not exist, --device cuda where
CUDA cannot run), 1 for runtime errors (a damaged file, a full or read-only disk, out of
memory, a diverged run). A run stopped by SIGINT or SIGTERM saves a checkpoint and exits
with 128 + the signal number (130, 143).

``mpirun -n N resnet-cpp train ...`` trains data-parallel over N ranks
(``resnet_cpp.distributed``): --batch-size is per rank, rank 0 alone writes the run
directory and prints.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

from .train.config import (
    FINE_TUNING,
    TrainConfig,
    add_options,
    given,
    positive_int,
    setting,
    thread_count,
)

DATASETS = ("bundled", "fashion-mnist", "mnist", "cifar10", "cifar100", "npz", "folder")


class UserError(Exception):
    """A usage error: the command line is wrong. Printed without traceback, exit code 2."""

    exit_code = 2


class RunError(UserError):
    """A runtime error in the user's files or the run. Printed without traceback, exit code 1."""

    exit_code = 1


# --------------------------------------------------------------------------- info


def _require_device(device: str) -> str:
    """--device: "cpu", or "cuda" when this build and machine can run it (else UserError
    saying why and how to get it)."""
    from . import backend

    if device == "cuda":
        try:
            backend.require_cuda()
        except RuntimeError as e:
            raise UserError(f"--device cuda: {e}") from e
    return device


def _cmd_info(args: argparse.Namespace) -> int:
    import resnet_cpp

    for key, value in resnet_cpp.build_info().items():
        print(f"{key:>14}: {value}")
    return 0


# --------------------------------------------------------------------------- train


@dataclass
class DataModelConfig:
    """The data and model `resnet-cpp train` builds (``fit`` is given them instead);
    declared like TrainConfig's settings, and all kept by a resumed run."""

    dataset: str = setting("bundled", "training data", keep=True, choices=DATASETS)
    data_dir: str | None = setting(
        None, "dataset directory (for npz: the .npz file; for folder: DIR/<class>/<image>, "
        "or DIR/train and DIR/val)", keep=True)
    model: str | None = setting(None, "model name (default resnet20; resnet29 for --version "
                                "2)", keep=True)
    version: int = setting(1, "ResNet v1 or v2", keep=True, type=int, choices=(1, 2))
    width: str | None = setting(None, "CIFAR ResNet widths", keep=True,
                                choices=("paper", "keras"))
    shortcut: str | None = setting(None, "shortcut type of CIFAR ResNets", keep=True,
                                   choices=("A", "B"))
    image_size: int | None = setting(
        None, "--dataset folder: crop size (default: the --init-from model's, else 224 for "
        "ImageNet models, 32)", keep=True, group=FINE_TUNING, type=positive_int)
    grayscale: bool = setting(False, "--dataset folder: read images as one channel",
                              keep=True, group=FINE_TUNING)
    init_arch: dict | None = setting(
        None, "the architecture (widths, shortcut) read from the --init-from file when "
        "--model is not given", keep=True, flag=None)


def _split(settings: dict) -> tuple[DataModelConfig, TrainConfig]:
    """The two configs from one {name: value} of theirs; ValueError/TypeError from a bad
    value become usage errors."""
    own = {f.name for f in dataclasses.fields(DataModelConfig)}
    train = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        return (DataModelConfig(**{k: v for k, v in settings.items() if k in own}),
                TrainConfig(**{k: v for k, v in settings.items() if k in train}))
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from e


def _kept(data_cfg: DataModelConfig, cfg: TrainConfig) -> dict:
    """What a checkpoint stores as ``config["cli"]``: every setting a resumed run keeps,
    as the command line had it."""
    return {**dataclasses.asdict(data_cfg), **cfg.kept()}


def _load_data(name: str, data_dir: str | None, preprocess=None):
    """(train, test) of a named dataset; ``folder`` reads images with ``preprocess``."""
    from .data import load_dataset, load_image_folder

    try:
        if name == "folder":
            if not data_dir:
                raise UserError("--dataset folder needs --data-dir DIR (DIR/<class>/<image>)")
            return load_image_folder(data_dir, preprocess)
        return load_dataset(name, data_dir)
    except (FileNotFoundError, ImportError) as e:  # the option names nothing usable there
        raise UserError(str(e)) from e
    except ValueError as e:  # the files are there but damaged
        raise RunError(str(e)) from e


def _image_shape(ds) -> list[int]:
    """(C, H, W) of one image of a dataset."""
    return [int(v) for v in ds.shape]


def _is_imagenet(name: str, version: int) -> bool:
    from .models import IMAGENET_DEPTHS

    return version == 1 and name.startswith("resnet") and name[6:].isdigit() \
        and int(name[6:]) in IMAGENET_DEPTHS


def _read_weights(path: str):
    """rc.io.Weights of any weights file; damaged files are CheckpointErrors (exit 1)."""
    from . import checkpoint as ckpt
    from . import io as rio

    try:
        return rio.read_weights(path)
    except (ckpt.CheckpointError, ImportError, FileNotFoundError):
        raise
    except ValueError as e:
        raise ckpt.CheckpointError(str(e)) from e


def _load_model(path: str):
    """(model in eval mode, rc.io.Weights) from a weights file of any format."""
    from . import checkpoint as ckpt
    from . import io as rio

    w = _read_weights(path)
    try:
        return rio.build_model(w)
    except (ValueError, TypeError, KeyError) as e:
        raise ckpt.CheckpointError(f"{path}: cannot rebuild the model: {e}") from e


def _init_settings(data_cfg: DataModelConfig, init_from: str):
    """Read --init-from; take the model (unless --model) and image settings from it."""
    from . import io as rio

    try:
        w = _read_weights(init_from)
        cfg = w.meta.get("model") or rio.infer_config(w.state_dict)
    except (ValueError, ImportError, FileNotFoundError) as e:
        raise UserError(f"--init-from {init_from}: {e}") from e
    if data_cfg.model is None:
        data_cfg.model, data_cfg.version = cfg["name"], cfg.get("version", 1)
        data_cfg.init_arch = {k: cfg[k] for k in ("widths", "shortcut", "width") if k in cfg}
    if data_cfg.dataset == "folder":
        if data_cfg.image_size is None:
            data_cfg.image_size = (w.meta.get("preprocess") or {}).get("size")
        if cfg.get("in_channels") == 1:
            data_cfg.grayscale = True
    return w


def _folder_preprocess(data_cfg: DataModelConfig):
    """Preprocess for --dataset folder: --image-size, else 224 (ImageNet models) or 32."""
    from .data import Preprocess

    if data_cfg.image_size is None:  # recorded, so a resumed run reads images alike
        data_cfg.image_size = 224 if _is_imagenet(data_cfg.model, data_cfg.version) else 32
    return Preprocess(size=data_cfg.image_size, channels=1 if data_cfg.grayscale else 3)


def _model_kwargs(data_cfg: DataModelConfig, seed: int, train) -> dict:
    kw = {**(data_cfg.init_arch or {}),
          "num_classes": len(train.classes), "in_channels": _image_shape(train)[0]}
    if data_cfg.width is not None:
        if data_cfg.version != 2:
            raise UserError("--width (paper|keras) selects pre-activation widths; it needs "
                            "--version 2 (e.g. --model resnet56 --version 2)")
        kw["width"] = data_cfg.width
    if data_cfg.shortcut is not None:
        if data_cfg.version != 1:
            raise UserError("--shortcut applies to v1 CIFAR ResNets (--version 1)")
        kw["shortcut"] = data_cfg.shortcut
    kw["seed"] = seed
    return kw


def _create_model(name: str, version: int, kwargs: dict):
    from . import models

    try:
        return models.create(name, version=version, **kwargs)
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"cannot build model {name!r} v{version} with {kwargs}: {e}") from e


def _given_settings(args: argparse.Namespace) -> dict:
    """The settings given on the command line; --new-head [N] is new_head=True."""
    settings = {**given(args, DataModelConfig), **given(args, TrainConfig)}
    if "new_head" in settings:
        settings["new_head"] = True
    return settings


def _saved_settings(meta: dict, path: str) -> dict:
    """The settings a resumed run keeps, from its checkpoint's ``config["cli"]``."""
    saved = meta.get("config", {}).get("cli")
    if saved is None:
        raise UserError(f"{path} was not written by `resnet-cpp train`; resume it with "
                        "resnet_cpp.train.fit(..., resume=...)")
    saved = dict(saved)
    if "new_head" in saved:  # before TrainConfig: None, or --new-head's N (0 when omitted)
        saved["new_head"] = saved["new_head"] is not None and saved["new_head"] is not False
    saved["batch_size"] = _per_rank_batch(meta, saved)
    return saved


def _resolve_train_settings(
        args: argparse.Namespace) -> tuple[DataModelConfig, TrainConfig, object]:
    """(DataModelConfig, TrainConfig, the --init-from weights of a fresh run or None):
    the defaults, then a resumed checkpoint's settings, then the command line's."""
    from . import checkpoint as ckpt

    settings = _given_settings(args)
    if args.resume:
        path = os.path.join(args.resume, "last.npz") if os.path.isdir(args.resume) \
            else args.resume
        if not os.path.isfile(path):
            raise UserError(f"--resume {args.resume}: no checkpoint (last.npz) there")
        saved = _saved_settings(ckpt.load(path).meta, path)
        for k, v in settings.items():
            if k in saved and saved[k] != v:
                shown = args.new_head if k == "new_head" else v
                raise UserError(f"--resume continues the saved run, which has {k}="
                                f"{saved[k]!r}; drop --{k.replace('_', '-')} {shown!r} or "
                                "start a new run with --out")
        out = os.path.dirname(os.path.abspath(path))
        if args.out_dir is not None and os.path.abspath(args.out_dir) != out:
            raise UserError("--resume writes into the resumed run's directory; drop --out")
        data_cfg, cfg = _split({**saved, **settings, "out_dir": out, "resume": True})
        return data_cfg, cfg, None
    data_cfg, cfg = _split(settings)
    init = _init_settings(data_cfg, cfg.init_from) if cfg.init_from else None
    if cfg.new_head and init is None:
        raise UserError("--new-head trains a new classifier on pretrained weights: give "
                        "--init-from FILE")
    if data_cfg.model is None:  # the smallest CIFAR ResNet of each version
        data_cfg.model = "resnet20" if data_cfg.version == 1 else "resnet29"
    out = cfg.out_dir
    if out is None:
        out = os.path.join("runs", f"{data_cfg.dataset}-{data_cfg.model}-"
                                   f"{time.strftime('%Y%m%d-%H%M%S')}")
    elif os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: is a file, not a directory")
    elif os.path.isfile(os.path.join(out, "last.npz")):
        raise UserError(f"{out} already holds a run (last.npz); continue it with "
                        f"--resume {out} or choose another --out")
    if cfg.precision is None:  # recorded, so that a resumed run keeps it
        import resnet_cpp

        cfg = dataclasses.replace(cfg, precision=resnet_cpp.precision())
    return data_cfg, dataclasses.replace(cfg, out_dir=out), init


def _per_rank_batch(meta: dict, saved: dict) -> int | None:
    """The per-rank batch that keeps a resumed run's global batch on this many ranks."""
    from . import distributed

    pos, ranks = meta.get("position", {}), distributed.world_size
    if "batch_size" not in pos:
        return saved.get("batch_size")
    if pos["batch_size"] % ranks:
        raise UserError(f"the saved run's global batch of {pos['batch_size']} images cannot "
                        f"be split evenly over {ranks} ranks; resume on a number of ranks "
                        "that divides it")
    return pos["batch_size"] // ranks


def _cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from . import train as T

    _require_device(args.device or TrainConfig.device)
    data_cfg, cfg, init = _resolve_train_settings(args)
    if data_cfg.dataset == "npz" and not data_cfg.data_dir:
        raise UserError("--dataset npz needs --data-dir PATH.npz")
    preprocess = _folder_preprocess(data_cfg) if data_cfg.dataset == "folder" else None
    train, test = _load_data(data_cfg.dataset, data_cfg.data_dir, preprocess)
    if init is not None and args.new_head not in (None, 0) and \
            args.new_head != len(train.classes):
        raise UserError(f"--new-head {args.new_head}: the training data has "
                        f"{len(train.classes)} classes")
    kwargs = _model_kwargs(data_cfg, cfg.seed, train)
    model = _create_model(data_cfg.model, data_cfg.version, kwargs)
    model_config = {"name": data_cfg.model, "version": data_cfg.version, "kwargs": kwargs}
    main_rank = distributed.is_main()
    if main_rank:
        print(f"training {data_cfg.model} v{data_cfg.version} on {data_cfg.dataset} "
              f"({len(train)} train / {len(test)} test images) for {cfg.epochs} "
              f"epochs; output in {cfg.out_dir}", flush=True)
    # A resumed run takes its weights from the checkpoint, not from init_from.
    run_cfg = dataclasses.replace(cfg, init_from=init, new_head=cfg.new_head and init is not None)
    try:  # settings the trainer refuses are usage errors; what fails while training is not
        trainer = T.Trainer(model, train, test, config=run_cfg, model_config=model_config,
                            extra_config={"cli": _kept(data_cfg, cfg)})
    except (ValueError, ImportError) as e:
        raise UserError(str(e)) from e
    history = trainer.fit()
    if history.interrupted:
        return 128 + (history.signal or signal.SIGINT)
    if not main_rank:
        return 0
    if history.test is not None:
        print(f"test accuracy: {100 * history.test.accuracy:.2f}% "
              f"({history.test.n} images); checkpoint: {history.last_checkpoint}")
    elif history.records and "test_acc" in history.records[-1]:
        print(f"the run was already complete; test accuracy: "
              f"{100 * history.records[-1]['test_acc']:.2f}%")
    if args.plot:
        _plot(cfg.out_dir)
    return 0


# --------------------------------------------------------------------------- eval


def _load_checkpoint(path: str):
    from . import checkpoint as ckpt

    if not os.path.isfile(path):
        raise UserError(f"--checkpoint {path}: no such file")
    c = ckpt.load(path)
    if not c.meta.get("model"):
        raise UserError(f"{path} has no model config; it cannot be evaluated by the CLI")
    try:
        model = c.build_model()
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path}: cannot rebuild the model: {e}") from e
    mean, std = c.normalization()
    return c, model, mean, std


def _cmd_eval(args: argparse.Namespace) -> int:
    import resnet_cpp

    from . import train as T

    if args.threads is not None:
        resnet_cpp.set_num_threads(args.threads)
    device = _require_device(args.device)
    c, model, mean, std = _load_checkpoint(args.checkpoint)
    model.to(device)
    cli = c.meta.get("config", {}).get("cli", {})
    name = args.dataset or cli.get("dataset")
    if name is None:
        raise UserError(f"{args.checkpoint} does not record its dataset; pass --dataset")
    data_dir = args.data_dir if args.dataset else (args.data_dir or cli.get("data_dir"))
    pre = None
    if name == "folder":
        from .io import describe_checkpoint

        pre = _image_preprocess(describe_checkpoint(c.meta), model)
    _, test = _load_data(name, data_dir, pre)
    want = c.meta.get("data", {}).get("image_shape")
    if want and _image_shape(test) != list(want):
        raise UserError(f"{name} images are {tuple(_image_shape(test))}, the model was trained on "
                        f"{tuple(want)}")
    classes = c.meta.get("data", {}).get("classes") or test.classes
    if len(test) and int(test.labels.max()) >= len(classes):
        raise UserError(f"{name} has labels up to {int(test.labels.max())}, the model knows "
                        f"{len(classes)} classes")
    res = T.evaluate(model, test, batch_size=args.batch_size, mean=mean, std=std,
                     classes=classes)
    pos = c.meta.get("position", {})
    print(f"checkpoint: {args.checkpoint} ({c.meta['model']['name']} v"
          f"{c.meta['model'].get('version', 1)}, {pos.get('global_step', '?')} steps, "
          f"{pos.get('epoch', '?')} full epochs)")
    print(f"dataset: {name} test split")
    print(res.format())
    return 0


# --------------------------------------------------------------------------- predict


def _prepare_images(x: np.ndarray, shape: list | None) -> np.ndarray:
    """(N,H,W) or (N,C,H,W), uint8 (0..255) or float ([0,1]) -> float32 (N,C,H,W) in [0,1]."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise UserError(f"images must be (N,H,W) or (N,C,H,W), got shape {x.shape}")
    if x.shape[0] == 0:
        raise UserError("the image file holds no images")
    if shape and list(x.shape[1:]) != list(shape):
        raise UserError(f"images are {tuple(x.shape[1:])} (C,H,W), the model expects "
                        f"{tuple(shape)}")
    if x.dtype == np.uint8:
        return np.divide(x, np.float32(255), dtype=np.float32)
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise UserError(f"images must be uint8 or finite floats, got {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _image_preprocess(meta: dict, model):
    """How image files are prepared for ``model``: as in its training, else to its input
    size (the whole image for a model trained on arrays; 256 -> 224 for ImageNet models)."""
    from .data import Preprocess
    from .models import ImageNetResNet

    if meta.get("preprocess"):
        return Preprocess.from_dict(meta["preprocess"])
    c = model.in_channels
    if meta.get("image_shape"):
        size = int(meta["image_shape"][1])
        return Preprocess(size=size, resize=size, channels=c)
    if isinstance(model, ImageNetResNet):
        return Preprocess(size=224, channels=c)
    return Preprocess(size=32, resize=32, channels=c)


def _predict_inputs(args: argparse.Namespace, meta: dict, model, mean, std):
    """(names, number of batches, iterator of normalized float32 batches)."""
    paths = args.images
    if len(paths) == 1 and paths[0].endswith(".npy"):
        if not os.path.isfile(paths[0]):
            raise UserError(f"{paths[0]}: no such file")
        try:
            raw = np.load(paths[0], allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise RunError(f"cannot read {paths[0]}: {e}") from e
        if not isinstance(raw, np.ndarray):
            raise UserError(f"{paths[0]} must be a .npy array, not an .npz archive")
        x = _prepare_images(raw, meta.get("image_shape"))
        if raw.dtype.kind == "f" and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
            print(f"resnet-cpp predict: warning: {paths[0]} holds floats in [{x.min():g}, "
                  f"{x.max():g}]; float images are read on the [0, 1] scale (save 0..255 images "
                  "as uint8)", file=sys.stderr)
        if mean is not None:
            x = (x - mean[:, None, None]) / std[:, None, None]
        bs = args.batch_size
        return ([str(i) for i in range(len(x))], -(-len(x) // bs),
                (np.ascontiguousarray(x[i:i + bs]) for i in range(0, len(x), bs)))
    from .data import image_files

    norm = {} if mean is None else {"mean": mean, "std": std}
    try:
        ds = image_files(paths, _image_preprocess(meta, model), **norm)
    except (FileNotFoundError, ValueError, ImportError) as e:
        raise UserError(str(e)) from e
    loader = ds.make_loader(args.batch_size, shuffle=False, mean=ds.mean, std=ds.std)
    return ds.paths, len(loader), (x for x, _ in loader)


def _cmd_predict(args: argparse.Namespace) -> int:
    import resnet_cpp

    from . import backend
    from .train.progress import Progress

    if args.threads is not None:
        resnet_cpp.set_num_threads(args.threads)
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise UserError(f"--output {args.output}: folder "
                        f"{os.path.dirname(os.path.abspath(args.output))} does not exist")
    device = _require_device(args.device)
    model, w = _load_model(args.checkpoint)
    model.to(device)
    norm = w.meta.get("normalization") or {}
    mean = np.asarray(norm["mean"], np.float32) if "mean" in norm else None
    std = np.asarray(norm["std"], np.float32) if "std" in norm else None
    classes = w.meta.get("classes") or []
    names, n_batches, batches = _predict_inputs(args, w.meta, model, mean, std)
    k = min(args.top_k, model.num_classes)
    tops, probs = [], []
    try:
        with Progress(n_batches, "predict", enabled=not args.no_progress and n_batches > 1) \
                as bar:
            for x in batches:
                logits = backend.to_host(model(backend.to_device(x, device))) \
                    if device == "cuda" else model(x)
                logits = np.asarray(logits, np.float64)
                z = np.exp(logits - logits.max(axis=1, keepdims=True))
                p = z / z.sum(axis=1, keepdims=True)
                top = np.argsort(-p, axis=1, kind="stable")[:, :k]
                tops.append(top)
                probs.append(np.take_along_axis(p, top, axis=1))
                bar.update()
    except ValueError as e:  # an unreadable image, reported by the loader
        raise UserError(str(e)) from e
    top, prob = np.concatenate(tops).astype(np.int64), np.concatenate(probs)
    if args.output:
        with open(args.output, "wb") as f:  # np.save(name) would append .npy to other names
            np.save(f, top[:, 0])
        print(f"saved {len(top)} predicted classes to {args.output}")
    if not args.output or args.print:
        for name, row, prow in zip(names, top, prob):
            cols = [f"{c}\t{classes[c] if c < len(classes) else c}\t{pc:.3f}"
                    for c, pc in zip(row, prow)]
            print(name + "\t" + "\t".join(cols))
    return 0


# --------------------------------------------------------------------------- export


def _cmd_export(args: argparse.Namespace) -> int:
    from . import io as rio

    if not (args.onnx or args.safetensors):
        raise UserError("give --onnx OUT.onnx and/or --safetensors OUT.safetensors")
    model, w = _load_model(args.checkpoint)
    meta = {**w.meta, "model": w.meta.get("model") or rio.infer_config(w.state_dict)}
    try:
        if args.safetensors:
            rio.save_safetensors(args.safetensors, model.state_dict(), meta)
            print(f"wrote {args.safetensors} (weights and model config)")
        if args.onnx:
            size = None if args.image_size is None else (args.image_size, args.image_size)
            rio.export_onnx(model, args.onnx, image_size=size, meta=meta, opset=args.opset)
            print(f"wrote {args.onnx} (opset {args.opset}, input NCHW float32 (batch, "
                  f"{model.in_channels}, {args.image_size or 'H'}, {args.image_size or 'W'}), "
                  "BN folded)")
    except (ImportError, ValueError, OSError) as e:
        raise UserError(str(e)) from e
    return 0


# --------------------------------------------------------------------------- plot


def _plot(run_dir: str) -> str:
    from . import plot

    try:
        path = plot.plot_run(run_dir)
    except (FileNotFoundError, ValueError, ImportError) as e:
        raise UserError(str(e)) from e
    print(f"wrote {path}")
    return path


def _cmd_plot(args: argparse.Namespace) -> int:
    _plot(args.dir)
    return 0


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (argparse prints the whole usage first), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help shows the usage)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="resnet-cpp", description="Train ResNets on the CPU with hand-written C++ kernels.",
        epilog="`resnet-cpp train` with no options trains ResNet-20 on the bundled data.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model (default: ResNet-20 on the bundled data)",
                       description="Train a ResNet. Unset options come from --recipe "
                       "(default he2015: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, lr /10 "
                       "at 50% and 75%) or, with --resume, from the resumed run.")
    add_options(t, DataModelConfig, TrainConfig)  # one option per setting
    t.add_argument("--plot", action="store_true", help="write OUT/curves.png at the end")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on a test split")
    e.add_argument("--checkpoint", required=True, help="a .npz written by train")
    e.add_argument("--dataset", choices=DATASETS, help="default: the training dataset")
    e.add_argument("--data-dir")
    e.add_argument("--batch-size", type=positive_int, default=256)
    e.add_argument("--threads", type=thread_count)
    e.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    e.set_defaults(func=_cmd_eval)

    r = sub.add_parser("predict", help="predict the classes of image files or folders (or a "
                       ".npy array)", description="One line per image: its name, then per "
                       "predicted class its index, name and probability, best first.")
    r.add_argument("--checkpoint", required=True, help="a .npz written by train, or any "
                   "weights file resnet_cpp reads (.pth, .pt, .safetensors)")
    r.add_argument("images", nargs="+", help="image files and folders (read with Pillow), "
                   "or one .npy of (N,H,W) or (N,C,H,W) images, uint8 0..255 or float in [0,1]")
    r.add_argument("--top-k", type=positive_int, default=1, help="classes per image")
    r.add_argument("--output", "-o", help="save predicted class indices (int64) to this .npy")
    r.add_argument("--print", action="store_true", help="also print with --output")
    r.add_argument("--batch-size", type=positive_int, default=256)
    r.add_argument("--threads", type=thread_count)
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.set_defaults(func=_cmd_predict)

    x = sub.add_parser("export", help="write a checkpoint as ONNX and/or safetensors",
                       description="ONNX: BN folded into the convolutions, float32 NCHW "
                       "input with a dynamic batch, logits out; safetensors: the weights. "
                       "Both carry the model config, class names and normalization.")
    x.add_argument("--checkpoint", required=True, help="a .npz written by train, or any "
                   "weights file resnet_cpp reads (.pth, .pt, .safetensors)")
    x.add_argument("--onnx", metavar="OUT", help="write an ONNX model here")
    x.add_argument("--safetensors", metavar="OUT", help="write the weights here")
    x.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    x.add_argument("--image-size", type=positive_int,
                   help="fix the ONNX input's H and W (default: dynamic)")
    x.set_defaults(func=_cmd_export)

    pl = sub.add_parser("plot", help="plot loss/accuracy curves of a run (needs matplotlib)")
    pl.add_argument("dir", help="run directory holding metrics.jsonl")
    pl.set_defaults(func=_cmd_plot)

    info = sub.add_parser("info", help="print the build: ISA paths, OpenMP threads, CUDA, "
                          "devices")
    info.set_defaults(func=_cmd_info)
    for parser in (p, *sub.choices.values()):  # before or after the command
        parser.add_argument("--debug", action="store_true",
                            default=False if parser is p else argparse.SUPPRESS,
                            help="show the traceback of a failure")
    return p


def _failure(e: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for the exception that ended a command."""
    from .train import TrainingDiverged

    if isinstance(e, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(e, UserError):
        return e.exit_code, f"error: {e}"
    if isinstance(e, TrainingDiverged):
        return 1, str(e)
    if isinstance(e, MemoryError):
        return 1, f"error: out of memory: {e}"
    if isinstance(e, (ValueError, OSError)):  # CheckpointError is a ValueError
        return 1, f"error: {e}"
    return 1, f"internal error: {type(e).__name__}: {e} (--debug shows the traceback)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (Exception, KeyboardInterrupt) as e:
        if args.debug:
            raise
        from . import distributed
        from .train import TrainingDiverged

        code, msg = _failure(e)
        # Every rank stops at the same step when training diverges: one message.
        if not isinstance(e, TrainingDiverged) or distributed.is_main():
            print(f"resnet-cpp {args.command}: " + " ".join(msg.split("\n")), file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
