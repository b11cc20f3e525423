"""Dynamic batching: one background thread gathers concurrent requests and decodes them together.

Requests wait in a bounded queue (full -> `QueueFull`, which the server answers with 429). The
worker takes the first waiting request, keeps gathering for `batch_window_ms` (or until
`max_batch_size` sequences), then runs one `Generator.generate` call over all of them. Tokens
stream back to each request's asyncio queue as they are produced, so SSE clients see text at once.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from infir.generation import Completion, SamplingParams
from infir.utils.log import get_logger

log = get_logger(__name__)


class QueueFull(Exception):
    """The waiting queue is at capacity."""


class BatcherStopped(Exception):
    """The batching thread is not running (shutting down or crashed)."""


@dataclass
class Job:
    """One HTTP request: one or more sequences (prompts x n) that are decoded in the same batch.

    Events put on `events` (from the worker thread, via the event loop):
    ("token", seq_index, text_piece), then ("done", [Completion, ...]) or ("error", message).
    """

    prompts: list[list[int]]
    params: list[SamplingParams]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    enqueued_at: float = field(default_factory=time.monotonic)

    def emit(self, event: tuple) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Batcher:
    def __init__(self, generator: Any, max_batch_size: int = 8, max_queue: int = 64,
                 batch_window_ms: float = 5.0) -> None:
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_ms / 1000
        self.waiting: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.busy = False
        self.batches_run = 0
        self.largest_batch = 0
        self._thread = threading.Thread(target=self._loop, name="infir-batcher", daemon=True)
        self._stopping = False

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        try:
            self.waiting.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def submit(self, job: Job) -> None:
        if not self.alive:
            raise BatcherStopped("the batching thread is not running")
        try:
            self.waiting.put_nowait(job)
        except queue.Full as e:
            raise QueueFull(f"{self.waiting.maxsize} requests are already waiting") from e

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """The first job plus whatever else arrives within the window (never splitting a job)."""
        jobs, size, stop = [first], len(first.prompts), False
        deadline = time.monotonic() + self.batch_window_s
        while size < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self.waiting.get(timeout=remaining) if remaining > 0 else self.waiting.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            if size + len(job.prompts) > self.max_batch_size:
                self._requeue_front(job)
                break
            jobs.append(job)
            size += len(job.prompts)
        return jobs, stop

    def _requeue_front(self, job: Job) -> None:
        with self.waiting.mutex:  # a job that does not fit goes first in the next batch
            self.waiting.queue.appendleft(job)
            self.waiting.not_empty.notify()

    def _loop(self) -> None:
        while True:
            first = self.waiting.get()
            if first is None:
                return
            jobs, stop = self._gather(first)
            self._run(jobs)
            if stop:
                return

    def _run(self, jobs: Sequence[Job]) -> None:
        prompts, params, owners = [], [], []
        for job in jobs:
            for i, (p, sp) in enumerate(zip(job.prompts, job.params, strict=True)):
                prompts.append(p)
                params.append(sp)
                owners.append((job, i))

        def on_token(index: int, token_id: int, piece: str) -> None:
            job, seq = owners[index]
            if piece:
                job.emit(("token", seq, piece))

        self.busy = True
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(prompts))
        try:
            completions: list[Completion] = self.generator.generate(prompts, params, on_token=on_token)
        except Exception as e:  # the server must keep serving: report to these requests only
            log.exception("generation failed for a batch of %d sequences", len(prompts))
            for job in jobs:
                job.emit(("error", f"generation failed: {type(e).__name__}: {e}"))
            return
        finally:
            self.busy = False
        start = 0
        for job in jobs:
            job.emit(("done", completions[start : start + len(job.prompts)]))
            start += len(job.prompts)
