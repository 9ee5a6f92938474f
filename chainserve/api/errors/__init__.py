"""The typed errors users see, how each failure maps to one, and their wire shapes."""
