"""`top`'s map when the chunks do not fit: merged cells show the most severe state."""

from __future__ import annotations

from ocssd_vfu.control.top import Rates, Snapshot, _erases, arrange, rates, render_map

STATES = ["FREE", "OPEN", "CLOSED", "FREE", "OFFLINE", "CLOSED", "FREE", "FREE", "FREE", "FREE"]


def chunks() -> list[dict[str, object]]:
    return [{"grp": grp, "pu": pu, "chk": chk, "state": STATES[chk] if grp == 0 else "FREE",
             "wli": 25 * chk}
            for grp in range(2) for pu in range(2) for chk in range(10)]


def test_columns_and_rows_merge_to_fit() -> None:
    layout = arrange(chunks(), "chunk")
    assert render_map(layout, "chunk", "state", 24, 10).plain.splitlines() == [
        "grp0  0  ·o█·X█····", "grp0  1  ·o█·X█····", "grp1  0  ··········",
        "grp1  1  ··········"]
    assert render_map(layout, "chunk", "state", 14, 2).plain.splitlines() == [
        "grp0  0+ o█X··", "grp1  0+ ·····"]
    assert render_map(layout, "chunk", "wear", 14, 2).plain.splitlines() == [
        "grp0  0+ ░▒▒▓█", "grp1  0+ ░▒▒▓█"]


def test_rates_come_from_two_snapshots() -> None:
    before = Snapshot({}, "chunk", [], {"commands": {"A": 10, "B": 5}, "read_bytes": 0,
                                        "written_bytes": 4096}, 100.0)
    now = Snapshot({}, "chunk", [], {"commands": {"A": 30, "B": 25}, "read_bytes": 8192,
                                     "written_bytes": 4096}, 102.0)
    assert rates(before, now) == Rates(20.0, 4096.0, 0.0)
    assert rates(None, now) == Rates()


def test_erase_counts_may_be_one_number_or_one_per_plane() -> None:
    assert (_erases({"erases": 3}), _erases({"erases": [1, 4]}), _erases({})) == (3, 4, 0)
