"""The one place that turns stored records into bytes and back (encoders built once)."""

from typing import Any

import msgspec

from flowyard.jobs.model import Job, Run

encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(Job)
_run_decoder = msgspec.json.Decoder(Run)


def encode(value: Any) -> bytearray:
    """JSON of a record (or any msgspec-encodable value), for a row's ``doc`` column.

    A ``bytearray``: Python's sqlite3 binds it as a blob directly, where ``bytes`` first goes
    through its adapter lookup (see :mod:`flowyard.storage.writer`).
    """
    buffer = bytearray()
    encoder.encode_into(value, buffer)
    return buffer


def decode_job(data: bytes) -> Job:
    """A stored job.

    Its ``Raw`` payload and result are copied: a ``Raw`` decoded from a buffer keeps the whole
    buffer alive, which would pin every row of a rehydration in memory.
    """
    job = _job_decoder.decode(data)
    return msgspec.structs.replace(job, payload=job.payload.copy(), result=job.result.copy())


def decode_run(data: bytes) -> Run:
    """A stored run."""
    return _run_decoder.decode(data)
