"""An eventpatterns worker whose writes fail once, for tests/runtime/test_failures.py.

The first batch that applies an event of a user whose id starts with `doomed`
has its outputs produced, then its write "fails", as a broker gone mid-batch
would: the worst moment, outputs durable and no state it accounts for (nor the
states held back for that write) written. Everything else is the real worker.
"""

from __future__ import annotations

import sys
from typing import Any

from aiokafka.errors import KafkaConnectionError

from eventpatterns import worker
from eventpatterns.app import AppliedBatch, Runtime

_original_commit = Runtime.commit_batch
_failed = False


async def commit_batch_failing_once(self: Runtime, applied: AppliedBatch) -> None:
    global _failed
    doomed = any(user.startswith("doomed") for user in self.held)
    if doomed and not _failed:
        _failed = True
        producer: Any = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        await applied.outputs.send(producer)
        raise KafkaConnectionError("injected: the state changelog could not be written")
    await _original_commit(self, applied)


Runtime.commit_batch = commit_batch_failing_once  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(worker.main())
