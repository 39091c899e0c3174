"""Server-side charts: SVG rendered by matplotlib's Agg backend, returned as data URIs.

Pages show them with `<img src="{{ uri }}" alt="...">`: the content security policy allows
`data:` images and nothing inside an image runs. Every chart also has its numbers in a table
or the API beside it, and series differ by marker and line style, not by colour alone.
matplotlib is imported on the first chart, so processes that draw none do not load it.
"""

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

# Marker and line style per series, so series stay apart in grey print and for colour-blind
# readers; the colours are the colour-blind-safe Okabe-Ito palette.
_STYLES = [
    {"color": "#0072B2", "marker": "o", "linestyle": "-"},
    {"color": "#D55E00", "marker": "s", "linestyle": "--"},
    {"color": "#009E73", "marker": "^", "linestyle": ":"},
    {"color": "#CC79A7", "marker": "D", "linestyle": "-."},
    {"color": "#E69F00", "marker": "v", "linestyle": (0, (5, 1, 1, 1))},
    {"color": "#56B4E9", "marker": "P", "linestyle": (0, (1, 1))},
]
_WIDTH_INCHES = 6.4


def _figure(height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    # Labels are data (model and judge names): "$x^{$" would be parsed as TeX and fail.
    matplotlib.rcParams["text.parse_math"] = False
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_WIDTH_INCHES, height), layout="constrained")
    return figure, figure.add_subplot()


def _data_uri(figure: Any, title: str) -> str:
    """SVG text with the title as its accessible name, as a base64 data URI."""
    import matplotlib

    figure.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    # No date in the file: the same numbers give the same bytes (cacheable, testable).
    with matplotlib.rc_context({"svg.hashsalt": "prefhub", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Title": title})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v if v is not None and math.isfinite(v) else math.nan for v in values]


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    y_limits: tuple[float, float] | None = None,
) -> str:
    """One line per series of (x, y) points; `diagonal` draws y = x (a reliability diagram)."""
    figure, axes = _figure()
    for index, (name, points) in enumerate(series.items()):
        style = _STYLES[index % len(_STYLES)]
        xs = [x for x, _ in points]
        ys = _finite([y for _, y in points])
        axes.plot(xs, ys, label=name, markersize=4, **style)
    if diagonal:
        axes.plot([0, 1], [0, 1], color="#777777", linestyle=(0, (2, 2)), label="perfect")
    if y_limits:
        axes.set_ylim(*y_limits)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    if len(series) > 1 or diagonal:
        axes.legend(fontsize=8)
    return _data_uri(figure, title)


def scatter_chart(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    trend: bool = True,
) -> str:
    """Points, with a least-squares line when `trend` and there are two distinct x values."""
    figure, axes = _figure()
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    axes.scatter(xs, ys, s=9, alpha=0.5, color=_STYLES[0]["color"], marker="o")
    if trend and len(set(xs)) > 1:
        import numpy as np

        slope, intercept = np.polyfit(xs, ys, 1)
        ends = np.array([min(xs), max(xs)])
        axes.plot(ends, slope * ends + intercept, color=_STYLES[1]["color"], linestyle="--")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    return _data_uri(figure, title)


def interval_chart(
    labels: Sequence[str],
    estimates: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    title: str,
    x_label: str,
) -> str:
    """One row per label, best first as given: a point with its interval as a bar."""
    figure, axes = _figure(height=max(2.0, 0.28 * len(labels) + 1.0))
    rows = list(range(len(labels)))[::-1]
    errors = [
        [e - lo for e, lo in zip(estimates, lows, strict=True)],
        [hi - e for e, hi in zip(estimates, highs, strict=True)],
    ]
    axes.errorbar(
        estimates, rows, xerr=errors, fmt="o", color=_STYLES[0]["color"], capsize=3, markersize=4
    )
    axes.set_yticks(rows, labels=list(labels), fontsize=8)
    axes.set_xlabel(x_label)
    axes.grid(axis="x", alpha=0.3)
    return _data_uri(figure, title)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, y_label: str) -> str:
    """Vertical bars with their value written above each."""
    figure, axes = _figure()
    bars = axes.bar(list(labels), _finite(values), color=_STYLES[0]["color"])
    axes.bar_label(bars, fmt="%.3g", fontsize=8)
    axes.set_ylabel(y_label)
    axes.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _data_uri(figure, title)


def heatmap_chart(
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    matrix: Sequence[Sequence[float | None]],
    *,
    title: str,
    value_format: str = "{:.0%}",
) -> str:
    """A matrix of shares 0..1 with each value written in its cell (blank where None)."""
    figure, axes = _figure(height=max(2.5, 0.35 * len(row_labels) + 1.2))
    values = [_finite(row) for row in matrix]
    image = axes.imshow(values, cmap="cividis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(column_labels)), labels=list(column_labels), fontsize=8)
    axes.set_yticks(range(len(row_labels)), labels=list(row_labels), fontsize=8)
    axes.tick_params(axis="x", labelrotation=45)
    for row, cells in enumerate(values):
        for column, value in enumerate(cells):
            if not math.isnan(value):
                shade = "black" if value > 0.6 else "white"
                text = value_format.format(value)
                axes.text(column, row, text, ha="center", va="center", fontsize=7, color=shade)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return _data_uri(figure, title)
