"""Validated dataclass configs, loaded from named YAML presets under configs/.

Every config is a dataclass whose fields carry help text in `metadata["help"]` and whose
__post_init__ checks its values. `load(cls, preset, overrides)` reads `configs/<preset>.yaml` (or
a path), applies dotted overrides ("train.lr=1e-3"), and returns the instance; any problem becomes
a one-line ReverieError naming the key and the fix.
"""

import copy
import dataclasses
import typing
from pathlib import Path

import yaml

from reverie.errors import ReverieError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def field(default, help: str, **kw):
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        # why: a nested config is mutable; each instance gets its own copy
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default),
                                 metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def positive(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def _number(value, hint):
    """Coerce YAML's readings to the field's number type where that loses nothing."""
    if isinstance(value, str):
        try:  # why: YAML reads "2e-3" (no dot) as a string
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if hint is float or float(value).is_integer():
            return hint(value)
    return value


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a (possibly nested) dict, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ReverieError(f"config section {where or 'root'!r} must be a mapping, got "
                           f"{type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ReverieError(f"unknown config key {where + key!r}; known keys: "
                               f"{', '.join(sorted(fields))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value or {}, f"{where}{key}.")
        elif hint in (int, float):
            value = _number(value, hint)
        elif hint is str and isinstance(value, bool):
            # why: YAML 1.1 reads a bare yes/no as a bool; a text setting given "no" means the word
            value = "yes" if value else "no"
        if hint in (int, float, str, bool) and not isinstance(value, hint):
            raise ReverieError(f"config key {where + key!r} must be {hint.__name__}, got "
                               f"{value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ReverieError(f"invalid config {where.rstrip('.') or cls.__name__}: {e}") from None


def _set_dotted(data: dict, dotted: str, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        data = data.setdefault(k, {})
    data[keys[-1]] = value


def load(cls, preset: str | None = None, overrides: list[str] | None = None,
         section: str | None = None):
    """Load `cls` from a named preset (configs/<name>.yaml) or a YAML path, plus overrides.
    section: read only that key of the file (e.g. the `memory:` of a serve config); absent,
    the defaults."""
    data = {}
    if preset:
        path = Path(preset)
        if not path.suffix:
            path = CONFIG_DIR / f"{preset}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ReverieError(f"config preset {preset!r} not found; use a YAML path or one of: "
                               f"{', '.join(names)}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ReverieError(f"{str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
        if section:
            if not isinstance(data, dict):
                raise ReverieError(f"{str(path)!r} must hold a mapping, got {type(data).__name__}")
            data = data.get(section) or {}
    for item in overrides or []:
        if "=" not in item:
            raise ReverieError(f"override {item!r} must look like key=value, e.g. train.lr=1e-3")
        key, raw = item.split("=", 1)
        _set_dotted(data, key, yaml.safe_load(raw))
    return from_dict(cls, data)
