"""The ``resnet-cpp`` command (also ``python -m resnet_cpp``).

Subcommands:
  train    train a ResNet (no arguments: ResNet-20 v1 on the bundled Fashion-MNIST subset
           for a short run), writing checkpoints and metrics.jsonl to --out
  eval     accuracy, per-class accuracy and confusion matrix of a checkpoint
  predict  predicted classes for images in a .npy file
  plot     DIR/curves.png from DIR/metrics.jsonl (needs matplotlib)
  info     the build: ISA paths, OpenMP threads, CUDA
Every failure prints one line to stderr naming the file or option, without a traceback
(``--debug`` shows it): exit code 2 for usage errors (the command line is wrong: a bad or
conflicting option, a file or directory it names that does not exist), 1 for runtime errors
(a damaged file, a full or read-only disk, out of memory, a diverged run). A run stopped by SIGINT or SIGTERM
saves a checkpoint and exits with 128 + the signal number (130, 143).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

DATASETS = ("bundled", "fashion-mnist", "mnist", "cifar10", "cifar100", "npz")
DEFAULT_EPOCHS = 6  # the no-argument run: ~1 min on 2 Zen 4 cores (47 steps of 128 per epoch)


class UserError(Exception):
    """A usage error: the command line is wrong. Printed without traceback, exit code 2."""

    exit_code = 2


class RunError(UserError):
    """A runtime error in the user's files or the run. Printed without traceback, exit code 1."""

    exit_code = 1


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _threads(s: str) -> int:
    """--threads: 1 .. the bound set_num_threads accepts (libgomp aborts past what it can start)."""
    from . import _core

    v = _positive_int(s)
    if v > _core.max_num_threads():
        raise argparse.ArgumentTypeError(f"expected at most {_core.max_num_threads()} threads "
                                         f"(4 per logical CPU), got {v}")
    return v


def _nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not np.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s}")
    return v


def _nonneg_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


# --------------------------------------------------------------------------- info


def _cmd_info(args: argparse.Namespace) -> int:
    import resnet_cpp

    for key, value in resnet_cpp.build_info().items():
        print(f"{key:>14}: {value}")
    return 0


# --------------------------------------------------------------------------- train

# Settings a resumed run takes from its checkpoint (giving a different value is an error).
_RUN_SETTINGS = ("dataset", "data_dir", "model", "version", "width", "shortcut", "epochs",
                 "batch_size", "lr", "optimizer", "schedule", "warmup_epochs", "recipe",
                 "label_smoothing", "augment", "seed", "weight_decay")
_TRAIN_DEFAULTS = {"dataset": "bundled", "data_dir": None, "model": None, "version": 1,
                   "width": None, "shortcut": None, "epochs": DEFAULT_EPOCHS,
                   "batch_size": None, "lr": None, "optimizer": None, "schedule": None,
                   "warmup_epochs": 0.0, "recipe": None, "label_smoothing": 0.0,
                   "augment": True, "seed": 0, "weight_decay": None}


def _load_data(name: str, data_dir: str | None):
    from .data import load_dataset

    try:
        return load_dataset(name, data_dir)
    except FileNotFoundError as e:  # the option names nothing there
        raise UserError(str(e)) from e
    except ValueError as e:  # the files are there but damaged
        raise RunError(str(e)) from e


def _image_shape(ds) -> list[int]:
    """(C, H, W) of one image of a Dataset."""
    return [int(v) for v in np.shape(ds.images)[1:]]


def _model_kwargs(settings: dict, train) -> dict:
    kw = {"num_classes": len(train.classes), "in_channels": _image_shape(train)[0]}
    if settings.get("width") is not None:
        if settings["version"] != 2:
            raise UserError("--width (paper|keras) selects pre-activation widths; it needs "
                            "--version 2 (e.g. --model resnet56 --version 2)")
        kw["width"] = settings["width"]
    if settings.get("shortcut") is not None:
        if settings["version"] != 1:
            raise UserError("--shortcut applies to v1 CIFAR ResNets (--version 1)")
        kw["shortcut"] = settings["shortcut"]
    kw["seed"] = settings["seed"]
    return kw


def _create_model(name: str, version: int, kwargs: dict):
    from . import models

    try:
        return models.create(name, version=version, **kwargs)
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"cannot build model {name!r} v{version} with {kwargs}: {e}") from e


