"""``distiller classify`` with a fault injected on one rank, for the DDP failure test.

``DISTILLER_TEST_FAIL_RANK=r`` and ``DISTILLER_TEST_FAIL_EPOCH=e`` make rank ``r`` raise when it starts
training epoch ``e`` (``DISTILLER_TEST_FAIL_MODE=stall``: sleep instead, as a hung rank would); the
other ranks run normally and must not hang. Test-only: the package itself has no fault-injection hook.
"""

import os
import sys
import time

import distiller.apps.classifier as classifier
from distiller.cli.main import main

FAIL_RANK = int(os.environ.get("DISTILLER_TEST_FAIL_RANK", "-1"))
FAIL_EPOCH = int(os.environ.get("DISTILLER_TEST_FAIL_EPOCH", "0"))
FAIL_MODE = os.environ.get("DISTILLER_TEST_FAIL_MODE", "raise")
MESSAGE = "injected failure on purpose"

_train_one_epoch = classifier.train_one_epoch


def _failing_train_one_epoch(model, loader, criterion, optimizer, scheduler, epoch, *args, **kwargs):
    if int(os.environ.get("RANK", "0")) == FAIL_RANK and epoch == FAIL_EPOCH:
        if FAIL_MODE == "stall":
            time.sleep(3600)
        raise RuntimeError(f"{MESSAGE} (rank {FAIL_RANK}, epoch {epoch})")
    return _train_one_epoch(model, loader, criterion, optimizer, scheduler, epoch, *args, **kwargs)


classifier.train_one_epoch = _failing_train_one_epoch

if __name__ == "__main__":
    sys.exit(main())
