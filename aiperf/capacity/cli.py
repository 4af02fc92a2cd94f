"""``aiperf capacity``: the largest load within the SLOs.

    aiperf capacity -u http://127.0.0.1:8000 -m my-model --streaming \\
        --slo "time_to_first_token.p99<250ms" --slo "request_error_rate<=1%" \\
        --over concurrency --min 1 --max 512

Exit codes: 0 a point passed (``max_passing`` found), 8 no point passed, 3 a probe's
requests all failed, 2 invalid configuration, 1 the mesh failed, 130 interrupted.
``capacity.json`` and each probe's exports go to ``--output-artifact-dir``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf.capacity.model import OVER_CHOICES

if TYPE_CHECKING:
    from pytest_aiperf.slo import Objective

EXIT_OK, EXIT_MESH, EXIT_CONFIG, EXIT_ALL_FAILED = 0, 1, 2, 3
EXIT_NONE_PASSED = 8
EXIT_INTERRUPTED = 130
_SLO = re.compile(r"^\s*([A-Za-z0-9_.@]+)\s*(<=|>=|<|>)\s*(.+?)\s*$")
# A key with a turn range ("time_to_first_token.p99[turn>=2]"), whose ">=" is not the
# objective's operator: the key is everything up to the last "]" and what follows it up
# to the operator, so a misplaced "@10s" or an empty metric gets the objective's reason.
_TURN_TAIL = re.compile(r"^([^<>]*?)\s*(<=|>=|<|>)\s*(.+?)\s*$")
_FORM = ("METRIC[.STAT][[turn>=N]] OP NUMBER[UNIT], e.g. 'time_to_first_token.p99<250ms', "
         "'time_to_first_token.p99[turn>=2]<250ms' or 'request_error_rate<=1%'")


def parse_slo(text: str) -> Objective:
    """``time_to_first_token.p99<250ms`` (spaces optional) -> an Objective; SLOError."""
    from pytest_aiperf.slo import SLOError, parse_objective

    if "]" in text:
        end = text.rindex("]") + 1
        tail = _TURN_TAIL.match(text[end:])
        if tail is None:
            raise SLOError(f"--slo {text!r} is not {_FORM}")
        rest, op, value = tail.groups()
        return parse_objective((text[:end] + rest).strip(), f"{op} {value}")
    match = _SLO.match(text)
    if not match:
        raise SLOError(f"--slo {text!r} is not {_FORM}")
    key, op, value = match.groups()
    return parse_objective(key, f"{op} {value}")


def register(subparsers: Any) -> None:
    """Add ``capacity`` to the ``aiperf`` command's subparsers."""
    from aiperf.cli import PROFILE_FLAGS, _add_mesh_arguments

    parser = subparsers.add_parser(
        "capacity", help="find the largest concurrency or request rate within the SLOs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  aiperf capacity -u http://127.0.0.1:8000 -m my-model --streaming "
               "\\\n    --slo 'time_to_first_token.p99<250ms' --slo 'request_error_rate<=1%' "
               "\\\n    --over concurrency --min 1 --max 512\n\n"
               "each probe is decided with confidence (INCONCLUSIVE probes are extended); "
               "the search\n  doubles from --min until a probe fails, then bisects to "
               "--tolerance\n\nexit codes: 0 a point passed, 8 none passed, 3 a probe's "
               "requests all failed,\n  2 invalid configuration, 1 mesh failure, "
               "130 interrupted")
    parser.add_argument("--slo", action="append", required=True, metavar="OBJECTIVE",
                        help="e.g. 'time_to_first_token.p99<250ms' (repeatable; every one "
                             "must hold)")
    parser.add_argument("--over", choices=OVER_CHOICES, default="concurrency",
                        help="what to search (default concurrency)")
    parser.add_argument("--min", dest="search_min", type=float, default=1.0,
                        help="the first point probed (default 1)")
    parser.add_argument("--max", dest="search_max", type=float, default=512.0,
                        help="the largest point probed (default 512)")
    parser.add_argument("--tolerance", type=float, default=0.1,
                        help="bisect until the smallest failing point is within this "
                             "fraction of the largest passing one (default 0.1)")
    parser.add_argument("--max-requests", type=int, metavar="N",
                        help="request budget of the whole search (default: none)")
    parser.add_argument("--max-seconds", type=float, metavar="S",
                        help="time budget of the whole search (default: none)")
    parser.add_argument("--max-probes", type=int, default=20, metavar="N",
                        help="probe budget (default 20)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="of each probe's verdicts (default 0.95)")
    parser.add_argument("--inconclusive", choices=("fail", "pass"), default="fail",
                        help="what a probe still INCONCLUSIVE after its extend budget counts "
                             "as (default fail: a capacity is always a point that passed)")
    parser.add_argument("--validity", choices=("error", "warn", "off"), default="error",
                        help="a probe the client could not deliver ends the search as the "
                             "client's limit (error, default), is judged anyway (warn), or "
                             "is not checked (off)")
    for flags, key, options in PROFILE_FLAGS:
        parser.add_argument(*flags, dest=key, **options)
    parser.add_argument("--output-artifact-dir", default="artifacts",
                        help="capacity.json and each probe's exports (default: artifacts)")
    parser.add_argument("--workers-max", type=int,
                        help="worker processes (default: half the cores, at least 1)")
    _add_mesh_arguments(parser)
    parser.add_argument("--log-level", default="WARNING",
                        help="log level of the mesh's services (default WARNING)")
    parser.set_defaults(func=cmd_capacity)


def cmd_capacity(args: argparse.Namespace) -> int:
    from aiperf.capacity.probe import ProbeRunner
    from aiperf.capacity.search import Budget, run_search
    from aiperf.cli import FLAG_OF, _mesh_overrides, _profile_values
    from aiperf.errors import AIPerfError, ConfigError
    from aiperf.mesh import Mesh
    from pytest_aiperf.policy import PolicyError, VerdictPolicy
    from pytest_aiperf.slo import SLOError

    profile = _profile_values(args)
    if args.over in profile:
        flag = FLAG_OF.get(args.over, args.over)
        print(f"aiperf: invalid configuration: {flag} is what --over {args.over} searches; "
              "give --min and --max instead", file=sys.stderr)
        return EXIT_CONFIG
    out_dir = Path(args.output_artifact_dir)
    try:
        objectives = [parse_slo(text) for text in args.slo]
        policy = VerdictPolicy.build("aiperf capacity", confidence=args.confidence,
                                     inconclusive="extend", validity=args.validity)
        budget = Budget(args.max_requests, args.max_seconds, args.max_probes)
        runner_args = dict(over=args.over, policy=policy,
                           on_run=_exporter(out_dir, args.over))
    except (SLOError, PolicyError, ValueError) as exc:
        print(f"aiperf: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if (code := _wait_for_model(profile, args)) is not None:
        return code
    try:
        with Mesh(log_level=args.log_level, capture_logs=False,
                  **_mesh_overrides(args)) as mesh:
            try:
                runner = ProbeRunner(mesh.run, profile, objectives, **runner_args)
            except (SLOError, ValueError) as exc:
                print(f"aiperf: invalid configuration: {exc}", file=sys.stderr)
                return EXIT_CONFIG
            print(f"capacity search over {args.over}, {args.search_min:g} .. "
                  f"{args.search_max:g}, tolerance {args.tolerance:.0%}; objectives: "
                  + ", ".join(str(o) for o in objectives))
            result = run_search(runner, over=args.over, low=args.search_min,
                                high=args.search_max, tolerance=args.tolerance,
                                budget=budget, inconclusive_counts_as=args.inconclusive,
                                on_probe=lambda p: print(
                                    f"  probe {p.point:g}: {p.status} ({p.requests} "
                                    f"requests, {p.seconds:.1f} s) {p.summary()}",
                                    flush=True))
    except ConfigError as exc:
        print(f"aiperf: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("aiperf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AIPerfError as exc:
        print(f"aiperf: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_MESH
    except ValueError as exc:
        print(f"aiperf: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print()
    print("\n".join(result.table()))
    print()
    print("\n".join(result.verdict_tables()))
    print("\nlatency-load curve (first run at each point):")
    print("\n".join(result.curve_lines()))
    print()
    print(result.headline())
    path = result.write(out_dir)
    print(f"\nartifacts: {path.resolve()}")
    if result.error is not None:
        return EXIT_ALL_FAILED
    return EXIT_OK if result.max_passing is not None else EXIT_NONE_PASSED


def _wait_for_model(profile: dict[str, Any], args: argparse.Namespace) -> int | None:
    """``--wait-for-model-timeout``: wait for the endpoint once, before the first probe, as
    ``aiperf profile`` does before its run; an exit code when it never answered."""
    from aiperf.common.config import UserConfig
    from aiperf.errors import ConfigError

    try:
        config = UserConfig.build(where="aiperf capacity", **{
            **profile, args.over: int(args.search_min) if args.over == "concurrency"
            else float(args.search_min)})
    except ConfigError as exc:
        print(f"aiperf: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if config.wait_for_model_timeout <= 0:
        return None
    from aiperf.readiness import ModelNotReady, wait_for_model

    try:
        wait_for_model(config)
    except ModelNotReady as exc:
        print(f"aiperf: {exc}", file=sys.stderr)
        return EXIT_MESH
    return None


def _exporter(out_dir: Path, over: str) -> Any:
    counter = {"probe": 0, "point": None}

    def export(point: float, chunk: int, result: Any) -> str:
        from aiperf.exporters.base import export_files

        if chunk == 1:
            counter["probe"] = int(counter["probe"] or 0) + 1
        name = f"probe{counter['probe']:02d}_{over}_{point:g}"
        path = out_dir / (name if chunk == 1 else f"{name}_chunk{chunk}")
        export_files(result, path)
        return str(out_dir / name)

    return export
