"""Live two-way relay between an HCP's channel and the staff console.

The database is the truth; the bus only carries "conversation X changed" hints. Services that change
a conversation call ``notify(session, conversation_id)``; the hint is published after the commit.
This package's ``__init__`` stays import-light: domain services import ``notify`` from here.
"""

from api.relay.hooks import notify

__all__ = ["notify"]
