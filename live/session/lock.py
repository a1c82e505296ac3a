"""One live session at a time per account: an exclusive, non-blocking file lock.

The lock file lives in the data directory and is named after the account (a hash, never a key).
A second session for the same account refuses to start with a message naming the holder's pid
and start time; the lock goes with the process, so a crashed session never leaves it behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path


class SessionLocked(RuntimeError):
    pass


class SessionLock:
    def __init__(self, directory: Path, account: str) -> None:
        digest = hashlib.sha256(account.encode()).hexdigest()[:12]
        self.path = Path(directory) / f"live-session-{digest}.lock"
        self.account_label = account if len(account) <= 24 else f"{account[:8]}…"
        self._fd: int | None = None

    def acquire(self) -> SessionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SessionLocked(
                f"a live session for account {self.account_label} is already running "
                f"({holder}); one session per account: stop it first or wait for it to end"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SessionLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
