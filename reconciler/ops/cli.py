"""The operations' subcommands (backup, restore, autostart, notify), registered on the
main parser by `reconciler.cli` in one line. Parses and calls; the work is in the modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    pass
