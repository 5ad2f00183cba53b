"""JSON Schema from Python types: the one home for tool parameters and structured output.

A typed function becomes a :class:`~fmclient.types.Tool` whose parameters schema pydantic
generates from the annotations (the ``structured`` extra): nested models, enums, dataclasses,
TypedDicts, dates, ``Optional``/``X | None``, ``Literal``, defaults, lists and dicts of those.
Every ``$defs`` entry sits at the top of the parameters schema, so each ``$ref`` resolves
inside it. Parameter descriptions come from ``Annotated[..., Field(description=...)]`` or from
the docstring's Google ("Args:") or NumPy ("Parameters") section.

The same pydantic model turns a tool call's JSON arguments back into typed Python values
(:func:`tool_arguments`), so what the model was shown is what its answer is checked against.

Without pydantic installed, plain annotations (``str``, ``int``, ``float``, ``bool``, ``list``,
``dict``, ``Literal``, ``Optional`` and lists/dicts of those) still get the same schema pydantic
would give; any other annotation raises :class:`~fmclient.errors.ConfigurationError` naming the
extra to install, never an empty schema.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import re
import types
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from fmclient.errors import ConfigurationError, StructuredOutputError
from fmclient.types import Tool, ToolCall

if TYPE_CHECKING:
    from pydantic import BaseModel

STRUCTURED_EXTRA = 'pip install "fmclient[structured]"'

# Section headers that end a docstring's description (Google and NumPy style).
_PARAMETER_SECTIONS = frozenset({"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"})
_OTHER_SECTIONS = frozenset(
    {
        "returns",
        "return",
        "yields",
        "yield",
        "raises",
        "raise",
        "examples",
        "example",
        "notes",
        "note",
        "see also",
        "warnings",
        "warning",
        "attributes",
        "references",
        "other parameters",
    }
)
_SECTIONS = _PARAMETER_SECTIONS | _OTHER_SECTIONS
_NUMPY_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_GOOGLE_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(?::.*)?$")


# -- the tool for a function ---------------------------------------------------------------
def tool_from_function(fn: Callable[..., Any]) -> Tool:
    """A Tool from a typed Python function: its name, docstring and annotated parameters."""
    spec = _spec(fn)
    model = _parameters_model(fn, spec)
    schema = _plain_parameters_schema(spec) if model is None else _model_parameters_schema(model, spec)
    return Tool(name=spec.name, description=spec.description, parameters=schema)


def tool_arguments(fn: Callable[..., Any], call: ToolCall | Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a tool call as the typed values ``fn`` takes, ready for ``fn(**arguments)``.

    Converted and checked by the same pydantic model the tool's schema came from: a nested model
    becomes an instance, an enum value its member, an ISO date a ``date``. Only the arguments the
    model sent are returned, so the function's own defaults apply to the rest. Arguments that do
    not fit raise :class:`~fmclient.errors.StructuredOutputError`, whose message can go back to
    the model as the tool's result.
    """
    arguments = call.arguments if isinstance(call, ToolCall) else call
    if not isinstance(arguments, Mapping):
        raise TypeError(f"arguments must be a ToolCall or a dict, not {type(arguments).__name__}")
    spec = _spec(fn)
    return _exact_arguments(spec, arguments) or _checked_arguments(fn, spec, arguments)


