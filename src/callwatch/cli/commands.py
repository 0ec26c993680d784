"""How the modules of the command line add their subcommands to its parser."""

import argparse
from collections.abc import Callable
from typing import TypeAlias

from callwatch.settings import Settings

Handler: TypeAlias = Callable[[argparse.Namespace, Settings], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
# How a module adds a command: (name, handler, help, the subcommands it joins) → its parser.
Adder: TypeAlias = Callable[[str, Handler, str, Subcommands], argparse.ArgumentParser]
