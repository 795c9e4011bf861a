"""Flowyard: DAG workflows over a job queue, in one process with one SQLite file.

The public Python API, besides the ``flowyard`` command:

- :mod:`flowyard.client`: ``Client`` and ``AsyncClient`` over the whole HTTP API.
- :mod:`flowyard.worker`: ``Worker``, pull workers that claim, run and ack jobs.
- :func:`flowyard.signing.verify` (also ``flowyard.verify``): check a push delivery's
  ``X-Flowyard-Signature`` in a handler.
"""

from flowyard.signing import verify

__version__ = "0.1.0"
__all__ = ["__version__", "verify"]
