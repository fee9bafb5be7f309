"""A matplotlib canvas and toolbar in napari's theme, inside a scrolling dock body.

Our own small base for the plot widgets, on matplotlib's Qt backend only (napari-matplotlib is not
needed). A bare ``FigureCanvasQTAgg`` docked in napari is white and is squashed to a few pixels by
the dock layout; this base gives it napari's theme colours (tick, label, text and edge colours from
the theme; toolbar icons recoloured to the theme's text colour), follows theme changes, and puts
toolbar, form, canvas and status line in a vertical scroll area, so that the dock's minimum height is
a few lines (the plots keep a readable minimum size and scroll when the dock is smaller).
"""

from __future__ import annotations

import matplotlib
from matplotlib.backend_bases import NavigationToolbar2
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg, NavigationToolbar2QT
from matplotlib.figure import Figure
from napari.utils.theme import get_theme
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._common import scroll_area

__all__ = ["ThemedCanvasWidget", "style_sheet_from_theme"]

_TOOLTIPS = {
    "Pan": "Pan/zoom: left button pans, right button zooms; click again to leave this mode",
    "Zoom": "Zoom to a rectangle; click again to leave this mode",
    "Save": "Save the figure (PNG, SVG, PDF ...)",
}


def style_sheet_from_theme(theme) -> dict:
    """matplotlib rcParams drawing text, ticks and edges in the napari theme's colours."""
    text, edge = theme.text.as_hex(), theme.secondary.as_hex()
    return {
        "axes.edgecolor": edge,
        "axes.facecolor": "none",
        "axes.labelcolor": text,
        "figure.edgecolor": edge,
        "figure.facecolor": "none",
        "grid.color": theme.foreground.as_hex(),
        "text.color": text,
        "xtick.color": edge,
        "xtick.labelcolor": text,
        "ytick.color": edge,
        "ytick.labelcolor": text,
    }


class ThemedCanvasWidget(QWidget):
    """Toolbar, canvas (``self.canvas``, ``self.figure``) and ``self.body_layout`` for more widgets.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    def __init__(self, viewer, parent=None):
        super().__init__(parent=parent)
        self.viewer = viewer
        self.napari_theme_style_sheet = style_sheet_from_theme(get_theme(viewer.theme))
        with matplotlib.rc_context(self.napari_theme_style_sheet):
            self.canvas = FigureCanvasQTAgg(Figure())
        self.canvas.figure.set_layout_engine("constrained")
        self.toolbar = NavigationToolbar2QT(self.canvas, parent=self)
        self._body = QWidget()
        self.body_layout = QVBoxLayout(self._body)
        self.body_layout.setContentsMargins(0, 0, 0, 0)
        self.body_layout.addWidget(self.toolbar)
        self.body_layout.addWidget(self.canvas)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = scroll_area(self._body)
        outer.addWidget(self.scroll)
        self._recolour_toolbar()
        viewer.events.theme.connect(self._on_napari_theme_changed)
        self.destroyed.connect(lambda *_, em=viewer.events.theme, cb=self._on_napari_theme_changed: _disconnect(em, cb))

    @property
    def figure(self) -> Figure:
        return self.canvas.figure

    def _on_napari_theme_changed(self, event=None) -> None:
        self.napari_theme_style_sheet = style_sheet_from_theme(get_theme(self.viewer.theme))
        self._recolour_toolbar()

    def _recolour_toolbar(self) -> None:
        """matplotlib's black toolbar icons drawn in the theme's text colour (legible on dark and
        light themes alike)."""
        colour = QColor(get_theme(self.viewer.theme).text.as_hex())
        images = {text: image for text, _, image, _ in NavigationToolbar2.toolitems if text}
        for action in self.toolbar.actions():
            text = action.text()
            if text in _TOOLTIPS:
                action.setToolTip(_TOOLTIPS[text])
            image = images.get(text)
            if not image:
                continue
            path = matplotlib.cbook._get_data_path("images", image + "_large.png")
            if not path.exists():
                path = path.with_name(image + ".png")
            pm = QPixmap(str(path))
            if pm.isNull():
                continue
            mask = pm.createMaskFromColor(QColor("black"), _mask_out_colour())
            pm.fill(colour)
            pm.setMask(mask)
            action.setIcon(QIcon(pm))


def _mask_out_colour():
    from qtpy.QtCore import Qt

    return Qt.MaskMode.MaskOutColor


def _disconnect(emitter, callback) -> None:
    try:
        emitter.disconnect(callback)
    except Exception:  # noqa: BLE001 - already gone
        pass
