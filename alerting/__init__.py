"""Alert rules and their evaluation: one model, shared by the central engine and the gateway."""
