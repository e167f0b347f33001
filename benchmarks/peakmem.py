"""Peak resident memory of a block of code, measured from outside Python's allocator.

tracemalloc is the wrong tool here: torch's CPU allocator calls ``malloc`` directly, so tensors, gradients
and optimizer state are invisible to it. We measure the process's resident set instead (Linux):

- before the block: ``gc.collect()``, glibc ``malloc_trim(0)`` (hand freed heap back to the kernel, so the
  baseline is not inflated by a previous run's garbage), then reset the kernel's high-water mark by
  writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0) and read the baseline ``VmRSS``;
- after the block: ``VmHWM`` (the kernel's exact peak since the reset) minus the baseline.

Child processes (e.g. a DataLoader worker) are added as the peak of their summed USS, sampled by a thread
every ``interval`` seconds (USS: pages only that child holds, so fork-shared pages are not counted twice;
one sample costs ~1 ms with ~70 processes on the machine, so 0.1 s keeps the sampler near 1% of a core).
Where the high-water mark cannot be reset (not Linux, or ``/proc`` read-only) the parent's RSS is sampled
too, which can miss short spikes; ``PeakRSS.exact`` says which one was used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import threading
from pathlib import Path

import psutil

MiB = 1 << 20
_STATUS = Path("/proc/self/status")


def _status_kib(key: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (VmRSS, VmHWM, RssAnon, ...) in bytes, or None off Linux."""
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def rss_anon() -> int:
    """Anonymous resident memory in bytes: heap and tensors, not pages of memory-mapped files.

    File-backed pages of an ``np.memmap`` count in RSS once touched but are page cache the kernel can drop,
    so "did we load the array" is a question about anonymous memory. Falls back to RSS off Linux.
    """
    value = _status_kib("RssAnon")
    return value if value is not None else psutil.Process().memory_info().rss


def trim_heap() -> None:
    """``gc.collect()`` and, on glibc, ``malloc_trim(0)``."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


class PeakRSS:
    """``with PeakRSS() as m: ...`` then ``m.peak_delta`` (bytes above the baseline at entry).

    Also usable as ``m.start()`` / ``m.stop()`` where a ``with`` block does not fit (pytest-benchmark's
    setup/target split).
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak_delta = 0
        self.children_peak = 0
        self.exact = False
        self._sampled_self = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PeakRSS:
        trim_heap()
        self.exact = _reset_hwm()
        self.baseline = psutil.Process().memory_info().rss
        self._sampled_self = self.baseline
        self.children_peak = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="peakmem", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.interval):
            try:
                if not self.exact:
                    self._sampled_self = max(self._sampled_self, me.memory_info().rss)
                kids = 0
                for child in me.children(recursive=True):
                    try:
                        kids += child.memory_full_info().uss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
                self.children_peak = max(self.children_peak, kids)
            except psutil.Error:
                pass

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        peak_self = _status_kib("VmHWM") if self.exact else None
        if peak_self is None:
            peak_self = max(self._sampled_self, psutil.Process().memory_info().rss)
        self.peak_delta = max(peak_self - self.baseline, 0) + self.children_peak
        return self.peak_delta

    def __enter__(self) -> PeakRSS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
