"""Make this example's stand-ins for a team's own files, so that it runs anywhere without downloads.

data/VOCdevkit: a VOC-layout dataset from segcheck's generator; weights/my_fcn.params: an FCN (ResNet-50)
fitted on its train split by segcheck's seeded fit. Your repository has real ones instead.
"""

import os
from pathlib import Path

from segcheck import atomic
from segcheck.config.networks import Network
from segcheck.config.recipes import FitRecipe
from segcheck.data import loaders, synthetic
from segcheck.data.kinds import DATASETS
from segcheck.models import build, fit

HERE = Path(__file__).resolve().parent
SPEC = synthetic.SyntheticSpec(seed=11, num_train=32, num_val=16)
RECIPE = FitRecipe(seed=11, num_images=32)


def main() -> None:
    """The dataset folder and the params file each appear whole or not at all."""
    root = HERE / "data" / "VOCdevkit"
    with atomic.staged_dir(root) as staging:
        synthetic.write_voc(staging, SPEC)
    network = Network.from_parts("fcn", "resnet50", "pascal_voc")
    net = build.build(network, RECIPE.crop_size)
    fit.seeded_init(net, RECIPE.crop_size, RECIPE)
    train = loaders.open_split(DATASETS["pascal_voc"], root, "train", RECIPE.crop_size, HERE)
    (images, labels, _), = loaders.batches(train, loaders.first(train, RECIPE.num_images), RECIPE.num_images)
    fit.fit(net, network.arch, images, labels, RECIPE)
    weights = HERE / "weights" / "my_fcn.params"
    atomic.ensure_writable(weights.parent)
    staged = weights.with_name(f".{weights.name}.tmp")
    try:
        net.save_parameters(str(staged))
        os.replace(staged, weights)
    finally:
        staged.unlink(missing_ok=True)
    print(f"wrote {root} and {weights}")


if __name__ == "__main__":
    main()
