"""Write the flag list of AIPerf 0.13's ``aiperf profile --help`` as a fixture.

Run once, by hand, against an installed AIPerf 0.13 (it is not a dependency of this
project); the output is committed as tests/data/aiperf013/profile_help_flags.txt and
tests/integration/test_cli_aiperf_flags.py checks our parser against it:

    .venv/bin/python scripts/aiperf013_flags.py /tmp/aiperf013/bin/aiperf \\
        > tests/data/aiperf013/profile_help_flags.txt

``--metrics PYTHON`` prints instead every metric tag AIPerf 0.13 reports (its metric
registry and its time-weighted sweep metrics, read with AIPerf's own interpreter PYTHON),
one ``tag<TAB>unit<TAB>module`` a line: tests/data/aiperf013/metric_tags.txt, which
docs/metrics.md's parity table is checked against.

``--docs-table`` prints instead the Markdown table of docs/cli.md ("not supported"): every
AIPerf option none of whose names ``aiperf profile`` accepts, with the reason the CLI gives.

One line per option: its names (the primary first, then the aliases) separated by spaces;
``# <group>`` lines name the help's panels. The help is rendered wide (COLUMNS) so that no
option's names wrap onto a second line.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

# A panel title line: "╭─ Endpoint ───╮".
_PANEL = re.compile(r"^╭─ (.+?) ─+╮\s*$")
# An option row: "│ --url -u     Base URL ...". The names end at the first run of two spaces.
_ROW = re.compile(r"^│ (-\S+(?: -\S+)*)(?:\s{2,}|\s*│|\s*$)")


def parse_help(text: str) -> list[str]:
    """The fixture's lines from the rendered help text."""
    lines: list[str] = []
    for line in text.splitlines():
        panel = _PANEL.match(line)
        if panel:
            lines.append(f"# {panel.group(1)}")
            continue
        row = _ROW.match(line)
        if row:
            lines.append(row.group(1))
    return lines


def docs_table() -> list[str]:
    """docs/cli.md's table of the AIPerf options ``aiperf profile`` does not take."""
    from aiperf import aiperf013_options
    from aiperf.cli import profile_option_strings

    accepted = profile_option_strings()
    rows = ["| AIPerf 0.13 option (aliases) | help panel | why not here |", "|---|---|---|"]
    for group, names in aiperf013_options.options():
        if not any(name in accepted for name in names):
            shown = " ".join(f"`{name}`" for name in names)
            rows.append(f"| {shown} | {group} | {aiperf013_options.reason(names[0])} |")
    return rows


# Run by AIPerf 0.13's interpreter: its registry's metrics, then the sweep metrics it adds
# from its time-weighted curves (effective_* always, active_* beside them).
_METRICS = """
from aiperf.metrics.metric_registry import MetricRegistry
from aiperf.analysis.sweepline import SWEEP_LINE_METRIC_SPECS
rows = []
for tag in MetricRegistry.all_tags():
    cls = MetricRegistry.get_class(tag)
    unit = getattr(cls, "display_unit", None) or cls.unit
    rows.append((tag, str(getattr(unit, "value", unit)), cls.__module__.rsplit(".", 1)[-1]))
for spec in SWEEP_LINE_METRIC_SPECS:
    rows.append((spec.tag, spec.unit, "sweepline"))
for tag, unit in (("active_decode_throughput", "tokens/sec"),
                  ("active_prefill_throughput", "tokens/sec"),
                  ("active_decode_throughput_per_user", "tokens/sec/user"),
                  ("active_prefill_throughput_per_user", "tokens/sec/user"),
                  ("active_total_throughput", "tokens/sec")):
    rows.append((tag, unit, "sweepline"))
rows += [("credit_to_start_latency", "ms", "derived_latency"),
         ("effective_latency", "ms", "derived_latency")]
for row in sorted(rows):
    print("\\t".join(row))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("aiperf", nargs="?", help="the AIPerf 0.13 executable")
    parser.add_argument("--docs-table", action="store_true",
                        help="print docs/cli.md's not-supported table instead")
    parser.add_argument("--metrics", metavar="PYTHON",
                        help="print AIPerf 0.13's metric tags, read with its interpreter")
    args = parser.parse_args(argv)
    if args.metrics:
        # From / so that the child imports its own aiperf, not this checkout's.
        done = subprocess.run([args.metrics, "-c", _METRICS], capture_output=True,
                              text=True, cwd="/", timeout=300, check=True)
        print("# AIPerf 0.13's metric tags (scripts/aiperf013_flags.py --metrics): "
              "tag, display unit, module")
        print(done.stdout, end="")
        return 0
    if args.docs_table:
        print("\n".join(docs_table()))
        return 0
    if args.aiperf is None:
        parser.error("give the AIPerf 0.13 executable")
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([args.aiperf, "profile", "--help"], capture_output=True,
                          text=True, env=env, timeout=300, check=True)
    version = subprocess.run([args.aiperf, "--version"], capture_output=True, text=True,
                             env=env, timeout=300).stdout.strip()
    lines = parse_help(done.stdout)
    if not any(not line.startswith("#") for line in lines):
        print("aiperf013_flags: no option rows found in the help text", file=sys.stderr)
        return 1
    print(f"# aiperf profile --help of AIPerf {version or '0.13'} "
          f"(scripts/aiperf013_flags.py); one option a line, primary name first")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
