"""multipart/related as DICOMweb uses it: what we build, we can split again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.net.multipart import boundary_of, build_related, split_parts


@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_round_trip(parts: list[bytes]) -> None:
    body, content_type = build_related(parts)
    assert content_type.startswith('multipart/related; type="application/dicom"')
    assert split_parts(body, boundary_of(content_type)) == parts


def test_quoted_boundary() -> None:
    assert boundary_of('multipart/related; boundary="abc"; type="application/dicom"') == "abc"
