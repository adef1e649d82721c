"""What counts as a classifiable note: plain text with words, at most 10 kB.

Pure and light (no torch), so the CLI and the stream check notes before loading a model.
"""

from __future__ import annotations

import unicodedata

MAX_NOTE_TEXT_BYTES = 10_000


class ComplianceModelError(ValueError):
    """Input or settings the compliance classifier cannot work with."""


def note_text_problem(text: object) -> str | None:
    """Why `text` cannot be classified (empty, over 10 kB, not plain text), or None."""
    if not isinstance(text, str):
        return f"note text must be a string, got {type(text).__name__}"
    if not text.strip():
        return "note text is empty"
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_NOTE_TEXT_BYTES:
        return f"note text too long: {size} bytes > {MAX_NOTE_TEXT_BYTES}"
    for char in text:
        if char in "\t\n\r":
            continue
        # Control, surrogate, private-use or unassigned characters, or U+FFFD left by a
        # bad decode: binary data dressed as a string, not a technician's note.
        if char == "\ufffd" or unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn"):
            return "note text is not plain text (control or invalid characters)"
    if not any(char.isalpha() for char in text):
        return "note text has no words"
    return None
