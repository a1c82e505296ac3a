"""One live session at a time per account: an exclusive, non-blocking file lock.

The lock file lives in the data directory and is named after the account (a hash, never a key).
A second session for the same account refuses to start with a message naming the holder's pid
and start time; the lock goes with the process, so a crashed session never leaves it behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

ATTEMPTS = 5
RETRY_S = 0.2


class SessionLocked(RuntimeError):
    pass


class SessionLock:
    def __init__(self, directory: Path, account: str) -> None:
        digest = hashlib.sha256(account.encode()).hexdigest()[:12]
        self.path = Path(directory) / f"live-session-{digest}.lock"
        self.account_label = account.partition(":")[0]  # the broker; never the key
        self._fd: int | None = None

    def acquire(self) -> SessionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(ATTEMPTS):  # a brief probe (ats status) is not a session: retry
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt < ATTEMPTS - 1:
                    time.sleep(RETRY_S)
        else:
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
