"""One router per console page; `common` holds what they share."""
