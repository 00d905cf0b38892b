"""Datasets: the synthetic generator, GluonCV's loaders on its output, roots, subsets and bad data."""

import json
import re
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from segcheck.config.run import resolve_root
from segcheck.data import loaders, synthetic
from segcheck.data.kinds import DATASETS, dataset
from segcheck.errors import BadSample, MissingResource, SegcheckError
from segcheck.measure.evaluate import evaluate

VOC, COCO = DATASETS["pascal_voc"], DATASETS["coco"]

SPEC = synthetic.SyntheticSpec(seed=7, num_train=6, num_val=5)
CROP = 64


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return synthetic.write_voc(tmp_path_factory.mktemp("voc"), SPEC)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return synthetic.write_coco(tmp_path_factory.mktemp("coco"), SPEC)


@pytest.fixture
def voc_copy(voc_root, tmp_path):
    return Path(shutil.copytree(voc_root, tmp_path / "voc"))


@pytest.fixture
def coco_copy(coco_root, tmp_path):
    return Path(shutil.copytree(coco_root, tmp_path / "coco"))


def test_voc_output_passes_gluoncvs_loader_unchanged(voc_root):
    from gluoncv.data import VOCSegmentation

    val = VOCSegmentation(str(voc_root), split="val", mode="val", crop_size=CROP)
    trainval = VOCSegmentation(str(voc_root), split="train", mode="val", crop_size=CROP)
    assert len(val) == SPEC.num_val and len(trainval) == SPEC.num_train + SPEC.num_val
    seen = set()
    for i in range(len(val)):
        image, mask = val[i]
        assert image.shape == (CROP, CROP, 3) and mask.shape == (CROP, CROP)
        seen |= set(np.unique(mask.asnumpy()).astype(int).tolist())
    assert -1 in seen and 0 in seen and seen <= set(range(-1, 21))


def test_voc_masks_are_palette_pngs_with_void_borders_and_images_are_not_all_square(voc_root):
    base = voc_root / "VOC2012"
    names = (base / "ImageSets/Segmentation/val.txt").read_text().split()
    sizes = set()
    for name in names:
        with Image.open(base / "SegmentationClass" / f"{name}.png") as mask, Image.open(base / "JPEGImages" / f"{name}.jpg") as image:
            assert mask.mode == "P" and image.format == "JPEG" and mask.size == image.size
            values = set(np.unique(np.asarray(mask)).tolist())
        assert 255 in values and 0 in values and len(values - {0, 255}) >= 1
        sizes.add(image.size[0] == image.size[1])
    assert False in sizes
    assert (base / "ImageSets/Segmentation/trainval.txt").read_text().split() == (
        (base / "ImageSets/Segmentation/train.txt").read_text().split() + names)


def test_coco_output_passes_gluoncvs_loader_unchanged(coco_root):
    from gluoncv.data import COCOSegmentation

    val = COCOSegmentation(str(coco_root), split="val", mode="val", crop_size=CROP)
    assert len(val) == SPEC.num_val  # every image passes GluonCV's 1000-pixel filter
    assert (coco_root / "annotations" / "val_ids.mx").is_file()
    classes = set()
    for i in range(len(val)):
        image, mask = val[i]
        assert image.shape == (CROP, CROP, 3)
        classes |= set(np.unique(mask.asnumpy()).tolist())
    assert 0 in classes and classes <= set(range(21)) and len(classes) > 1


def test_coco_annotations_use_real_category_ids_polygons_and_rle(coco_root):
    from gluoncv.data import COCOSegmentation

    doc = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    cats = {a["category_id"] for a in doc["annotations"]}
    assert cats <= set(COCOSegmentation.CAT_LIST[1:]) | {synthetic.DISTRACTOR_CATEGORY}
    assert synthetic.DISTRACTOR_CATEGORY in cats
    kinds = {type(a["segmentation"]).__name__ for a in doc["annotations"]}
    assert kinds == {"list", "dict"}


