"""The config's `merge` section checked against the method registry's schema.

Only the workflow manager checks the config (rules/common.smk), so jsonschema lives here, apart
from the modules the step programs import: the rules' envs carry no jsonschema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from mtl.merge.options import MergeError
from mtl.merge.recipe import merge_schema


def merge_config(merge: Mapping[str, Any]) -> dict[str, Any]:
    """The config's `merge` section checked against merge_schema, with its defaults filled in;
    a bad key or value raises MergeError naming it."""
    schema = merge_schema()
    errors = sorted(Draft202012Validator(schema).iter_errors(dict(merge)), key=str)
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path)
        raise MergeError(f"config merge{'.' + where if where else ''}: {errors[0].message}")
    defaults = {name: prop["default"] for name, prop in schema["properties"].items()}
    return {**defaults, **merge}
