"""Declarative SR templates: load, check and expand the data in ``dicom_sr_templates/``.

Why data: a TID is a table of rows (relationship, value type, concept, value set), and no
Python library implements TID 4000. Keeping the rows as data, beside the codes and their
sources, lets a reader check the tree against PS3.16 without reading builder code, and
keeps the builders down to computing values. The format is described in
``dicom_sr_templates/README.md``.

A template is checked completely when it is loaded (unknown keys, value types,
relationships, codes, includes and expressions raise :class:`TemplateError`), so a
broken template fails at start-up, not half-way through an exam.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import highdicom as hd
import numpy as np
import yaml
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

__all__ = [
    "TEMPLATE_DIRECTORY",
    "SRTemplate",
    "TemplateError",
    "load_template",
]

#: Where the project's template data lives (beside the ``node`` package).
TEMPLATE_DIRECTORY: Final = Path(__file__).resolve().parents[2] / "dicom_sr_templates"

# PS3.3 C.17.3.2.1 value types, plus REFERENCE for a by-reference relationship (C.17.3.2.5).
_VALUE_TYPES: Final = frozenset(
    {"CONTAINER", "CODE", "NUM", "TEXT", "DATE", "TIME", "IMAGE", "SCOORD", "REFERENCE"}
)
_RELATIONSHIPS: Final = frozenset(v.value for v in hd.sr.RelationshipTypeValues)
_GRAPHIC_TYPES: Final = frozenset(v.value for v in hd.sr.GraphicTypeValues)
_NODE_KEYS: Final = frozenset(
    {
        "relationship",
        "value_type",
        "concept",
        "value",
        "unit",
        "graphic_type",
        "template_id",
        "label",
        "target",
        "children",
        "for_each",
        "when",
        "include",
    }
)
_PATH: Final = re.compile(r"^\$([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)$")
_FIELD: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$")
_FOR_EACH: Final = re.compile(r"^([A-Za-z][A-Za-z0-9_]*) in (\$\S+)$")
_PLACEHOLDER_NAME: Final = Code("111028", "DCM", "Image Library")


class TemplateError(ValueError):
    """A template file that does not describe a valid content tree."""


def _code(entry: object, where: str) -> Code:
    if (
        not isinstance(entry, list)
        or len(entry) != 3
        or not all(isinstance(part, str) and part for part in entry)
    ):
        raise TemplateError(f"{where}: a code is [scheme, value, meaning], got {entry!r}")
    scheme, value, meaning = entry
    if len(value) > 16 and scheme != "URN":  # PS3.3 8.1: Code Value is SH
        raise TemplateError(f"{where}: code value {value!r} is longer than 16 characters")
    return Code(value, scheme, meaning)


def _check_format(text: str, where: str) -> None:
    for _, field, spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if not _FIELD.match(field) or spec or conversion:
            raise TemplateError(f"{where}: {{{field}}} must be a plain dotted name")


def _lookup(path: str, context: Mapping[str, Any]) -> Any:
    head, *rest = path.split(".")
    if head not in context:
        raise ValueError(f"the template needs a value for {head!r}, the builder gave none")
    value = context[head]
    for part in rest:
        value = value[part] if isinstance(value, Mapping) else getattr(value, part)
    return value


class _Formatter(string.Formatter):
    """str.format over the template context, limited to dotted names (checked at load)."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return _lookup(field_name, kwargs), field_name


def _present(value: object) -> bool:
    return value is not None and value is not False and not (isinstance(value, str) and not value)


@dataclass(frozen=True)
class _Reference:
    item: Dataset
    target: str


