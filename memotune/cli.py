"""The ``memotune`` command line (also ``python -m memotune``)."""

from __future__ import annotations

import argparse
import os
import sys

from memotune import __version__
from memotune.commands import bench, cache, plot, show, studies, tune, ui
from memotune.errors import ClusterError, TooManyFailures
from memotune.signals import Terminated, terminate_as_interrupt

COMMANDS = [tune, bench, studies, show, plot, ui, cache]


#: Exceptions that mean "the user asked for something wrong", not "memotune broke".
USER_ERRORS: tuple[type[BaseException], ...] = (
    ClusterError,
    TooManyFailures,
    ValueError,
    FileNotFoundError,
    PermissionError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memotune",
        description="Tune training pipelines whose stages are memoized.",
    )
    parser.add_argument("--version", action="version", version=f"memotune {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command, for the record
    try:
        with terminate_as_interrupt():
            args.handler(args)
    except Terminated:
        print("memotune: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("memotune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`memotune cache ls | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except USER_ERRORS as error:
        print(f"memotune: error: {error}", file=sys.stderr)
        return 2
    return 0
