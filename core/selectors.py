"""Label and field selectors, as the Kubernetes API server reads and applies them.

Pure functions on JSON-like dicts: objects as the API stores them
(``{"metadata": {...}, "spec": {...}, "status": {...}}``). Nothing here touches the store.

Label selectors
---------------

:func:`parse_label_selector` reads the ``labelSelector`` query parameter (kubectl's ``-l``)
with the grammar of ``k8s.io/apimachinery/pkg/labels``::

    <selector>    ::= <requirement> | <requirement> "," <selector>     (comma = AND)
    <requirement> ::= ["!"] KEY [ <set-based> | <exact> | <numeric> ]
    <set-based>   ::= ("in" | "notin") "(" VALUE ["," VALUE]* ")"
    <exact>       ::= ("=" | "==" | "!=") VALUE
    <numeric>     ::= (">" | "<") INTEGER

A bare ``KEY`` means "the label exists", ``!KEY`` "the label does not exist". Blanks
(space, tab, CR, LF) may surround every token. ``in``/``notin`` are keywords only where an
operator is expected, so ``in in (in)`` is a valid selector. An empty value is allowed:
``a=`` (and ``a==``) select objects whose label ``a`` is the empty string, and
``a in (,b)`` contains ``""``. KEY must be a qualified name (an optional DNS-subdomain
prefix and ``/``, then at most 63 characters of ``[-A-Za-z0-9_.]`` that start and end
alphanumeric); VALUE must be a valid label value (empty, or the same 63-character form).
Anything else raises :class:`~kcore.errors.BadRequest` (400) with Kubernetes' wording, for
example ``unable to parse requirement: found '', expected: ',' or ')'``.

Matching follows Kubernetes: ``!=`` and ``notin`` *match* an object that lacks the label;
``=``, ``==``, ``in`` and ``exists`` do not; ``>``/``<`` need the label to be an integer.
The empty selector matches everything.

``str()`` renders the canonical form Kubernetes renders: requirements sorted by key,
values of ``in``/``notin`` sorted and without duplicates, no blanks, each operator as
written (``==`` stays ``==``). ``parse_label_selector(str(s)) == s`` for every selector.

The object form used by Deployments, ReplicaSets, Jobs, DaemonSets (``spec.selector``)::

    {"matchLabels": {"app": "x"},
     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}

is read by :func:`from_label_selector_object`, as ``metav1.LabelSelectorAsSelector`` does:

* ``None`` (a null or absent selector) matches **nothing**;
* ``{}`` (or both parts empty) matches **everything**.

Both render as ``""``; :meth:`LabelSelector.to_text` gives the text a Scale subresource
reports as ``status.selector`` (``app=x,tier in (a,b)``). Services use a plain
``{"key": "value"}`` map instead: read it with :func:`label_selector_from_set`.

Field selectors
---------------

:func:`parse_field_selector` reads the ``fieldSelector`` parameter with the grammar of
``k8s.io/apimachinery/pkg/fields``: terms separated by unescaped commas, each
``FIELD=VALUE``, ``FIELD==VALUE`` (the same as ``=``) or ``FIELD!=VALUE``. In VALUE a
backslash escapes ``\\``, ``,`` and ``=`` (``a=x\\,y`` means the value ``x,y``); any other
escape, or a bare ``=`` in a value, is a 400. Blanks are not trimmed (Kubernetes does not
trim them either). An empty value is allowed: ``spec.nodeName=`` selects pods that no
node has taken yet.

Only some fields can be selected, per kind; :data:`SUPPORTED_FIELDS` lists them and
:meth:`FieldSelector.check_supported` raises ``BadRequest("field label not supported:
spec.foo")`` for the rest, as the API server does before it lists anything.
:func:`field_value` extracts a field the way Kubernetes stringifies it (``GetAttrs`` in
``pkg/registry/*/strategy.go``): strings as they are and ``""`` when missing, booleans as
``"true"``/``"false"`` and counts as decimal integers, with Go's zero value (``"false"``,
``"0"``) when missing.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kcore.api.validation import is_qualified_name, is_valid_label_value
from kcore.errors import BadRequest

__all__ = [
    "SUPPORTED_FIELDS",
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Operator",
    "Requirement",
    "canonical_kind",
    "escape_field_value",
    "field_value",
    "from_label_selector_object",
    "label_selector_from_set",
    "parse_field_selector",
    "parse_label_selector",
    "selector_requirements_for_fast_paths",
    "supported_fields",
    "unescape_field_value",
    "validate_label_key",
    "validate_label_value",
]

# ---------------------------------------------------------------------------
# Validation of label keys and values (k8s.io/apimachinery/pkg/util/validation)
# ---------------------------------------------------------------------------


def validate_label_key(key: str) -> list[str]:
    """Problems with ``key`` as a label key (a Kubernetes "qualified name"); ``[]`` if fine."""
    return is_qualified_name(key)


def validate_label_value(value: str) -> list[str]:
    """Problems with ``value`` as a label value; ``[]`` if fine."""
    return is_valid_label_value(value)


def _quote(value: Any) -> str:
    """Render a bad value as Go's field errors do (%q for strings, JSON otherwise)."""
    return json.dumps(value, ensure_ascii=False)


