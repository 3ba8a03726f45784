"""Systems Under Test: a prepared backend answering LoadGen's queries over the MNIST test split.

``DirectSUT`` serves each query inside LoadGen's issue callback, in calls of at most ``batch``
samples (1 for a served request, 8 for a MultiStream query, the sweep's best batch for Offline).
``BatchingSUT`` is dynamic batching as a server does it: queued samples wait in a queue that one
worker serves, a call as soon as ``max_batch`` samples wait or the oldest has waited
``timeout_us``. Both record, per sample, when LoadGen handed it over, when its call started and
ended and when it was answered (the harness's own clock), for the latency breakdown."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import torch

from bench.serving.loadgen import complete


class ServedModel:
    """A prepared backend (``bench.engines.Prepared``) as a classifier of test images by index;
    ``watch`` (``bench.serving.watch.CallWatch``) shows each call's start to the run's process."""

    def __init__(self, prepared, images: torch.Tensor, watch=None) -> None:
        self.prepared, self.images, self.watch = prepared, images, watch

    def classes(self, indices: list[int]) -> np.ndarray:
        p = self.prepared
        x = self.images[indices[0]: indices[-1] + 1] if _contiguous(indices) else self.images[indices]
        if self.watch is None:
            return p.to_logits(p.predict(p.to_input(x))).argmax(1).to(torch.int32).cpu().numpy()
        self.watch.started()
        try:
            return p.to_logits(p.predict(p.to_input(x))).argmax(1).to(torch.int32).cpu().numpy()
        finally:
            self.watch.ended()


def _contiguous(indices: list[int]) -> bool:
    return indices == list(range(indices[0], indices[0] + len(indices)))


class _Recording:
    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.records: list[tuple] = []  # (seq, sample index, issued, call start, call end, answered ns, batch)
        self.failure: str | None = None
        self._seq = 0
        self._lock = threading.Lock()

    def _serve(self, items: list[tuple]) -> None:
        """Answer ``items`` ((sample, seq, issued ns)) with one call; a call that raises answers
        them anyway (LoadGen must not wait) and is recorded as this test's failure."""
        samples = [s for s, _, _ in items]
        start = time.perf_counter_ns()
        try:
            classes = self.served.classes([s.index for s in samples])
        except Exception as e:  # noqa: BLE001 - reported as the scenario's error status after the test
            self.failure = self.failure or f"{type(e).__name__}: {e}".splitlines()[0][:300]
            classes = np.full(len(samples), -1, dtype=np.int32)
        end = time.perf_counter_ns()
        complete(samples, classes)
        answered = time.perf_counter_ns()
        self.records += [(seq, s.index, issued, start, end, answered, len(items)) for s, seq, issued in items]

    def _numbered(self, samples) -> list[tuple]:
        now = time.perf_counter_ns()
        with self._lock:
            first, self._seq = self._seq, self._seq + len(samples)
        return [(s, first + i, now) for i, s in enumerate(samples)]

    def flush(self) -> None:
        pass


class DirectSUT(_Recording):
    def __init__(self, served: ServedModel, batch: int = 1, aligned: int | None = None) -> None:
        """``aligned``: serve the samples in index order, in calls covering [k·aligned, (k+1)·aligned)
        (the chunks the harness's own accuracy is computed in, so the outputs are the same)."""
        super().__init__(served)
        self.batch, self.aligned = batch, aligned

    def issue(self, samples) -> None:
        items = self._numbered(samples)
        if self.aligned:
            items.sort(key=lambda it: it[0].index)
            chunks: dict[int, list] = {}
            for it in items:
                chunks.setdefault(it[0].index // self.aligned, []).append(it)
            for chunk in chunks.values():
                self._serve(chunk)
            return
        for i in range(0, len(items), self.batch):
            self._serve(items[i: i + self.batch])


class BatchingSUT(_Recording):
    def __init__(self, served: ServedModel, max_batch: int, timeout_us: int) -> None:
        super().__init__(served)
        self.max_batch, self.timeout_ns = max_batch, timeout_us * 1000
        self._queue: deque = deque()
        self._ready = threading.Condition()
        self._stopped = False
        self._worker = threading.Thread(target=self._loop, name="batching-sut", daemon=True)
        self._worker.start()

    def issue(self, samples) -> None:
        items = self._numbered(samples)
        with self._ready:
            self._queue.extend(items)
            self._ready.notify()

    def _next_batch(self) -> list[tuple] | None:
        with self._ready:
            while not self._queue and not self._stopped:
                self._ready.wait()
            if not self._queue:
                return None
            deadline = self._queue[0][2] + self.timeout_ns
            while len(self._queue) < self.max_batch and not self._stopped:
                left = deadline - time.perf_counter_ns()
                if left <= 0:
                    break
                self._ready.wait(left / 1e9)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._serve(batch)

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify()
        self._worker.join(timeout=30)
