"""partner-stream: restaurant orders from Kafka to partner tablets, never losing one.

``faust -A partner_stream worker`` finds :data:`app` here. Asking for it builds the worker
(:mod:`partner_stream.service`, the composition root); importing the package, the event
contract, the settings, the table code, the codecs or the hub builds nothing and reads no
environment.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from .service import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app"]
