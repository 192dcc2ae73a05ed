"""SR documents built without highdicom's deep copy of a content tree made for them alone.

highdicom's SR constructors (``_SR.__init__``, highdicom 0.28) deep-copy the whole content
tree before wrapping it, so that a caller who keeps and changes its tree cannot change the
document. The writers build each tree for one document and never touch it again, so the copy
buys nothing here, and it was 38 % of the TID 1500 report's construction (cProfile, small
exam). Upstream, a ``copy=False`` argument like the one ``from_dataset`` already has is the
fix; until then, inside ``owned_content(tree)`` the constructor's copy of that one tree is
the tree itself. Every other copy, in this thread or another, stays a real deep copy.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import highdicom.sr.sop as _sr_sop

__all__ = ["owned_content"]

_owned = threading.local()  # the tree the current thread hands over, if any


def _deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    if value is getattr(_owned, "tree", None):
        return value
    return copy.deepcopy(value, memo)


_sr_sop.deepcopy = _deepcopy  # type: ignore[attr-defined,assignment]  # _SR.__init__ calls it


@contextmanager
def owned_content(tree: object) -> Iterator[None]:
    """Within this block, the SR constructor takes ``tree`` as it is instead of a copy; the
    caller promises not to use ``tree`` afterwards (it becomes the document's content)."""
    _owned.tree = tree
    try:
        yield
    finally:
        _owned.tree = None
