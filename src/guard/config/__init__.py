"""Configuration: the YAML file plus `GUARD_` environment overrides, validated strictly."""

from guard.config.loader import ConfigError, load_config
from guard.config.models import AppConfig, GuardConfig
from guard.config.yamlfile import Problem

__all__ = ["AppConfig", "ConfigError", "GuardConfig", "Problem", "load_config"]
