"""Prompts as versioned artifacts, rendered in a sandbox, scored by local or hosted models."""
