"""The trainer's settings: defaults, presets, validation, the JSON schema and the resolved runtime."""
