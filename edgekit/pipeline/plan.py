"""The step tree of one export: targets that begin with the same steps share them.

`tflite-fp32`, `tflite-fp16` and `tflite-int8` all start torch -> onnx, onnxsim, onnx2tf; exported
together, those three steps run once and each target adds only its own last step. A node is
one step reached by one chain of steps, so a step is shared only where everything before it is
the same too.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from edgekit.errors import InvalidSpecError, UnknownTargetError, did_you_mean
from edgekit.targets import MODEL, Step, Target, get_target, list_targets


@dataclass
class Node:
    """One step in the tree: what it reads (a file of an earlier node, or the model) and which targets need it."""

    key: tuple[Step, ...]
    source: str
    parent: Node | None
    targets: list[str] = field(default_factory=list)
    final_for: list[str] = field(default_factory=list)

    @property
    def step(self) -> Step:
        return self.key[-1]

    def chain(self) -> list[Node]:
        """This node and every node before it, first step first."""
        nodes, node = [], self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


@dataclass
class Plan:
    """The nodes in the order they can run (every node after its parent), and each target's last node."""

    nodes: list[Node]
    finals: dict[str, Node]

    def children(self, node: Node | None) -> list[Node]:
        return [n for n in self.nodes if n.parent is node]


def build_plan(targets: list[Target]) -> Plan:
    """Merges the targets' step chains into one tree.

    Raises:
        InvalidSpecError: two different chains would write the same file (a registration mistake).
    """
    nodes: dict[tuple[Step, ...], Node] = {}
    finals: dict[str, Node] = {}
    for target in targets:
        key: tuple[Step, ...] = ()
        parent = None
        for step, source in target.inputs():
            key = key + (step,)
            if key not in nodes:
                nodes[key] = Node(key, source, parent)
            node = nodes[key]
            node.targets.append(target.name)
            parent = node
        parent.final_for.append(target.name)
        finals[target.name] = parent
    writers: dict[str, Node] = {}
    for node in nodes.values():
        for name in (node.step.output, *node.step.side_outputs):
            if name in writers and writers[name].key != node.key:
                raise InvalidSpecError(f"targets {writers[name].targets[0]} and {node.targets[0]} both write {name!r} "
                                       "in different ways; they cannot be exported together")
            writers[name] = node
    return Plan(list(nodes.values()), finals)


def resolve_targets(selection: str | list[str] | tuple[str, ...]) -> tuple[list[str], bool]:
    """Target names from a selection; the flag says whether it named targets by pattern.

    A selection is a target name, a comma-separated list, "all", a glob ("tflite-*", "onnx*"), or a
    word that is no target's name but begins some ("tflite" means every "tflite-..." target).
    Targets selected by pattern that cannot run here are skipped with their reason; named ones fail.
    """
    items = [selection] if isinstance(selection, str) else list(selection)
    names = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not names:
        raise InvalidSpecError("no target given; run 'edgekit targets' to list them")
    known = list_targets()
    chosen: list[str] = []
    by_pattern = False
    for name in names:
        if name in known:
            matched = [name]
        elif name == "all":
            matched, by_pattern = known, True
        else:
            pattern = name if any(c in name for c in "*?[") else f"{name}-*"
            matched = [t for t in known if fnmatch.fnmatchcase(t, pattern)]
            if not matched:
                get_target(name)  # raises UnknownTargetError with a did-you-mean
                raise UnknownTargetError(f"no target matches {name!r}.{did_you_mean(name, known)}")
            by_pattern = True
        chosen += [t for t in matched if t not in chosen]
    return chosen, by_pattern


__all__ = ["MODEL", "Node", "Plan", "build_plan", "resolve_targets"]
