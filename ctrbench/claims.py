"""One writer per run: claim files, across processes and hosts sharing a file system.

A process about to compute a run first claims it by creating its claim file exclusively: the content is
written under a temp name and hard-linked into place (``link`` fails if the name exists, atomically, NFS
included), so a claim file is complete from its first moment; where hard links do not work it is created
with ``O_EXCL``. The file names its holder: ``host``, ``pid``, the process's start time (``proc_start``) and
the machine's ``boot_id``, ``claimed_at``, whatever the caller adds (the invocation id, the command line,
threads, GPUs) and a random ``token``.

A claim is **live** while its holder may still be working on it:

- on the same host (same hostname, boot id and pid namespace): while the pid exists, is not a zombie and
  started when the claim says (a pid reused by another program does not hold it);
- from another host (or another container, whose pids cannot be seen): while its holder keeps touching
  it; every process touches the claims it holds every `HEARTBEAT_SECONDS`, and a claim not touched for
  `remote_timeout()` seconds (``CTRBENCH_CLAIM_TIMEOUT``, default 600) is stale. Clocks of the hosts must agree
  to well within that time.

A **stale** claim is broken by the next process that wants the run: under a short "breaker" lock (an atomic
``mkdir`` beside the claim) it checks that the file still holds the stale token and removes it, then claims as
usual. A claim is removed only under that lock and only after its token was checked (by its holder releasing
it, or by a process that proved it stale), so no process removes a claim it did not own or prove dead.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrbench.atomic import discard, make_dirs, temp_name, write_error, write_new_file

log = logging.getLogger(__name__)

TIMEOUT_ENV = "CTRBENCH_CLAIM_TIMEOUT"
DEFAULT_REMOTE_TIMEOUT = 600.0  # seconds without a heartbeat after which another host's claim is stale
HEARTBEAT_SECONDS = 30.0
BREAKER_STALE_SECONDS = 30.0  # a breaker lock older than this was left by a killed process
UNREADABLE_GRACE_SECONDS = 60.0  # an unparsable claim (O_EXCL fallback, being written) counts as live this long

HOST = socket.gethostname()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


BOOT_ID = _read("/proc/sys/kernel/random/boot_id")
_PROC = os.path.isdir("/proc/self")


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


PID_NS = _pid_namespace()  # containers sharing a hostname (host networking) do not see each other's pids


def remote_timeout() -> float:
    """Seconds without a heartbeat after which a claim from another host is stale."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw:
        try:
            value = float(raw)
            if value > 0:
                return value
        except ValueError:
            pass
        log.warning("%s=%r is not a positive number of seconds; using %.0f", TIMEOUT_ENV, raw, DEFAULT_REMOTE_TIMEOUT)
    return DEFAULT_REMOTE_TIMEOUT


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a process, from /proc; None if there is no entry."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host runs (and, given ``start``, is the one that started then)."""
    if pid <= 0:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, started = stat
        return state not in ("Z", "X") and (start is None or started == start)
    if _PROC:  # /proc works here and the pid has no entry: gone
        return False
    if os.name == "nt":  # os.kill would terminate it: cannot tell, so it counts as alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def where(info: dict[str, Any] | None) -> str:
    """``host:pid`` of a claim's holder."""
    info = info or {}
    return f"{info.get('host', '?')}:{info.get('pid', '?')}"


# -- reading and judging claims ---------------------------------------------------------------------------

def read_claim(path: Path) -> dict[str, Any] | None:
    """The claim's content (plus ``_ino``, ``_mtime``), ``{"unreadable": True, ...}`` if it does not parse,
    None if there is no claim."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return {"unreadable": True, "_ino": None, "_mtime": time.time()}
    try:
        info = json.loads(raw)
        if not isinstance(info, dict):
            raise ValueError("not an object")
    except ValueError:
        info = {"unreadable": True}
    return {**info, "_ino": st.st_ino, "_mtime": st.st_mtime}


_held: dict[str, Claim] = {}  # token -> claim, the claims this process holds
_held_lock = threading.Lock()


def is_stale(info: dict[str, Any], now: float | None = None) -> bool:
    """Whether the holder of a claim (as `read_claim` returned it) is provably gone (see the module doc)."""
    now = time.time() if now is None else now
    age = now - float(info.get("_mtime") or now)
    if info.get("unreadable"):
        return age > UNREADABLE_GRACE_SECONDS
    token = info.get("token")
    with _held_lock:
        if token in _held:
            return False
    pid = info.get("pid")
    same_pids = info.get("pid_ns") == PID_NS or not (info.get("pid_ns") and PID_NS)
    if info.get("host") == HOST and isinstance(pid, int) and same_pids:
        if info.get("boot_id") and BOOT_ID and info["boot_id"] != BOOT_ID:
            return True  # claimed before this machine rebooted
        if pid == os.getpid():
            return True  # ours, but not among the claims this process holds: left by an earlier attempt
        return not pid_alive(pid, info.get("proc_start"))
    return age > remote_timeout()


def live_holder(path: Path) -> dict[str, Any] | None:
    """The info of a live claim at ``path``, None if there is none or it is stale."""
    info = read_claim(path)
    if info is None or is_stale(info):
        return None
    return info


# -- taking, keeping and releasing claims -----------------------------------------------------------------

@dataclass
class Claim:
    """A claim this process holds; `release` it (or use it as a context manager)."""

    path: Path
    token: str
    info: dict[str, Any] = field(default_factory=dict)
    taken_over: dict[str, Any] | None = None  # the stale claim this one replaced, if any

    def held(self) -> bool:
        """Whether the claim file still holds this claim (false if another process broke it)."""
        return (read_claim(self.path) or {}).get("token") == self.token

    def touch(self) -> None:
        if self.held():
            with suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        with _held_lock:
            _held.pop(self.token, None)
        with _breaker(self.path, wait=5.0):  # best effort: checked and removed even without it
            if self.held():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:  # a store turned read-only meanwhile: the claim goes stale with us
                    log.warning("%s: could not remove this process's claim (%s)", self.path, exc)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class _Heartbeat:
    """One daemon thread per process touching every held claim, so other hosts see it is alive."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._pid = 0

    def ensure(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="ctrbench-claim-heartbeat", daemon=True)
        self._thread.start()

    @staticmethod
    def _loop() -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with _held_lock:
                claims = list(_held.values())
            for claim in claims:
                claim.touch()


