"""The project's test harness: a real local control plane, the bubble cluster and emulated AWS."""
