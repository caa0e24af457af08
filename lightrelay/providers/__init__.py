"""Providers: how the relay reaches a model. ``base`` has the protocol; ``openai`` and
``local`` are the two built-in kinds; ``registry`` builds one for a channel row."""
