"""The recording archive: recordings copied into the org's own store, and served from it."""
