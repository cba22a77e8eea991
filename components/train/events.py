"""How the Train tab's events show: private, run-on-open, and the quiet live view."""

from typing import Any

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
# events run when a tab opens: callable but not listed; a tab opened while the page-load read still runs is read
# once more after it ("always_last"), not skipped
OPEN: dict[str, Any] = {"api_visibility": "undocumented", "show_progress": "hidden",
                        "trigger_mode": "always_last"}  # fmt: skip
QUIET: dict[str, Any] = {**PRIVATE, "show_progress": "hidden"}  # the live view redraws without a spinner
