"""``memotune cache stats | ls | prune | unpin | clear``."""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from memotune.cache import DEFAULT_ROOT, StageCache, open_cache
from memotune.formatting import human_bytes, parse_bytes, table

EXAMPLES = """examples:
  memotune cache stats
  memotune cache ls --stage train --limit 20
  memotune cache prune --max-bytes 2GB
  memotune cache unpin --study digits
  memotune cache clear --cache /shared/memotune-cache --yes
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="inspect and manage the stage cache",
        description="Inspect and manage the stage-output cache.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache",
        default=DEFAULT_ROOT,
        metavar="PATH|URL",
        help=f"cache folder or object-storage URL (default {DEFAULT_ROOT})",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    stats = actions.add_parser("stats", parents=[common], help="entries, size, hits, time saved")
    stats.set_defaults(handler=_stats)

    ls = actions.add_parser("ls", parents=[common], help="list entries, most recently used first")
    ls.add_argument("--stage", help="only entries of this stage")
    ls.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    ls.set_defaults(handler=_ls)

    prune = actions.add_parser(
        "prune",
        parents=[common],
        help="evict down to a size (cheapest to recompute per byte first; pinned entries stay)",
    )
    prune.add_argument("--max-bytes", type=_size, metavar="SIZE", help="e.g. 500MB, 2GB")
    prune.set_defaults(handler=_prune)

    unpin = actions.add_parser(
        "unpin",
        parents=[common],
        help="release the pins EEIPU keeps on a study's best prefixes, so prune may evict them",
    )
    whose = unpin.add_mutually_exclusive_group(required=True)
    whose.add_argument("--study", help="the study whose pins to release")
    whose.add_argument("--all", action="store_true", help="every study's pins")
    unpin.set_defaults(handler=_unpin)

    clear = actions.add_parser(
        "clear", parents=[common], help="remove every entry (asks first unless --yes)"
    )
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(handler=_clear)


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _open(args: argparse.Namespace) -> StageCache:
    """The cache at ``--cache``; a place that holds none is an error, not a new cache."""
    try:
        return open_cache(args.cache, create=False)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} (give its folder or URL with --cache)") from None


def _stats(args: argparse.Namespace) -> None:
    stats = _open(args).stats()
    if args.json:
        print(json.dumps(stats.__dict__, indent=2))
        return
    print(
        f"cache {args.cache}: {stats.entries} entries, {human_bytes(stats.total_bytes)}, "
        f"{stats.hits} hits, {stats.pinned} pinned, {stats.saved_seconds:.1f}s of compute saved"
    )
    if stats.by_stage:
        rows = [
            [
                stage,
                int(s["entries"]),
                human_bytes(s["bytes"]),
                int(s["hits"]),
                round(s["saved_seconds"], 2),
            ]
            for stage, s in sorted(stats.by_stage.items())
        ]
        print(table(["stage", "entries", "size", "hits", "saved s"], rows))


def _ls(args: argparse.Namespace) -> None:
    if args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    everything = _open(args).entries()
    stages = sorted({e.stage for e in everything})
    if args.stage is not None and args.stage not in stages:
        known = f"stages there: {', '.join(stages)}" if stages else "the cache is empty"
        raise ValueError(f"no entries of stage '{args.stage}' in {args.cache} ({known})")
    entries = [e for e in everything if args.stage in (None, e.stage)][: args.limit]
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], indent=2, default=str))
        return
    rows = [
        [
            e.key[:12],
            e.stage,
            json.dumps(e.params, sort_keys=True),
            human_bytes(e.size_bytes),
            round(e.cost, 4),
            e.hits,
            "yes" if e.pinned else "",
            _when(e.last_used),
        ]
        for e in entries
    ]
    print(table(["key", "stage", "params", "size", "cost", "hits", "pinned", "last used"], rows))


def _prune(args: argparse.Namespace) -> None:
    report = _open(args).prune(args.max_bytes)
    if args.json:
        print(
            json.dumps(
                {
                    "evicted": len(report.evicted),
                    "freed_bytes": report.freed_bytes,
                    "debris_files": report.debris_files,
                }
            )
        )
        return
    print(
        f"evicted {len(report.evicted)} entries ({human_bytes(report.freed_bytes)}), "
        f"removed {report.debris_files} leftover files"
    )


def _unpin(args: argparse.Namespace) -> None:
    from memotune.tuner.eeipu import pin_owner  # EEIPU pins; loading it loads torch

    count = _open(args).unpin(None if args.all else pin_owner(args.study))
    if not count and not args.all:
        raise ValueError(f"study '{args.study}' holds no pins in {args.cache}")
    print(json.dumps({"unpinned": count}) if args.json else f"released {count} pins")


def _clear(args: argparse.Namespace) -> None:
    cache = _open(args)
    if not args.yes:
        _confirm(f"remove all {cache.stats().entries} entries of the cache at {args.cache}?")
    count = cache.clear()
    print(json.dumps({"removed": count}) if args.json else f"removed {count} entries")


def _confirm(question: str) -> None:
    """Ask on the terminal; without one (a script, a pipe) refuse: say --yes instead."""
    if not sys.stdin.isatty():
        raise ValueError(f"{question} Not without a terminal to ask on: add --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise ValueError("nothing removed")


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
