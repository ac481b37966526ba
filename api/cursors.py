"""The cursor every message list and stream takes (``?after=<message id>``).

Bounded like the id column it is compared with: a cursor past 2**63 - 1 is no message of ours and
would overflow the database driver (a 500), so it is a 422 like a negative one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_MESSAGE_ID = 2**63 - 1
MessageCursor = Annotated[int, Query(ge=0, le=MAX_MESSAGE_ID, description="the last message id already seen")]