def _invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {_quote(value)}: {detail}"


def _aggregate(errs: list[str]) -> str:
    # utilerrors.Aggregate: one error prints bare, several as "[a, b]" (duplicates dropped).
    unique = list(dict.fromkeys(errs))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# ---------------------------------------------------------------------------
# Label selector requirements
# ---------------------------------------------------------------------------


class Operator(enum.StrEnum):
    """A label requirement's operator; the values are Kubernetes' ``selection.Operator``."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_OP_ORDER = {op: i for i, op in enumerate(Operator)}
_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_int64(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 10, 64)``: ``None`` where Go returns an error."""
    if not _INT_RE.fullmatch(text):
        return None
    n = int(text)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of a label selector: ``key``, ``operator`` and its ``values``.

    Built directly, it is validated as ``labels.NewRequirement`` does and raises
    :class:`BadRequest` when invalid. ``values`` are kept sorted and without duplicates:
    for every operator only membership matters.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            op = Operator(self.operator)
        except ValueError:
            raise BadRequest(
                f"{_quote(str(self.operator))} is not a valid label selector operator"
            ) from None
        values = list(self.values)
        if not all(isinstance(v, str) for v in values) or not isinstance(self.key, str):
            raise BadRequest("label selector keys and values must be strings")
        errs: list[str] = []
        key_errs = validate_label_key(self.key)
        if key_errs:
            errs.append(_invalid("key", self.key, "; ".join(key_errs)))
        if op in (Operator.IN, Operator.NOT_IN):
            if not values:
                errs.append(
                    _invalid(
                        "values", values, "for 'in', 'notin' operators, values set can't be empty"
                    )
                )
        elif op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
            if len(values) != 1:
                errs.append(
                    _invalid(
                        "values", values, "exact-match compatibility requires one single value"
                    )
                )
        elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if values:
                errs.append(
                    _invalid(
                        "values", values, "values set must be empty for exists and does not exist"
                    )
                )
        else:  # GREATER_THAN, LESS_THAN
            if len(values) != 1:
                errs.append(
                    _invalid(
                        "values", values, "for 'Gt', 'Lt' operators, exactly one value is required"
                    )
                )
            for i, v in enumerate(values):
                if _parse_int64(v) is None:
                    errs.append(
                        _invalid(
                            f"values[{i}]",
                            v,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                    )
        for i, v in enumerate(values):
            value_errs = validate_label_value(v)
            if value_errs:
                errs.append(_invalid(f"values[{i}][{self.key}]", v, "; ".join(value_errs)))
        if errs:
            raise BadRequest(_aggregate(errs))
        object.__setattr__(self, "operator", op)
        object.__setattr__(self, "values", tuple(sorted(set(values))))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether ``labels`` satisfy this requirement (a missing label satisfies only
        ``!=``, ``notin`` and ``!key``)."""
        labels = labels or {}
        present = self.key in labels
        op = self.operator
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return present
        if op is Operator.DOES_NOT_EXIST:
            return not present
        # GREATER_THAN / LESS_THAN: the label must be an integer.
        if not present or not isinstance(labels[self.key], str):
            return False
        have = _parse_int64(labels[self.key])
        want = _parse_int64(self.values[0])
        if have is None or want is None:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def _sort_key(self) -> tuple[str, int, tuple[str, ...]]:
        return (self.key, _OP_ORDER[self.operator], self.values)

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({','.join(self.values)})"
        symbol = {
            Operator.EQUALS: "=",
            Operator.DOUBLE_EQUALS: "==",
            Operator.NOT_EQUALS: "!=",
            Operator.GREATER_THAN: ">",
            Operator.LESS_THAN: "<",
        }[op]
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """An AND of :class:`Requirement`, or the selector that matches nothing.

    ``LabelSelector()`` matches everything; ``LabelSelector.nothing()`` matches nothing
    (what a null object-form selector means). Requirements are kept in canonical order.
    """

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    def __post_init__(self) -> None:
        reqs = tuple(sorted(self.requirements, key=Requirement._sort_key))
        object.__setattr__(self, "requirements", () if self.matches_nothing else reqs)

    @classmethod
    def everything(cls) -> LabelSelector:
        """The selector that matches every object (the empty selector)."""
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        """The selector that matches no object (a null object-form selector)."""
        return cls(matches_nothing=True)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches everything)."""
        return not self.matches_nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with these labels (``None`` = no labels) is selected."""
        if self.matches_nothing:
            return False
        return all(r.matches(labels) for r in self.requirements)

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        """:meth:`matches` on ``obj["metadata"]["labels"]``."""
        return self.matches(((obj or {}).get("metadata") or {}).get("labels"))

    def requires_exact_match(self, key: str) -> str | None:
        """The single value label ``key`` must have (from ``=``, ``==`` or a one-value
        ``in``), or ``None`` when the selector does not pin it. Like Kubernetes, only the
        first requirement on ``key`` is considered."""
        for r in self.requirements:
            if r.key == key:
                exact = (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
                if r.operator in exact and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def to_text(self) -> str:
        """The text form, as a Scale reports it in ``status.selector`` (``app=x``).
        Both the everything and the nothing selector render as ``""``."""
        return str(self)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# ---------------------------------------------------------------------------
# Label selector text: lexer and parser
# ---------------------------------------------------------------------------


class _Tok(enum.Enum):
    EOS = "end of string"
    CLOSE = ")"
    COMMA = ","
    BANG = "!"
    DEQ = "=="
    EQ = "="
    GT = ">"
    IDENT = "identifier"
    IN = "in"
    LT = "<"
    NEQ = "!="
    NOTIN = "notin"
    OPEN = "("


_SYMBOLS = {
    "!=": _Tok.NEQ,
    "==": _Tok.DEQ,
    "!": _Tok.BANG,
    "=": _Tok.EQ,
    "(": _Tok.OPEN,
    ")": _Tok.CLOSE,
    ",": _Tok.COMMA,
    ">": _Tok.GT,
    "<": _Tok.LT,
}
_SPECIAL = frozenset("=!(),><")
_BLANKS = frozenset(" \t\r\n")
_KEYWORDS = {"in": _Tok.IN, "notin": _Tok.NOTIN}
_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"


def _lex(text: str) -> list[tuple[_Tok, str]]:
    items: list[tuple[_Tok, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _BLANKS:
            i += 1
        if i >= n:
            items.append((_Tok.EOS, ""))
            return items
        if text[i] in _SPECIAL:
            two = text[i : i + 2]
            lit = two if two in ("!=", "==") else text[i]
            items.append((_SYMBOLS[lit], lit))
            i += len(lit)
            continue
        start = i
        while i < n and text[i] not in _SPECIAL and text[i] not in _BLANKS:
            i += 1
        word = text[start:i]
        items.append((_KEYWORDS.get(word, _Tok.IDENT), word))


class _ParseError(Exception):
    pass


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    # In "values" context the keywords in/notin are plain identifiers.
    def _peek(self, values: bool = True) -> tuple[_Tok, str]:
        tok, lit = self.items[min(self.pos, len(self.items) - 1)]
        if values and tok in (_Tok.IN, _Tok.NOTIN):
            tok = _Tok.IDENT
        return tok, lit

    def _next(self, values: bool = True) -> tuple[_Tok, str]:
        item = self._peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self._peek()
            if tok is _Tok.EOS:
                return reqs
            if tok not in (_Tok.IDENT, _Tok.BANG):
                raise _ParseError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self._requirement())
            except (_ParseError, BadRequest) as e:
                raise _ParseError(f"unable to parse requirement: {e}") from None
            tok, lit = self._next()
            if tok is _Tok.EOS:
                return reqs
            if tok is not _Tok.COMMA:
                raise _ParseError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self._peek()
            if tok not in (_Tok.IDENT, _Tok.BANG):
                raise _ParseError(f"found '{lit}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        negated = False
        tok, lit = self._next()
        if tok is _Tok.BANG:
            negated = True
            tok, lit = self._next()
        if tok is not _Tok.IDENT:
            raise _ParseError(f"found '{lit}', expected: identifier")
        key = lit
        key_errs = validate_label_key(key)
        if key_errs:
            raise _ParseError(_invalid("<nil>", key, "; ".join(key_errs)))
        if negated:
            return Requirement(key, Operator.DOES_NOT_EXIST)
        if self._peek()[0] in (_Tok.EOS, _Tok.COMMA):
            return Requirement(key, Operator.EXISTS)
        op = self._operator()
        if op in (Operator.IN, Operator.NOT_IN):
            values = self._set_values()
        else:
            values = self._exact_value()
        return Requirement(key, op, tuple(sorted(values)))

    def _operator(self) -> Operator:
        tok, lit = self._next(values=False)
        ops = {
            _Tok.IN: Operator.IN,
            _Tok.NOTIN: Operator.NOT_IN,
            _Tok.EQ: Operator.EQUALS,
            _Tok.DEQ: Operator.DOUBLE_EQUALS,
            _Tok.NEQ: Operator.NOT_EQUALS,
            _Tok.GT: Operator.GREATER_THAN,
            _Tok.LT: Operator.LESS_THAN,
        }
        if tok not in ops:
            raise _ParseError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        return ops[tok]

    def _set_values(self) -> set[str]:
        tok, lit = self._next()
        if tok is not _Tok.OPEN:
            raise _ParseError(f"found '{lit}' expected: '('")
        tok, lit = self._peek()
        if tok is _Tok.CLOSE:  # "()" is the set holding the empty string
            self._next()
            return {""}
        if tok not in (_Tok.IDENT, _Tok.COMMA):
            raise _ParseError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self._identifier_list()
        self._next()  # the ")" that _identifier_list saw
        return values

    def _identifier_list(self) -> set[str]:
        # Empty items count as "": "(,a)", "(a,)" and "(a,,b)" all hold "".
        values: set[str] = set()
        while True:
            tok, lit = self._next()
            if tok is _Tok.IDENT:
                values.add(lit)
                tok2, lit2 = self._peek()
                if tok2 is _Tok.COMMA:
                    continue
                if tok2 is _Tok.CLOSE:
                    return values
                raise _ParseError(f"found '{lit2}', expected: ',' or ')'")
            if tok is _Tok.COMMA:
                if not values:
                    values.add("")
                tok2, _ = self._peek()
                if tok2 is _Tok.CLOSE:
                    values.add("")
                    return values
                if tok2 is _Tok.COMMA:
                    self._next()
                    values.add("")
                continue
            raise _ParseError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._peek()[0] in (_Tok.EOS, _Tok.COMMA):
            return {""}
        tok, lit = self._next()
        if tok is _Tok.IDENT:
            return {lit}
        raise _ParseError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a ``labelSelector`` string; ``None`` and ``""`` give the match-all selector.

    :raises BadRequest: the text does not parse or names an invalid key or value.
    """
    if text is None:
        return LabelSelector()
    if not isinstance(text, str):
        raise BadRequest(f"label selector must be a string, not {type(text).__name__}")
    try:
        return LabelSelector(tuple(_LabelParser(text).parse()))
    except _ParseError as e:
        raise BadRequest(str(e)) from None


_OBJECT_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def from_label_selector_object(sel: Mapping[str, Any] | None) -> LabelSelector:
    """Convert an API ``LabelSelector`` object (``matchLabels`` and ``matchExpressions``).

    ``None`` gives the selector that matches **nothing**; ``{}``, or a selector whose two
    parts are both empty, gives the one that matches **everything** (Kubernetes'
    ``LabelSelectorAsSelector``). ``matchLabels`` entries become ``key=value``; the
    operators ``In``, ``NotIn``, ``Exists`` and ``DoesNotExist`` become ``in``, ``notin``,
    ``key`` and ``!key``.

    :raises BadRequest: a malformed selector, an unknown operator, or an invalid key/value.
    """
    if sel is None:
        return LabelSelector.nothing()
    if not isinstance(sel, Mapping):
        raise BadRequest("label selector must be an object")
    match_labels = sel.get("matchLabels") or {}
    expressions = sel.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping):
        raise BadRequest("matchLabels must be a map of strings")
    if not isinstance(expressions, list):
        raise BadRequest("matchExpressions must be a list")
    reqs: list[Requirement] = []
    for key, value in match_labels.items():
        if not isinstance(value, str):
            raise BadRequest(f"matchLabels[{key}] must be a string")
        reqs.append(Requirement(key, Operator.EQUALS, (value,)))
    for expr in expressions:
        if not isinstance(expr, Mapping):
            raise BadRequest("each of matchExpressions must be an object")
        operator = expr.get("operator")
        if operator not in _OBJECT_OPERATORS:
            raise BadRequest(f"{_quote(operator)} is not a valid label selector operator")
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise BadRequest("matchExpressions[].values must be a list")
        reqs.append(Requirement(expr.get("key", ""), _OBJECT_OPERATORS[operator], tuple(values)))
    return LabelSelector(tuple(reqs))


