"""The seed's evaluation path, built here from GluonCV and MXNet alone and from the seed's own text, gives segcheck's
figures exactly, image for image.

The seed (../shared/reference/seed-semantic-segmentation-int8.md): GluonCV's get_segmentation_dataset in mode=val at
batch 1, gluoncv.utils.metrics.SegmentationMetric, and quantize_net calibrated naively on the val images in order
(its test.py builds the calibration loader from the evaluation set). The seed says 480x480 and 5 x 32 images; the
synthetic tier's 2 x 16 calibration images and 48 val images stand in for it, at 32 px rather than the tier's 64: the
wiring is what is compared, and at 32 px the FCN still predicts and hits every one of VOC's 21 classes (FP32 pixAcc
82.6 %), for a quarter of the pixels (5 s less a run). Nothing below reads segcheck's configuration: segcheck's side is
configured to the same literal protocol (calibration split val), and must agree.
"""

import gc

import mxnet as mx
import numpy as np

from segcheck.config.recipes import CalibRecipe
from segcheck.data import loaders, synthetic
from segcheck.data.kinds import DATASETS
from segcheck.measure.evaluate import evaluate
from segcheck.models import pipeline

MODEL = "fcn_resnet101_voc"
# The seed's protocol at 32 px: mode=val, crop, batch 1, naive on the first batches x size val images.
CROP, BATCH, CALIB_BATCHES, CALIB_BATCH_SIZE = 32, 1, 2, 16


def _seed_metric(model, dataset, count, nclass):
    from gluoncv.utils.metrics import SegmentationMetric

    metric = SegmentationMetric(nclass)
    for i in range(count):
        image, mask = dataset[i]
        out = model(image.expand_dims(0))
        metric.update(mask.expand_dims(0), out[0] if isinstance(out, (list, tuple)) else out)
    return metric


def _seed_val(root):
    from gluoncv.data import get_segmentation_dataset
    from mxnet.gluon.data.vision import transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize([.485, .456, .406], [.229, .224, .225])])
    return get_segmentation_dataset("pascal_voc", root=str(root), split="val", mode="val", transform=transform,
                                    base_size=CROP, crop_size=CROP)


def _seed_fused(network):
    """The seed's fused FP32, hybridize(backend='MKLDNN'); where MXNet 1.8's subgraph builder breaks on it ("Check
    failed: input_nid < simple_nodes->size()"), the same MKLDNN pass through MXNet's own symbol API."""
    net = network()
    try:
        net.hybridize(backend="MKLDNN", static_alloc=True, static_shape=True)
        net(mx.nd.zeros((1, 3, CROP, CROP)))[0].wait_to_read()
        return net
    except mx.base.MXNetError as err:
        if "input_nid < simple_nodes->size()" not in str(err):
            raise
    net = network()
    graph = net(mx.sym.var("data"))[0].get_backend_symbol("MKLDNN")
    return mx.gluon.SymbolBlock(graph, mx.sym.var("data"), params=net.collect_params())


