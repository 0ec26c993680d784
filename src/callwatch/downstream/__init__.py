"""What leaves: subscriptions and their signed deliveries, the delivery log, ops streams."""
