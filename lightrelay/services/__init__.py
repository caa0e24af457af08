"""Services: keyword-only functions and small classes over the storage layer.
They raise ``lightrelay.errors`` and never know about HTTP."""
