"""Engines beyond one process: Ray (`newsclf.integrations.ray`)."""
