"""Everything one service app owns: its config, keys, metrics, embedders, banks and job queue.

Where it sits: built once by ``app.create_app`` (no module-level mutable state), handed to the
middleware and the routes; ``app.state.vmatch`` of the FastAPI app.
"""

from __future__ import annotations

import contextlib
import logging

import anyio

from vmatch.service.banks import Banks
from vmatch.service.config import ServiceConfig
from vmatch.service.embedders import Embedders
from vmatch.service.jobs import JobQueue
from vmatch.service.keys import KeyStore
from vmatch.service.metrics import Metrics

log = logging.getLogger("vmatch.service")


class ServiceState:
    """Everything one app instance owns (no module-level mutable state)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.keys = KeyStore(config.bank_root)
        self.embedders = Embedders(config.device, config.cnn_threads)
        self.banks = Banks(config.bank_root, config.device)
        self.jobs = JobQueue(workers=config.workers, queue_size=config.queue_size, timeout=config.job_timeout,
                             ttl=config.job_ttl, max_kept=config.max_jobs_kept, metrics=self.metrics)
        self.probe_limiter = anyio.CapacityLimiter(max(2, config.workers))
        self.model_ready = False
        self.model_error: str | None = None
        self.metrics.gauge("vmatch_job_queue_depth", "Jobs waiting for a worker.", lambda: self.jobs.queued)
        self.metrics.gauge("vmatch_jobs_running", "Jobs running.", lambda: self.jobs.running)
        self.metrics.gauge("vmatch_job_queue_capacity", "Most jobs queued + running.", lambda: self.jobs.capacity)
        self.metrics.gauge("vmatch_banks_loaded", "Banks open.", lambda: len(self.banks.names()))

    def clean_uploads(self) -> None:
        d = self.config.upload_dir
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            with contextlib.suppress(OSError):
                f.unlink()

    def load_model(self) -> None:
        try:
            self.embedders.get(self.config.default_model)
            self.model_ready = True
        except Exception as e:  # reported by /status
            self.model_error = str(e)
            log.error("the default model cannot be loaded: %s", e)
