"""The HTTP layer: the two doors, the app and its wiring. Only this layer knows HTTP."""
