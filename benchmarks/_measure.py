"""Timing and memory helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs "
        f"(torch threads {torch.get_num_threads()}), {gpu}, torch {torch.__version__}"
    )


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="utf-8") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak on a GPU, otherwise
    the process's resident set sampled every few milliseconds, above the
    level at entry."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() - self._base)
            time.sleep(0.005)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes() - self._base)


def median_seconds(function: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def event_loop_gaps(start) -> list[float]:
    """Gaps (ms) between ticks of a 1 ms QTimer on the GUI thread.

    ``start(loop)`` begins the work to watch and must make ``loop.quit()``
    run when it is over; the gaps are sampled until then.
    """
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]
    gaps: list[float] = []

    def tick() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(tick)
    timer.start()
    loop = QEventLoop()
    start(loop)
    loop.exec()
    timer.stop()
    return gaps[1:]


def gap_row(name: str, gaps: list[float]) -> list[str]:
    """A table row: name, ticks, gap p50 / p99 / max in ms."""
    import numpy as np

    values = np.asarray(gaps)
    return [name, str(len(values)), f"{np.percentile(values, 50):.2f}", f"{np.percentile(values, 99):.2f}",
            f"{values.max():.2f}"]
