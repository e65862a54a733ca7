"""The tree drawn in `pipeteer/errors.py`'s docstring is the tree of the error classes: every
`PipeteerError` subclass the package defines, under its parent, with the built-in exceptions it
also derives from ("(also a KeyError)"); and every one of them is defined in `pipeteer.errors`."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re

import pipeteer
from pipeteer import errors
from pipeteer.errors import PipeteerError

Tree = dict[str, tuple[str | None, frozenset[str]]]
"""Class name -> (its parent in the tree, the built-in exceptions it also derives from)."""

BRANCH = re.compile(r"^(?P<indent>(?:│   |    )*)[├└]── (?P<name>\w+)(?:\s+\(also an? (?P<also>[\w, ]+)\))?")


def drawn() -> Tree:
    """The tree in the docstring: the root line `PipeteerError`, then one `├── Name` or `└── Name` line
    per class, four columns deeper per level (lines without a branch continue a description)."""
    lines = (errors.__doc__ or "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "PipeteerError")
    margin = lines[start].index("PipeteerError")
    tree: Tree = {"PipeteerError": (None, frozenset())}
    parents = ["PipeteerError"]  # parents[d]: the last class drawn at depth d
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        m = BRANCH.match(line[margin:])
        if m is None:
            continue
        depth = len(m["indent"]) // 4 + 1
        name = m["name"]
        assert name not in tree, f"{name} drawn twice"
        also = frozenset(a.strip() for a in m["also"].split(",")) if m["also"] else frozenset()
        tree[name] = (parents[depth - 1], also)
        del parents[depth:]
        parents.append(name)
    return tree


def defined() -> tuple[Tree, dict[str, str]]:
    """The tree of every `PipeteerError` subclass, after importing every module of the package, and
    the module each is defined in."""
    for module in pkgutil.walk_packages(pipeteer.__path__, "pipeteer."):
        if not module.name.endswith("__main__"):  # (runs the command line)
            importlib.import_module(module.name)
    tree: Tree = {}
    where: dict[str, str] = {}
    todo: list[type[BaseException]] = [PipeteerError]
    while todo:
        cls = todo.pop()
        pipeteer_bases = [b for b in cls.__bases__ if issubclass(b, PipeteerError)]
        assert len(pipeteer_bases) <= 1, f"{cls.__name__} has several pipeteer parents"
        also = frozenset(b.__name__ for b in cls.__bases__ if not issubclass(b, PipeteerError))
        assert cls.__name__ not in tree, f"two error classes named {cls.__name__}"
        tree[cls.__name__] = (pipeteer_bases[0].__name__ if pipeteer_bases else None,
                              also - {"Exception"} if cls is PipeteerError else also)
        where[cls.__name__] = cls.__module__
        todo += cls.__subclasses__()
    return tree, where


def test_the_drawn_tree_is_the_tree_of_the_error_classes() -> None:
    tree, _ = defined()
    picture = drawn()
    assert sorted(set(tree) - set(picture)) == [], "error classes missing from the drawing in pipeteer/errors.py"
    assert sorted(set(picture) - set(tree)) == [], "drawn in pipeteer/errors.py, but no such class"
    wrong = {name: (picture[name], tree[name]) for name in tree if picture[name] != tree[name]}
    assert wrong == {}, "drawn (parent, also) != defined (parent, also)"


def test_every_error_class_is_defined_in_errors_and_still_importable_where_it_was() -> None:
    _, where = defined()
    assert {name: module for name, module in where.items() if module != "pipeteer.errors"} == {}
    from pipeteer.codec.blobstore import ChangedWhileStored
    from pipeteer.codec.claimcheck import ChangedWhileStored as Reexported

    assert ChangedWhileStored is Reexported is errors.ChangedWhileStored


def test_the_examples_in_errors_run() -> None:
    assert doctest.testmod(errors, optionflags=doctest.ELLIPSIS).failed == 0


def test_the_parser_sees_depth_and_also() -> None:
    assert BRANCH.match("│   │   └── Deep  (also a KeyError) text")["indent"] == "│   │   "  # type: ignore[index]
    assert BRANCH.match("├── X (also a TypeError) y")["also"] == "TypeError"  # type: ignore[index]
    assert BRANCH.match("│                        directory): names the path") is None
