"""The one place that turns stored records into bytes and back (encoders built once)."""

from typing import Any

import msgspec

from flowyard.jobs.model import Job, Run

encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(Job)
_run_decoder = msgspec.json.Decoder(Run)


def encode(value: Any) -> bytes:
    """JSON bytes of a record (or any msgspec-encodable value)."""
    return encoder.encode(value)


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
