"""Where a restaurant's tablets belong, as the tablet endpoints see it: the types, not the lookup.

The lookup itself needs the running Faust app (its assignment, its partitioner): it lives in
:mod:`web.ownership` and is handed to :class:`web.endpoints.TabletEndpoints`
by the composition root, so the endpoints import (and test) without building the app.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from yarl import URL


class Placement(enum.Enum):
    LOCAL = "local"
    REMOTE = "remote"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Owner:
    placement: Placement
    #: The owner's internal URL (Faust ``canonical_url``) when it is another worker.
    url: URL | None = None
    #: Why the owner is unavailable, for the 503 body.
    reason: str | None = None


class OwnerUnreachable(Exception):
    """The presumed owner did not confirm it serves the restaurant: do not send tablets to it."""


#: Which worker owns a restaurant right now (``web.ownership.locate``).
Locate = Callable[[str], Owner]
#: The owner's public URL once it confirms it serves the restaurant (``web.ownership.owners.confirm``);
#: raises :class:`OwnerUnreachable` otherwise.
ConfirmOwner = Callable[[URL, str], Awaitable[URL]]
