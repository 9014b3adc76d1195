"""Reading YAML configs: `_BASE_` inheritance, then the file, then `KEY VALUE` overrides.

Merge order (later wins): `get_cfg()` defaults < `_BASE_` files (recursively) < the file < command-line opts.
Every failure becomes one `ConfigError` line naming the file (and line) or the key.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import yaml
from fvcore.common.config import CfgNode

from .defaults import get_cfg
from .errors import ConfigError


def _check_mapping(cfg_file: str, seen: tuple[str, ...] = ()) -> None:
    """Refuse a config file (or one of its `_BASE_` files) that is empty or whose top level is not KEY: value."""
    with open(cfg_file, "r", encoding="utf-8") as handle:
        content = yaml.safe_load(handle)
    if content is None:
        raise ConfigError(f"{cfg_file}: empty config file (expected KEY: value entries, e.g. `SOLVER:` then "
                          f"`BASE_LR: 0.1` indented)")
    if not isinstance(content, dict):
        raise ConfigError(f"{cfg_file}: the top level is a {type(content).__name__}, expected KEY: value entries "
                          f"(e.g. `SOLVER:` then `BASE_LR: 0.1` indented)")
    base = content.get("_BASE_")
    if isinstance(base, str) and cfg_file not in seen and not base.startswith(("https://", "http://")):
        # fvcore's rule: a relative _BASE_ path is relative to the folder of the file naming it.
        path = os.path.expanduser(base)
        if not path.startswith("/"):
            path = os.path.join(os.path.dirname(cfg_file), path)
        if os.path.isdir(path):
            raise ConfigError(f"{cfg_file}: _BASE_ {base} is a folder ({path}), not a config file")
        if not os.path.isfile(path):
            raise ConfigError(f"{cfg_file}: config file not found: {path} (its _BASE_)")
        _check_mapping(path, seen + (cfg_file,))


def _merge_file(cfg: CfgNode, cfg_file: str) -> None:
    if not os.path.isdir(cfg_file) and not os.path.isfile(cfg_file):
        raise ConfigError(f"config file not found: {cfg_file}")
    if os.path.isdir(cfg_file):
        raise ConfigError(f"{cfg_file}: is a folder, not a config file")
    try:
        _check_mapping(cfg_file)
        cfg.merge_from_file(cfg_file)
    except ConfigError:
        raise
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.name}:{mark.line + 1}" if mark is not None else cfg_file
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"YAML syntax error at {where}: {problem}") from None
    except KeyError as err:
        # fvcore/yacs say "Non-existent config key: A.B"; keep the key, add the file.
        raise ConfigError(f"{cfg_file}: {_key_message(err)}") from None
    except FileNotFoundError as err:
        # A missing _BASE_ file: name it and the file that asked for it.
        raise ConfigError(f"{cfg_file}: config file not found: {err.filename}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{cfg_file}: not a text (UTF-8) YAML file") from None
    except (ValueError, AssertionError, TypeError) as err:
        raise ConfigError(f"{cfg_file}: {' '.join(str(err).split())}") from None


def _key_message(err: KeyError) -> str:
    text = err.args[0] if err.args else str(err)
    return " ".join(str(text).split())


_ABSENT = object()


def config_value(node: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at the dotted `key` (e.g. "SOLVER.BASE_LR") of a config, or of a plain nested dict such as a
    checkpoint's stored config read back from YAML; `default` when a part of the key is absent."""
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _has_key(cfg: CfgNode, key: str) -> bool:
    return config_value(cfg, key, _ABSENT) is not _ABSENT


def merge_opts(cfg: CfgNode, opts: Sequence[str]) -> None:
    """Merge `KEY VALUE` pairs (strings as typed on a command line) into `cfg` in place."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; got an odd number of items: {' '.join(opts)}")
    for key, value in zip(opts[0::2], opts[1::2]):
        if not _has_key(cfg, key):
            raise ConfigError(f"unknown config key: {key}")
        try:
            cfg.merge_from_list([key, value])
        except (ValueError, AssertionError, TypeError) as err:
            raise ConfigError(f"bad value for {key}: {' '.join(str(err).split())}") from None


def load_config(cfg_file: str | Iterable[str] | None = None, opts: Sequence[str] | None = None) -> CfgNode:
    """Build a config from defaults, one or more YAML files (merged in order) and overrides.

    Args:
        cfg_file: a YAML path, a list of them, or None for the defaults alone.
        opts: flat `[KEY, VALUE, KEY, VALUE, ...]` overrides, merged last.
    Returns:
        The merged (not yet validated) CfgNode; call `assert_and_infer_cfg` on it.
    """
    cfg = get_cfg()
    files = [cfg_file] if isinstance(cfg_file, str) else list(cfg_file or [])
    for path in files:
        _merge_file(cfg, path)
    if opts:
        merge_opts(cfg, opts)
    return cfg
