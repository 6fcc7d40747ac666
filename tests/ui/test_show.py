"""Tables are patched cell by cell while their rows stay the same, and frames shared between
sessions are never changed by one session's patch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn

from velox.ui.base import show


def quotes(ltp: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"instrument": [f"NSE:S{i}" for i in range(len(ltp))], "ltp": ltp,
                         "volume": np.arange(len(ltp)) * 10})  # fmt: skip


def test_same_rows_are_patched_in_place_new_rows_replace_the_value() -> None:
    widget = pn.widgets.Tabulator(pd.DataFrame(columns=["instrument", "ltp", "volume"]))
    first = quotes([100.0, 200.0, 300.0])
    kept = first.copy()
    assert show(widget, first, ("instrument",))  # no rows yet: replaced
    shown = widget.value

    second = quotes([100.0, 201.5, np.nan])
    assert not show(widget, second, ("instrument",))
    assert widget.value is shown  # patched, not a new value sent whole
    pd.testing.assert_frame_equal(widget.value, second)
    pd.testing.assert_frame_equal(first, kept)  # the frame another session shows is intact

    third = quotes([1.0, 2.0, 3.0, 4.0])  # a new instrument: the rows changed
    assert show(widget, third, ("instrument",))
    assert widget.value is not shown
    pd.testing.assert_frame_equal(widget.value, third)
    reordered = third.iloc[::-1].reset_index(drop=True)
    assert show(widget, reordered, ("instrument",))
    pd.testing.assert_frame_equal(widget.value, reordered)


def test_a_patch_reaches_the_rendered_table_in_one_slice_per_column() -> None:
    """What the browser gets: the widget's Bokeh source equals the new frame after a patch,
    and each changed column was sent as one slice from its first changed row to its last."""
    from bokeh.document import Document

    widget = pn.widgets.Tabulator(pd.DataFrame(columns=["instrument", "ltp", "volume"]))
    show(widget, quotes([100.0, 200.0, 300.0, 400.0]), ("instrument",))
    doc = Document()
    model = widget.get_root(doc)
    doc.add_root(model)
    sent = []
    doc.on_change(lambda event: sent.append(event))
    second = quotes([100.0, 201.0, 300.0, 401.0])
    second.loc[2, "volume"] = 7
    assert not show(widget, second, ("instrument",))
    source = model.source.data
    assert list(source["ltp"]) == [100.0, 201.0, 300.0, 401.0]
    assert list(source["volume"]) == [0, 10, 7, 30]
    patches = [e.patches for e in sent if hasattr(e, "patches")]
    assert len(patches) == 1
    assert patches[0]["ltp"] == [(slice(1, 4), [201.0, 300.0, 401.0])]
    assert patches[0]["volume"] == [(slice(2, 3), [7])]
