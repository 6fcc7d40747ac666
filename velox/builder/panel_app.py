"""The strategy builder as a Panel page: the same :class:`~velox.builder.StrategyForm`, served.

:func:`app` wraps the ipywidgets form with Panel's ipywidgets support (``pn.panel(widget)``,
an ``IPyWidget`` pane), so JupyterLab and the Panel page share one form and one model. Serving
it as a standalone page (``panel serve``) needs the ``ipywidgets_bokeh`` package, which bridges
ipywidgets into a Bokeh server; inside a notebook, ``app()`` displays without it.

Run it::

    panel serve velox/builder/panel_app.py          # or: python -m velox.builder.panel_app

or from Python: ``velox.builder.panel_app.serve(port=5007)``. Constructing the page starts
nothing: tests build it without a server.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import panel as pn

from velox.builder.form import StrategyForm

if TYPE_CHECKING:
    from velox.builder.model import StrategyModel

__all__ = ["app", "serve"]

log = logging.getLogger(__name__)


def app(
    model: StrategyModel | None = None,
    *,
    directory: str | Path = "strategies",
    form: StrategyForm | None = None,
) -> pn.Column:
    """Return the builder page: a title, a short guide and the form (``form.widget``).

    Examples
    --------
    >>> from velox.builder.panel_app import app
    >>> page = app()                        # doctest: +SKIP
    >>> page.servable()                     # doctest: +SKIP
    """
    form = form if form is not None else StrategyForm(model, directory=directory)
    guide = pn.pane.Markdown(
        "Compose entry and exit rules, then **Preview code**, **Save** to "
        f"`{Path(directory)}/`, **Load** a builder file back, or **Backtest** it with "
        "`velox.replay` on the bundled data. See `docs/builder.md`.",
        sizing_mode="stretch_width",
    )
    page = pn.Column(
        pn.pane.Markdown("# Velox strategy builder"), guide, pn.panel(form.widget),
        sizing_mode="stretch_width",
    )  # fmt: skip
    page.form = form  # the model behind the page, for callers and tests
    return page


def serve(port: int = 5007, *, show: bool = False, **kwargs: object) -> object:
    """Serve :func:`app` on ``port`` (a fresh form per browser session) and return the server.

    ``kwargs`` go to :func:`panel.serve` (``threaded=True`` returns at once).
    """
    if importlib.util.find_spec("ipywidgets_bokeh") is None:
        log.warning(
            "ipywidgets_bokeh is not installed: a served Panel page cannot render ipywidgets; "
            "install it (pip install ipywidgets_bokeh) or use the form in JupyterLab"
        )
    return pn.serve({"builder": lambda: app()}, port=port, show=show, **kwargs)


if __name__.startswith("bokeh"):  # `panel serve velox/builder/panel_app.py`
    app().servable(title="Velox strategy builder")
elif __name__ == "__main__":
    serve(show=True)
