"""The composition root: the one module that knows every layer, and wires them into a worker.

Imports run one way: the event contract (``partner_stream.events``) -> the pending-orders
state (``tables``) -> the stream (``partner_stream.app``, ``agents``, ``runtime``) -> the tablet
side (``web``) -> here. Importing this module builds the Faust app and registers, in data-flow
order, the agents, the timers, the HTTP views and the tablet hub. Nothing else imports it:
``faust -A partner_stream worker`` reaches it by asking the package for ``app``.
"""
# ruff: noqa: I001  (import order is registration order)

from __future__ import annotations

import sys

from .app import app
from . import agents  # noqa: F401
from . import runtime  # noqa: F401
import web.views
import web.server  # noqa: F401

# Importing ``partner_stream.app`` bound the *module* to the package's ``app`` attribute; Faust's
# ``-A partner_stream`` looks up that attribute and must find the App.
sys.modules["partner_stream"].app = app  # type: ignore[attr-defined]

__all__ = ["app"]