def label_selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """The selector ``k1=v1,k2=v2`` for a plain map (a Service's ``spec.selector``).

    ``None`` and ``{}`` give the match-all selector, as Kubernetes' ``SelectorFromSet``
    does; a Service with no selector is special-cased by its callers, not here.
    """
    return LabelSelector(
        tuple(Requirement(k, Operator.EQUALS, (v,)) for k, v in (labels or {}).items())
    )


# ---------------------------------------------------------------------------
# Field selectors
# ---------------------------------------------------------------------------


def escape_field_value(value: str) -> str:
    """Escape ``\\``, ``,`` and ``=`` so that ``value`` can go in a field selector."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(text: str) -> str:
    """Undo :func:`escape_field_value`.

    :raises BadRequest: an unknown escape (``\\x``), a trailing ``\\``, or a bare ``,``/``=``.
    """
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            if ch not in "\\,=":
                raise BadRequest(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise BadRequest(f"invalid field selector: unescaped character in value: {ch}")
        else:
            out.append(ch)
    if escaped:
        raise BadRequest("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """``field = value`` (``operator == "="``) or ``field != value`` (``"!="``)."""

    field: str
    operator: str
    value: str

    def __post_init__(self) -> None:
        if self.operator == "==":
            object.__setattr__(self, "operator", "=")
        if self.operator not in ("=", "!="):
            raise BadRequest(f"field selector operator must be = or !=, not {self.operator!r}")

    def matches_value(self, actual: str) -> bool:
        return (actual == self.value) == (self.operator == "=")

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """An AND of :class:`FieldRequirement`; empty matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "requirements", tuple(sorted(self.requirements, key=str)))

    @property
    def empty(self) -> bool:
        return not self.requirements

    @property
    def fields(self) -> list[str]:
        """The fields named, in canonical order (with repeats)."""
        return [r.field for r in self.requirements]

    def check_supported(self, kind: str | None) -> FieldSelector:
        """Raise :class:`BadRequest` ``field label not supported: <field>`` for the first
        field that ``kind`` cannot be selected on (see :data:`SUPPORTED_FIELDS`).

        Returns the selector with deprecated aliases resolved (a Pod's ``spec.host`` is
        ``spec.nodeName``), which :meth:`matches` also understands.
        """
        canon = canonical_kind(kind)
        allowed = supported_fields(canon)
        aliases = _FIELD_ALIASES.get(canon or "", {})
        out = []
        for r in self.requirements:
            name = aliases.get(r.field, r.field)
            if name not in allowed:
                raise BadRequest(f"field label not supported: {r.field}")
            out.append(FieldRequirement(name, r.operator, r.value))
        return FieldSelector(tuple(out))

    def matches(self, obj: Mapping[str, Any], kind: str | None = None) -> bool:
        """Whether ``obj`` is selected. ``kind`` defaults to ``obj["kind"]``.

        Does not reject unsupported fields (call :meth:`check_supported` first, as the API
        server does); such a field is read by its dotted path.
        """
        if not self.requirements:
            return True
        kind = kind if kind is not None else (obj or {}).get("kind")
        return all(r.matches_value(field_value(kind, obj, r.field)) for r in self.requirements)

    def requires_exact_match(self, field_name: str) -> str | None:
        """The value ``field_name`` must equal (the first ``field=value`` on it), or ``None``."""
        for r in self.requirements:
            if r.field == field_name and r.operator == "=":
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_unescaped_commas(text: str) -> list[str]:
    parts: list[str] = []
    start = 0
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _split_term(term: str) -> tuple[str, str, str] | None:
    # The first position where an operator starts wins; "!=" before "==" before "=".
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a ``fieldSelector`` string; ``None`` and ``""`` give the match-all selector.

    Does not check the fields against a kind: see :meth:`FieldSelector.check_supported`.

    :raises BadRequest: a term without an operator, or a badly escaped value.
    """
    if text is None or text == "":
        return FieldSelector()
    if not isinstance(text, str):
        raise BadRequest(f"field selector must be a string, not {type(text).__name__}")
    reqs: list[FieldRequirement] = []
    for part in sorted(_split_unescaped_commas(text)):
        if part == "":
            continue
        split = _split_term(part)
        if split is None:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        reqs.append(FieldRequirement(lhs, op, unescape_field_value(rhs)))
    return FieldSelector(tuple(reqs))


# -- which fields each kind supports, and how each is read ---------------------------------

_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})

SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "Pod": _META_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "Event": _META_FIELDS
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "Secret": _META_FIELDS | {"type"},
    "Namespace": _META_FIELDS | {"status.phase"},
    "Node": _META_FIELDS | {"spec.unschedulable"},
    "ReplicaSet": _META_FIELDS | {"status.replicas"},
    "Job": _META_FIELDS | {"status.successful"},
    "Service": _META_FIELDS | {"spec.clusterIP", "spec.type"},
    "ConfigMap": _META_FIELDS,
    "Endpoints": _META_FIELDS,
    "ServiceAccount": _META_FIELDS,
    "Deployment": _META_FIELDS,
    "DaemonSet": _META_FIELDS,
    "CronJob": _META_FIELDS,
    "Lease": _META_FIELDS,
}
"""Selectable fields per kind. Every kind, and any kind not listed, has ``metadata.name``
and ``metadata.namespace`` (``""`` for cluster-scoped objects)."""

# Deprecated spellings the API server still accepts and rewrites.
_FIELD_ALIASES: dict[str, dict[str, str]] = {"Pod": {"spec.host": "spec.nodeName"}}

_PLURALS = {
    "Endpoints": "endpoints",
    "Lease": "leases",
    "Namespace": "namespaces",
}
_KIND_LOOKUP: dict[str, str] = {}
for _kind in SUPPORTED_FIELDS:
    _KIND_LOOKUP[_kind.lower()] = _kind
    _KIND_LOOKUP[_PLURALS.get(_kind, _kind.lower() + "s")] = _kind
del _kind


def canonical_kind(kind: str | None) -> str | None:
    """``"Pod"`` for ``"Pod"``, ``"pod"`` or ``"pods"``; other names are returned as given."""
    if kind is None:
        return None
    return _KIND_LOOKUP.get(kind.lower(), kind)


def supported_fields(kind: str | None) -> frozenset[str]:
    """The fields ``kind`` (a kind or resource name) can be selected on."""
    return SUPPORTED_FIELDS.get(canonical_kind(kind) or "", _META_FIELDS)


def _get_path(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _stringify(value: Any) -> str:
    """A value as Kubernetes puts it in a ``fields.Set``: ``""`` for missing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bool_field(path: str) -> Any:
    return lambda obj: "true" if _get_path(obj, path) is True else "false"


