"""How a command runs: parse, set up logging, call, and turn every failure into one line and an
exit status.

A CCNetError (bad input) is ``error: <what is wrong and what to do>``, exit 2; an OSError from
the system (disk full, permission) is ``error: <reason>: <path>``, exit 2; Ctrl-C and SIGTERM
stop the command the same way (outputs in progress are removed by their ``finally`` blocks),
exit 130 / 143; anything else is a bug in the toolkit: one line saying so and how to report it,
exit 70, with the traceback only when ``CCNET_DEBUG=1``.

Logging is configured here and nowhere in the library: our packages log through their module
loggers (progress lines, steps), the libraries underneath (PyTorch's exporter, onnxscript,
ONNX Runtime) are held back to errors and their Python warnings are hidden unless ``-v`` asks
for them.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from typing import Callable, Iterator, Optional, Sequence

from ccnet.errors import CCNetError, first_line

from .args import add_verbosity

EXIT_USER_ERROR = 2
EXIT_BUG = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
DEBUG_ENV = "CCNET_DEBUG"

# Top-level packages of this project: their loggers print our messages, their warnings show.
OUR_PACKAGES = ("ccnet", "export", "calib", "runtime", "cli", "plugins")
# PyTorch resets its registered loggers ("torch.onnx") when it is imported; the exporter's
# modules log under this unregistered parent, whose level survives that reset.
QUIET_THIRD_PARTY = ("torch.onnx._internal", "onnxscript", "onnx_ir", "onnxruntime")

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], Optional[int]]
log = logging.getLogger("cli").info  # what commands report on the way (hidden by -q)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line too (``error: ...``, exit 2)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


class _OutputHandler(logging.Handler):
    """Our messages: info and below to stdout as plain lines, warnings and errors to stderr."""

    def __init__(self):
        super().__init__()
        self.out, self.err = sys.stdout, sys.stderr  # the streams of this run (pytest swaps them)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.WARNING:
                self.err.write(f"{record.levelname.lower()}: {message}\n")
                self.err.flush()
            else:
                self.out.write(message + "\n")
                self.out.flush()
        except Exception:  # a logging failure must never end the command
            self.handleError(record)


@contextlib.contextmanager
def logging_configured(level: str = "info") -> Iterator[None]:
    """Logging and warning filters for one command run, restored afterwards (commands also run
    in-process from tests and notebooks)."""
    numeric = getattr(logging, level.upper())
    verbose = numeric <= logging.DEBUG
    handler = _OutputHandler()
    root_handler = logging.StreamHandler(sys.stderr)
    root_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    changes = [(logging.getLogger(name), numeric, [handler], False) for name in OUR_PACKAGES]
    changes += [(logging.getLogger(name), logging.NOTSET if verbose else logging.ERROR, None, None)
                for name in QUIET_THIRD_PARTY]
    changes.append((logging.getLogger(), logging.WARNING if verbose else logging.ERROR,
                    [root_handler], None))
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate) for lg, *_ in changes]
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module="|".join(
                rf"{p}(\.|$)" for p in OUR_PACKAGES))
        for logger, new_level, handlers, propagate in changes:
            logger.setLevel(new_level)
            if handlers is not None:
                logger.handlers = handlers
            if propagate is not None:
                logger.propagate = propagate
        try:
            yield
        finally:
            for logger, old_level, handlers, propagate in saved:
                logger.setLevel(old_level)
                logger.handlers = handlers
                logger.propagate = propagate


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every cleanup that handles an interrupt runs."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Python warnings printed as ``warning: <message>`` (not file:line plus the source line),
    like the warnings our loggers print."""
    previous = warnings.formatwarning
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = previous


def _bug_line(error: BaseException) -> str:
    import ccnet

    return (f"error: internal error, a bug in ccnet-deploy {ccnet.__version__} "
            f"({type(error).__name__}: {first_line(error, 200)}); please report it with the "
            f"command line you ran and the output of a rerun with {DEBUG_ENV}=1")


def run_guarded(run: Run, args: argparse.Namespace) -> int:
    """``run(args)`` with logging set up from ``args.log_level`` and every failure turned into
    one ``error:`` line and an exit status (see the module docstring)."""
    level = getattr(args, "log_level", None) or "info"
    if logging.getLevelName(level.upper()) >= logging.WARNING and hasattr(args, "no_progress"):
        args.no_progress = True
    with logging_configured(level), _sigterm_as_interrupt(), _one_line_warnings():
        try:
            return int(run(args) or 0)
        except CCNetError as e:
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            return EXIT_USER_ERROR
        except Terminated:
            print("error: terminated", file=sys.stderr)
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except MemoryError:
            print("error: out of memory: use a smaller input or model, or a larger machine",
                  file=sys.stderr)
            return EXIT_USER_ERROR
        except OSError as e:  # the system refused: disk full, permission, I/O error
            where = f": {e.filename}" if e.filename else ""
            print(f"error: {e.strerror or first_line(e)}{where}", file=sys.stderr)
            return EXIT_USER_ERROR
        except Exception as e:
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()
            print(_bug_line(e), file=sys.stderr)
            return EXIT_BUG


def add_common(parser: argparse.ArgumentParser, default=None) -> None:
    """The flags every command has: ``--version`` and the verbosity group."""
    import ccnet

    parser.add_argument("--version", action="version", version=f"ccnet-deploy {ccnet.__version__}")
    add_verbosity(parser, default)


def entry_point(prog: str, description: str, add_arguments: AddArguments,
                run: Run) -> Callable[[Optional[Sequence[str]]], int]:
    """A console-script ``main(argv=None) -> exit status`` for one command."""

    def main(argv: Optional[Sequence[str]] = None) -> int:
        parser = Parser(prog=prog, description=description)
        add_arguments(parser)
        add_common(parser)
        return run_guarded(run, parser.parse_args(argv))

    main.__doc__ = f"{prog}: {description}"
    return main