def test_coco_masks_from_gluoncv_match_the_rendered_scene(coco_root):
    """GluonCV rebuilds the label map from polygons and RLE; it must agree with what was drawn."""
    from gluoncv.data import COCOSegmentation

    val = COCOSegmentation(str(coco_root), split="val", mode="testval")
    scenes = dict(synthetic._scenes(SPEC, "val", SPEC.num_val, min_foreground=1000))
    for i, (name, scene) in enumerate(sorted(scenes.items())):
        _, mask = val[i]
        agree = (mask.asnumpy() == scene.label).mean()
        assert agree > 0.97, f"{name}: only {agree:.3f} of pixels agree"


def test_generator_is_deterministic_and_seeded(tmp_path):
    small = synthetic.SyntheticSpec(seed=3, num_train=2, num_val=2)
    a, b = synthetic.write_voc(tmp_path / "a", small), synthetic.write_voc(tmp_path / "b", small)
    c = synthetic.write_voc(tmp_path / "c", synthetic.SyntheticSpec(seed=4, num_train=2, num_val=2))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if f.suffix == ".jpg")


def test_classes_have_distinct_appearances():
    looks = [synthetic.appearance(c) for c in range(1, 21)]
    assert len({(l.colour, l.texture, l.shape) for l in looks}) == 20
    assert len({l.colour for l in looks}) == 20


def test_ensure_generates_once_into_the_cache(tmp_path):
    small = synthetic.SyntheticSpec(seed=5, num_train=2, num_val=2)
    root = synthetic.ensure(tmp_path, "pascal_voc", small)
    stamp = (root / ".complete").stat().st_mtime_ns
    assert synthetic.ensure(tmp_path, "pascal_voc", small) == root
    assert (root / ".complete").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == [root.name]


def test_same_evaluation_code_on_a_real_layout_and_the_synthetic_one(voc_root, tmp_path, monkeypatch):
    """A hand-made VOC root with VOC's own file names, found through $SEGCHECK_VOC_ROOT."""
    real = tmp_path / "VOCdevkit"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (real / "VOC2012" / sub).mkdir(parents=True)
    names = (voc_root / "VOC2012/ImageSets/Segmentation/val.txt").read_text().split()[:3]
    renamed = [f"2007_{i:06d}" for i in range(len(names))]
    for old, new in zip(names, renamed):
        shutil.copy(voc_root / f"VOC2012/JPEGImages/{old}.jpg", real / f"VOC2012/JPEGImages/{new}.jpg")
        shutil.copy(voc_root / f"VOC2012/SegmentationClass/{old}.png", real / f"VOC2012/SegmentationClass/{new}.png")
    (real / "VOC2012/ImageSets/Segmentation/val.txt").write_text("\n".join(renamed) + "\n")
    monkeypatch.setenv("SEGCHECK_VOC_ROOT", str(real))
    root, source = resolve_root(VOC, None, None)
    assert (root, source) == (real, "$SEGCHECK_VOC_ROOT")

    def background(x):
        return mx.nd.concat(mx.nd.ones_like(x[:, :1]), mx.nd.zeros((x.shape[0], 20, x.shape[2], x.shape[3])), dim=1)

    results = {}
    for label, where in (("real-layout", root), ("synthetic", voc_root)):
        split = loaders.open_split(VOC, where, "val", CROP, tmp_path)
        results[label] = evaluate(background, split, loaders.first(split, 3)).matrix
    for matrix in results.values():
        assert matrix.num_pixels > 0 and matrix.matrix[:, 1:].sum() == 0
    np.testing.assert_array_equal(results["real-layout"].matrix, results["synthetic"].matrix)


def test_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGCHECK_COCO_ROOT", str(tmp_path / "env"))
    assert resolve_root(COCO, tmp_path / "opt", tmp_path / "conf", "segcheck.toml") == (tmp_path / "opt", "--coco-root")
    assert resolve_root(COCO, None, tmp_path / "conf", "segcheck.toml") == (tmp_path / "conf", "segcheck.toml")
    assert resolve_root(COCO, None, None) == (tmp_path / "env", "$SEGCHECK_COCO_ROOT")
    monkeypatch.delenv("SEGCHECK_COCO_ROOT")
    assert resolve_root(COCO, None, None) == (Path("~/.mxnet/datasets/coco").expanduser(), "GluonCV's default root")


