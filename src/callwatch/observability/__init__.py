"""`/metrics`, `/healthz` and `/readyz`: what the service says about itself."""
