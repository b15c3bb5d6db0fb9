"""Decoding and encoding API objects: JSON and YAML in, typed objects out, and back.

Every problem with the input becomes a :class:`~kcore.errors.BadRequest` (the bytes are
not JSON or YAML, the kind is missing or unknown) or an :class:`~kcore.errors.Invalid`
whose causes name the field by its Kubernetes path (``spec.containers[0].image``), with
one readable line as the message.

Decoding is lenient by default, as Kubernetes' is: unknown fields are dropped. With
``strict=True`` (kubectl's ``--validate=strict``, the API server's
``fieldValidation=Strict``) they are an error naming each one.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

import msgspec
import msgspec.inspect as mi
import yaml

from kcore.api import registry
from kcore.api.meta import ObjectList, TypedStruct
from kcore.api.validation import invalid_error
from kcore.errors import BadRequest, FieldError, Invalid, KcoreError

Format = Literal["json", "yaml"]

# --------------------------------------------------------------------------- YAML


_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """YAML 1.1 as Kubernetes reads it, except that timestamps stay strings.

    PyYAML would turn an unquoted ``2026-01-02`` into a ``date``, which then fails to
    decode into a string field such as a ConfigMap value or an annotation.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Dumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """Block style throughout; multi-line strings as ``|`` literals, as kubectl prints them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _yaml_error(exc: yaml.YAMLError) -> BadRequest:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    context = getattr(exc, "context", None)
    prefix = f"{context}: " if context else ""
    return BadRequest(f"malformed YAML: {prefix}{problem}{where}")


def load_yaml(text: str | bytes, *, allow_aliases: bool = True) -> Any:
    """Parse one YAML document into plain Python data (timestamps left as strings).

    ``allow_aliases=False`` refuses ``*alias`` references, as the API server does for
    request bodies: a few hundred bytes of nested aliases expand to gigabytes (the "billion
    laughs"; Kubernetes' CVE-2019-11253).
    """
    try:
        if not allow_aliases:
            for event in yaml.parse(text, Loader=_Loader):
                if isinstance(event, yaml.AliasEvent):
                    raise BadRequest("YAML aliases are not allowed in request bodies")
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    except RecursionError:
        raise BadRequest("the YAML document is nested too deeply") from None


# --------------------------------------------------------------------------- decoding


class _TypeMeta(msgspec.Struct, rename="camel"):
    api_version: Any = None
    kind: Any = None


_TYPE_META_DECODER = msgspec.json.Decoder(_TypeMeta)
_DECODERS: dict[Any, msgspec.json.Decoder] = {}
_ENCODER = msgspec.json.Encoder()


def _json_decoder(cls: Any) -> msgspec.json.Decoder:
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
    return decoder


def _snippet(data: Any) -> str:
    if isinstance(data, dict):
        text = json.dumps(data, default=str, separators=(",", ":"))
    else:
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _type_for(api_version: Any, kind: Any, data: Any) -> Any:
    """The type that ``apiVersion``/``kind`` decode into; a ``BadRequest`` when there is none."""
    if not kind:
        raise BadRequest(f"Object 'Kind' is missing in '{_snippet(data)}'")
    if not api_version:
        raise BadRequest(f"Object 'apiVersion' is missing in '{_snippet(data)}'")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        raise BadRequest("'apiVersion' and 'kind' must be strings")
    cls = registry.type_for(api_version, kind)
    if cls is not None:
        return cls
    if kind == "List":
        return ObjectList[dict[str, Any]]
    if kind.endswith("List"):
        info = registry.by_kind(api_version, kind[: -len("List")])
        if info is not None:
            return ObjectList[info.type]  # type: ignore[name-defined]
    known = [i for i in registry.RESOURCES if i.kind == kind]
    if known:
        versions = ", ".join(sorted({i.api_version for i in known}))
        raise BadRequest(
            f'no kind "{kind}" is registered for version "{api_version}" (it is served as {versions})'
        )
    raise BadRequest(f'no kind "{kind}" is registered for version "{api_version}"')


def _check_expected(cls: Any, api_version: Any, kind: Any) -> None:
    """With an explicit type, a body that names another kind is a ``BadRequest``."""
    if not (isinstance(cls, type) and issubclass(cls, TypedStruct)):
        return
    if kind and kind != cls.KIND:
        raise BadRequest(
            f"the kind in the data ({kind}) does not match the expected kind ({cls.KIND})"
        )
    if api_version and api_version != cls.API_VERSION:
        raise BadRequest(
            f"the API version in the data ({api_version}) does not match the expected "
            f"API version ({cls.API_VERSION})"
        )


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_JSON_NAMES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "object": "object",
    "array": "array",
    "null": "null",
    "datetime": "RFC 3339 timestamp",
}


def _path_tokens(path: str) -> list[str | int | None]:
    """``.spec.containers[0]`` -> ``["spec", "containers", 0]``; ``[...]`` (a map key) -> None."""
    tokens: list[str | int | None] = []
    for name, index in _TOKEN.findall(path):
        if name:
            tokens.append(name)
        elif index == "...":
            tokens.append(None)
        else:
            tokens.append(int(index))
    return tokens


def _k8s_path(tokens: list[str | int | None]) -> str:
    out = ""
    for tok in tokens:
        if tok is None:
            break  # a map key that could not be found: name the map
        if isinstance(tok, int | _Key):
            out += f"[{tok}]"
        else:
            out += f".{tok}" if out else tok
    return out


class _Key(str):
    """A map key in a path: printed as ``labels[app]``, not ``labels.app``."""

    __slots__ = ()


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float,),
    "bool": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}


def _find_map_keys(raw: Any, tokens: list[str | int | None], got: str | None) -> None:
    """Replace each ``[...]`` (msgspec does not say which map key) by the offending key.

    The key is the first one in the input whose value has the type msgspec complained of.
    """
    node = raw
    for i, tok in enumerate(tokens):
        if tok is None:
            if not isinstance(node, dict) or got not in _PY_TYPES:
                return
            wanted = _PY_TYPES[got]
            for key, value in node.items():
                is_bool = isinstance(value, bool)
                if isinstance(value, wanted) and (bool in wanted or not is_bool):
                    tokens[i] = _Key(key)
                    node = value
                    break
            else:
                return
            continue
        found, node = _lookup(node, [tok])
        if not found:
            return


def _lookup(raw: Any, tokens: list[str | int | None]) -> tuple[bool, Any]:
    for tok in tokens:
        if tok is None:
            return False, None
        if isinstance(tok, int) and isinstance(raw, list) and tok < len(raw):
            raw = raw[tok]
        elif isinstance(tok, str) and isinstance(raw, dict) and tok in raw:
            raw = raw[tok]
        else:
            return False, None
    return True, raw


def _type_words(text: str) -> str:
    names = [n.strip().strip("`") for n in text.split("|")]
    names = [_JSON_NAMES.get(n, n) for n in names if n and n != "null"] or ["null"]
    if "integer" in names and "number" in names:
        names.remove("integer")
    return " or ".join(names)


def _field_error(message: str, raw: Any) -> FieldError:
    """Turn msgspec's ``Expected `int`, got `str` - at `$.spec.replicas``` into a FieldError."""
    m = _AT.match(message)
    msg, path = (m.group("msg"), m.group("path") or "") if m else (message, "")
    tokens = _path_tokens(path)
    typed = re.match(r"Expected `([^`]+)`, got `([^`]+)`", msg)
    if None in tokens and raw is not None:
        _find_map_keys(raw, tokens, typed.group(2) if typed else None)
    field = _k8s_path(tokens)
    missing = re.match(r"Object missing required field `([^`]+)`", msg)
    if missing:
        field = f"{field}.{missing.group(1)}" if field else missing.group(1)
        return FieldError(field, "Required value", reason="FieldValueRequired")
    if typed:
        detail = f"expected {_type_words(typed.group(1))}, got {_type_words(typed.group(2))}"
    elif "RFC3339" in msg or "timezone" in msg:
        detail = "expected an RFC 3339 timestamp with a time zone, such as 2026-01-02T03:04:05Z"
    else:
        detail = msg[:1].lower() + msg[1:]
    found, value = _lookup(raw, tokens)
    if found and raw is not None:
        shown = json.dumps(value, default=str)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        detail = f"Invalid value: {shown}: {detail}"
    return FieldError(field, detail, reason="FieldValueTypeInvalid")


def _type_error(exc: msgspec.ValidationError, cls: Any, raw: Any) -> Invalid:
    cause = _field_error(str(exc), raw)
    if not cause.field:
        raise BadRequest(f"cannot decode {_kind_name(cls)}: {cause.message}") from None
    name = None
    if isinstance(raw, dict) and isinstance(raw.get("metadata"), dict):
        name = raw["metadata"].get("name")
    return invalid_error(_kind_name(cls), _group(cls), name, [cause])


def _kind_name(cls: Any) -> str:
    kind = getattr(cls, "KIND", None)
    return kind or getattr(cls, "__name__", "object")


def _group(cls: Any) -> str:
    api_version = getattr(cls, "API_VERSION", "") or ""
    return api_version.rpartition("/")[0]


def _strip_nulls(value: Any) -> Any:
    """Drop ``null`` map values: Kubernetes reads ``labels: null`` as "no labels"."""
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _convert(raw: Any, cls: Any, *, nulls_stripped: bool = False) -> Any:
    try:
        return msgspec.convert(raw, cls, strict=True)
    except msgspec.ValidationError as exc:
        if not nulls_stripped and "got `null`" in str(exc):
            return _convert(_strip_nulls(raw), cls, nulls_stripped=True)
        raise _type_error(exc, cls, raw) from None


def _decode_builtin(raw: Any, *, strict: bool, into: Any) -> Any:
    if not isinstance(raw, dict):
        got = "an array" if isinstance(raw, list) else type(raw).__name__
        raise BadRequest(f"expected an object, got {got}")
    api_version, kind = raw.get("apiVersion"), raw.get("kind")
    if into is None:
        cls = _type_for(api_version, kind, raw)
    else:
        cls = into
        _check_expected(cls, api_version, kind)
    if strict:
        unknown = unknown_fields(raw, cls)
        if unknown:
            raise _unknown_error(cls, unknown)
    obj = _convert(raw, cls)
    if isinstance(obj, ObjectList) and obj.kind == "List":
        obj.items = [decode(item, strict=strict) for item in obj.items]
    return obj


def _decode_json(data: bytes | str, *, strict: bool, into: Any) -> Any:
    try:
        if strict:
            return _decode_builtin(msgspec.json.decode(data), strict=True, into=into)
        meta = _TYPE_META_DECODER.decode(data)
    except msgspec.ValidationError:  # valid JSON, but not an object
        raw = msgspec.json.decode(data)
        got = "an array" if isinstance(raw, list) else f"a {type(raw).__name__}"
        raise BadRequest(f"expected an object, got {got}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if into is None:
        cls = _type_for(meta.api_version, meta.kind, data)
    else:
        cls = into
        _check_expected(cls, meta.api_version, meta.kind)
    try:
        obj = _json_decoder(cls).decode(data)
    except msgspec.ValidationError as exc:
        raw = msgspec.json.decode(data)
        if "got `null`" in str(exc):
            return _decode_builtin(_strip_nulls(raw), strict=False, into=cls)
        raise _type_error(exc, cls, raw) from None
    if isinstance(obj, ObjectList) and obj.kind == "List":
        obj.items = [decode(item) for item in obj.items]
    return obj


def decode(
    data: bytes | str | dict[str, Any],
    *,
    fmt: Format = "json",
    strict: bool = False,
    into: Any = None,
) -> Any:
    """Decode one object, choosing its type by ``apiVersion`` and ``kind``.

    ``data`` is JSON or YAML text (``fmt``), or an already parsed dict. ``into`` forces
    the type (the API server knows it from the URL); the body may then leave out
    ``apiVersion`` and ``kind`` but must not name another kind. ``<Kind>List`` and ``List``
    decode into :class:`~kcore.api.meta.ObjectList` with typed items.
    """
    if isinstance(data, dict):
        return _decode_builtin(data, strict=strict, into=into)
    if fmt == "yaml":
        return _decode_builtin(load_yaml(data), strict=strict, into=into)
    if fmt == "json":
        return _decode_json(data, strict=strict, into=into)
    raise ValueError(f"unknown format {fmt!r}: expected 'json' or 'yaml'")


def decode_yaml_documents(
    text: str | bytes, *, strict: bool = False
) -> list[tuple[int, Any | KcoreError]]:
    """Decode each document of a multi-document manifest on its own: ``(number, object)``
    for a good one and ``(number, error)`` for a bad one, so that one bad document does not
    hide the others. Numbers count from 1; a ``kind: List`` gives one entry per item.
    Malformed YAML (the stream cannot be split) raises ``BadRequest``.
    """
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    out: list[tuple[int, Any | KcoreError]] = []
    for number, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        try:
            obj = _decode_builtin(doc, strict=strict, into=None)
        except Invalid as exc:
            out.append((number, Invalid(f"document {number}: {exc}", exc.causes)))
            continue
        except BadRequest as exc:
            out.append((number, BadRequest(f"document {number}: {exc}")))
            continue
        if isinstance(obj, ObjectList) and obj.kind == "List":
            out.extend((number, item) for item in obj.items)
        else:
            out.append((number, obj))
    return out


def decode_all_yaml(text: str | bytes, *, strict: bool = False) -> list[Any]:
    """Decode every document of a multi-document manifest (``---`` separated).

    Empty documents are skipped and a ``kind: List`` is expanded into its items, as kubectl
    does. The first bad document raises, its error naming the document (counting from 1).
    """
    out = []
    for _, result in decode_yaml_documents(text, strict=strict):
        if isinstance(result, KcoreError):
            raise result
        out.append(result)
    return out


# --------------------------------------------------------------------------- strict mode

_FIELD_MAPS: dict[Any, dict[str, mi.Type]] = {}
_TYPE_INFO: dict[Any, mi.Type] = {}


def _fields_of(t: mi.StructType) -> dict[str, mi.Type]:
    fields = _FIELD_MAPS.get(t.cls)
    if fields is None:
        fields = _FIELD_MAPS[t.cls] = {f.encode_name: f.type for f in t.fields}
    return fields


def _walk(value: Any, t: mi.Type, path: str, out: list[str]) -> None:
    if isinstance(t, mi.UnionType):
        for member in t.types:
            if (isinstance(value, dict) and isinstance(member, mi.StructType | mi.DictType)) or (
                isinstance(value, list) and isinstance(member, mi.ListType)
            ):
                _walk(value, member, path, out)
                return
        return
    if isinstance(t, mi.StructType) and isinstance(value, dict):
        fields = _fields_of(t)
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            ft = fields.get(key)
            if ft is None:
                out.append(sub)
            else:
                _walk(item, ft, sub, out)
    elif isinstance(t, mi.ListType) and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, t.item_type, f"{path}[{i}]", out)
    elif isinstance(t, mi.DictType) and isinstance(value, dict):
        for key, item in value.items():
            _walk(item, t.value_type, f"{path}[{key}]", out)


def unknown_fields(raw: dict[str, Any], cls: Any) -> list[str]:
    """The paths of the fields in ``raw`` that type ``cls`` does not declare."""
    info = _TYPE_INFO.get(cls)
    if info is None:
        info = _TYPE_INFO[cls] = mi.type_info(cls)
    out: list[str] = []
    _walk(raw, info, "", out)
    return out


def _unknown_error(cls: Any, unknown: list[str]) -> Invalid:
    kind = _kind_name(cls)
    version = getattr(cls, "API_VERSION", "") or "v1"
    listed = ", ".join(f'unknown field "{p}"' for p in unknown)
    return Invalid(
        f'{kind} in version "{version}" cannot be handled as a {kind}: '
        f"strict decoding error: {listed}",
        [
            FieldError(p, "field not declared in schema", reason="FieldValueNotSupported")
            for p in unknown
        ],
    )


# --------------------------------------------------------------------------- encoding


def encode_json(obj: Any) -> bytes:
    """Encode an API object (or a dict or list of them) as compact JSON."""
    return _ENCODER.encode(obj)


def to_dict(obj: Any) -> Any:
    """The plain-data form of ``obj``, exactly what :func:`encode_json` would write."""
    return msgspec.to_builtins(obj)


def encode_yaml(obj: Any) -> str:
    """Encode as block-style YAML in field order, multi-line strings as ``|`` literals."""
    return yaml.dump(to_dict(obj), Dumper=_Dumper, sort_keys=False, allow_unicode=True)


_T = TypeVar("_T")


def clone(obj: _T) -> _T:
    """A deep copy of an API object (through its JSON form)."""
    return _json_decoder(type(obj)).decode(_ENCODER.encode(obj))


__all__ = [
    "Format",
    "clone",
    "decode",
    "decode_all_yaml",
    "encode_json",
    "encode_yaml",
    "load_yaml",
    "to_dict",
    "unknown_fields",
]
