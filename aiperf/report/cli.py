"""``aiperf plot DIR [DIR...] -o report.html``: the HTML report from artifact directories.

``aiperf/cli.py`` calls ``register(sub)`` with its subparsers; the command's function is
``cmd_plot`` (exit 0 written, 2 a source that is not one)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_SOURCE = 2


def register(subparsers: Any) -> None:
    """Adds the ``plot`` command to ``subparsers`` (``parser.add_subparsers()``)."""
    plot = subparsers.add_parser(
        "plot", help="an HTML report (plots per test) from artifact directories",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="a DIR is a pytest artifacts dir (--aiperf-artifacts: summary.json and a "
               "dir per test),\n  an `aiperf profile` artifact dir, or an NVIDIA AIPerf "
               "artifact dir\n  (profile_export_aiperf.json + profile_export.jsonl), or a "
               "capacity search's dir\n  (capacity.json: aiperf capacity, aiperf.capacity); "
               "several DIRs are overlaid\n\nexample:\n  aiperf plot artifacts/main "
               "artifacts/pr -o report.html")
    plot.add_argument("sources", nargs="+", metavar="DIR", help="artifact directories")
    plot.add_argument("-o", "--output", default="report.html", metavar="FILE",
                      help="the HTML file to write (default: report.html)")
    plot.add_argument("--title", default=None, help="the report's title")
    plot.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from aiperf.baselines.sources import SourceError
    from aiperf.report import write_report

    try:
        out = write_report([Path(s) for s in args.sources], Path(args.output), args.title)
    except SourceError as exc:
        print(f"aiperf plot: {exc}", file=sys.stderr)
        return EXIT_SOURCE
    except OSError as exc:
        print(f"aiperf plot: cannot write {args.output}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_SOURCE
    size = out.stat().st_size
    print(f"aiperf plot: wrote {out} ({size / 1e6:.2f} MB)")
    return EXIT_OK