def _int_field(path: str) -> Any:
    return lambda obj: _stringify(_get_path(obj, path) or 0)


def _pod_ip(obj: Any) -> str:
    ips = _get_path(obj, "status.podIPs")
    if isinstance(ips, list) and ips and isinstance(ips[0], Mapping) and ips[0].get("ip"):
        return _stringify(ips[0]["ip"])
    return _stringify(_get_path(obj, "status.podIP"))


def _event_involved(attr: str) -> Any:
    # core/v1 Events say involvedObject; events.k8s.io/v1 ones say regarding.
    def read(obj: Any) -> str:
        ref = (obj or {}).get("involvedObject") or (obj or {}).get("regarding") or {}
        return _stringify(ref.get(attr)) if isinstance(ref, Mapping) else ""

    return read


def _event_reporting_component(obj: Any) -> str:
    return _stringify(_get_path(obj, "reportingComponent") or _get_path(obj, "reportingController"))


def _event_source(obj: Any) -> str:
    # Kubernetes: source.component, or the reporting controller when that is empty.
    return _stringify(_get_path(obj, "source.component")) or _event_reporting_component(obj)


_INVOLVED_OBJECT_FIELDS = (
    "kind",
    "namespace",
    "name",
    "uid",
    "apiVersion",
    "resourceVersion",
    "fieldPath",
)