class SRTemplate:
    """One checked template; :meth:`build` expands it over a context of values."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.source = source
        for key in ("template", "mapping_resource", "codes", "tree"):
            if key not in data:
                raise TemplateError(f"{source}: missing top-level key {key!r}")
        unknown = set(data) - {
            "template",
            "mapping_resource",
            "codes",
            "tree",
            "includes",
            "value_sets",
        }
        if unknown:
            raise TemplateError(f"{source}: unknown top-level keys {sorted(unknown)}")
        self.name = str(data["template"])
        self.mapping_resource = str(data["mapping_resource"])
        self.codes: dict[str, Code] = {
            name: _code(entry, f"{source} codes.{name}") for name, entry in data["codes"].items()
        }
        self.value_sets: dict[str, dict[str, Code]] = {
            set_name: {
                str(key): _code(entry, f"{source} value_sets.{set_name}.{key}")
                for key, entry in members.items()
            }
            for set_name, members in (data.get("value_sets") or {}).items()
        }
        self.includes: dict[str, list[dict[str, Any]]] = dict(data.get("includes") or {})
        for name, rows in self.includes.items():
            for index, row in enumerate(rows):
                self._check(row, f"includes.{name}[{index}]", root=False, in_include=True)
        self.tree: dict[str, Any] = data["tree"]
        self._check(self.tree, "tree", root=True)

    # -- checking -------------------------------------------------------------------------

    def _check(self, node: object, where: str, *, root: bool, in_include: bool = False) -> None:
        where = f"{self.source} {where}"
        if not isinstance(node, dict):
            raise TemplateError(f"{where}: a row is a mapping, got {type(node).__name__}")
        unknown = set(node) - _NODE_KEYS
        if unknown:
            raise TemplateError(f"{where}: unknown keys {sorted(unknown)}")
        self._check_control(node, where)
        self._check_relationship(node.get("relationship"), where, root=root, in_include=in_include)
        if root and node.get("value_type") != "CONTAINER":
            raise TemplateError(f"{where}: the root is a CONTAINER without relationship")
        if "include" in node:
            self._check_include(node, where)
            return
        value_type = node.get("value_type")
        if value_type not in _VALUE_TYPES:
            raise TemplateError(
                f"{where}: value_type {value_type!r} is not one of {sorted(_VALUE_TYPES)}"
            )
        if value_type == "REFERENCE":
            if "target" not in node or set(node) - {
                "relationship",
                "value_type",
                "target",
                "for_each",
                "when",
            }:
                raise TemplateError(f"{where}: a REFERENCE row has a target and nothing else")
            _check_format(str(node["target"]), where)
            return
        self._check_content(node, value_type, where)
        for index, child in enumerate(node.get("children") or []):
            self._check(
                child, f"{where.removeprefix(self.source + ' ')}.children[{index}]", root=False
            )

    def _check_control(self, node: dict[str, Any], where: str) -> None:
        """``for_each`` and ``when``: the template's loops and conditions."""
        if "for_each" in node:
            match = _FOR_EACH.match(str(node["for_each"]))
            if match is None:
                raise TemplateError(
                    f"{where}: for_each is 'NAME in $path', got {node['for_each']!r}"
                )
            self._check_path(match.group(2), where)
        if "when" in node:
            self._check_path(node["when"], where)

    @staticmethod
    def _check_relationship(
        relationship: object, where: str, *, root: bool, in_include: bool
    ) -> None:
        if root:
            if relationship is not None:
                raise TemplateError(f"{where}: the root is a CONTAINER without relationship")
        elif relationship not in _RELATIONSHIPS and not in_include:
            raise TemplateError(
                f"{where}: relationship {relationship!r} is not one of {sorted(_RELATIONSHIPS)}"
            )
        elif relationship is not None and relationship not in _RELATIONSHIPS:
            raise TemplateError(f"{where}: relationship {relationship!r} is unknown")

    def _check_include(self, node: dict[str, Any], where: str) -> None:
        if node["include"] not in self.includes:
            raise TemplateError(f"{where}: include {node['include']!r} is not in includes")
        extra = set(node) - {"include", "relationship", "when", "for_each"}
        if extra:
            raise TemplateError(f"{where}: an include row takes no {sorted(extra)}")

    def _check_content(self, node: dict[str, Any], value_type: str, where: str) -> None:
        """Concept, value, unit and graphic type of a content row (PS3.3 C.17.3)."""
        concept = node.get("concept")
        if concept is None and value_type != "IMAGE":
            raise TemplateError(f"{where}: a {value_type} row needs a concept (PS3.3 C.17.3.2.2)")
        if concept is not None and concept not in self.codes:
            raise TemplateError(f"{where}: concept {concept!r} is not in codes")
        value = node.get("value")
        if value_type == "CONTAINER":
            if value is not None:
                raise TemplateError(f"{where}: a CONTAINER has no value")
        elif value is None:
            raise TemplateError(f"{where}: a {value_type} row needs a value")
        elif value_type == "CODE" and not str(value).startswith("$") and value not in self.codes:
            raise TemplateError(f"{where}: code value {value!r} is neither $path nor in codes")
        elif value_type in ("TEXT",) and not str(value).startswith("$"):
            _check_format(str(value), where)
        elif value_type in ("NUM", "IMAGE", "SCOORD", "DATE", "TIME") or str(value).startswith("$"):
            self._check_path(value, where)
        if value_type == "NUM" and node.get("unit") not in self.codes:
            raise TemplateError(f"{where}: a NUM row needs a unit from codes (PS3.3 C.18.1)")
        if value_type == "SCOORD" and node.get("graphic_type") not in _GRAPHIC_TYPES:
            raise TemplateError(f"{where}: graphic_type must be one of {sorted(_GRAPHIC_TYPES)}")
        if "label" in node:
            _check_format(str(node["label"]), where)

    @staticmethod
    def _check_path(value: object, where: str) -> None:
        if not isinstance(value, str) or not _PATH.match(value):
            raise TemplateError(f"{where}: {value!r} is not a $dotted.path")

    # -- values ---------------------------------------------------------------------------

    def value(self, value_set: str, key: str) -> Code:
        """The code of ``key`` in ``value_set``; ValueError names the allowed keys."""
        members = self.value_sets.get(value_set)
        if members is None:
            raise ValueError(f"{self.source} has no value set {value_set!r}")
        if key not in members:
            raise ValueError(f"{key!r} is not in value set {value_set!r}: one of {sorted(members)}")
        return members[key]

    # -- expansion ------------------------------------------------------------------------

    def build(self, context: Mapping[str, Any]) -> Dataset:
        """The root content item, every row expanded and every reference resolved."""
        labels: dict[str, Dataset] = {}
        references: list[_Reference] = []
        (root,) = self._expand(self.tree, dict(context), labels, references, None)
        identifiers = dict(_identifiers(root, [1]))
        for reference in references:
            target = labels.get(reference.target)
            if target is None:
                raise ValueError(f"reference to {reference.target!r}, which no row labels")
            reference.item.ReferencedContentItemIdentifier = identifiers[id(target)]
        return root

    def _expand(
        self,
        node: Mapping[str, Any],
        context: dict[str, Any],
        labels: dict[str, Dataset],
        references: list[_Reference],
        relationship: str | None,
    ) -> Iterator[Dataset]:
        if "for_each" in node:
            name, path = _FOR_EACH.match(node["for_each"]).groups()  # type: ignore[union-attr]
            single = {k: v for k, v in node.items() if k != "for_each"}
            for element in _lookup(path[1:], context):
                yield from self._expand(
                    single, {**context, name: element}, labels, references, relationship
                )
            return
        if "when" in node and not _present(_lookup(node["when"][1:], context)):
            return
        relationship = node.get("relationship", relationship)
        if "include" in node:
            for row in self.includes[node["include"]]:
                yield from self._expand(row, context, labels, references, relationship)
            return
        # Plain datasets: highdicom's content items insist on a concept name, which TID 4020
        # image entries and by-reference items (PS3.3 C.17.3.2.5) do not have.
        item = Dataset(self._item(node, context, relationship))
        if node["value_type"] == "REFERENCE":
            references.append(_Reference(item, _Formatter().vformat(node["target"], (), context)))
            yield item
            return
        children = [
            child_item
            for child in node.get("children") or []
            for child_item in self._expand(child, context, labels, references, None)
        ]
        if children:
            item.ContentSequence = children
        if "label" in node:
            labels[_Formatter().vformat(node["label"], (), context)] = item
        yield item

    def _resolve(self, value: Any, context: Mapping[str, Any]) -> Any:
        if isinstance(value, str) and value.startswith("$"):
            return _lookup(value[1:], context)
        return value

    def _item(
        self, node: Mapping[str, Any], context: Mapping[str, Any], relationship: str | None
    ) -> Dataset:
        value_type = node["value_type"]
        if value_type == "REFERENCE":
            item = Dataset()
            item.RelationshipType = relationship
            return item
        concept = self.codes.get(node.get("concept", ""))
        value = self._resolve(node.get("value"), context)
        if value_type == "IMAGE":
            # TID 4020 rows have no concept name; highdicom needs one, removed again.
            image = hd.sr.ImageContentItem(
                name=concept or _PLACEHOLDER_NAME,
                referenced_sop_class_uid=value.SOPClassUID,
                referenced_sop_instance_uid=value.SOPInstanceUID,
                relationship_type=relationship,
            )
            if concept is None:
                del image.ConceptNameCodeSequence
            return image
        if concept is None:  # the load-time check makes this unreachable
            raise TemplateError(f"{self.source}: a {value_type} row without a concept")
        name: Code = concept
        if value_type == "CONTAINER":
            return hd.sr.ContainerContentItem(
                name=name, relationship_type=relationship, template_id=node.get("template_id")
            )
        if value_type == "CODE":
            code = self.codes[value] if isinstance(value, str) else value
            if not isinstance(code, (Code, hd.sr.CodedConcept)):
                raise ValueError(f"{node['value']} must give a code, got {type(code).__name__}")
            return hd.sr.CodeContentItem(name=name, value=code, relationship_type=relationship)
        if value_type == "NUM":
            unit = self.codes[node["unit"]]
            return hd.sr.NumContentItem(
                name=name, value=float(value), unit=unit, relationship_type=relationship
            )
        if value_type == "TEXT":
            raw = str(node["value"])
            text = value if raw.startswith("$") else _Formatter().vformat(raw, (), context)
            return hd.sr.TextContentItem(name=name, value=str(text), relationship_type=relationship)
        if value_type == "DATE":
            return hd.sr.DateContentItem(name=name, value=value, relationship_type=relationship)
        if value_type == "TIME":
            return hd.sr.TimeContentItem(name=name, value=value, relationship_type=relationship)
        return hd.sr.ScoordContentItem(  # SCOORD, the last value type the check allows
            name=name,
            graphic_type=node["graphic_type"],
            graphic_data=np.asarray(value, dtype=float),
            relationship_type=relationship,
        )


def _identifiers(item: Dataset, position: list[int]) -> Iterator[tuple[int, list[int]]]:
    """Content item identifiers (PS3.3 C.17.3.2.5): the 1-based path from the root."""
    yield id(item), position
    for index, child in enumerate(item.get("ContentSequence", []), start=1):
        yield from _identifiers(child, [*position, index])


@functools.cache
def load_template(name: str, directory: Path = TEMPLATE_DIRECTORY) -> SRTemplate:
    """Load and check ``directory/name``; cached, so a process reads each template once."""
    path = directory / name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise TemplateError(f"cannot read SR template {path}: {error}") from error
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: a template is a mapping at the top level")
    return SRTemplate(data, str(path))
