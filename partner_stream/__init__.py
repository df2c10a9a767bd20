"""partner-stream: restaurant orders from Kafka to partner tablets, never losing one.

``faust -A partner_stream worker`` finds :data:`app` here; importing the package
registers the agents and the web views on it.
"""

import web.views  # noqa: F401  (registers the HTTP views)

from . import agents  # noqa: F401  (registers the agents)
from .app import app

__all__ = ["app"]
