"""The words of user-facing error messages, in one place.

* :func:`did_you_mean` is the close-name hint every "unknown name" message ends with.
* :func:`setting_name`, :func:`setting_value` and :func:`phrase` name a setting the way the
  user passed it: as a flag on the command line (``--steps 1000``, ``--overwrite``) and as a
  keyword argument from Python (``total_steps=1000``, ``overwrite=True``). The wording is
  Python's unless the CLI asked for flags with :func:`use_wording` for the duration of a
  command, so a library function raises the same ValueError for both and needs no argument
  to say who called it.

This module imports nothing from natpg: every other module can use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
from typing import Any, Callable, Iterable, Iterator

__all__ = ["did_you_mean", "flag", "setting_name", "setting_value", "phrase", "use_wording", "command_line_wording"]

#: Settings whose flag is not their Python name (``natpg train`` and ``natpg bench``).
_FLAGS = {"env_id": "env", "total_steps": "steps", "method_specs": "methods", "overrides": "set"}

_COMMAND_LINE = contextvars.ContextVar("natpg_command_line_wording", default=False)


def did_you_mean(
    word: str, candidates: Iterable[str], *, show: Callable[[str], str] = str, limit: int = 3, lead: str = "; "
) -> str:
    """``"; did you mean a, b?"`` with the candidates closest to ``word``, or ``""`` when none is
    close; ``show`` writes a candidate as the user would type it (``--lr`` for ``lr``), ``lead``
    joins the hint to the sentence before it."""
    close = difflib.get_close_matches(str(word), list(candidates), n=limit, cutoff=0.6)
    return f"{lead}did you mean {', '.join(show(c) for c in close)}?" if close else ""


@contextlib.contextmanager
def use_wording(command_line: bool) -> Iterator[None]:
    """Name settings as flags (``command_line=True``) or as Python keywords inside the block."""
    token = _COMMAND_LINE.set(command_line)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def command_line_wording() -> bool:
    """True inside a CLI command: messages name flags, not keyword arguments."""
    return _COMMAND_LINE.get()


def flag(name: str) -> str:
    """The command-line flag of a setting: ``total_steps`` → ``--steps``, ``batch_size`` → ``--batch-size``."""
    return "--" + _FLAGS.get(name, name).replace("_", "-")


def setting_name(name: str) -> str:
    """A setting as the user names it: ``--steps`` on the command line, ``total_steps`` from Python."""
    return flag(name) if command_line_wording() else name


def setting_value(name: str, value: Any, *, quote: bool = False) -> str:
    """A setting with its value: ``--steps 200`` (``--env 'X'`` with ``quote``) on the command
    line, ``total_steps=200`` from Python; a true boolean is the bare flag (``--overwrite``)."""
    if not command_line_wording():
        return f"{name}={value!r}"
    if value is True:
        return flag(name)
    return f"{flag(name)} {value!r}" if quote else f"{flag(name)} {value}"


def phrase(command_line: str, python: str) -> str:
    """One of two wordings that differ by more than a setting's name (``--resume DIR`` / ``resume=True``)."""
    return command_line if command_line_wording() else python
