import base64
import math
import xml.etree.ElementTree as ET

from feedback import plots


def svg_of(uri: str) -> ET.Element:
    prefix = "data:image/svg+xml;base64,"
    assert uri.startswith(prefix)
    return ET.fromstring(base64.b64decode(uri[len(prefix) :]))


def texts(root: ET.Element) -> list[str]:
    return [node.text for node in root.iter() if node.tag.endswith("text") and node.text]


def test_each_chart_is_an_svg_image_with_its_title_and_labels():
    charts = [
        plots.line_chart(
            {"train": [(1, 0.7), (2, 0.5)], "held out": [(1, 0.8), (2, math.nan)]},
            title="Learning curve",
            x_label="step",
            y_label="loss",
        ),
        plots.scatter_chart(
            [(10, 0.1), (20, 0.4)], title="Reward vs length", x_label="characters", y_label="reward"
        ),
        plots.interval_chart(
            ["a", "b"], [1.0, 0.0], [0.5, -1.0], [1.5, 0.2], title="Ratings", x_label="Elo"
        ),
        plots.bar_chart(["mon", "tue"], [3, 5], title="Answers", y_label="answers"),
        plots.heatmap_chart(["a", "b"], ["a", "b"], [[None, 0.75], [0.25, None]], title="Win rate"),
    ]
    for uri, title in zip(
        charts,
        ["Learning curve", "Reward vs length", "Ratings", "Answers", "Win rate"],
        strict=True,
    ):
        assert title in texts(svg_of(uri))


def test_the_heat_map_writes_each_value_in_its_cell_and_leaves_missing_ones_blank():
    words = texts(
        svg_of(plots.heatmap_chart(["x", "y"], ["x", "y"], [[None, 0.75], [0.25, None]], title="W"))
    )
    assert "75%" in words and "25%" in words
    assert "nan%" not in words


def test_the_same_numbers_give_the_same_bytes():
    def draw() -> str:
        return plots.line_chart(
            {"a": [(0, 0.2), (1, 0.9)]}, title="T", x_label="x", y_label="y", diagonal=True
        )

    assert draw() == draw()


def test_hostile_labels_stay_text_inside_the_svg():
    root = svg_of(
        plots.bar_chart(["<script>alert(1)</script>"], [1], title="<b>x</b>", y_label="y")
    )
    assert not [node for node in root.iter() if node.tag.endswith("script")]
    assert "<script>alert(1)</script>" in texts(root)


def test_dollar_signs_in_labels_are_text_not_tex():
    names = ["$x^{$", "a $\\frac$ b", "cost $5"]
    root = svg_of(
        plots.interval_chart(names, [1, 2, 3], [0, 1, 2], [2, 3, 4], title="t", x_label="x")
    )
    assert set(names) <= set(texts(root))
