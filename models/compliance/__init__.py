"""Component compliance: the note text classifier and its pyfunc."""
