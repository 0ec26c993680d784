"""Origins (Dialflo): webhook adapter and call details."""
