"""Run a command-line tool's ``main`` so that bad input gives one line, not a
traceback.

Every tool under ``tools/`` ends with::

    if __name__ == '__main__':
        run_cli(main)

An expected error (:data:`CLI_ERRORS`: a missing file, a malformed input, a
config key that is not there, a checkpoint that does not fit) is printed as
``error: <message>`` on one line of stderr and the process exits with

* status 2 (:data:`EXIT_BAD_INPUT`) for ``ValueError``, ``KeyError`` and
  ``OSError`` (``FileNotFoundError``, ``FileExistsError``, ...): the input
  was wrong, as for argparse's own usage errors;
* status 1 (:data:`EXIT_RUNTIME_ERROR`) for ``RuntimeError``: the input
  looked fine but running on it failed (e.g. a checkpoint that does not
  match the model).

``--debug`` anywhere on the command line (every tool accepts it, see
:func:`add_debug_argument`) or ``SERA_DEBUG=1`` in the environment re-raises
instead, keeping the full traceback. Other exceptions (bugs) always keep
their traceback.
"""
import argparse
import os
import sys
from typing import Any, Callable, List, Optional, Sequence, TextIO

#: Exceptions reported as one ``error:`` line.
CLI_ERRORS = (ValueError, FileNotFoundError, KeyError, RuntimeError, OSError)
#: Exit status for bad input (as argparse's usage errors).
EXIT_BAD_INPUT = 2
#: Exit status for a ``RuntimeError``.
EXIT_RUNTIME_ERROR = 1
DEBUG_FLAG = '--debug'
DEBUG_ENV = 'SERA_DEBUG'


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Declare ``--debug`` on a tool's parser (so ``--help`` lists it and
    parsing accepts it; :func:`run_cli` acts on it)."""
    parser.add_argument(
        DEBUG_FLAG, action='store_true',
        help=f'on an error show the full traceback instead of one '
        f'"error:" line (also {DEBUG_ENV}=1)')


def add_check_base_argument(parser: argparse.ArgumentParser) -> None:
    """Declare ``--check-base {error,warn,ignore}`` (default ``error``):
    what loading a PET checkpoint does when the model's frozen base weights
    differ from those it was trained on (``check_base`` of
    :func:`~sera_mm.engine.load_pet_checkpoint`)."""
    parser.add_argument(
        '--check-base', choices=('error', 'warn', 'ignore'), default='error',
        help='PET checkpoints: what to do when the model\'s frozen weights '
        'differ from those it was trained on')


def debug_requested(argv: Sequence[str]) -> bool:
    """Whether ``--debug`` is on the command line (before a ``--``) or
    ``SERA_DEBUG`` is set to anything but ``''``/``0``/``false``/``no``."""
    args = list(argv)
    if '--' in args:
        args = args[:args.index('--')]
    if DEBUG_FLAG in args:
        return True
    value = os.environ.get(DEBUG_ENV, '').strip().lower()
    return value not in ('', '0', 'false', 'no', 'off')


def error_message(exc: BaseException) -> str:
    """``exc``'s message on one line (a ``KeyError``'s without the quotes
    ``str`` adds; the exception's class name when it has no message)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and \
            isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    text = ' '.join(line.strip() for line in text.splitlines()
                    if line.strip())
    return text or type(exc).__name__


def exit_status(exc: BaseException) -> int:
    """:data:`EXIT_RUNTIME_ERROR` for a ``RuntimeError``, else
    :data:`EXIT_BAD_INPUT`."""
    return EXIT_RUNTIME_ERROR if isinstance(exc, RuntimeError) else \
        EXIT_BAD_INPUT


def run_cli(main: Callable[[Optional[List[str]]], Any],
            argv: Optional[Sequence[str]] = None,
            stderr: Optional[TextIO] = None) -> Any:
    """Call ``main(argv)``; turn an expected error into one stderr line and
    an exit status (see the module doc).

    Args:
        main: the tool's ``main``, taking the argument list.
        argv: the arguments (default ``sys.argv[1:]``).
        stderr: where the error line goes (default ``sys.stderr``).

    Returns:
        What ``main`` returned, when it did not raise.

    Raises:
        SystemExit: with status 2 or 1 after printing ``error: <message>``.
        Exception: the original error, with ``--debug`` or ``SERA_DEBUG=1``,
            and any error outside :data:`CLI_ERRORS`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv)
    except CLI_ERRORS as exc:
        if debug_requested(argv):
            raise
        print(f'error: {error_message(exc)}', file=stderr or sys.stderr,
              flush=True)
        raise SystemExit(exit_status(exc)) from None