@pytest.mark.parametrize("name, looked_for", [
    ("pascal_voc", "VOC2012/ImageSets/Segmentation/val.txt"), ("coco", "annotations/instances_val2017.json"),
    ("pascal_aug", "VOCaug/dataset/val.txt"), ("ade20k", "ADEChallengeData2016/images/validation"), ("citys", "leftImg8bit/val"),
])
def test_absent_root_names_the_exact_path_and_how_to_prepare(tmp_path, name, looked_for):
    kind = dataset(name)
    with pytest.raises(MissingResource) as err:
        loaders.open_split(kind, tmp_path / "nowhere", "val", CROP, tmp_path, source=kind.option)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / looked_for) in message
    assert kind.option in message and kind.env in message


def test_read_only_coco_annotations_get_a_writable_shadow(coco_root, tmp_path, monkeypatch):
    ro = Path(shutil.copytree(coco_root, tmp_path / "ro"))
    (ro / "annotations" / "val_ids.mx").unlink()
    real_access = loaders.os.access  # root can write anywhere: the read-only folder is simulated
    monkeypatch.setattr(loaders.os, "access", lambda p, mode: False if Path(p) == ro / "annotations" else real_access(p, mode))
    split = loaders.open_split(COCO, ro, "val", CROP, tmp_path / "cache")
    assert len(split) == SPEC.num_val
    assert not (ro / "annotations" / "val_ids.mx").exists()
    assert list((tmp_path / "cache" / "coco-ids").glob("*/annotations/val_ids.mx"))
    split.load(0)


def test_missing_pycocotools_is_a_clear_error_never_a_pip_install(coco_root, tmp_path, monkeypatch):
    import importlib.util

    import gluoncv.data.mscoco.utils as coco_utils

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pycocotools" else real_find_spec(name, *a))
    monkeypatch.setattr(coco_utils, "try_import_pycocotools", lambda: pytest.fail("GluonCV's pip path was reached"))
    with pytest.raises(SegcheckError, match="pycocotools is not installed; install the pinned requirements"):
        loaders.open_split(COCO, coco_root, "val", CROP, tmp_path)


def test_subsets_take_the_first_n_in_a_fixed_order_and_are_named_by_hash(voc_root, tmp_path):
    split = loaders.open_split(VOC, voc_root, "val", CROP, tmp_path)
    assert loaders.first(split, 3) == [0, 1, 2] and loaders.first(split, "all") == list(range(SPEC.num_val))
    a = loaders.Subset("val", split.ids[:3])
    assert a.describe() == f"val: 3 images, ids sha1 {a.digest}"
    assert a.digest == loaders.Subset("val", tuple(split.ids[:3])).digest != loaders.Subset("val", split.ids[:4]).digest
    with pytest.raises(SegcheckError, match=r"6 images requested but the val split holds 5; ask for fewer with --num-images"):
        loaders.first(split, 6)


def test_dummy_input_is_uniform_and_fixed():
    a, b = loaders.dummy_input(2, 32), loaders.dummy_input(2, 32)
    assert a.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    assert -1.0 <= a.min().asscalar() < -0.9 and 0.9 < a.max().asscalar() < 1.0
    assert not np.array_equal(a.asnumpy(), loaders.dummy_input(2, 32, seed=1).asnumpy())


def _first_voc(root: Path, split="val") -> str:
    return (root / f"VOC2012/ImageSets/Segmentation/{split}.txt").read_text().split()[0]


def _break_missing_image(root, name):
    (root / f"VOC2012/JPEGImages/{name}.jpg").unlink()
    return f"VOC2012/JPEGImages/{name}.jpg", "image file is missing"


def _break_garbage_image(root, name):
    (root / f"VOC2012/JPEGImages/{name}.jpg").write_bytes(b"not a jpeg at all")
    return f"VOC2012/JPEGImages/{name}.jpg", "cannot read image"


def _break_truncated_jpeg(root, name):
    path = root / f"VOC2012/JPEGImages/{name}.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return f"VOC2012/JPEGImages/{name}.jpg", "cannot read image"


