"""The seed's evaluation path, built here from GluonCV and MXNet alone, gives segcheck's figures exactly.

GluonCV's get_segmentation_dataset in mode=val at batch 1, gluoncv.utils.metrics.SegmentationMetric, and
MXNet's quantize_net calibrated naively on the same 32 training images (GluonCV's DataLoader, batches
of 16), on the same weights and files. FP32 runs fused onto oneDNN in both paths (hybridize(backend=
'MKLDNN'), as segcheck gates it). This is what makes real-tier figures comparable with the seed's table.
"""

import mxnet as mx
import numpy as np

from segcheck.data import loaders
from segcheck.measure.evaluate import evaluate
from segcheck.models import pipeline

MODEL = "fcn_resnet101_voc"
IMAGES = 8


def _seed_metric(model, dataset, count, nclass):
    from gluoncv.utils.metrics import SegmentationMetric

    metric = SegmentationMetric(nclass)
    for i in range(count):
        image, mask = dataset[i]
        out = model(image.expand_dims(0))
        metric.update(mask.expand_dims(0), out[0] if isinstance(out, (list, tuple)) else out)
    return metric


def test_the_seeds_evaluation_path_gives_segchecks_figures_exactly(segcheck):
    from gluoncv.data import get_segmentation_dataset
    from gluoncv.model_zoo import get_model
    from mxnet.contrib.quantization import quantize_net
    from mxnet.gluon.data.vision import transforms

    mc = segcheck.model_config(MODEL)
    root, _ = pipeline.dataset_root(mc)
    crop = mc.crop_size
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize([.485, .456, .406], [.229, .224, .225])])
    val = get_segmentation_dataset("pascal_voc", root=str(root), split="val", mode="val", transform=transform,
                                   base_size=crop, crop_size=crop)
    # GluonCV's VOC split 'train' reads trainval.txt, whose first 32 images are train.txt's first 32
    train = get_segmentation_dataset("pascal_voc", root=str(root), split="train", mode="val", transform=transform,
                                     base_size=crop, crop_size=crop)

    def network():
        net = get_model(MODEL, pretrained=False, pretrained_base=False, crop_size=crop, base_size=crop, aux=False)
        net.load_parameters(str(pipeline.fp32_params(mc)), ctx=mx.cpu())
        return net

    fp32 = network()
    fp32.hybridize(backend="MKLDNN", static_alloc=True, static_shape=True)
    calib = mx.gluon.data.DataLoader(train, batch_size=mc.calib.batch_size, shuffle=False, last_batch="keep")
    int8 = quantize_net(network(), quantized_dtype=mc.calib.dtype, calib_mode=mc.calib.mode, calib_data=calib,
                        num_calib_examples=mc.calib.num_examples, ctx=mx.cpu())
    int8.hybridize(static_alloc=True, static_shape=True)

    case = segcheck.case(MODEL)
    assert case.val.ids[:IMAGES] == tuple(n.strip() for n in (root / "VOC2012/ImageSets/Segmentation/val.txt").read_text().split()[:IMAGES])
    for precision, seed_model in (("fp32", fp32), ("int8", int8)):
        seed = _seed_metric(seed_model, val, IMAGES, case.val.num_classes)
        matrix = evaluate(case.model(precision), case.val, loaders.first(case.val, IMAGES)).matrix
        ours = matrix.matrix
        tp, labelled, predicted = np.diag(ours), ours.sum(axis=1), ours.sum(axis=0)
        assert int(seed.total_correct) == int(tp.sum()) and int(seed.total_label) == int(ours.sum()), precision
        np.testing.assert_array_equal(seed.total_inter, tp)
        np.testing.assert_array_equal(seed.total_union, labelled + predicted - tp)
        pix_acc, miou = seed.get()
        scores = matrix.compute("gluoncv")
        assert (round(100 * scores.pix_acc, 4), round(100 * scores.miou, 4)) == (round(100 * pix_acc, 4), round(100 * miou, 4))
