"""Why msgspec is the hot-path codec: encode + decode of one batch of 64 raw records
(a streamed response of 20 events each), msgspec msgpack structs against pydantic JSON and
the standard library's json + pickle, in microseconds per record.

    .venv/bin/python benchmarks/codec_bench.py
"""

from __future__ import annotations

import json
import pickle
import time

from _common import median
from pydantic import BaseModel, create_model

from aiperf.common.codec import PROFILING, RawBatch, RawRecord, encode, raw_decoder

EVENT = (b'data: {"id":"x","object":"chat.completion.chunk",'
         b'"choices":[{"delta":{"content":" ab"}}]}\n\n')


# The same record as a pydantic model, field for field, for the comparison.
PydRecord = create_model(
    "PydRecord",
    **{name: (RawRecord.__annotations__[name], ...)
       for name in RawRecord.__struct_fields__ if name not in ("error", "cancelled")},
)


class PydBatch(BaseModel):
    run: int
    records: list[PydRecord]  # type: ignore[valid-type]


def batch() -> RawBatch:
    records = [RawRecord(i, PROFILING, "worker_0", i, 1, 2, 3, 4, 5, 200,
                         [(10 + j, EVENT) for j in range(20)]) for i in range(64)]
    return RawBatch(7, records)


def timed(fn, repeats: int = 200) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        runs.append((time.perf_counter() - start) / repeats / 64 * 1e6)
    return median(runs)


def main() -> None:
    data = batch()
    pyd = PydBatch.model_validate({"run": 7, "records": [
        {f: getattr(r, f) for f in PydRecord.model_fields} for r in data.records]})
    plain = {"run": 7, "records": [
        {f: getattr(r, f) for f in PydRecord.model_fields} | {"chunks": [
            [t, c.decode()] for t, c in r.chunks]} for r in data.records]}
    results = {
        "msgspec msgpack (used)": timed(lambda: raw_decoder.decode(encode(data))),
        "pickle": timed(lambda: pickle.loads(pickle.dumps(data))),
        "json (stdlib, dicts)": timed(lambda: json.loads(json.dumps(plain))),
        "pydantic JSON": timed(lambda: PydBatch.model_validate_json(pyd.model_dump_json())),
    }
    for name, micros in results.items():
        print(f"{name:<24} {micros:7.2f} us per record (encode + decode)")


if __name__ == "__main__":
    main()
