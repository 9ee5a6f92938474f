"""What operators see: metrics, request logs, log redaction, store health, GC tuning."""
