"""Ending a process that ran Spark and delta-rs without tearing down their native libraries.

A replay that had printed every alert once exited 134 ("terminate called without an
active exception"): native threads (Arrow's pools under delta-rs reads and writes) torn
down while the interpreter finalizes (delta-io/delta-rs#2184). Once a process's work is
done and written, it can leave without that teardown.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


def exit_without_teardown(code: int) -> NoReturn:
    """Flush stdout, stderr and logging, then end the process with `code` at once."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
    finally:
        os._exit(code)
