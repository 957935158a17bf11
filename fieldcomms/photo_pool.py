"""The photo worker pool: Pillow's decoding and re-encoding run in processes, never on the event loop.

A photo that crashes a codec or draws the OOM killer takes down one worker, not the server; the pool is
replaced and the job retried once, so only a photo that breaks workers twice is refused.

The pool also fingerprints photos already stored (`fingerprint`, for the backfill in
`fieldcomms.domain.similar`): photos stored before fingerprints existed, or whose fingerprint failed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image

from . import fingerprints
from .errors import ApiError, ValidationFailed
from .media import ProcessedPhoto, process_photo

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class _Refused:
    """A refusal raised in a worker, carried back as data: our exceptions do not survive pickling."""

    kind: type[ApiError]
    detail: str
    errors: list[dict[str, str]]

    def error(self) -> ApiError:
        if issubclass(self.kind, ValidationFailed):
            return self.kind(self.errors, self.detail)
        return self.kind(self.detail, self.errors)


def _worker_init() -> None:
    # Below the event loop's priority, so where they share a core a request does not queue behind a photo
    # for the CPU (measured: /healthz p50 under uploads 1.6 ms niced, 4.7 ms not).
    os.nice(10)


def _process_in_worker(data: bytes, max_pixels: int, max_bytes: int) -> ProcessedPhoto | _Refused:
    try:
        return process_photo(data, max_pixels=max_pixels, max_bytes=max_bytes)
    except ApiError as exc:
        return _Refused(type(exc), exc.detail, exc.errors)


@dataclass(frozen=True)
class StoredFingerprint:
    """A stored photo's fingerprint (`doc`: fingerprints.Fingerprint.to_doc()), or why it could not be made
    (`error`); both None where pdqhash is unavailable."""

    doc: dict[str, Any] | None
    error: str | None


def _fingerprint_in_worker(path: str, max_pixels: int) -> StoredFingerprint:
    """The fingerprint of the stored file (as intake stored it: orientation applied, sRGB, metadata gone)."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                return StoredFingerprint(None, f"{im.width}x{im.height} pixels is above the limit")
            im.load()
            fingerprint = fingerprints.compute(im)
    except Exception as exc:  # a damaged or vanished file: recorded, so that it is not tried at every start
        return StoredFingerprint(None, f"{type(exc).__name__}: {exc}"[:300])
    return StoredFingerprint(None if fingerprint is None else fingerprint.to_doc(), None)


class PhotoWorkers:
    """A process pool for `process_photo` that survives a worker dying (a codec crash, the OOM killer)."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or max(2, min(8, len(os.sched_getaffinity(0))))
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: forking the server itself would copy its threads' locks mid-use; spawn is slow to start.
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload(["fieldcomms.photo_pool"])
        return ProcessPoolExecutor(self.max_workers, mp_context=mp, initializer=_worker_init)

    async def process(self, data: bytes, *, max_pixels: int, max_bytes: int) -> ProcessedPhoto:
        outcome = await self._run(_process_in_worker, data, max_pixels, max_bytes)
        if outcome is None:
            raise ValidationFailed.one("file", "The image could not be processed.")
        if isinstance(outcome, _Refused):
            raise outcome.error()
        return outcome

    async def fingerprint(self, path: str, *, max_pixels: int) -> StoredFingerprint:
        """The fingerprint of a stored photo's file, computed in a worker."""
        outcome = await self._run(_fingerprint_in_worker, path, max_pixels)
        return outcome if outcome is not None else StoredFingerprint(None, "the image broke the photo workers")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T | None:
        """`fn(*args)` in a worker; None if it broke the workers twice."""
        loop = asyncio.get_running_loop()
        # A broken pool fails every job in it; retry once on a fresh one so that only the photo that
        # breaks workers twice is refused.
        for _ in range(2):
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                log.error("a photo worker died; starting a new pool")
                if self._pool is pool:
                    self._pool = self._new_pool()
                    pool.shutdown(wait=False, cancel_futures=True)
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


