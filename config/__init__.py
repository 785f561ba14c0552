"""Typed settings, read once from PREDGATE_* variables and validated at start."""

from config.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
