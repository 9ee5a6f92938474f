"""Who may call and how much: keys, stream tokens, ownership, per-caller limits, body guards."""
