"""Flowyard: DAG workflows over a job queue, in one process with one SQLite file.

The public Python API, besides the ``flowyard`` command:

- :mod:`flowyard.client`: ``Client`` and ``AsyncClient`` over the whole HTTP API.
- :mod:`flowyard.worker`: ``Worker``, pull workers that claim, run and ack jobs.
- :func:`flowyard.verify` (from :mod:`flowyard.signing`): check the ``X-Flowyard-Signature``
  of a webhook delivery or a push delivery in one call, in the receiver.
"""

from flowyard.signing import verify

__version__ = "0.1.0"
__all__ = ["__version__", "verify"]
