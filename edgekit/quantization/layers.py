"""PyTorch module names of ONNX nodes, so that int8 choices are made and reported in the model's own names."""

from __future__ import annotations

from edgekit.errors import InvalidSpecError, did_you_mean


def module_of(node_name: str) -> str:
    """The PyTorch module path that torch.onnx recorded in `node_name`, or "" for a top-level node.

    torch.onnx names a node by the scopes it was traced in, each scope spelled from its parent:
    `/features/features.3/conv/conv.0/conv.0.0/Conv` is module `features.3.conv.0.0`.
    """
    scopes = node_name.split("/")[1:-1]
    parts, previous = [], None
    for scope in scopes:
        if previous is not None and scope.startswith(previous + "."):
            parts.append(scope[len(previous) + 1:])
        else:
            parts.append(scope)
        previous = scope
    return ".".join(parts)


def nodes_of(modules: list[str] | tuple[str, ...], node_names: list[str]) -> dict[str, list[str]]:
    """The ONNX nodes inside each named module (the module itself and everything under it).

    Raises:
        InvalidSpecError: a name matches no node, with the nearest names this model has.
    """
    known = sorted({module_of(name) for name in node_names} - {""})
    found = {}
    for module in modules:
        nodes = [name for name in node_names if inside(module_of(name), module)]
        if not nodes:
            prefixes = sorted({k.rsplit(".", 1)[0] for k in known} | set(known))
            raise InvalidSpecError(f"--keep-float: {module!r} is not a layer of this model's graph."
                                   f"{did_you_mean(module, prefixes)} Names are PyTorch module names, as "
                                   "'edgekit diagnose' prints them")
        found[module] = nodes
    return found


def conv_groups(graph) -> dict[str, list[str]]:
    """Each Conv of an ONNX graph by its PyTorch module name, with the Relu or Clip that reads it alone."""
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    groups = {}
    for node in graph.node:
        if node.op_type != "Conv" or not module_of(node.name):
            continue
        after = readers.get(node.output[0], [])
        groups[module_of(node.name)] = [node.name] + [n.name for n in after if len(after) == 1 and n.op_type in ("Relu", "Clip")]
    return groups


def inside(module: str, parent: str) -> bool:
    """Whether `module` is `parent` or lies under it."""
    return module == parent or module.startswith(parent + ".")


def check_module_names(card, names: tuple[str, ...]) -> None:
    """Raises InvalidSpecError, before any conversion, for a name that is not a module of the card's model."""
    from edgekit.models import get_builder

    known = [name for name, _ in get_builder(card.name)(card.num_classes).named_modules() if name]
    for name in names:
        if name not in known:
            raise InvalidSpecError(f"--keep-float: {name!r} is not a module of {card.name}.{did_you_mean(name, known)} "
                                   "Names are PyTorch module names, as 'edgekit diagnose' prints them")


def mixed_precision_notes(kept) -> list[str]:
    """The manifest note of an int8 artifact with layers left in float (none when `kept` is empty)."""
    if not kept:
        return []
    return [f"Mixed precision, not full-integer: {len(kept)} PyTorch module(s) kept in float: {', '.join(kept)}"]