# Fields whose value is not simply the string at the same dotted path.
_EXTRACTORS: dict[str, dict[str, Any]] = {
    "Pod": {
        "spec.host": lambda obj: _stringify(_get_path(obj, "spec.nodeName")),
        "spec.hostNetwork": _bool_field("spec.hostNetwork"),
        "status.podIP": _pod_ip,
    },
    "Event": {
        **{f"involvedObject.{a}": _event_involved(a) for a in _INVOLVED_OBJECT_FIELDS},
        "reportingComponent": _event_reporting_component,
        "source": _event_source,
    },
    "Node": {"spec.unschedulable": _bool_field("spec.unschedulable")},
    "ReplicaSet": {"status.replicas": _int_field("status.replicas")},
    "Job": {"status.successful": _int_field("status.succeeded")},
}


def field_value(kind: str | None, obj: Mapping[str, Any], field_name: str) -> str:
    """The value of ``field_name`` on ``obj`` as Kubernetes stringifies it for matching.

    Strings as stored (``""`` when missing); a Pod's ``spec.hostNetwork`` and a Node's
    ``spec.unschedulable`` as ``"true"``/``"false"`` (``"false"`` when missing); a
    ReplicaSet's ``status.replicas`` and a Job's ``status.successful`` (read from
    ``status.succeeded``) as decimal integers (``"0"`` when missing). An Event's
    ``source`` falls back to ``reportingComponent``. Any other field is read by its dotted
    path with the same rules.
    """
    extractor = _EXTRACTORS.get(canonical_kind(kind) or "", {}).get(field_name)
    if extractor is not None:
        return extractor(obj)
    return _stringify(_get_path(obj, field_name))


def selector_requirements_for_fast_paths(
    field_selector: FieldSelector | str | None,
) -> dict[str, str]:
    """The exact-match requirements (``field=value``) of a field selector, by field.

    A list can use ``metadata.name`` / ``metadata.namespace`` (or ``spec.nodeName``) from
    this to read one key or one prefix instead of scanning everything; it must still apply
    the whole selector to what it reads. Where one field has several ``=`` terms, the first
    in canonical order is given (the others can then only narrow the result further).
    """
    if field_selector is None or isinstance(field_selector, str):
        field_selector = parse_field_selector(field_selector)
    out: dict[str, str] = {}
    for r in field_selector.requirements:
        if r.operator == "=":
            out.setdefault(r.field, r.value)
    return out