def _resolve_train_settings(args: argparse.Namespace) -> tuple[dict, str, bool]:
    """Merge defaults, a resumed checkpoint's settings and explicit arguments."""
    from . import checkpoint as ckpt

    given = {k: getattr(args, k) for k in _RUN_SETTINGS if getattr(args, k) is not None}
    if args.resume:
        out = args.resume
        path = os.path.join(out, "last.npz") if os.path.isdir(out) else out
        if not os.path.isfile(path):
            raise UserError(f"--resume {args.resume}: no checkpoint (last.npz) there")
        saved = ckpt.load(path).meta.get("config", {}).get("cli")
        if saved is None:
            raise UserError(f"{path} was not written by `resnet-cpp train`; resume it with "
                            "resnet_cpp.train.fit(..., resume=...)")
        for k, v in given.items():
            if k in saved and saved[k] != v:
                raise UserError(f"--resume continues the saved run, which has {k}="
                                f"{saved[k]!r}; drop --{k.replace('_', '-')} {v!r} or "
                                "start a new run with --out")
        if args.out is not None and os.path.abspath(args.out) != \
                os.path.abspath(os.path.dirname(os.path.abspath(path))):
            raise UserError("--resume writes into the resumed run's directory; drop --out")
        return {**_TRAIN_DEFAULTS, **saved}, os.path.dirname(os.path.abspath(path)), True
    settings = {**_TRAIN_DEFAULTS, **given}
    if settings["model"] is None:  # the smallest CIFAR ResNet of each version
        settings["model"] = "resnet20" if settings["version"] == 1 else "resnet29"
    out = args.out
    if out is None:
        out = os.path.join("runs", f"{settings['dataset']}-{settings['model']}-"
                                   f"{time.strftime('%Y%m%d-%H%M%S')}")
    elif os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: is a file, not a directory")
    elif os.path.isfile(os.path.join(out, "last.npz")):
        raise UserError(f"{out} already holds a run (last.npz); continue it with "
                        f"--resume {out} or choose another --out")
    return settings, out, False


def _cmd_train(args: argparse.Namespace) -> int:
    from . import train as T

    settings, out, resuming = _resolve_train_settings(args)
    if settings["dataset"] == "npz" and not settings["data_dir"]:
        raise UserError("--dataset npz needs --data-dir PATH.npz")
    train, test = _load_data(settings["dataset"], settings["data_dir"])
    kwargs = _model_kwargs(settings, train)
    model = _create_model(settings["model"], settings["version"], kwargs)
    model_config = {"name": settings["model"], "version": settings["version"],
                    "kwargs": kwargs}
    print(f"training {settings['model']} v{settings['version']} on {settings['dataset']} "
          f"({len(train)} train / {len(test)} test images) for {settings['epochs']} epochs; "
          f"output in {out}", flush=True)
    try:  # settings the trainer refuses are usage errors; what fails while training is not
        trainer = T.Trainer(
            model, train, test, epochs=settings["epochs"], batch_size=settings["batch_size"],
            recipe=settings["recipe"], optimizer=settings["optimizer"], lr=settings["lr"],
            weight_decay=settings["weight_decay"], schedule=settings["schedule"],
            warmup_epochs=settings["warmup_epochs"], seed=settings["seed"],
            threads=args.threads, out_dir=out, resume=resuming, augment=settings["augment"],
            label_smoothing=settings["label_smoothing"], progress=not args.no_progress,
            max_steps=args.max_steps, model_config=model_config,
            config={"cli": settings})
    except ValueError as e:
        raise UserError(str(e)) from e
    history = trainer.fit()
    if history.interrupted:
        return 128 + (history.signal or signal.SIGINT)
    if history.test is not None:
        print(f"test accuracy: {100 * history.test.accuracy:.2f}% "
              f"({history.test.n} images); checkpoint: {history.last_checkpoint}")
    elif history.records and "test_acc" in history.records[-1]:
        print(f"the run was already complete; test accuracy: "
              f"{100 * history.records[-1]['test_acc']:.2f}%")
    if args.plot:
        _plot(out)
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
    c, model, mean, std = _load_checkpoint(args.checkpoint)
    cli = c.meta.get("config", {}).get("cli", {})
    name = args.dataset or cli.get("dataset")
    if name is None:
        raise UserError(f"{args.checkpoint} does not record its dataset; pass --dataset")
    data_dir = args.data_dir if args.dataset else (args.data_dir or cli.get("data_dir"))
    _, test = _load_data(name, data_dir)
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


