"""Host-side preparation of a ray-backend mesh (aiperf/ray/cluster.py) and the two ways a
user reaches it: ``aiperf profile --ray-address`` and ``--aiperf-ray-address``. No cluster
is needed: nothing here joins one."""

from __future__ import annotations

import argparse

import pytest

from aiperf.cli import _mesh_overrides, build_parser, main
from aiperf.common.config import ServiceConfig
from aiperf.errors import ConfigError
from aiperf.ray import cluster
from aiperf.ray.cluster import head_address, interface_towards, prepare

# -- interface_towards ------------------------------------------------------------------


def test_the_interface_towards_loopback_is_loopback() -> None:
    assert interface_towards("127.0.0.1:6379") == "127.0.0.1"


@pytest.mark.parametrize("address", ["127.0.0.1", "head-without-port", ":6379"])
def test_an_address_without_host_and_port_names_ray_address(address: str) -> None:
    with pytest.raises(ConfigError) as caught:
        interface_towards(address)
    assert str(caught.value) == f"ray_address={address!r} is not host:port"


@pytest.mark.parametrize("address", [
    "127.0.0.1:port",
    "999.1.1.1:6379",
    "127.0.0.1:99999",
])
def test_an_address_that_cannot_be_routed_names_ray_address(address: str) -> None:
    with pytest.raises(ConfigError) as caught:
        interface_towards(address)
    assert f"ray_address={address!r}" in str(caught.value)
    assert "cannot route" in str(caught.value)


# -- head_address -------------------------------------------------------------------------


def test_an_explicit_address_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")
    assert head_address("10.0.0.7:6379") == "10.0.0.7:6379"


def test_a_ray_client_url_becomes_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert head_address("ray://10.0.0.7:10001") == "10.0.0.7:10001"


def test_without_an_address_ray_address_from_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.8:6379")
    assert head_address(None) == "10.0.0.8:6379"
    assert head_address("") == "10.0.0.8:6379"


def test_auto_with_no_local_cluster_names_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    import ray._private.services as services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    # Ray's own lookup reads files of a cluster started on this host; the box may have one
    # (another session's), so its answer "none found" is given here.
    def none_running(address: str, temp_dir: str | None) -> str | None:
        raise ConnectionError("no cluster")

    monkeypatch.setattr(services, "get_ray_address_from_environment", none_running)
    with pytest.raises(ConfigError, match="ray_address='auto' found no running Ray cluster"):
        head_address("auto")


# -- prepare ------------------------------------------------------------------------------


def _ray_config(**values: object) -> ServiceConfig:
    return ServiceConfig.model_validate({"backend": "ray", **values})


def test_prepare_binds_the_interface_towards_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    prepared = prepare(_ray_config(ray_address="127.0.0.1:6379"))
    assert prepared.ray_address == "127.0.0.1:6379"
    assert prepared.tcp_host == "127.0.0.1"
    # Filled in, so a second prepare (or a copy) keeps it rather than routing again.
    assert "tcp_host" in prepared.model_fields_set


def test_prepare_routes_towards_the_head_not_to_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default tcp_host is loopback too, so the route is observed where it is asked."""
    asked: list[str] = []

    def route(address: str) -> str:
        asked.append(address)
        return "10.1.2.3"

    monkeypatch.setattr(cluster, "interface_towards", route)
    prepared = prepare(_ray_config(ray_address="ray://10.1.0.1:6379"))
    assert asked == ["10.1.0.1:6379"]
    assert prepared.tcp_host == "10.1.2.3"


def test_prepare_keeps_an_explicit_tcp_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def route(address: str) -> str:
        raise AssertionError("an explicit tcp_host must not be replaced by a route")

    monkeypatch.setattr(cluster, "interface_towards", route)
    # Even one equal to the default: it was set by hand (model_fields_set), so it stays.
    for host in ("0.0.0.0", "127.0.0.1"):
        prepared = prepare(_ray_config(ray_address="10.1.0.1:6379", tcp_host=host))
        assert prepared.tcp_host == host


def test_prepare_counts_workers_per_node_over_the_alive_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster, "alive_nodes", lambda address: 3)
    prepared = prepare(_ray_config(ray_address="127.0.0.1:6379", workers_per_node=2,
                                   workers=1))
    assert prepared.workers == 6
    without = prepare(_ray_config(ray_address="127.0.0.1:6379", workers=5))
    assert without.workers == 5


def test_prepare_leaves_the_callers_config_alone() -> None:
    original = _ray_config(ray_address="127.0.0.1:6379")
    prepare(original)
    assert original.tcp_host == "127.0.0.1" and "tcp_host" not in original.model_fields_set
    assert original.ray_address == "127.0.0.1:6379"


# -- the CLI --------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["profile", "-u", "http://127.0.0.1:9", "-m", "m", *argv])


def test_cli_ray_address_selects_the_ray_backend() -> None:
    overrides = _mesh_overrides(_args("--ray-address", "10.0.0.7:6379",
                                      "--workers-per-node", "2"))
    assert overrides == {"backend": "ray", "ray_address": "10.0.0.7:6379",
                         "workers_per_node": 2}


def test_cli_without_ray_flags_keeps_the_local_mesh() -> None:
    assert "backend" not in _mesh_overrides(_args())


def test_cli_workers_per_node_without_ray_address_names_both_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["profile", "-u", "http://127.0.0.1:9", "-m", "m", "--request-count", "1",
              "--workers-per-node", "2"])
    message = str(caught.value.code)
    assert "--workers-per-node" in message and "--ray-address" in message
    # It stopped before any mesh or request: nothing was printed as a result.
    assert "artifacts" not in capsys.readouterr().out


# -- the pytest option ----------------------------------------------------------------------

_PRINT_SETTINGS = """
    from pytest_aiperf.plugin import SESSION_KEY

    def test_settings(request):
        print("RAY_ADDRESS_SETTING", request.config.stash[SESSION_KEY].settings.ray_address)
"""


def test_pytest_option_ray_address_resolves_into_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(_PRINT_SETTINGS)
    result = pytester.runpytest_inprocess("-s", "--aiperf-ray-address", "10.0.0.7:6379")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "aiperf: target *, workers auto on the Ray cluster at 10.0.0.7:6379 *",
        "*RAY_ADDRESS_SETTING 10.0.0.7:6379*",
    ])


def test_the_ini_key_is_used_and_the_flag_beats_it(pytester: pytest.Pytester) -> None:
    pytester.makeini("""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        aiperf_ray_address = auto
    """)
    pytester.makepyfile(_PRINT_SETTINGS)
    from_ini = pytester.runpytest_inprocess("-s")
    from_ini.assert_outcomes(passed=1)
    from_ini.stdout.fnmatch_lines(["*RAY_ADDRESS_SETTING auto*"])
    from_flag = pytester.runpytest_inprocess("-s", "--aiperf-ray-address", "10.0.0.9:6379")
    from_flag.assert_outcomes(passed=1)
    from_flag.stdout.fnmatch_lines(["*RAY_ADDRESS_SETTING 10.0.0.9:6379*"])


def test_no_ray_address_means_the_local_mesh(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(_PRINT_SETTINGS)
    result = pytester.runpytest_inprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*RAY_ADDRESS_SETTING None*"])
    result.stdout.no_fnmatch_line("*Ray cluster*")
