"""The local spool: encoded events that could not reach Kafka yet, oldest first.

One JSON object per line (``{"key": ..., "headers": [[name, value], ...], "value": {...}}``), so an
operator can read it with ``jq``. Every task on a worker may use the same spool at once: all access
goes through an exclusive ``flock`` on a sibling ``.lock`` file, which (unlike the spool itself) is
never replaced, so a lock always guards the file everybody sees.

Durability: an append is fsynced before the caller is told "spooled"; removing delivered events
rewrites the file to a temporary name, fsyncs and renames it, so a crash leaves either the old or
the new spool, never a torn one. Lines that cannot be read (a crash mid-append on a filesystem
without atomic appends) are moved to a sibling ``.rejected`` file rather than dropped or retried.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson

from producer_hooks.events import Message

log = logging.getLogger(__name__)

_LOCK_POLL_S = 0.05


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[LockedSpool]:
        """Hold the spool exclusively (against other tasks and processes) for the ``async with``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # Polled rather than a blocking flock in a thread: cancelling the wait must not leave
            # a thread that later takes the lock behind our back.
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(_LOCK_POLL_S)
            yield LockedSpool(self)
        finally:
            os.close(fd)  # releases the flock

    async def pending(self) -> int:
        async with self.locked() as spool:
            return len(spool.messages())


class LockedSpool:
    """The spool's operations, valid only inside :meth:`Spool.locked`."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool

    def messages(self) -> list[Message]:
        """The spooled messages, oldest first; unreadable lines are set aside in ``.rejected``."""
        try:
            raw = self._spool.path.read_bytes()
        except FileNotFoundError:
            return []
        messages, rejected = [], []
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                messages.append(_from_line(line))
            except (ValueError, KeyError, TypeError):
                rejected.append(line)
        if rejected:
            log.error("%d unreadable line(s) of %s moved to %s",
                      len(rejected), self._spool.path, self._spool.rejected_path)
            _append(self._spool.rejected_path, rejected)
            self.keep(messages)
        return messages

    def append(self, message: Message) -> None:
        _append(self._spool.path, [_to_line(message)])

    def reject(self, message: Message) -> None:
        """Set aside a message the broker will never accept, so it stops blocking the ones behind it."""
        _append(self._spool.rejected_path, [_to_line(message)])

    def keep(self, messages: list[Message]) -> None:
        """Replace the spool's content with ``messages`` (atomically); no messages removes the file."""
        path = self._spool.path
        if not messages:
            path.unlink(missing_ok=True)
            _sync_dir(path.parent)
            return
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "wb") as file:
            file.write(b"".join(_to_line(message) + b"\n" for message in messages))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _sync_dir(path.parent)


def _to_line(message: Message) -> bytes:
    return orjson.dumps(
        {
            "key": message.key.decode(),
            "headers": [[name, value.decode()] for name, value in message.headers],
            "value": orjson.loads(message.value),
        }
    )


def _from_line(line: bytes) -> Message:
    entry = orjson.loads(line)
    return Message(
        key=entry["key"].encode(),
        value=orjson.dumps(entry["value"]),
        headers=[(name, value.encode()) for name, value in entry["headers"]],
    )


def _append(path: Path, lines: list[bytes]) -> None:
    with open(path, "ab+") as file:
        # A crash mid-append can leave a line without its newline; seal it off, or the next line
        # would be glued to it and both would be unreadable.
        file.seek(0, os.SEEK_END)
        if file.tell() > 0:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                file.write(b"\n")
        file.write(b"".join(line + b"\n" for line in lines))
        file.flush()
        os.fsync(file.fileno())


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
