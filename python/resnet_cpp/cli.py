"""The ``resnet-cpp`` command (also ``python -m resnet_cpp``)."""
from __future__ import annotations

import argparse
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    import resnet_cpp

    for key, value in resnet_cpp.build_info().items():
        print(f"{key:>14}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resnet-cpp", description="Train ResNets on the CPU.")
    sub = p.add_subparsers(dest="command")
    info = sub.add_parser("info", help="print the build: ISA paths, OpenMP threads, CUDA")
    info.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
