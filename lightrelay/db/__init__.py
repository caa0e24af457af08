"""Storage: tables, the engine and migrations."""
