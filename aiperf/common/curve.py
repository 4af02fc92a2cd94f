"""The mesh's keys: ZeroMQ CURVE, so that only this mesh's processes can join it over TCP.

A mesh whose sockets are reachable from other machines (the Ray backend) gets one server
key pair (every binding socket) and one client key pair (every connecting socket), fresh
per mesh. A peer without the client secret cannot complete the handshake; the binding
side's ZAP handler also refuses any client key but this mesh's, and says so in the log.
"""

from __future__ import annotations

from typing import Any

import zmq
from pydantic import BaseModel, ConfigDict, SecretStr, field_serializer


class MeshKeys(BaseModel):
    """Z85 CURVE keys of one mesh. The secrets are ``SecretStr`` (masked in reprs and
    errors); ``model_dump`` reveals them only with ``context={"reveal": True}``, which is
    how the host hands them to the controller and the controller to remote workers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_public: str
    server_secret: SecretStr
    client_public: str
    client_secret: SecretStr

    @classmethod
    def generate(cls) -> MeshKeys:
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        return cls(server_public=server_public.decode(), server_secret=server_secret.decode(),
                   client_public=client_public.decode(), client_secret=client_secret.decode())

    @field_serializer("server_secret", "client_secret")
    def _secret(self, value: SecretStr, info: Any) -> str:
        context = info.context or {}
        return value.get_secret_value() if context.get("reveal") else str(value)
