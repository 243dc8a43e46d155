"""Trampoline the supervisor hands to `multiprocess`: it imports the worker
package only inside the child, so the supervisor never imports worker code.
Imports: stdlib only.
"""

from __future__ import annotations

import importlib
from typing import Any


def run_worker(*args: Any) -> None:
    importlib.import_module("worker.entry").main(*args)
