"""Synthetic datasets in the exact on-disk layouts of Pascal VOC, COCO, SBD, ADE20K and Cityscapes, from a seed.

Scenes are objects of the 20 VOC classes over a textured background; each class has its own colour,
texture and shape so that a model can learn them. GluonCV's own loaders read the output unchanged.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .. import atomic

GENERATOR_VERSION = 1
SCENE_CLASSES = 21  # scenes draw objects of the 20 VOC classes (1..20) over background (0)

COCO_NAMES = {
    5: "airplane", 2: "bicycle", 16: "bird", 9: "boat", 44: "bottle", 6: "bus", 3: "car", 17: "cat",
    62: "chair", 21: "cow", 67: "dining table", 18: "dog", 19: "horse", 4: "motorcycle", 1: "person",
    64: "potted plant", 20: "sheep", 63: "couch", 7: "train", 72: "tv", 27: "backpack",
}
DISTRACTOR_CATEGORY = 27  # a COCO category outside the VOC classes: GluonCV maps it to background


def coco_category_ids() -> tuple:
    """GluonCV's COCOSegmentation.CAT_LIST: the COCO category id of each VOC class (index 0 is background)."""
    from gluoncv.data import COCOSegmentation

    return tuple(COCOSegmentation.CAT_LIST)


SHAPES = ("ellipse", "rectangle", "triangle", "diamond")
TEXTURES = ("plain", "hstripes", "vstripes", "checker", "diagonal")


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic dataset holds; its digest names the folder it is written to."""

    seed: int = 0
    num_train: int = 224  # seven disjoint sets of 32: calibration on other images of the same distribution (--calib-start)
    num_val: int = 48
    min_side: int = 96
    max_side: int = 144
    max_objects: int = 3

    def digest(self) -> str:
        text = json.dumps({"generator": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Appearance:
    colour: tuple
    texture: str
    period: int
    shape: str


def appearance(cls: int) -> Appearance:
    """The fixed look of VOC class `cls` (1..20): hue spread over the wheel, texture and shape cycled."""
    hue = ((cls - 1) * 7 % 20) / 20.0
    sat, val = (0.9, 0.95) if cls % 2 else (0.55, 0.75)
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val))
    return Appearance(colour, TEXTURES[cls % len(TEXTURES)], 4 + cls % 3 * 2, SHAPES[cls % len(SHAPES)])


def _texture(kind: str, period: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    half = period // 2
    if kind == "hstripes":
        return (yy % period < half).astype(np.float32)
    if kind == "vstripes":
        return (xx % period < half).astype(np.float32)
    if kind == "checker":
        return ((yy // half + xx // half) % 2).astype(np.float32)
    if kind == "diagonal":
        return ((yy + xx) % period < half).astype(np.float32)
    return np.zeros((h, w), np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency, nearly grey noise: unsaturated, so that it differs from every class colour."""
    coarse = rng.normal(0.0, 1.0, size=(max(2, h // 16), max(2, w // 16))).astype(np.float32)
    smooth = np.asarray(Image.fromarray(((coarse + 3) * 40).clip(0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
    return 0.4 * smooth[..., None] + np.array([60, 58, 54], np.float32)


def _polygon(shape: str, cx: float, cy: float, rx: float, ry: float, angle: float) -> list:
    if shape == "ellipse":
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([rx * np.cos(t), ry * np.sin(t)], 1)
    elif shape == "rectangle":
        pts = np.array([[-rx, -ry], [rx, -ry], [rx, ry], [-rx, ry]])
    elif shape == "triangle":
        pts = np.array([[0, -ry], [rx, ry], [-rx, ry]])
    else:
        pts = np.array([[0, -ry], [rx, 0], [0, ry], [-rx, 0]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = pts @ rot.T + [cx, cy]
    return [(float(x), float(y)) for x, y in pts]


def _fill(polygon: list, h: int, w: int) -> np.ndarray:
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon(polygon, fill=1)
    return np.asarray(canvas, dtype=bool)


@dataclass
class Scene:
    image: np.ndarray  # H x W x 3 uint8
    label: np.ndarray  # H x W uint8, 0 = background, no void border
    objects: list  # (class, polygon, visible mask) in drawing order, bottom first


def render_scene(rng: np.random.Generator, h: int, w: int, max_objects: int) -> Scene:
    """One image: 1..max_objects objects over background, later objects occluding earlier ones."""
    image = _background(rng, h, w)
    label = np.zeros((h, w), np.uint8)
    objects = []
    short = min(h, w)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(1, SCENE_CLASSES))
        look = appearance(cls)
        rx, ry = (short * rng.uniform(0.18, 0.32, size=2)).tolist()
        cx, cy = rng.uniform(rx * 0.6, w - rx * 0.6), rng.uniform(ry * 0.6, h - ry * 0.6)
        polygon = _polygon(look.shape, cx, cy, rx, ry, rng.uniform(-0.4, 0.4))
        mask = _fill(polygon, h, w)
        if mask.sum() < 64:
            continue
        shade = rng.uniform(0.85, 1.1)
        pattern = _texture(look.texture, look.period, h, w)[..., None]
        colour = np.array(look.colour, np.float32) * shade * (1.0 - 0.4 * pattern)
        image[mask] = colour[mask]
        label[mask] = cls
        for other in objects:
            other[2][mask] = False
        objects.append([cls, polygon, mask])
    image = image + rng.normal(0.0, 6.0, size=image.shape)
    return Scene(image.clip(0, 255).astype(np.uint8), label, [tuple(o) for o in objects])


def _image_sizes(rng: np.random.Generator, spec: SyntheticSpec):
    short = int(rng.integers(spec.min_side, spec.max_side + 1))
    long = int(short * rng.uniform(1.0, 1.5))
    return (short, long) if rng.random() < 0.5 else (long, short)


def _scenes(spec: SyntheticSpec, split: str, count: int, min_foreground: int = 0):
    """Deterministic scenes of one split; the split name is part of the seed so splits never overlap."""
    rng = np.random.default_rng([spec.seed, sum(split.encode())])
    made = 0
    while made < count:
        h, w = _image_sizes(rng, spec)
        scene = render_scene(rng, h, w, spec.max_objects)
        if (scene.label > 0).sum() <= min_foreground:
            continue
        yield f"{split}_{made:05d}", scene
        made += 1


def _void_border(label: np.ndarray) -> np.ndarray:
    """VOC style: a 255 band along every object boundary."""
    img = Image.fromarray(label)
    edges = np.asarray(img.filter(ImageFilter.MaxFilter(3))) != np.asarray(img.filter(ImageFilter.MinFilter(3)))
    return np.where(edges, 255, label).astype(np.uint8)


def _write_listed(base: Path, image_dir: str, list_dir: str, spec: SyntheticSpec, save_mask) -> None:
    """A VOC-style layout under `base`: JPEG images, a mask per image (`save_mask(scene, name)`), split lists."""
    lists = {}
    for split, count in (("train", spec.num_train), ("val", spec.num_val)):
        lists[split] = []
        for name, scene in _scenes(spec, split, count):
            Image.fromarray(scene.image).save(base / image_dir / f"{name}.jpg", quality=92)
            save_mask(scene, name)
            lists[split].append(name)
    lists["trainval"] = lists["train"] + lists["val"]
    for split, names in lists.items():
        (base / list_dir / f"{split}.txt").write_text("".join(n + "\n" for n in names))


def write_voc(root, spec: SyntheticSpec) -> Path:
    """Write <root>/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation} and return root."""
    from gluoncv.utils.viz import get_color_pallete

    root = Path(root)
    base = root / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    _write_listed(base, "JPEGImages", "ImageSets/Segmentation", spec, lambda scene, name: get_color_pallete(
        _void_border(scene.label), "pascal_voc").save(base / "SegmentationClass" / f"{name}.png"))
    return root


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: column-major run lengths, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def write_coco(root, spec: SyntheticSpec) -> Path:
    """Write <root>/{train2017,val2017}/ and <root>/annotations/instances_{train,val}2017.json."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    category_ids = coco_category_ids()
    categories = [{"id": cid, "name": COCO_NAMES[cid], "supercategory": "object"} for cid in sorted(COCO_NAMES)]
    for split, count in (("train", spec.num_train), ("val", spec.num_val)):
        folder = root / f"{split}2017"
        folder.mkdir(exist_ok=True)
        images, annotations = [], []
        # GluonCV keeps only images with more than 1000 labelled pixels.
        for index, (name, scene) in enumerate(_scenes(spec, split, count, min_foreground=1000)):
            image_id = index + 1
            file_name = f"{image_id:012d}.jpg"
            Image.fromarray(scene.image).save(folder / file_name, quality=92)
            h, w = scene.label.shape
            images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
            # GluonCV gives a pixel to the first annotation that covers it: list the top object first.
            for cls, polygon, visible in reversed(scene.objects):
                cat = category_ids[cls]
                ys, xs = np.nonzero(visible)
                if xs.size == 0:
                    continue
                crowd = len(annotations) % 4 == 3
                segmentation = _uncompressed_rle(visible) if crowd else [[c for pt in polygon for c in pt]]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                    "segmentation": segmentation, "area": float(visible.sum()), "iscrowd": int(crowd),
                    "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                })
            corner = [[0.0, 0.0, 6.0, 0.0, 6.0, 6.0, 0.0, 6.0]]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": DISTRACTOR_CATEGORY,
                "segmentation": corner, "area": 36.0, "iscrowd": 0, "bbox": [0.0, 0.0, 6.0, 6.0],
            })
        doc = {"info": {"description": f"segcheck synthetic COCO ({spec.digest()})"}, "images": images,
               "annotations": annotations, "categories": categories}
        atomic.write_json(root / "annotations" / f"instances_{split}2017.json", doc)
    return root


# Cityscapes label ids that GluonCV maps to its 19 train ids, in train-id order.
CITYS_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


def _outlined(label: np.ndarray, values: np.ndarray, void: int) -> np.ndarray:
    """`values` (a relabelled scene) with `void` along every object boundary."""
    edges = _void_border(label) == 255
    return np.where(edges, void, values).astype(np.uint8)


def write_ade20k(root, spec: SyntheticSpec) -> Path:
    """Write <root>/ADEChallengeData2016/{images,annotations}/{training,validation}/ (150 classes, 0 unlabelled)."""
    base = Path(root) / "ADEChallengeData2016"
    for split, folder, count in (("train", "training", spec.num_train), ("val", "validation", spec.num_val)):
        (base / "images" / folder).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for index, (_, scene) in enumerate(_scenes(spec, split, count)):
            name = f"ADE_{split}_{index + 1:08d}"
            Image.fromarray(scene.image).save(base / "images" / folder / f"{name}.jpg", quality=92)
            values = 1 + (scene.label.astype(np.int64) * 7) % 150  # class c of the scene -> ADE label 1 + 7c mod 150
            Image.fromarray(_outlined(scene.label, values, 0), mode="L").save(base / "annotations" / folder / f"{name}.png")
    return Path(root)


CITIES = {"train": ("aachen", "bremen"), "val": ("frankfurt", "lindau")}  # Cityscapes' splits hold different cities


def write_citys(root, spec: SyntheticSpec) -> Path:
    """Write <root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_labelIds.png."""
    root = Path(root)
    for split, count in (("train", spec.num_train), ("val", spec.num_val)):
        cities = CITIES[split]
        for index, (_, scene) in enumerate(_scenes(spec, split, count)):
            city = cities[index % len(cities)]
            stem = f"{city}_{index:06d}_000019"
            for sub in ("leftImg8bit", "gtFine"):
                (root / sub / split / city).mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene.image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            values = np.asarray(CITYS_LABEL_IDS)[scene.label.astype(np.int64) % len(CITYS_LABEL_IDS)]
            Image.fromarray(_outlined(scene.label, values, 0), mode="L").save(
                root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
    return root


def write_pascal_aug(root, spec: SyntheticSpec) -> Path:
    """Write <root>/VOCaug/dataset/{img/*.jpg, cls/*.mat, train.txt, val.txt, trainval.txt} (SBD's layout)."""
    from scipy.io import savemat

    base = Path(root) / "VOCaug" / "dataset"
    for sub in ("img", "cls"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    _write_listed(base, "img", "", spec,
                  lambda scene, name: savemat(base / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": scene.label}}))
    return Path(root)


WRITERS = {"pascal_voc": write_voc, "coco": write_coco, "pascal_aug": write_pascal_aug, "ade20k": write_ade20k, "citys": write_citys}


def ensure(cache_dir, dataset: str, spec: SyntheticSpec) -> Path:
    """The synthetic `dataset` (GluonCV's key) under `cache_dir`, generated once and published atomically."""
    final = Path(cache_dir) / "datasets" / f"synthetic-{dataset}-{spec.digest()}"
    if (final / ".complete").is_file():
        return final
    with atomic.staged_dir(final) as tmp:
        WRITERS[dataset](tmp, spec)
        (tmp / ".complete").write_text(json.dumps(asdict(spec)) + "\n")
    return final
