"""A worker process for the SIGTERM test: ``python -m tests.worker_app``.

Settings come from the environment (``FLOWYARD_URL``, ``FLOWYARD_API_KEY``); every job of the
``drain`` queue takes ``WORK_SECONDS`` (default 1) in a worker thread.
"""

import logging
import os
import time
from typing import Any

from flowyard.client.models import ClaimedJob
from flowyard.worker import Worker

worker = Worker(concurrency=int(os.environ.get("WORK_CONCURRENCY", "4")), wait_seconds=1)


@worker.handler("drain")
def slow(job: ClaimedJob) -> Any:
    time.sleep(float(os.environ.get("WORK_SECONDS", "1")))
    return {"done": job.payload}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    raise SystemExit(worker.run())
