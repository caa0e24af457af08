"""Request ids (``x-request-id``) without a syscall per call: a random per-process prefix and a counter."""

from __future__ import annotations

import itertools
import os


class RequestIds:
    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"req_{self._prefix}{next(self._counter):010x}"
