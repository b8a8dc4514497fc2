"""JSON files the plugin reads (``dataset.json``, ``plans.json``, ``boxes.json``, provenance), with errors that name
the file and the fix."""
from __future__ import annotations

import json
from pathlib import Path


def read_json_object(path: Path | str, fix: str = "") -> dict:
    """The JSON object stored in ``path``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file (and ``fix``), if it is not JSON or holds something other than an object.
    """
    path = Path(path)
    tail = f". Fix: {fix}" if fix else ""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}){tail}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text (UTF-8) file{tail}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object but {type(value).__name__}{tail}")
    return value
