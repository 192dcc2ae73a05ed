"""highdicom's "is this attribute in that IOD?" answered once per question.

highdicom 0.28's ``is_attribute_in_iod`` walks every attribute of every module of the IOD on
each call (about 1 ms). SR construction asks it for every image region (``ImageRegion``: "is
the source image multi-frame?") and every object for its Content Date and Time: 120 calls,
0.12 s of a small exam's writing (cProfile), always with the same few questions. The answer
depends only on the arguments and on the standard's tables bundled with highdicom, so it is
kept (the exclusions, a list, keyed as a tuple). Upstream, a
``functools.lru_cache`` on the function (or a prebuilt keyword set per IOD) is the fix.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import highdicom._standard_utils as _standard_utils
import highdicom.base as _base
import highdicom.sr.content as _sr_content

__all__ = ["is_attribute_in_iod"]

_lookup = _standard_utils.is_attribute_in_iod


@functools.lru_cache(maxsize=1024)
def _cached(attribute: str, sop_class_uid: str, exclude: tuple[str, ...] | None) -> bool:
    return _lookup(attribute, sop_class_uid, None if exclude is None else list(exclude))


def is_attribute_in_iod(
    attribute: str, sop_class_uid: str, exclude_path_elements: Sequence[str] | None = None
) -> bool:
    """highdicom's answer, computed once per question."""
    exclude = None if exclude_path_elements is None else tuple(exclude_path_elements)
    return _cached(str(attribute), str(sop_class_uid), exclude)


# Every module that calls it by name (highdicom.sr.content and .base imported it by name).
_standard_utils.is_attribute_in_iod = is_attribute_in_iod
_base.is_attribute_in_iod = is_attribute_in_iod  # type: ignore[attr-defined]
_sr_content.is_attribute_in_iod = is_attribute_in_iod  # type: ignore[attr-defined]
