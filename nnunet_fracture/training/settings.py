"""Trainer settings: class attributes declared by name, overridable at run time through one environment variable.

Every plugin trainer declares its settings as class attributes holding the defaults and lists their names in a
``settings`` tuple of its own::

    class nnUNetTrainerWeakBBox(nnUNetTrainerFracture):
        settings = ("lambda_outside",)
        lambda_outside = 1.0

The names are collected along the MRO (base classes first), so a trainer combining several plugins by multiple
inheritance knows all of their settings. A subclass may change a default without re-declaring it
(``num_epochs = 5``). At run time ``NNUNET_FRACTURE_SETTINGS`` overrides any declared setting::

    NNUNET_FRACTURE_SETTINGS="num_epochs=2 num_iterations_per_epoch=3 lambda_outside=0.5"

Pairs are ``key=value`` separated by commas and/or whitespace; a value may itself contain commas or spaces when
it is a bracketed literal (``mirror_axes=(0, 1)``). Values are parsed to the type of the declared default.

A trainer may also bound its settings, collected along the MRO like the names: ``setting_ranges`` maps a name to
``(low, high)`` (inclusive; ``None`` for no bound) and ``setting_choices`` to the allowed values. Both are checked
when the settings are resolved, before nnU-Net creates any output folder::

    setting_ranges = {"num_epochs": (1, None), "oversample_foreground_percent": (0.0, 1.0)}
    setting_choices = {"bag_aggregation": ("mean", "max", "smooth_max")}
"""
from __future__ import annotations

import ast
import copy
import os
import re

ENV_VAR = "NNUNET_FRACTURE_SETTINGS"

_TRUE = ("1", "true", "t", "yes", "y", "on")
_FALSE = ("0", "false", "f", "no", "n", "off")
# a separator is a run of commas/whitespace that is followed by the next "key="
_PAIR_SEPARATOR = re.compile(r"[\s,]+(?=[A-Za-z_]\w*\s*=)")


class SettingsError(ValueError):
    """Raised for an unknown setting name or a value that cannot be parsed to the setting's type."""


def declared_settings(cls: type) -> dict[str, object]:
    """Return ``{name: default}`` for every setting declared along ``cls``'s MRO, base classes first."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for name in klass.__dict__.get("settings", ()):
            if not hasattr(cls, name):
                raise TypeError(f"{klass.__name__} declares setting {name!r} but defines no class attribute for it")
            if name not in names:
                names.append(name)
    return {name: getattr(cls, name) for name in names}


def declared_constraints(cls: type) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """``(ranges, choices)`` declared along ``cls``'s MRO; a subclass's entry replaces its base's."""
    ranges: dict[str, tuple] = {}
    choices: dict[str, tuple] = {}
    for klass in reversed(cls.__mro__):
        ranges.update(klass.__dict__.get("setting_ranges", {}))
        choices.update(klass.__dict__.get("setting_choices", {}))
    return ranges, choices


def check_constraints(cls: type, values: dict[str, object]) -> None:
    """Raise :class:`SettingsError` naming the setting, its value and what is allowed, for the first value outside
    its declared range or choices."""
    ranges, choices = declared_constraints(cls)
    for name, (low, high) in ranges.items():
        value = values.get(name)
        if value is None:
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = (f"between {low} and {high}" if low is not None and high is not None
                       else f">= {low}" if low is not None else f"<= {high}")
            raise SettingsError(f"{cls.__name__}.{name} = {value!r} is out of range: it must be {allowed}. Fix: "
                                f"change it in {ENV_VAR} (or the trainer's class attribute).")
    for name, allowed in choices.items():
        if name in values and values[name] not in allowed:
            raise SettingsError(f"{cls.__name__}.{name} = {values[name]!r} is not one of "
                                f"{', '.join(map(repr, allowed))}. Fix: change it in {ENV_VAR}.")


def parse_pairs(text: str) -> dict[str, str]:
    """Split ``"a=1, b=(0, 1) c=x"`` into ``{"a": "1", "b": "(0, 1)", "c": "x"}`` (values unparsed)."""
    pairs: dict[str, str] = {}
    text = text.strip().strip(",")
    for item in _PAIR_SEPARATOR.split(text) if text else ():
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip().rstrip(",").strip()
        if not sep or not key.isidentifier():
            raise SettingsError(f"{ENV_VAR}: cannot read {item!r}; expected key=value pairs such as "
                                f"'num_epochs=2 num_iterations_per_epoch=3'")
        if key in pairs:
            raise SettingsError(f"{ENV_VAR}: {key!r} is given twice")
        pairs[key] = value
    return pairs


def parse_value(raw: str, default: object) -> object:
    """Parse ``raw`` to the type of ``default``; raise ``ValueError`` when it does not fit."""
    if isinstance(default, bool):
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"expected a boolean ({'/'.join(_TRUE)} or {'/'.join(_FALSE)})")
    if isinstance(default, str):
        try:
            value = ast.literal_eval(raw)  # allows quoting, e.g. name='a b'
        except (ValueError, SyntaxError):
            return raw
        return value if isinstance(value, str) else raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise ValueError("not a Python literal") from None
    if default is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(default)(value)
    if type(value) is not type(default):
        raise ValueError(f"expected {type(default).__name__}, got {type(value).__name__}")
    return value


def _describe(known: dict[str, object]) -> str:
    return ", ".join(f"{k} ({type(v).__name__}, default {v!r})" for k, v in known.items())


def resolve_settings(cls: type, text: str | None = None) -> tuple[dict[str, object], set[str]]:
    """Return the settings in effect for trainer class ``cls`` and the names that came from the environment.

    ``text`` defaults to the value of ``NNUNET_FRACTURE_SETTINGS``, read now (never at import).

    Raises:
        SettingsError: an unknown name, an unparsable value (the message lists ``cls``'s known settings), or a value
            outside its declared range or choices.
    """
    known = declared_settings(cls)
    text = os.environ.get(ENV_VAR, "") if text is None else text
    overrides = parse_pairs(text)
    values = {name: copy.deepcopy(default) for name, default in known.items()}
    for name, raw in overrides.items():
        if name not in known:
            raise SettingsError(f"{ENV_VAR}: {cls.__name__} has no setting {name!r}. "
                                f"Known settings: {_describe(known)}")
        try:
            values[name] = parse_value(raw, known[name])
        except ValueError as e:
            raise SettingsError(f"{ENV_VAR}: bad value {raw!r} for {cls.__name__}.{name}: {e}. "
                                f"Known settings: {_describe(known)}") from None
    check_constraints(cls, values)
    return values, set(overrides)


def format_settings(values: dict[str, object], from_env: set[str]) -> str:
    """``"a=1, b=2 (env)"``: the settings in effect, marking those overridden through the environment."""
    return ", ".join(f"{k}={v!r}" + (" (env)" if k in from_env else "") for k, v in values.items())
