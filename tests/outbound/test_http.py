"""Reading platform answers: the cheap nesting count that decides whether JSON is walked."""

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from callwatch.outbound.http import _nesting

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k'), children, max_size=3)
    ),
    max_leaves=30,
)


def depth(value: Any) -> int:
    """How deep arrays and objects nest, the root container counting 1 (what the walk counts)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@given(JSON, st.booleans())
def test_the_nesting_count_is_the_depth_whatever_the_strings_hold(
    value: Any, ascii_only: bool
) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only, indent=None).encode()

    assert _nesting(body) == depth(value)
