"""What the admin channel's operations act on, and on whose behalf the current one runs.

The admin channel is the one part whose job spans the whole service (domains, settings, listeners,
the queue, bans, TLS, the process itself), so its ops receive every part, typed, in one frozen
``AdminScope`` that service/app.py builds complete before the channel opens. Nothing else in the
service receives it.
"""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.access import Requester
from core.admin import Admin
from core.db import Database
from core.store import MailStore
from core.tokens import AdminTokens
from service.auth_methods import AuthMethods
from service.counters import Counters
from service.event_bus import EventBus
from service.history import History
from service.ipc.audit import PendingAudit
from service.ipc.tcp import AdminTcpListener
from service.listeners import Listener
from service.live_settings import LiveSettings
from service.smtp.server import SmtpServer
from service.status import ServiceStatus
from service.throttle import LoginThrottle
from service.tls import TlsMaterial
from service.workers import Workers

T = TypeVar("T")

# Who is making the current request (for handlers that record it, e.g. admin.token_create).
current_actor: contextvars.ContextVar[str] = contextvars.ContextVar("current_actor", default="")
# Whose file permissions apply to a path the request names: the Unix peer, or (TCP token) nobody's.
REMOTE = Requester(None)
current_requester: contextvars.ContextVar[Requester] = contextvars.ContextVar("current_requester", default=REMOTE)


@dataclass(frozen=True)
class AdminScope:
    """Every part of the running service the admin ops use (see the module's docstring)."""

    version: str
    data_dir: Path
    loop: asyncio.AbstractEventLoop
    db: Database
    store: MailStore
    admin: Admin
    settings: LiveSettings
    workers: Workers
    stats: Counters
    events: EventBus
    status: ServiceStatus
    tls: TlsMaterial
    auth_methods: AuthMethods
    throttle: LoginThrottle
    smtp: SmtpServer
    listeners: Mapping[str, Listener]
    control: Callable[[str, str], Awaitable[None]]      # service.control (service.control.ListenerControl)
    tokens: AdminTokens
    admin_tcp: AdminTcpListener
    pending_audit: PendingAudit
    history: History                                    # stats.history: the per-minute series
    request_shutdown: Callable[[bool], None]            # stop the process; True: start it again

    @property
    def hostname(self) -> str:
        return self.settings.hostname

    def setting(self, name: str) -> Any:
        return self.settings.get(name)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking work (database, files) on the store's threads."""
        return await self.workers.run(fn, *args, **kwargs)

    def reload_settings(self) -> None:
        """Read the settings again (blocking: through ``run``)."""
        self.settings.reload()

    def apply_settings(self) -> None:
        """Let every part act on changed settings (blocking: through ``run``)."""
        self.settings.apply()
