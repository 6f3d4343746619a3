"""Which ``keyring`` backends may hold a secret: the one test shared by the service's key store
(``core.auth.keystore``) and the console's token vault (``gui.remote_servers``).

A module of its own, outside ``core.auth``: importing anything under ``core.auth`` runs that
package's ``__init__``, which loads the database layer, and the console must never load it.
"""
from __future__ import annotations


def is_secure_backend(backend: object) -> bool:
    """True for a keyring backend that keeps secrets encrypted by the system (not fail/null/alt)."""
    cls = type(backend)
    module = cls.__module__ or ""
    if module.startswith("keyrings.alt") or module.startswith("keyring.backends.fail") \
            or module.startswith("keyring.backends.null"):
        return False
    if "plaintext" in cls.__name__.lower() or "plaintext" in module.lower():
        return False
    if module.startswith("keyring.backends.chainer"):
        # A chainer writes to the first backend that accepts; every one must be secure.
        children = list(getattr(backend, "backends", []) or [])
        return bool(children) and all(is_secure_backend(child) for child in children)
    try:
        priority = float(getattr(backend, "priority", 0))
    except Exception:  # noqa: BLE001 - a backend's priority property may raise when it is unusable
        return False
    return priority > 0