def test_the_seeds_evaluation_path_gives_segchecks_figures_exactly(segcheck):
    from gluoncv.model_zoo import get_model
    from mxnet.contrib.quantization import quantize_net

    seeded = segcheck.model_config(MODEL)
    mc = seeded.with_(crop_size=CROP, num_images=loaders.ALL, run=seeded.run.with_(batch_size=BATCH),
                      calib=CalibRecipe("naive", "auto", CALIB_BATCHES, CALIB_BATCH_SIZE, split="val"))
    root, _ = pipeline.dataset_root(mc)
    val = _seed_val(root)

    def network():
        net = get_model(MODEL, pretrained=False, pretrained_base=False, crop_size=CROP, base_size=CROP, aux=False)
        net.load_parameters(str(pipeline.fp32_params(mc)), ctx=mx.cpu())
        return net

    def seed_int8():
        calib = mx.gluon.data.DataLoader(val, batch_size=CALIB_BATCH_SIZE, shuffle=False, last_batch="keep")
        int8 = quantize_net(network(), quantized_dtype="auto", calib_mode="naive", calib_data=calib,
                            num_calib_examples=CALIB_BATCHES * CALIB_BATCH_SIZE, ctx=mx.cpu())
        int8.hybridize(static_alloc=True, static_shape=True)
        return int8

    split = pipeline.open_split(mc, "val")
    assert len(split) == len(val) >= 48 and split.ids == tuple((root / "VOC2012/ImageSets/Segmentation/val.txt").read_text().split())
    # each precision's two models are built, compared and dropped before the next two: four ResNet-101s at once held 3.6 GB
    seeds = {"fp32": lambda: _seed_fused(network), "int8": seed_int8}
    ours = {"fp32": lambda: pipeline.fp32_net(mc), "int8": lambda: pipeline.int8_model(mc).block}
    for precision in ("fp32", "int8"):
        seed = _seed_metric(seeds[precision](), val, len(val), split.num_classes)
        gc.collect()  # a network is a reference cycle: the seed's goes before segcheck's is built
        matrix = evaluate(ours[precision](), split, loaders.first(split, loaders.ALL), BATCH).matrix.matrix
        gc.collect()
        tp, labelled, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
        assert (tp > 0).all(), f"{precision}: classes never hit at {CROP} px; the comparison would skip them"
        assert int(seed.total_correct) == int(tp.sum()) and int(seed.total_label) == int(matrix.sum()), precision
        np.testing.assert_array_equal(seed.total_inter, tp)
        np.testing.assert_array_equal(seed.total_union, labelled + predicted - tp)


def test_on_the_real_voc2012_layout_calibration_and_evaluation_read_the_seeds_images(tmp_path):
    """VOC2012's trainval.txt is train + val sorted together, so val images sit among train ones (2007_000033, a val
    image, is second). GluonCV reads split 'train' from trainval.txt: the seed's val calibration and segcheck's
    calib-split val must still pick the same images, and segcheck's train split must hold no val image."""
    root = synthetic.write_voc(tmp_path / "voc", synthetic.SyntheticSpec(seed=5, num_train=12, num_val=8))
    lists = root / "VOC2012/ImageSets/Segmentation"
    train, val = lists.joinpath("train.txt").read_text().split(), lists.joinpath("val.txt").read_text().split()
    mixed = [n for pair in zip(train, val) for n in pair] + train[len(val):]  # train, val, train, val, ...
    names = {old: f"2007_{i:06d}" for i, old in enumerate(mixed)}
    interleaved = sorted(names[n] for n in train + val)  # as VOC2012: sorted, the second image a val one
    for kind in ("JPEGImages", "SegmentationClass"):
        for old, new in names.items():
            for path in (root / "VOC2012" / kind).glob(f"{old}.*"):
                path.rename(path.with_name(new + path.suffix))
    lists.joinpath("train.txt").write_text("\n".join(sorted(names[n] for n in train)) + "\n")
    lists.joinpath("val.txt").write_text("\n".join(sorted(names[n] for n in val)) + "\n")
    lists.joinpath("trainval.txt").write_text("\n".join(interleaved) + "\n")
    renamed_val = sorted(names[n] for n in val)
    assert interleaved[1] == renamed_val[0] and interleaved != sorted(names[n] for n in train) + renamed_val

    voc = DATASETS["pascal_voc"]
    seed = _seed_val(root)
    seed_ids = [mask.rpartition("/")[2].rpartition(".")[0] for mask in seed.masks]
    ours = loaders.open_split(voc, root, "val", CROP, tmp_path / "cache")
    assert list(ours.ids) == seed_ids == renamed_val
    recipe = CalibRecipe("naive", "auto", 1, 4, split="val")
    calibration = loaders.open_split(voc, root, recipe.split, CROP, tmp_path / "cache").ids[:recipe.num_examples]
    assert list(calibration) == seed_ids[:4]
    segcheck_train = loaders.open_split(voc, root, "train", CROP, tmp_path / "cache")
    assert not set(segcheck_train.ids) & set(renamed_val)
    from gluoncv.data import get_segmentation_dataset

    gluoncv_train = get_segmentation_dataset("pascal_voc", root=str(root), split="train", mode="val")
    assert {m.rpartition("/")[2].rpartition(".")[0] for m in gluoncv_train.masks} & set(renamed_val), \
        "GluonCV's train split is trainval.txt: it holds val images, which is why segcheck reads train.txt itself"
