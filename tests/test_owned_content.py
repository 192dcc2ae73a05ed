"""SR construction without the deep copy of a content tree built for that document alone."""

from __future__ import annotations

import threading

import highdicom.sr.sop as sr_sop
from pydicom.dataset import Dataset

from node.writers.owned_content import owned_content


def constructor_copy(value: Dataset) -> Dataset:
    """What highdicom's SR constructor calls its content copy with."""
    copied: Dataset = vars(sr_sop)["deepcopy"](value)
    return copied


def tree() -> Dataset:
    root = Dataset()
    root.ValueType = "CONTAINER"
    root.ContentSequence = [Dataset()]
    return root


def test_only_the_owned_tree_is_taken_as_it_is() -> None:
    owned, other = tree(), tree()
    with owned_content(owned):
        assert constructor_copy(owned) is owned
        copied = constructor_copy(other)
        assert copied is not other and copied == other
    again = constructor_copy(owned)  # after the block: a real copy again
    assert again is not owned and again.ContentSequence[0] is not owned.ContentSequence[0]


def test_another_thread_still_copies_the_same_tree() -> None:
    owned = tree()
    seen: list[Dataset] = []
    with owned_content(owned):
        thread = threading.Thread(target=lambda: seen.append(constructor_copy(owned)))
        thread.start()
        thread.join(30)
    assert len(seen) == 1 and seen[0] is not owned and seen[0] == owned
