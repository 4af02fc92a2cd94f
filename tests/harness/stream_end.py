"""Whether the record deriver accepts a stream that ends without ``[DONE]`` when its
endpoint says the protocol ended it (``BaseEndpoint.stream_ended``: TGI's
``/generate_stream``, the Responses API). Until ``aiperf/metrics/derive.py`` asks the
endpoint, such streams are IncompleteStream errors, and the tests that carry one through
the deriver are skipped with this reason."""

from __future__ import annotations

import inspect

import pytest

from aiperf.metrics import derive

DERIVE_ASKS_STREAM_END = "stream_ended" in inspect.getsource(derive)

needs_stream_end = pytest.mark.skipif(
    not DERIVE_ASKS_STREAM_END,
    reason="aiperf/metrics/derive.py does not yet ask endpoint.stream_ended() for a "
    "stream without [DONE] (the integrator's one-line change)")
