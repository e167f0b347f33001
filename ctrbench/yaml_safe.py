"""Loading YAML that cannot bomb.

``yaml.safe_load`` builds no arbitrary objects, but it still lets a 400-byte document whose aliases nest
nine levels deep ("billion laughs") stand for 9^9 values: anything that then walks the data (a line map,
``json.dumps``, a deep copy into fresh objects) runs out of memory. Here a document is composed into its node
graph first (aliases are shared nodes, so composing is linear in the text), its expanded size is measured
on that graph without expanding it, and only a document whose aliases add at most ``MAX_ALIAS_EXPANSION``
nodes, that holds no recursive alias and that nests at most ``MAX_DEPTH`` levels is constructed. Anchors,
aliases and merge keys (``<<: *defaults``) of ordinary size keep working.

Every failure is a ``yaml.YAMLError`` with a mark (line) and a one-line ``problem``, including the bad values
that PyYAML reports as a bare ``ValueError`` (``2001-13-45``, an integer of 5,000 digits).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

# Nodes that aliases may add to a document beyond the nodes written in it (a suite's anchors add dozens).
MAX_ALIAS_EXPANSION = 100_000
# Nesting depth of the expanded document (a suite nests about 6 levels).
MAX_DEPTH = 64
# A scalar counts one node per this many characters, so an alias to a long string is not free either.
_CHARS_PER_NODE = 64


class YAMLLimitError(yaml.MarkedYAMLError):
    """A document that is refused for its size or shape (alias bomb, recursive alias, too deep)."""


class _Loader(yaml.SafeLoader):
    """The safe loader, with bad scalar values reported as marked YAML errors instead of bare ValueErrors."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            what = node.tag.rsplit(":", 1)[-1] if isinstance(node.tag, str) else "value"
            raise ConstructorError(None, None, f"invalid {what} value: {_one_line(exc)}", node.start_mark) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _own_cost(node: yaml.Node) -> int:
    if isinstance(node, yaml.ScalarNode):
        return 1 + len(node.value) // _CHARS_PER_NODE
    return 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_node(root: yaml.Node, max_alias_expansion: int = MAX_ALIAS_EXPANSION, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``YAMLLimitError`` if the document under ``root`` is recursive, nests deeper than ``max_depth``
    or, once its aliases were expanded, would hold more than ``max_alias_expansion`` nodes beyond its own.

    Linear in the number of distinct nodes: the expanded size of each node is computed once (and saturates
    at the limit), never by walking the expansion.
    """
    # distinct nodes and their own cost, iteratively (no recursion limit to hit)
    seen: set[int] = set()
    stack = [root]
    unique = 0
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        unique += _own_cost(node)
        stack.extend(_children(node))
    cap = unique + max_alias_expansion + 1

    # post-order over the graph: expanded cost and depth per node, with cycle detection
    cost: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    work: list[tuple[yaml.Node, bool]] = [(root, False)]
    while work:
        node, children_done = work.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            total = _own_cost(node) + sum(cost[id(k)] for k in kids)
            cost[key] = min(total, cap)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > max_depth:
                raise YAMLLimitError(None, None, f"nested deeper than {max_depth} levels", node.start_mark)
            if cost[key] >= cap:
                raise YAMLLimitError(None, None, f"aliases expand to more than {max_alias_expansion:,} extra nodes "
                                     "(an alias bomb?); refusing to load it", node.start_mark)
            continue
        if key in cost:
            continue
        if key in on_path:
            raise YAMLLimitError(None, None, "recursive alias: a node contains an alias to itself", node.start_mark)
        on_path.add(key)
        work.append((node, True))
        work.extend((k, False) for k in reversed(_children(node)) if id(k) not in cost)


_OPEN = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
         yaml.BlockMappingStartToken)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


def check_nesting(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``YAMLLimitError`` at the first collection nested deeper than ``max_depth`` in the text itself.

    Run on the tokens before parsing: PyYAML's parser takes time quadratic in the nesting depth (a 3 KB line
    of ``[`` takes seconds) and recurses once per level, so depth is refused before it is parsed."""
    scanner = yaml.SafeLoader(text)
    depth = 0
    try:
        while scanner.check_token():
            token = scanner.get_token()
            if isinstance(token, _OPEN):
                depth += 1
                if depth > max_depth:
                    raise YAMLLimitError(None, None, f"nested deeper than {max_depth} levels", token.start_mark)
            elif isinstance(token, _CLOSE):
                depth -= 1
    finally:
        scanner.dispose()


def compose(text: str, max_alias_expansion: int = MAX_ALIAS_EXPANSION, max_depth: int = MAX_DEPTH) -> yaml.Node | None:
    """The node graph of a one-document YAML text (``None`` when empty), checked by ``check_nesting`` and
    ``check_node``."""
    check_nesting(text, max_depth)
    loader = _Loader(text)
    try:
        node = _single_node(loader)
        if node is not None:
            check_node(node, max_alias_expansion, max_depth)
        return node
    finally:
        loader.dispose()


def construct(node: yaml.Node | None) -> Any:
    """Python data for a node graph from ``compose`` (plain dicts, lists, strings, numbers, booleans, None)."""
    if node is None:
        return None
    loader = _Loader("")
    try:
        try:
            return loader.construct_document(node)
        except RecursionError:
            raise YAMLLimitError(None, None, "nested too deeply", node.start_mark) from None
    finally:
        loader.dispose()


def safe_load(text: str, max_alias_expansion: int = MAX_ALIAS_EXPANSION, max_depth: int = MAX_DEPTH) -> Any:
    """``yaml.safe_load`` without alias bombs: ``construct(compose(text))``."""
    return construct(compose(text, max_alias_expansion, max_depth))


def _single_node(loader: _Loader) -> yaml.Node | None:
    try:
        return loader.get_single_node()
    except RecursionError:
        raise YAMLLimitError(None, None, "nested too deeply", loader.get_mark()) from None
