"""The raw nonce array (kept nonces after up to NONCE_SLACK stale ones) decides exactly
as a set of the highest NONCE_SET_SIZE nonces would (docs/MATCHING.md, Nonces)."""

from __future__ import annotations

from array import array
from bisect import insort

from hypothesis import given, settings
from hypothesis import strategies as st

from matching.accounts import NONCE_SET_SIZE, NONCE_SLACK, kept, use_nonce

LOW, HIGH = 1_000, 1_000_000


def reference(kept_list: list[int], nonce: int) -> str | None:
    """The rule as documented, on a plain sorted list of at most NONCE_SET_SIZE."""
    if not LOW <= nonce <= HIGH:
        return "nonce_out_of_window"
    if nonce in kept_list:
        return "nonce_reused"
    if len(kept_list) == NONCE_SET_SIZE and nonce < kept_list[0]:
        return "nonce_too_old"
    insort(kept_list, nonce)
    if len(kept_list) > NONCE_SET_SIZE:
        del kept_list[0]
    return None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(LOW - 5, LOW + 400), min_size=1, max_size=600))
def test_raw_array_matches_the_kept_set(nonces: list[int]) -> None:
    raw: array[int] = array("Q")
    model: list[int] = []
    for nonce in nonces:
        assert use_nonce(raw, nonce, LOW, HIGH) == reference(model, nonce)
        assert kept(raw).tolist() == model
        assert len(raw) <= NONCE_SET_SIZE + NONCE_SLACK


def test_stale_prefix_does_not_count() -> None:
    raw: array[int] = array("Q")
    for nonce in range(LOW, LOW + NONCE_SET_SIZE + NONCE_SLACK):
        assert use_nonce(raw, nonce, LOW, HIGH) is None
    assert len(raw) == NONCE_SET_SIZE + NONCE_SLACK  # the stale ones are still there
    smallest = kept(raw)[0]
    assert use_nonce(raw, LOW, LOW, HIGH) == "nonce_too_old"  # stale, not "reused"
    assert use_nonce(raw, smallest, LOW, HIGH) == "nonce_reused"
    assert use_nonce(raw, smallest - 1, LOW, HIGH) == "nonce_too_old"