def _break_mask_size(root, name):
    path = root / f"VOC2012/SegmentationClass/{name}.png"
    with Image.open(path) as mask:
        resized = mask.resize((mask.size[0] + 5, mask.size[1]))
    resized.save(path)
    return f"VOC2012/SegmentationClass/{name}.png", "the pair does not belong together"


def _break_mask_labels(root, name):
    path = root / f"VOC2012/SegmentationClass/{name}.png"
    with Image.open(path) as mask:
        values, palette = np.asarray(mask).copy(), mask.getpalette()
    values[:3, :3] = 37
    out = Image.fromarray(values, mode="P")
    out.putpalette(palette)
    out.save(path)
    return f"VOC2012/SegmentationClass/{name}.png", "label values [37] are outside 0..20 and 255"


@pytest.mark.parametrize("breaker", [_break_missing_image, _break_garbage_image, _break_truncated_jpeg, _break_mask_size, _break_mask_labels],
                         ids=["missing-image", "unreadable-image", "truncated-jpeg", "mask-size-differs", "mask-labels-outside"])
def test_bad_voc_sample_is_one_clear_error_or_skipped_and_counted(voc_copy, tmp_path, breaker):
    name = _first_voc(voc_copy)
    relative, problem = breaker(voc_copy, name)
    split = loaders.open_split(VOC, voc_copy, "val", CROP, tmp_path)
    with pytest.raises(BadSample) as err:
        list(loaders.batches(split, range(len(split)), 2))
    assert str(err.value).startswith(str(voc_copy / relative)) and problem in str(err.value)
    skipped = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [ids for _, _, ids in loaders.batches(split, range(len(split)), 2, skip_bad=True, skipped=skipped)]
    left_out = [str(w.message) for w in caught if w.category is loaders.BadSampleWarning]
    assert len(left_out) == 1 and left_out[0].startswith(f"left out: {voc_copy / relative}") and problem in left_out[0]
    assert skipped == [name] and sum(len(ids) for ids in got) == SPEC.num_val - 1


def test_empty_split_file_names_the_file(voc_copy, tmp_path):
    split_file = voc_copy / "VOC2012/ImageSets/Segmentation/val.txt"
    split_file.write_text("\n\n")
    with pytest.raises(SegcheckError, match=f"^{split_file}: the split list is empty"):
        loaders.open_split(VOC, voc_copy, "val", CROP, tmp_path)


def test_annotation_json_that_does_not_parse_names_the_file(coco_copy, tmp_path):
    ann = coco_copy / "annotations/instances_val2017.json"
    ann.write_text(ann.read_text()[:500])
    (coco_copy / "annotations/val_ids.mx").unlink()
    with pytest.raises(SegcheckError, match=f"^{ann}: annotation file is not valid JSON"):
        loaders.open_split(COCO, coco_copy, "val", CROP, tmp_path)


