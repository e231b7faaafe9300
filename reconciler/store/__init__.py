"""PostgreSQL for the gateway: the `Store` (reads and idempotent writes), the write-behind `Sink`
the loop writes through, migrations, and the private embedded server."""

from reconciler.store.queries import KINDS, Op, OpError, Store

__all__ = ["KINDS", "Op", "OpError", "Store"]
