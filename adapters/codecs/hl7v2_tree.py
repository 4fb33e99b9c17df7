"""A parsed HL7 v2 message as a tree a person can read and click: segments → fields →
repetitions → components → subcomponents, each node with its v2 path (``PID-3(1).1``), the path
syntax `hl7v2.Path` reads, so a page can hand a clicked node's path to a field rule."""

from __future__ import annotations

from adapters.codecs.hl7v2 import Field, Message, Segment, unescape


def parse_tree(message: Message) -> list[dict]:
    """One node per segment: ``{"path", "name", "fields": [...]}``; empty fields are left out."""
    occurrences: dict[str, int] = {}
    tree = []
    for segment in message:
        occurrences[segment.name] = occurrences.get(segment.name, 0) + 1
        prefix = _segment_path(segment.name, occurrences[segment.name])
        tree.append({"path": prefix, "name": segment.name, "fields": _fields(segment, prefix)})
    return tree


def _segment_path(name: str, occurrence: int) -> str:
    return name if occurrence == 1 else f"{name}({occurrence})"


def _fields(segment: Segment, prefix: str) -> list[dict]:
    fields = []
    for n in range(1, len(segment)):
        reps = segment.repetitions(n)
        if not reps:
            continue
        literal = segment.name == "MSH" and n in (1, 2)
        fields.append(
            {
                "path": f"{prefix}-{n}",
                "repetitions": [
                    _repetition(f"{prefix}-{n}({i})", rep, literal)
                    for i, rep in enumerate(reps, start=1)
                ],
            }
        )
    return fields


def _repetition(path: str, rep: Field, literal: bool) -> dict:
    if literal:
        return {"path": path, "value": rep.raw, "components": []}
    parts = rep.components()
    components = []
    if len(parts) > 1 or rep.enc.subcomponent in rep.raw:
        components = [
            _component(f"{path}.{i}", rep, i) for i, part in enumerate(parts, start=1) if part
        ]
    return {"path": path, "value": rep.value, "components": components}


def _component(path: str, rep: Field, n: int) -> dict:
    subs = rep.subcomponents(n)
    node = {"path": path, "value": unescape(rep.raw.split(rep.enc.component)[n - 1], rep.enc)}
    node["subcomponents"] = (
        [{"path": f"{path}.{i}", "value": v} for i, v in enumerate(subs, start=1) if v]
        if len(subs) > 1
        else []
    )
    return node
