"""partner-stream: restaurant orders from Kafka to partner tablets, never losing one.

``faust -A partner_stream worker`` finds :data:`app` here. Importing the package
registers, in data-flow order, the agents, the HTTP views and the tablet hub.
"""
# ruff: noqa: I001  (import order is registration order)

from .app import app
from . import agents  # noqa: F401
from . import runtime  # noqa: F401
import web.views
import web.server  # noqa: F401

__all__ = ["app"]
