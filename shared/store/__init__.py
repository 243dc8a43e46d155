"""State stores: specs, desired states, per-sink checkpoints, sink gaps."""
