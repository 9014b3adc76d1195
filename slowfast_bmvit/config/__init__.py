"""Configuration: PySlowFast-compatible defaults plus the BMVIT group, YAML loading and validation."""

from .defaults import get_cfg
from .errors import ConfigError
from .loading import config_value, load_config, merge_opts
from .validation import BACKBONES, CHOICES, assert_and_infer_cfg, backbone_name, check_devices

__all__ = ["BACKBONES", "CHOICES", "ConfigError", "assert_and_infer_cfg", "backbone_name", "check_devices",
           "config_value", "get_cfg", "load_config", "merge_opts"]
