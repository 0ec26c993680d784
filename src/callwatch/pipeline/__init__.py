"""The worker's steps: ingest, assemble, fan-out, quarantine, the sweeper and replay."""
