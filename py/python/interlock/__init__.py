"""interlock: an embedded lock engine for lab and hardware-control software.

One engine decides who may drive which instrument, session, folder or device, and tells
everyone what happened::

    import interlock

    with interlock.Engine() as eng, eng.session("Optimizer") as s:
        with s.lock("reactor-1", timeout=5.0) as lease:
            ...  # drive the reactor; lease.fence guards commands to it

``interlock.connect(url)`` gives an ``Engine`` that a server in another process or on
another PC holds (``eng.serve(addr)``, or ``interlock serve``); it works the same.

Blocking calls release the GIL and answer Ctrl-C; ``acquire_async``, ``lock_async``,
``await ticket`` and ``async for event in eng.subscribe()`` serve asyncio. Callbacks
(``on_lost``, subscription callbacks) run on the engine's dispatcher thread.
"""

import atexit
from importlib.metadata import version

from ._interlock import (
    AlreadyHeld,
    Cancelled,
    ConnectionLost,
    Deadlock,
    Engine,
    EngineClosed,
    Error,
    Event,
    InvalidToken,
    Lease,
    LockLost,
    LockTimeout,
    NotFound,
    PermissionDenied,
    Server,
    Session,
    SessionExpired,
    Subscription,
    Ticket,
    _close_all,
    connect,
)

__all__ = [
    "AlreadyHeld",
    "Cancelled",
    "ConnectionLost",
    "Deadlock",
    "Engine",
    "EngineClosed",
    "Error",
    "Event",
    "InvalidToken",
    "Lease",
    "LockLost",
    "LockTimeout",
    "NotFound",
    "PermissionDenied",
    "Server",
    "Session",
    "SessionExpired",
    "Subscription",
    "Ticket",
    "__version__",
    "connect",
]

__version__ = version("interlock")

# Engines still open at exit are closed before the interpreter shuts down, so that their
# dispatcher threads never wait for a GIL that is gone.
atexit.register(_close_all)
