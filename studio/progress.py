"""The progress callback that batch judging, compare and eval take."""

from collections.abc import Callable

#: ``progress(done, total, message)``: items done out of ``total``, and what is happening now.
Progress = Callable[[int, int, str], None]
