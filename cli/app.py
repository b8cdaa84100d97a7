"""How a command runs: parse, call, and turn user errors into one line and an exit status."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from ccnet.errors import CCNetError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], Optional[int]]


def run_guarded(run: Run, args: argparse.Namespace) -> int:
    """``run(args)``; a CCNetError becomes ``error: ...`` on stderr and exit status 2."""
    try:
        return int(run(args) or 0)
    except CCNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry_point(prog: str, description: str, add_arguments: AddArguments,
                run: Run) -> Callable[[Optional[Sequence[str]]], int]:
    """A console-script ``main(argv=None) -> exit status`` for one command."""

    def main(argv: Optional[Sequence[str]] = None) -> int:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        add_arguments(parser)
        return run_guarded(run, parser.parse_args(argv))

    main.__doc__ = f"{prog}: {description}"
    return main
