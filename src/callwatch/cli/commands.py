"""How the modules of the command line add their subcommands to its parser.

Nothing heavy is imported here or by any module at parse time: `callwatch --help` stays fast
(tests/cli/test_main.py lists what it must not import)."""

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from callwatch.settings import Settings

Handler: TypeAlias = "Callable[[argparse.Namespace, Settings], int]"
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
# How a module adds a command: (name, handler, help, the subcommands it joins) → its parser.
Adder: TypeAlias = Callable[[str, Handler, str, Subcommands], argparse.ArgumentParser]

# The simulator's platforms by name, without importing the simulator (tests compare the two).
PLATFORM_NAMES = (
    "atoms",
    "bolna",
    "burki",
    "fixa",
    "generic",
    "origins",
    "retell",
    "telnyx",
    "twilio",
    "vapi",
)


class CommandParser(argparse.ArgumentParser):
    """A parser that rejects what it does not know itself, so a mistyped flag of a subcommand
    prints that subcommand's usage, not the top-level one (argparse leaves extras to the root)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras
