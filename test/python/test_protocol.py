"""protocol.py mirrors src/frameworks/protocol.ts: every TypedDict has the keys, the required
keys and the value types of the JSON Schema generated from its zod schema."""

import json
import types
import typing
from pathlib import Path

import pytest
from vision_trainer import protocol

SCHEMAS = json.loads((Path(__file__).resolve().parents[2] / "docs/schemas/bridge.schema.json").read_text())["$defs"]

JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null", list: "array", dict: "object"}


def json_types(schema: dict) -> set[str]:
    """The JSON types a schema allows; an empty set allows anything."""
    if "anyOf" in schema:
        return set().union(*(json_types(s) for s in schema["anyOf"]))
    if "const" in schema:
        return {"null" if schema["const"] is None else JSON_TYPES[type(schema["const"])]}
    if "enum" in schema:
        return {JSON_TYPES[type(v)] for v in schema["enum"]}
    kind = schema.get("type")
    if kind is None:
        return set()
    return set(kind) if isinstance(kind, list) else {kind}


def annotation_types(tp) -> set[str]:
    """The JSON types a Python annotation allows; an empty set allows anything."""
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return set()
    if origin in (typing.Union, types.UnionType):
        parts = [annotation_types(a) for a in typing.get_args(tp)]
        return set() if any(not p for p in parts) else set().union(*parts)
    if origin is typing.Literal:
        return {"null" if v is None else JSON_TYPES[type(v)] for v in typing.get_args(tp)}
    if typing.is_typeddict(tp):
        return {"object"}
    return {JSON_TYPES[origin or tp]}


def compatible(python: set[str], schema: set[str]) -> bool:
    if not python or not schema:
        return True
    # A float annotation takes integers too, as JSON numbers do.
    widen = {"number": {"number", "integer"}}
    allowed = set().union(*(widen.get(t, {t}) for t in python))
    return schema <= allowed and all(t in schema or (t == "number" and "integer" in schema) for t in python)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_typed_dict_mirrors_the_zod_schema(name):
    typed_dict = getattr(protocol, name, None)
    assert typed_dict is not None, f"protocol.py has no {name}"
    schema = SCHEMAS[name]
    properties = schema["properties"]
    required = set(schema.get("required", []))
    assert set(typed_dict.__required_keys__) == required, f"{name}: required keys"
    assert set(typed_dict.__optional_keys__) == set(properties) - required, f"{name}: optional keys"
    hints = typing.get_type_hints(typed_dict)
    for key, prop in properties.items():
        python, declared = annotation_types(hints[key]), json_types(prop)
        assert compatible(python, declared), f"{name}.{key}: Python allows {sorted(python)}, the schema {sorted(declared)}"


def test_every_typed_dict_has_a_schema():
    """A TypedDict without a zod schema would be a shape TypeScript never checks."""
    typed_dicts = {n for n, v in vars(protocol).items() if typing.is_typeddict(v)}
    nested = {
        "ResumedBest",
        "TrainerArgProblem",
        "BestSoFar",
        "XaiParams",
        "DatasetClasses",
        "InferenceBackendInfo",
        "OutputFile",
        "TensorInfo",
        "TensorQuantization",
        "DecodeItem",
        "ValidationObject",
        "ValidationImage",
        "ModelInput",
        "ExportParams",
        "Normalization",
        "NmsParams",
        "ImportCheck",
        "TorchReport",
        "GraphModel",
        "GraphNms",
        "PrecisionCheck",
    }
    assert typed_dicts - nested == set(SCHEMAS)


def test_the_type_check_catches_a_drift():
    class Drifted(typing.TypedDict):
        path: int

    assert not compatible(annotation_types(typing.get_type_hints(Drifted)["path"]), {"string"})
    assert compatible(annotation_types(float), {"integer"})
    assert not compatible(annotation_types(str | None), {"string"})