def test_coco_image_whose_size_differs_from_its_annotation(coco_copy, tmp_path):
    split = loaders.open_split(COCO, coco_copy, "val", CROP, tmp_path)
    meta = split.loader.coco.loadImgs(split.loader.ids[1])[0]
    path = coco_copy / "val2017" / meta["file_name"]
    with Image.open(path) as image:
        small = image.resize((50, 50))
    small.save(path)
    with pytest.raises(BadSample, match=f"^{path}: image is 50x50 but .* says {meta['width']}x{meta['height']}"):
        split.load(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", loaders.BadSampleWarning)
        skipped = []
        list(loaders.batches(split, range(len(split)), 1, skip_bad=True, skipped=skipped))
    assert skipped == [str(split.loader.ids[1])]


@pytest.mark.parametrize("name, writer, classes", [
    ("ade20k", synthetic.write_ade20k, 150), ("citys", synthetic.write_citys, 19), ("pascal_aug", synthetic.write_pascal_aug, 21),
])
def test_other_layouts_load_through_gluoncvs_loaders_with_their_class_counts_and_are_evaluated(tmp_path, name, writer, classes):
    """ADE20K, Cityscapes and SBD folders, written small, in a fixed order, scored with their own classes."""
    kind = dataset(name)
    root = writer(tmp_path / name, SPEC)
    split = loaders.open_split(kind, root, "val", CROP, tmp_path)
    train = loaders.open_split(kind, root, "train", CROP, tmp_path)
    assert (len(split), len(train), split.num_classes, len(kind.classes)) == (SPEC.num_val, SPEC.num_train, classes, classes)
    assert not set(split.ids) & set(train.ids) and list(split.ids) == sorted(split.ids)
    seen = set()
    for i in range(len(split)):
        image, label = split.load(i)
        assert image.shape == (3, CROP, CROP) and label.shape == (CROP, CROP)
        seen |= set(np.unique(label).tolist())
    assert len(seen - {-1}) > 2 and max(seen) < classes and (name == "pascal_aug" or -1 in seen)

    def background(x):  # every pixel predicted as class 0
        return mx.nd.one_hot(mx.nd.zeros((x.shape[0], CROP, CROP)), classes).transpose((0, 3, 1, 2))

    ev = evaluate(background, split, loaders.first(split, "all"))
    assert ev.matrix.num_classes == classes and ev.matrix.num_pixels > 0 and ev.matrix.matrix[:, 1:].sum() == 0
    from segcheck.gate.verdicts import moved_classes

    scores = ev.matrix.compute("present")
    assert kind.classes[0] in moved_classes(scores, scores, kind.classes)


WRITERS = {"pascal_voc": synthetic.write_voc, "coco": synthetic.write_coco, "pascal_aug": synthetic.write_pascal_aug,
           "ade20k": synthetic.write_ade20k, "citys": synthetic.write_citys}


def test_each_layout_is_described_once_and_the_writer_the_loader_and_plan_agree(tmp_path):
    """DatasetKind.layout is what the synthetic writer lays out and what the loader reads each split from; with any
    one of its paths gone, the loader and `segcheck plan` name that same path (Cityscapes trainval needs train and val)."""
    from segcheck.cases import plan
    from segcheck.config.run import Weights

    assert set(WRITERS) == set(DATASETS)
    for key, writer in WRITERS.items():
        kind = DATASETS[key]
        root = writer(tmp_path / key, SPEC)
        for split in kind.splits:
            layout = kind.layout(root, split)
            assert kind.absent(root, split) is None, (key, split, layout)
            assert loaders.open_split(kind, root, split, CROP, tmp_path / "cache").source in layout
            model = SimpleNamespace(weights=Weights("seeded"), int8_export=None, root=root, split=split, calib=None,
                                    kind=kind, dataset=key)
            assert plan._missing(model) == []
            for path in layout:
                path.rename(path.with_name(path.name + ".away"))
                try:
                    with pytest.raises(MissingResource, match=f"looked for {re.escape(str(path))} "):
                        loaders.open_split(kind, root, split, CROP, tmp_path / "cache")
                    assert [where for _, where, _ in plan._missing(model)] == [path], (key, split)
                finally:
                    path.with_name(path.name + ".away").rename(path)
    assert DATASETS["citys"].layout(tmp_path, "trainval") == (tmp_path / "leftImg8bit/train", tmp_path / "leftImg8bit/val")


def test_bad_labels_of_another_layout_name_the_mask_and_the_allowed_values(tmp_path):
    root = synthetic.write_citys(tmp_path / "citys", SPEC)
    split = loaders.open_split(dataset("citys"), root, "val", CROP, tmp_path)
    mask = Path(split.loader.mask_paths[0])
    values = np.asarray(Image.open(mask)).copy()
    values[:2, :2] = 200
    Image.fromarray(values, mode="L").save(mask)
    with pytest.raises(BadSample, match=rf"^{mask}: label values \[200\] are outside the Cityscapes label ids 0..33"):
        split.load(0)


def test_unknown_split_is_refused_with_the_splits_there_are(tmp_path):
    with pytest.raises(SegcheckError, match="unknown ade20k split 'test'; segcheck reads train, val"):
        loaders.open_split(dataset("ade20k"), tmp_path, "test", CROP, tmp_path)