def _cmd_predict(args: argparse.Namespace) -> int:
    import resnet_cpp

    if args.threads is not None:
        resnet_cpp.set_num_threads(args.threads)
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise UserError(f"--output {args.output}: folder "
                        f"{os.path.dirname(os.path.abspath(args.output))} does not exist")
    c, model, mean, std = _load_checkpoint(args.checkpoint)
    if not os.path.isfile(args.images):
        raise UserError(f"{args.images}: no such file")
    try:
        raw = np.load(args.images, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise RunError(f"cannot read {args.images}: {e}") from e
    if not isinstance(raw, np.ndarray):
        raise UserError(f"{args.images} must be a .npy array, not an .npz archive")
    x = _prepare_images(raw, c.meta.get("data", {}).get("image_shape"))
    if raw.dtype.kind == "f" and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        print(f"resnet-cpp predict: warning: {args.images} holds floats in [{x.min():g}, "
              f"{x.max():g}]; float images are read on the [0, 1] scale (save 0..255 images as "
              "uint8)", file=sys.stderr)
    if mean is not None:
        x = (x - mean[:, None, None]) / std[:, None, None]
    classes = c.meta.get("data", {}).get("classes") or []
    preds, confs = [], []
    for i in range(0, len(x), args.batch_size):
        logits = np.asarray(model(np.ascontiguousarray(x[i:i + args.batch_size])), np.float64)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = z / z.sum(axis=1, keepdims=True)
        preds.append(p.argmax(axis=1))
        confs.append(p.max(axis=1))
    pred = np.concatenate(preds).astype(np.int64)
    conf = np.concatenate(confs)
    if args.output:
        with open(args.output, "wb") as f:  # np.save(name) would append .npy to other names
            np.save(f, pred)
        print(f"saved {len(pred)} predicted classes to {args.output}")
    if not args.output or args.print:
        for i, (k, pk) in enumerate(zip(pred, conf)):
            name = classes[k] if k < len(classes) else str(k)
            print(f"{i}\t{k}\t{name}\t{pk:.3f}")
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
    t.add_argument("--dataset", choices=DATASETS, help="default: bundled")
    t.add_argument("--data-dir", help="dataset directory (for npz: the .npz file)")
    t.add_argument("--model", help="model name (default resnet20; resnet29 for --version 2)")
    t.add_argument("--version", type=int, choices=(1, 2), help="ResNet v1 or v2 (default 1)")
    t.add_argument("--width", choices=("paper", "keras"), help="CIFAR ResNet widths")
    t.add_argument("--shortcut", choices=("A", "B"), help="shortcut type of CIFAR ResNets")
    t.add_argument("--epochs", type=_positive_int, help=f"default {DEFAULT_EPOCHS}")
    t.add_argument("--batch-size", type=_positive_int, help="default: the recipe's")
    t.add_argument("--lr", type=_nonneg_float, help="peak learning rate (default: recipe's)")
    t.add_argument("--weight-decay", type=_nonneg_float, help="default: recipe's")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    t.add_argument("--schedule", choices=("multistep", "cosine", "onecycle", "constant",
                                          "keras"))
    t.add_argument("--warmup-epochs", type=_nonneg_float, help="linear lr warmup")
    t.add_argument("--recipe", choices=("he2015", "keras"), help="default he2015")
    t.add_argument("--label-smoothing", type=_nonneg_float)
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop (pad 4) + horizontal flip (default on)")
    t.add_argument("--threads", type=_threads, help="OpenMP threads (default: all)")
    t.add_argument("--seed", type=_nonneg_int, help="seed for init, shuffling, augmentation")
    t.add_argument("--out", help="run directory (default runs/<dataset>-<model>-<time>)")
    t.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    t.add_argument("--max-steps", type=_positive_int,
                   help="stop after this many optimizer steps (smoke tests)")
    t.add_argument("--plot", action="store_true", help="write OUT/curves.png at the end")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on a test split")
    e.add_argument("--checkpoint", required=True, help="a .npz written by train")
    e.add_argument("--dataset", choices=DATASETS, help="default: the training dataset")
    e.add_argument("--data-dir")
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--threads", type=_threads)
    e.set_defaults(func=_cmd_eval)

    r = sub.add_parser("predict", help="predict the classes of images in a .npy file")
    r.add_argument("--checkpoint", required=True, help="a .npz written by train")
    r.add_argument("images", help=".npy of (N,H,W) or (N,C,H,W) images, uint8 0..255 or "
                   "float in [0,1]")
    r.add_argument("--output", "-o", help="save predicted class indices (int64) to this .npy")
    r.add_argument("--print", action="store_true", help="also print with --output")
    r.add_argument("--batch-size", type=_positive_int, default=256)
    r.add_argument("--threads", type=_threads)
    r.set_defaults(func=_cmd_predict)

    pl = sub.add_parser("plot", help="plot loss/accuracy curves of a run (needs matplotlib)")
    pl.add_argument("dir", help="run directory holding metrics.jsonl")
    pl.set_defaults(func=_cmd_plot)

    info = sub.add_parser("info", help="print the build: ISA paths, OpenMP threads, CUDA")
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
        code, msg = _failure(e)
        print(f"resnet-cpp {args.command}: " + " ".join(msg.split("\n")), file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
