"""The chart as a reader sees it (segcheck report --png): on a default run's shape (six models, their peer rows, 21
classes, curves whose lowest layers sit together at the heads), no label runs into another, nothing is cut off at the
figure's edge, the panels of a row stay apart, the rows are not split by empty space, and each model's lowest layer is
named where it can be read."""

import itertools

import numpy as np
import pytest

from segcheck.results import chart
from segcheck.results.records import Figures, RunResults

pytest.importorskip("matplotlib")
from matplotlib.text import Text  # noqa: E402  (after the skip: matplotlib is optional for the gate)

MODELS = [f"{arch}_resnet101_{data}" for arch in ("deeplab", "fcn", "psp") for data in ("coco", "voc")]
CLASSES = ["background", "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorcycle", "person", "potted-plant", "sheep", "sofa", "train", "tv"]


def default_run_shape() -> RunResults:
    """Results shaped like the default run's, seeded: what the chart must lay out without a clash."""
    rng = np.random.default_rng(7)
    results = RunResults(tier="synthetic", convention="present", environment={"isa": "avx512_vnni"})
    rows = MODELS + [f"{m}+{peer}" for m in MODELS if m.endswith("voc") for peer in ("onnxruntime", "openvino")]
    for name in rows:
        m = results.model(name)
        fp32 = list(rng.uniform(40, 90, len(CLASSES)))
        int8 = [v + rng.normal(0, 1.2) for v in fp32]
        m.fp32 = Figures(pixacc=92.5, miou=float(np.mean(fp32)), iou=fp32, latency_ms=300.0, latency_iqr_pct=2.0)
        m.int8 = Figures(pixacc=92.4, miou=float(np.mean(int8)), iou=int8, latency_ms=float(rng.uniform(80, 150)),
                         latency_iqr_pct=5.0)
        m.classes, m.min_speedup = CLASSES, (None if "+" in name else 2.0)
        m.tolerances = {"int8_drop_pixacc_points": 0.28, "int8_drop_miou_points": 1.1, "sqnr_floor_db": 5.7}
        if "+" not in name:
            sqnr = 34 - 18 * (1 - np.exp(-np.arange(110) / 15)) + rng.normal(0, 0.3, 110)
            sqnr[104] = 12.0 + rng.uniform(0, 2)  # every model's lowest layer at the same place, as in the heads
            m.layers = [{"name": f"resnetv1s_layers4_conv{i}_fwd", "sqnr_db": float(v), "cosine": 0.99}
                        for i, v in enumerate(sqnr)]
    return results


@pytest.fixture(scope="module")
def drawn():
    import matplotlib.pyplot as plt

    fig = chart.figure(default_run_shape())
    fig.canvas.draw()
    yield fig, fig.canvas.get_renderer()
    plt.close(fig)


def _labels(fig, renderer) -> list:
    found = []
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            if box.width > 0 and box.height > 0:
                found.append((text, box))
    return found


def test_no_label_runs_into_another(drawn):
    """Tick labels, bar labels, captions, titles and legend entries: no two share a pixel (two rotated class names
    are left out: their boxes are the rotated text's axis-aligned hull, wider than the letters)."""
    fig, renderer = drawn
    clashes = [(a.get_text()[:40], b.get_text()[:40])
               for (a, box_a), (b, box_b) in itertools.combinations(_labels(fig, renderer), 2)
               if box_a.overlaps(box_b) and not (a.get_rotation() and b.get_rotation())]
    assert not clashes, clashes


def test_nothing_is_cut_off_and_the_panels_of_a_row_stay_apart(drawn):
    fig, renderer = drawn
    boxes = [ax.get_tightbbox(renderer).transformed(fig.transFigure.inverted()) for ax in fig.axes]
    assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= 1 and b.y1 <= 1 for b in boxes), [b.bounds for b in boxes]
    top = sorted((b for b in boxes if b.y0 > 0.25), key=lambda b: b.x0)
    assert len(top) >= 3 and all(left.x1 <= right.x0 for left, right in zip(top, top[1:])), [b.bounds for b in top]


def test_the_rows_are_not_split_by_empty_space(drawn):
    """The per-layer panel starts right under the first row (the old layout left about an eighth of the figure empty)."""
    fig, renderer = drawn
    boxes = {ax.get_title(): ax.get_tightbbox(renderer).transformed(fig.transFigure.inverted()) for ax in fig.axes}
    layers = boxes.pop("per-layer error")
    gap = min(b.y0 for b in boxes.values()) - layers.y1
    assert 0 <= gap < 0.04, gap


def test_each_models_lowest_layer_is_named_in_the_legend(drawn):
    fig, _ = drawn
    (layers,) = [ax for ax in fig.axes if ax.get_title() == "per-layer error"]
    entries = [t.get_text() for t in layers.get_legend().get_texts()]
    assert len(entries) == len(MODELS)
    assert all(e.startswith(m) and "lowest" in e and "at #104 resnetv1s_layers4_conv104_fwd" in e
               for e, m in zip(entries, MODELS)), entries
