"""A read-only table the browser updates cell by cell: what the watchlist ticks in.

Panel's Tabulator rebuilds the whole table in the browser on every patch (its view answers a
``ColumnDataSource`` patch with ``tabulator.setData`` of every row, then re-measures the
table): with 100 symbols at 10 updates a second that was most of a browser's CPU per console
(measured in ``bench/dashboard.py``; 60 % of the page's main thread in Tabulator layout). A
:class:`Grid` sends only the text of the cells that changed and the browser sets just those
cells' text, so an update costs the browser what changed, not the table.

Cells are text formatted on the server (once per snapshot for every session, see
:meth:`velox.ui.live.RunSnapshot.derived_frame`), so what a trader reads is exactly what
Python formatted and the browser does no number handling. Rows are keyed by their first
column; clicking a row sets :attr:`Grid.selected` to its key.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import param
from panel.custom import JSComponent

_ESM = """
export function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "velox-grid-box";
  const table = document.createElement("table");
  table.className = "velox-grid";
  const head = table.createTHead().insertRow();
  const body = table.createTBody();
  box.appendChild(table);
  let cells = [];
  let rows = [];
  const number = (text) => parseFloat(String(text).replace(/[,%+₹]/g, ""));
  function build() {
    const align = model.align || [];
    head.replaceChildren(...model.columns.map((name, c) => {
      const th = document.createElement("th");
      th.textContent = name;
      th.className = align[c] === "right" ? "num" : "";
      return th;
    }));
    body.replaceChildren();
    rows = [];
    cells = model.rows.map((row) => {
      const tr = body.insertRow();
      tr.dataset.key = row[0];
      tr.classList.toggle("selected", row[0] === model.selected);
      rows.push(tr);
      return row.map((text, c) => {
        const td = tr.insertCell();
        td.textContent = text;
        if (align[c] === "right") td.className = "num";
        return td;
      });
    });
    signs();
  }
  function signs() {
    const c = model.sign_column;
    if (c < 0) return;
    for (const row of cells) {
      const td = row[c];
      if (!td) continue;
      const v = number(td.textContent);
      td.classList.toggle("neg", v < 0);
      td.classList.toggle("pos", v > 0);
    }
  }
  function patch() {
    const tick = model.tick_column;
    if (!model.patch) return;
    for (const [r, c, text] of JSON.parse(model.patch).cells) {
      const td = cells[r] && cells[r][c];
      if (!td) continue;
      if (c === tick) {
        const before = number(td.textContent), after = number(text);
        td.classList.toggle("up", after > before);
        td.classList.toggle("down", after < before);
      }
      td.textContent = text;
    }
    signs();
  }
  body.addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (!tr) return;
    model.selected = tr.dataset.key;
  });
  model.on("selected", () => {
    for (const tr of rows) tr.classList.toggle("selected", tr.dataset.key === model.selected);
  });
  model.on("rows", build);
  model.on("columns", build);
  model.on("patch", patch);
  build();
  el.appendChild(box);
}
"""

_CSS = """
.velox-grid-box { overflow-y: auto; height: 100%; border: 1px solid #ddd; border-radius: 4px; }
.velox-grid { border-collapse: collapse; width: 100%; font-size: 13px;
  font-variant-numeric: tabular-nums; }
.velox-grid th { position: sticky; top: 0; background: #f4f4f5; text-align: left;
  padding: 4px 6px; border-bottom: 1px solid #ddd; font-weight: 600; }
.velox-grid td { padding: 3px 6px; border-bottom: 1px solid #f0f0f0; white-space: nowrap; }
.velox-grid .num { text-align: right; }
.velox-grid tbody tr { cursor: pointer; }
.velox-grid tbody tr:hover { background: #f8fafc; }
.velox-grid tbody tr.selected { background: #e0e7ff; }
.velox-grid td.up { color: #16a34a; }
.velox-grid td.down { color: #dc2626; }
.velox-grid td.pos { color: #16a34a; }
.velox-grid td.neg { color: #dc2626; }
"""


class Grid(JSComponent):
    """Rows of text, patched in the browser by changed cell (see the module docstring).

    Use :meth:`show` with an ``(rows, columns)`` array of strings; it sends the whole table
    when the rows' keys (first column) changed and only the changed cells otherwise.
    """

    columns = param.List(default=[], doc="Column headings.")
    align = param.List(default=[], doc="'left' or 'right' per column.")
    rows = param.List(default=[], doc="Every row's cell texts (sent whole on a new row set).")
    patch = param.String(default="", doc='JSON {"seq": n, "cells": [[row, column, text], …]}.')
    selected = param.String(default=None, allow_None=True, doc="Key of the row clicked last.")
    sign_column = param.Integer(default=-1, doc="Column coloured by its sign (-1: none).")
    tick_column = param.Integer(default=-1, doc="Column coloured by its last move (-1: none).")

    _esm = _ESM
    _stylesheets = [_CSS]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._shown = np.empty((0, len(self.columns)), dtype=object)
        self._seq = 0

    def show(self, text: np.ndarray) -> bool:
        """Show ``text`` (an object array of strings, one row per key); True when the whole
        table was sent (a new set or order of rows), False when only changed cells were."""
        shown = self._shown
        if shown.shape != text.shape or not np.array_equal(shown[:, :1], text[:, :1]):
            self._shown = text.copy()
            self.rows = text.tolist()
            return True
        changed = np.argwhere(shown != text)
        if len(changed):
            self._seq += 1
            cells = [[int(r), int(c), text[r, c]] for r, c in changed]
            self._shown = text.copy()
            # JSON text, not a dict: Bokeh walks a dict's every element looking for models to
            # serialise (most of the update's cost at 100 symbols); a string is one value
            self.patch = json.dumps({"seq": self._seq, "cells": cells}, ensure_ascii=False)
        return False
