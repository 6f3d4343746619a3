"""The newest log records kept in memory for the console's status view (log.recent)."""
from __future__ import annotations

import collections
import logging
import threading
from datetime import UTC, datetime

_RECENT: collections.deque[dict] = collections.deque(maxlen=1000)
_LOCK = threading.Lock()


class RecentHandler(logging.Handler):
    """Keeps the last thousand records that pass the service's logging level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(),
                     "level": record.levelname, "source": record.name, "message": record.getMessage()}
        except Exception:  # a bad format string must not break logging
            return
        with _LOCK:
            _RECENT.append(entry)


def recent(limit: int = 100) -> list[dict]:
    """Newest first."""
    with _LOCK:
        items = list(_RECENT)[-limit:]
    items.reverse()
    return items