_heartbeat = _Heartbeat()


@contextmanager
def _breaker(path: Path, wait: float = 1.0) -> Iterator[bool]:
    """A short mutual-exclusion lock beside a claim (an atomic mkdir); yields whether it was had."""
    lock = path.with_name(path.name + ".breaking")
    deadline = time.monotonic() + wait
    got = False
    while True:
        try:
            os.mkdir(lock)
            got = True
            break
        except FileExistsError:
            with suppress(OSError):
                if time.time() - lock.stat().st_mtime > BREAKER_STALE_SECONDS:  # its holder was killed
                    os.rmdir(lock)
                    continue
            if time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        except OSError:  # the directory is gone or not writable: no lock to be had
            break
    try:
        yield got
    finally:
        if got:
            with suppress(OSError):
                os.rmdir(lock)


def _create(path: Path, data: bytes) -> bool:
    """Create the claim file with ``data`` unless it exists; True if this call created it."""
    tmp = temp_name(path)
    write_new_file(tmp, data, report=path)
    try:
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            with suppress(OSError):  # NFS: the link was made but its reply lost, and the retry failed
                return os.stat(tmp).st_nlink == 2
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                err = write_error(path, exc)
                if err is None:
                    raise
                raise err from None
        try:  # no hard links on this file system
            write_new_file(path, data)
            return True
        except FileExistsError:
            return False
    finally:
        discard(tmp)


def try_claim(path: Path, info: dict[str, Any]) -> Claim | dict[str, Any]:
    """Claim ``path``: the `Claim`, or the info of the live claim that holds it. A stale claim is broken
    and replaced (the returned claim's ``taken_over`` is the stale one)."""
    make_dirs(path.parent)
    token = secrets.token_hex(8)
    pid = os.getpid()
    data = {**info, "host": HOST, "pid": pid, "proc_start": process_start(pid), "boot_id": BOOT_ID,
            "pid_ns": PID_NS, "claimed_at": time.time(), "token": token}
    payload = (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()
    taken_over = None
    holder: dict[str, Any] | None = None
    for _ in range(50):
        if _create(path, payload):
            claim = Claim(path, token, data, taken_over)
            with _held_lock:
                _held[token] = claim
            _heartbeat.ensure()
            return claim
        holder = read_claim(path)
        if holder is None:  # released meanwhile
            continue
        if not is_stale(holder):
            return holder
        if _break(path, holder):
            taken_over = holder
        else:
            time.sleep(0.01)
    return holder or {"host": "?", "pid": "?", "unreadable": True}


def _break(path: Path, stale: dict[str, Any]) -> bool:
    """Remove the stale claim ``stale`` from ``path`` if it is still the one there; True if removed."""
    with _breaker(path) as got:
        if not got:
            return False
        current = read_claim(path)
        if current is None:
            return True
        same = (current.get("token") == stale.get("token") if not stale.get("unreadable")
                else current.get("unreadable") and current.get("_ino") == stale.get("_ino"))
        if not same:
            return False
        with suppress(OSError):
            path.unlink()
        log.info("%s: took over the stale claim of %s", path, where(stale))
        return True


def held_tokens() -> set[str]:
    with _held_lock:
        return set(_held)


__all__ = ["Claim", "HEARTBEAT_SECONDS", "TIMEOUT_ENV", "is_stale", "live_holder", "pid_alive", "read_claim",
           "remote_timeout", "try_claim", "where"]
