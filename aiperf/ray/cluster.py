"""Host-side preparation of a ray-backend mesh: which interface to bind, how many workers.

The controller's sockets must be reachable from every node, and from nowhere else if it
can be helped: they bind the one interface this host uses to reach the cluster's head (the
local end of a route to it), never all interfaces, unless ``tcp_host`` says otherwise.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from aiperf.common.config import ServiceConfig
from aiperf.errors import ConfigError, MeshError

# Counting nodes joins the cluster from a short-lived process (the controller must fork its
# services before it joins: Ray's client starts threads).
_NODES_TIMEOUT_S = 60.0
_NODE_COUNT = """
import json, ray, sys
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(json.dumps(sum(1 for node in ray.nodes() if node["Alive"])))
"""


def head_address(ray_address: str | None) -> str:
    """The head's host:port: ``ray_address``, else ``RAY_ADDRESS``, else the cluster this
    host last started or joined (``auto``, as Ray itself resolves it)."""
    address = ray_address or os.environ.get("RAY_ADDRESS") or "auto"
    if address != "auto":
        return address.removeprefix("ray://")
    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:
        raise ConfigError("backend='ray' needs Ray: pip install 'pytest-aiperf[ray]'") from None
    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise ConfigError(
            "ray_address='auto' found no running Ray cluster on this host: start one "
            "(`ray start --head`) or set ray_address to the head's host:port")
    return str(found)


def interface_towards(address: str) -> str:
    """This host's IP on the route to ``address`` (host:port); no packet is sent."""
    host, _, port = address.rpartition(":")
    if not host:
        raise ConfigError(f"ray_address={address!r} is not host:port")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host.strip("[]"), int(port)))
        except (OSError, ValueError, OverflowError) as exc:
            raise ConfigError(f"ray_address={address!r}: cannot route to it ({exc})") from None
        return str(probe.getsockname()[0])


def alive_nodes(address: str, timeout: float = _NODES_TIMEOUT_S) -> int:
    try:
        done = subprocess.run([sys.executable, "-c", _NODE_COUNT, address],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MeshError(f"the Ray cluster at {address} did not answer within "
                        f"{timeout:g}s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MeshError(f"cannot join the Ray cluster at {address}: {last}")
    return int(json.loads(done.stdout.strip().splitlines()[-1]))


def prepare(service_config: ServiceConfig) -> ServiceConfig:
    """``service_config`` with the head's address, the bind interface and, for
    ``workers_per_node``, the worker count filled in."""
    address = head_address(service_config.ray_address)
    update: dict[str, object] = {"ray_address": address}
    if "tcp_host" not in service_config.model_fields_set:
        update["tcp_host"] = interface_towards(address)
    if service_config.workers_per_node:
        update["workers"] = alive_nodes(address) * service_config.workers_per_node
    return service_config.model_copy(update=update)
