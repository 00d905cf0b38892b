"""Make this example's stand-ins for a team's own files, so that it runs anywhere without downloads.

data/VOCdevkit: a VOC-layout dataset from segcheck's generator; weights/my_fcn.params: an FCN (ResNet-50)
fitted on its train split by segcheck's seeded fit. Your repository has real ones instead.
"""

from pathlib import Path

from segcheck.config.networks import Network
from segcheck.config.recipes import FitRecipe
from segcheck.data import loaders, synthetic
from segcheck.data.kinds import DATASETS
from segcheck.models import build, fit

HERE = Path(__file__).resolve().parent
SPEC = synthetic.SyntheticSpec(seed=11, num_train=32, num_val=16)
RECIPE = FitRecipe(seed=11, num_images=32)


def main() -> None:
    root = synthetic.write_voc(HERE / "data" / "VOCdevkit", SPEC)
    network = Network.from_parts("fcn", "resnet50", "pascal_voc")
    net = build.build(network, RECIPE.crop_size)
    fit.seeded_init(net, RECIPE.crop_size, RECIPE)
    train = loaders.open_split(DATASETS["pascal_voc"], root, "train", RECIPE.crop_size, HERE)
    (images, labels, _), = loaders.batches(train, loaders.first(train, RECIPE.num_images), RECIPE.num_images)
    fit.fit(net, network.arch, images, labels, RECIPE)
    (HERE / "weights").mkdir(exist_ok=True)
    net.save_parameters(str(HERE / "weights" / "my_fcn.params"))
    print(f"wrote {root} and {HERE / 'weights' / 'my_fcn.params'}")


if __name__ == "__main__":
    main()
