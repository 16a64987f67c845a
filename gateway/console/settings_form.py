"""A tenant's settings as a form a person can fill in: fields drawn from the JSON Schema of each part that owns some
(the trainer's training, schedule and evaluation), plus the gateway's retention. An empty field means "the default";
only what is filled in is stored. The values are then checked by their owners (gateway/settings_owners.py), exactly
as the admin API checks a PATCH."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway import settings_owners
from gateway.errors import BadRequest
from gateway.feedback_api.retention import RETENTION_KEY


@dataclass
class Field:
    name: str  # the form field: `section.key`, or `key` for a top-level value
    label: str
    kind: str  # integer | number | string | boolean | choice | list | json
    help: str = ""
    default: str = ""
    value: str = ""
    choices: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Section:
    key: str | None  # the settings key it fills (`training`); None: top-level values
    title: str
    fields: list[Field]


def sections(settings: dict[str, Any]) -> list[Section]:
    """Every section, filled with the tenant's current values."""
    found = []
    top: list[Field] = [
        Field(RETENTION_KEY, "retention (days)", "number", "Interactions older than this are purged with their "
              "ratings. Empty: keep everything.", value=_shown(settings.get(RETENTION_KEY), "number")),
    ]  # fmt: skip
    for owner in settings_owners.owners():
        schema = owner.schema()
        defs = schema.get("$defs", {})
        for key, prop in schema.get("properties", {}).items():
            ref = _ref(prop)
            if ref and ref in defs:
                stored = settings.get(key)
                current: dict[str, Any] = stored if isinstance(stored, dict) else {}
                fields = [
                    _field(f"{key}.{name}", name, sub, defs, current.get(name))
                    for name, sub in defs[ref].get("properties", {}).items()
                ]
                found.append(Section(key, key.replace("_", " ").capitalize(), fields))
            else:
                top.append(_field(key, key.replace("_", " "), prop, defs, settings.get(key)))
    return [Section(None, "General", top), *found]


def read(form: dict[str, str], current: dict[str, Any]) -> tuple[dict[str, Any], list[Section]]:
    """The settings changes a submitted form asks for, and the sections refilled with what was submitted (and each
    field's error). A section with a bad field is not changed; `BadRequest` is raised by the caller's check."""
    filled = sections(current)
    changes: dict[str, Any] = {}
    for section in filled:
        values: dict[str, Any] = {}
        for f in section.fields:
            f.value = form.get(f.name, "").strip()
            if not f.value:
                continue
            try:
                values[f.name.split(".", 1)[-1]] = _parse(f)
            except ValueError as exc:
                f.error = str(exc)
        if section.key is None:
            changes.update({f.name: None for f in section.fields if not f.value})
            changes.update(values)
        else:
            changes[section.key] = values
    return changes, filled


def check(changes: dict[str, Any], filled: list[Section]) -> None:
    """Field errors first (a number that is not one), then the owners' rules; each error lands on its field."""
    bad = [f for s in filled for f in s.fields if f.error]
    if bad:
        raise BadRequest(f"{bad[0].name}: {bad[0].error}", param=f"settings.{bad[0].name}")
    try:
        settings_owners.check(changes)
    except BadRequest as exc:
        for section in filled:
            for f in section.fields:
                if f.name.split(".", 1)[-1] in exc.message or f.name in (exc.param or ""):
                    f.error = f.error or "see the message above"
        raise


def _field(name: str, label: str, prop: dict[str, Any], defs: dict[str, Any], current: Any) -> Field:
    kind, choices = _kind(prop, defs)
    default = prop.get("default")
    return Field(
        name=name,
        label=label.replace("_", " "),
        kind=kind,
        help=str(prop.get("description", "")),
        default="" if default is None else _shown(default, kind),
        value="" if current is None else _shown(current, kind),
        choices=choices,
    )


def _kind(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[str, list[str]]:
    options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    first = options[0] if options else {}
    if "enum" in first:
        return "choice", [str(v) for v in first["enum"]]
    if "const" in first:
        return "choice", [str(first["const"])]
    kind = first.get("type")
    if kind == "boolean":
        return "boolean", ["true", "false"]
    if kind in ("integer", "number", "string"):
        return kind, []
    if kind == "array" and first.get("items", {}).get("type") == "string":
        return "list", []
    return "json", []


def _parse(f: Field) -> Any:
    text = f.value
    if f.kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if f.kind == "number":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if f.kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError("choose true or false")
        return text == "true"
    if f.kind == "choice":
        if text not in f.choices:
            raise ValueError(f"choose one of {', '.join(f.choices)}")
        return text
    if f.kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if f.kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("not valid JSON") from None
    return text


def _shown(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple) and kind == "list":
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value)
    return str(value)


def _ref(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref") or next((p.get("$ref") for p in prop.get("allOf", []) if "$ref" in p), None)
    return ref.rsplit("/", 1)[-1] if ref else None
