"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM ask the run to stop at the next point where
its completed cells are safe on disk (between cells, rounds and training blocks); a second signal
stops it at once. Completed cells are written atomically either way."""

from __future__ import annotations

import contextlib
import signal
import threading


class StopRequested(BaseException):
    """Raised at a safe point after SIGINT or SIGTERM. A BaseException, so that no cell's error
    handling records it as a failed cell."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.run_dir = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as shells report them


_requested: list[int] = []


def requested() -> int | None:
    """The signal that asked for a stop, or None."""
    return _requested[0] if _requested else None


def check() -> None:
    """Raise StopRequested if a stop was asked for: call only where completed cells are safe."""
    if _requested:
        raise StopRequested(_requested[0])


@contextlib.contextmanager
def graceful_stop():
    """Within the block, SIGINT and SIGTERM request a stop (``check``); a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if _requested:
            raise StopRequested(signum)
        _requested.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _requested.clear()