def arguments_check(fn: Callable[..., Any]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """:func:`tool_arguments` for one function, its signature read once (a tool loop checks
    every call's arguments with it)."""
    spec = _spec(fn)

    def check(arguments: Mapping[str, Any]) -> dict[str, Any]:
        return _exact_arguments(spec, arguments) or _checked_arguments(fn, spec, arguments)

    return check


def _exact_arguments(spec: _Spec, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
    """The arguments as they are when every one has exactly its parameter's plain type and none
    is missing: pydantic would return the same values, and costs ~2 µs a call to say so. None
    (and the full check) otherwise; an empty call has nothing to skip."""
    exact = spec.exact
    for name, value in arguments.items():
        if exact.get(name) is not type(value):
            return None
    for name in spec.required:
        if name not in arguments:
            return None
    return dict(arguments) or None


def _checked_arguments(fn: Callable[..., Any], spec: _Spec, arguments: Mapping[str, Any]) -> dict[str, Any]:
    model = _parameters_model(fn, spec)
    problem = _arguments_problem(spec, arguments, missing=model is None)
    if problem:
        text = json.dumps(arguments, default=str)  # written only for an error: it costs on every call
        raise StructuredOutputError(f"arguments for tool {spec.name!r} do not fit: {problem}", text=text)
    if model is None:
        return dict(arguments)
    try:
        validated = model.model_validate(dict(arguments))
    except Exception as exc:  # pydantic.ValidationError, without importing pydantic at module level
        raise StructuredOutputError(
            f"arguments for tool {spec.name!r} do not fit: {_validation_problems(exc)}",
            text=json.dumps(arguments, default=str),
        ) from exc
    extra = dict(getattr(validated, "__pydantic_extra__", None) or {})
    given = {spec.alias_of[field] for field in validated.model_fields_set if field in spec.alias_of}
    return {name: getattr(validated, spec.field_of[name]) for name in spec.field_of if name in given} | extra


# -- structured output ---------------------------------------------------------------------
def model_schema(model: type[Any]) -> dict[str, Any]:
    """The JSON Schema of a pydantic model class, as ``response_format=Model`` sends it."""
    return dict(model.model_json_schema())


def is_pydantic_model(value: Any) -> bool:
    return isinstance(value, type) and callable(getattr(value, "model_json_schema", None))


# -- reading a function --------------------------------------------------------------------
class _Parameter(typing.NamedTuple):
    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required
    description: str | None


class _Spec(typing.NamedTuple):
    name: str
    description: str
    parameters: tuple[_Parameter, ...]
    open_ended: bool  # the function takes **kwargs: keys beyond its parameters are passed on
    field_of: dict[str, str]  # parameter name -> pydantic field name
    alias_of: dict[str, str]  # pydantic field name -> parameter name
    required: tuple[str, ...]  # the parameters without a default
    #: parameter name -> its type, for the parameters annotated exactly str, int, float or bool
    #: (with no Field() default): a value of exactly that type is what pydantic would return
    exact: dict[str, type]


def _spec(fn: Callable[..., Any]) -> _Spec:
    """What a function's signature and docstring say (cached per function: a tool loop reads it
    for every call's arguments)."""
    try:
        cached = _SPECS.get(fn)
    except TypeError:  # not weak-referenceable or not hashable: read it each time
        return _read_spec(fn)
    if cached is None:
        cached = _read_spec(fn)
        with contextlib.suppress(TypeError):
            _SPECS[fn] = cached
    return cached


def _read_spec(fn: Callable[..., Any]) -> _Spec:
    if not callable(fn):
        raise TypeError(f"a tool must be a function, not {type(fn).__name__}")
    name = getattr(fn, "__name__", None) or type(fn).__name__
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tool {name!r}: cannot read the function's signature: {exc}") from None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        # An annotation that names something not importable here: say which, instead of guessing.
        raise TypeError(f"tool {name!r}: cannot resolve the parameter annotations: {exc}") from None
    summary, documented = _parse_docstring(inspect.getdoc(fn) or "")
    parameters = []
    open_ended = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            open_ended = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        # An unannotated parameter is taken as a string, as most untyped Python code expects.
        annotation = hints.get(param.name, str)
        parameters.append(_Parameter(param.name, annotation, param.default, documented.get(param.name)))
    field_of = {p.name: f"fmclient_parameter_{i}" for i, p in enumerate(parameters)}
    return _Spec(
        name=name,
        description=summary,
        parameters=tuple(parameters),
        open_ended=open_ended,
        field_of=field_of,
        alias_of={field: name for name, field in field_of.items()},
        required=tuple(p.name for p in parameters if p.default is inspect.Parameter.empty),
        exact={
            p.name: p.annotation
            for p in parameters
            if p.annotation in _EXACT_TYPES
            and (p.default is inspect.Parameter.empty or type(p.default) in _EXACT_DEFAULTS)
        },
    )


# A value of exactly one of these types, for a parameter annotated with that type, passes
# pydantic's check unchanged (no coercion, no constraint); a JSON scalar default adds none.
_EXACT_TYPES = (str, int, float, bool)
_EXACT_DEFAULTS = (str, int, float, bool, type(None))


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (the text before the first section) and per-parameter descriptions."""
    lines = doc.splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    in_description = True
    i = 0
    while i < len(lines):
        numpy = _is_numpy_header(lines, i)
        if numpy or _is_google_header(lines[i]):
            in_description = False
            header = lines[i].strip().rstrip(":").lower()
            start = i + (2 if numpy else 1)
            end = _section_end(lines, start, numpy)
            if header in _PARAMETER_SECTIONS:
                params.update(_section_entries(lines[start:end], numpy))
            i = end
            continue
        if in_description:
            description.append(lines[i])
        i += 1
    return "\n".join(description).strip(), params


def _is_numpy_header(lines: list[str], i: int) -> bool:
    header = lines[i].strip().lower()
    return header in _SECTIONS and i + 1 < len(lines) and bool(_NUMPY_UNDERLINE.match(lines[i + 1]))


def _is_google_header(line: str) -> bool:
    return line.strip().endswith(":") and not line.startswith((" ", "\t")) and line.strip()[:-1].lower() in _SECTIONS


def _section_end(lines: list[str], start: int, numpy: bool) -> int:
    end = start
    while end < len(lines):
        line = lines[end]
        if _is_numpy_header(lines, end) if numpy else (line.strip() and not line.startswith((" ", "\t"))):
            return end
        end += 1
    return end


def _section_entries(lines: list[str], numpy: bool) -> dict[str, str]:
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    entry_indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    for line in lines:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = (_NUMPY_ENTRY if numpy else _GOOGLE_ENTRY).match(line.strip()) if indent == entry_indent else None
        if match:
            current = entries.setdefault(match.group(1).lstrip("*"), [])
            if not numpy and match.group(2):
                current.append(match.group(2).strip())
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(text) for name, text in entries.items() if text}


# -- with pydantic -------------------------------------------------------------------------
_MODELS: weakref.WeakKeyDictionary[Any, type[BaseModel]] = weakref.WeakKeyDictionary()
_SPECS: weakref.WeakKeyDictionary[Callable[..., Any], _Spec] = weakref.WeakKeyDictionary()


def _pydantic_available() -> bool:
    try:
        import pydantic  # noqa: F401
    except ImportError:
        return False
    return True


def _parameters_model(fn: Callable[..., Any], spec: _Spec) -> type[BaseModel] | None:
    """The pydantic model of ``fn``'s parameters (cached per function), or None without pydantic."""
    if not _pydantic_available():
        return None
    try:
        cached = _MODELS.get(fn)
    except TypeError:  # not weak-referenceable or not hashable: build it each time
        cached = None
    if cached is not None:
        return cached
    model = _build_model(spec)
    try:
        _MODELS[fn] = model
    except TypeError:
        pass
    return model


def _build_model(spec: _Spec) -> type[BaseModel]:
    from pydantic import ConfigDict, create_model
    from pydantic.errors import PydanticUserError

    fields: dict[str, Any] = {}
    for param in spec.parameters:
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[spec.field_of[param.name]] = (param.annotation, default)
    # Fields get neutral names and the parameter names as aliases, so no parameter name can clash
    # with pydantic's own attributes (json, copy, model_config...) or its leading-underscore rule.
    # An alias generator, not Field(alias=...), so that a Field() in the caller's Annotated is
    # not a second Field on the same field. Unknown keys are refused by tool_arguments and the
    # top-level additionalProperties: extra="forbid" would also be inherited by nested
    # dataclasses and TypedDicts.
    # Nested dataclasses and TypedDicts inherit the generator too: their names pass unchanged.
    config = ConfigDict(
        alias_generator=lambda field: spec.alias_of.get(field, field), extra="allow" if spec.open_ended else "ignore"
    )
    try:
        return create_model(spec.name, __config__=config, **fields)  # type: ignore[call-overload, no-any-return]
    except PydanticUserError as exc:
        raise TypeError(f"tool {spec.name!r}: {_first_line(str(exc))}") from None
    except Exception as exc:
        raise TypeError(f"tool {spec.name!r}: cannot describe the parameters as JSON Schema: {exc}") from None


@functools.lru_cache(maxsize=1)
def _schema_generator() -> type[Any]:
    from pydantic.json_schema import GenerateJsonSchema

    class ToolParametersSchema(GenerateJsonSchema):
        def field_title_should_be_set(self, schema: Any) -> bool:
            return False  # a field's title would only repeat its name

    return ToolParametersSchema


def _model_parameters_schema(model: type[BaseModel], spec: _Spec) -> dict[str, Any]:
    try:
        schema = dict(model.model_json_schema(schema_generator=_schema_generator()))
    except Exception as exc:  # e.g. an arbitrary class pydantic cannot describe
        raise TypeError(f"tool {spec.name!r}: cannot describe the parameters as JSON Schema: {exc}") from None
    schema.pop("title", None)  # the model's title is the tool's name, already sent as the name
    if not spec.open_ended:
        schema["additionalProperties"] = False
    schema.setdefault("properties", {})
    _add_descriptions(schema["properties"], spec)
    return schema


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _add_descriptions(properties: dict[str, Any], spec: _Spec) -> None:
    for param in spec.parameters:
        prop = properties.get(param.name)
        if param.description and isinstance(prop, dict) and "description" not in prop:
            prop["description"] = param.description


# -- without pydantic ----------------------------------------------------------------------
_PLAIN_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    list: {"type": "array", "items": {}},
    dict: {"type": "object", "additionalProperties": True},
    typing.Any: {},
}
_LITERAL_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number"}


def _plain_parameters_schema(spec: _Spec) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in spec.parameters:
        prop = _plain_annotation_schema(param.annotation, spec.name, param.name)
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        elif _is_json_value(param.default):
            prop["default"] = param.default
        if param.description:
            prop.setdefault("description", param.description)
        properties[param.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if not spec.open_ended:
        schema["additionalProperties"] = False
    return schema


def _plain_annotation_schema(annotation: Any, tool: str, parameter: str) -> dict[str, Any]:
    """pydantic's schema for the plain annotations, or ConfigurationError for any other."""
    if annotation in _PLAIN_TYPES:
        return dict(_PLAIN_TYPES[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _plain_annotation_schema(args[0], tool, parameter)
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _plain_annotation_schema(args[0], tool, parameter)}
    if origin is dict and len(args) == 2 and args[0] is str:
        return {"type": "object", "additionalProperties": _plain_annotation_schema(args[1], tool, parameter)}
    if origin is typing.Literal and all(type(v) in _LITERAL_TYPES for v in args):
        kinds = {_LITERAL_TYPES[type(v)] for v in args}
        out: dict[str, Any] = {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
        if len(kinds) == 1:
            out["type"] = kinds.pop()
        return out
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_plain_annotation_schema(a, tool, parameter) for a in args]}
    raise ConfigurationError(
        f"tool {tool!r}: parameter {parameter!r} is annotated {_type_name(annotation)}, which takes pydantic "
        f"to describe as JSON Schema: {STRUCTURED_EXTRA}"
    )


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)


def _is_json_value(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _validation_problems(exc: Exception) -> str:
    """pydantic's errors as one line per field, without its documentation links."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in errors())


def _arguments_problem(spec: _Spec, arguments: Mapping[str, Any], *, missing: bool) -> str | None:
    names = {p.name for p in spec.parameters}
    unknown = sorted(set(arguments) - names)
    if unknown and not spec.open_ended:
        return f"unknown arguments {unknown}"
    absent = [p.name for p in spec.parameters if p.default is inspect.Parameter.empty and p.name not in arguments]
    if missing and absent:
        return f"missing required arguments {absent}"
    return None
