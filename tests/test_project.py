"""The model configuration (segcheck.toml / [tool.segcheck]): the strict loader, and resolving models for a run."""

from pathlib import Path

import pytest

from segcheck.config import project
from segcheck.config.project import ConfigError
from segcheck.config.run import RunConfig, resolve
from segcheck.errors import MissingResource, SegcheckError

GOOD = """
baselines = "gate/baselines.json"
metric_convention = "present"
strict_changes = true
case_timeout = 900

[[models]]
name = "my_fcn"
model = "fcn"
backbone = "resnet50"
weights = "weights/my.params"
dataset = { name = "pascal_voc", root = "data/voc", crop_size = 96, num_images = 10 }
int8 = { mode = "entropy", batches = 2, batch_size = 4 }
tolerances = { miou_points = 2.5 }
min_speedup = { avx2 = 1.3 }

[[models]]
network = "psp_resnet101_citys"
int8 = { export = "shipped/psp-int8" }

[[models]]
name = "exported"
export = "exports/fp32"
dataset = { name = "ade20k", split = "train" }
"""


def test_a_configuration_loads_with_paths_read_from_its_folder(tmp_path):
    (tmp_path / "segcheck.toml").write_text(GOOD)
    p = project.find(tmp_path)
    assert p.path == tmp_path / "segcheck.toml" and p.baselines == tmp_path / "gate/baselines.json"
    assert (p.tier, p.metric_convention, p.strict_changes, p.case_timeout) == ("real", "present", True, 900.0)
    mine, psp, exported = p.models
    assert (mine.name, mine.network.name, mine.weights, mine.data.root) == (
        "my_fcn", "fcn_resnet50_voc", tmp_path / "weights/my.params", tmp_path / "data/voc")
    assert mine.recipe == {"mode": "entropy", "num_batches": 2, "batch_size": 4}
    assert (mine.tolerances, mine.min_speedup, mine.data.num_images) == ({"miou_points": 2.5}, {"avx2": 1.3}, 10)
    assert (psp.name, psp.data.name, psp.weights, psp.int8_export) == (
        "psp_resnet101_citys", "citys", project.STORE, tmp_path / "shipped/psp-int8")
    assert (exported.network.export, exported.weights, exported.data.split) == (tmp_path / "exports/fp32", None, "train")


def test_pyproject_tool_table_is_read_and_named_in_errors(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.segcheck]\n[[tool.segcheck.models]]\nnetwork = 3\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml: key 'tool.segcheck.models\[0\].network': expected a string, got 3"):
        project.find(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.segcheck]\n[[tool.segcheck.models]]\nnetwork = "fcn_resnet101_voc"\n')
    assert project.find(tmp_path).models[0].name == "fcn_resnet101_voc"


def test_no_configuration_is_none_and_two_are_an_error(tmp_path):
    assert project.find(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert project.find(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[tool.segcheck]\nmodels = []\n')
    (tmp_path / "segcheck.toml").write_text(GOOD)
    with pytest.raises(ConfigError, match="both segcheck.toml and \\[tool.segcheck\\] in pyproject.toml configure segcheck; keep one"):
        project.find(tmp_path)
    with pytest.raises(ConfigError, match="nowhere.toml: configuration file not found"):
        project.find(tmp_path, tmp_path / "nowhere.toml")
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: a folder, not a configuration file; name the segcheck.toml"):
        project.find(tmp_path, tmp_path)


MODEL = '[[models]]\nnetwork = "fcn_resnet101_voc"\n'


@pytest.mark.parametrize("text, key, problem", [
    ('colour = "red"\n' + MODEL, "colour", "unknown key"),
    ("", "models", "missing"),
    ("models = []", "models", "expected one or more [[models]] tables"),
    ('tier = "gold"\n' + MODEL, "tier", "'gold' is not one of synthetic, real"),
    ('metric_convention = "mean"\n' + MODEL, "metric_convention", "'mean' is not one of"),
    (MODEL + "seed = 3\n", "models[0].seed", "unknown key"),
    ('[[models]]\nnetwork = "fcn_resnet7_voc"\n', "models[0].network", "unknown model-zoo network 'fcn_resnet7_voc'"),
    ('[[models]]\nmodel = "fcn"\n', "models[0].backbone", "missing"),
    ('[[models]]\nmodel = "fcn"\nbackbone = "resnet50"\n', "models[0].dataset.name", "missing"),
    ('[[models]]\nmodel = "segnet"\nbackbone = "resnet50"\ndataset = {name = "citys"}\n', "models[0].model", "unknown model 'segnet'"),
    ('[[models]]\nnetwork = "fcn_resnet101_voc"\nexport = "x"\n', "models[0]", "exactly one of 'network'"),
    ('[[models]]\nbackbone = "resnet50"\nnetwork = "fcn_resnet101_voc"\n', "models[0].backbone", "only goes with 'model'"),
    ('[[models]]\nexport = "x"\nweights = "y.params"\ndataset = {name = "coco"}\n', "models[0].weights", "carries its weights"),
    ('[[models]]\nexport = "x"\n', "models[0].dataset.name", "does not say which dataset"),
    (MODEL + 'dataset = {name = "ade20k"}\n', "models[0].dataset.name", "predicts 21 classes but ade20k has 150"),
    (MODEL + 'dataset = {name = "kitti"}\n', "models[0].dataset.name", "unknown dataset 'kitti'"),
    (MODEL + 'dataset = {crop_size = "64"}\n', "models[0].dataset.crop_size", "expected an integer, got '64'"),
    (MODEL + 'dataset = {crop_size = 16}\n', "models[0].dataset.crop_size", "16 is below 32"),
    (MODEL + 'dataset = {base_size = 520}\n', "models[0].dataset.base_size", "has no effect: segcheck evaluates in GluonCV's mode=val"),
    (MODEL + 'dataset = {num_images = 0}\n', "models[0].dataset.num_images", "0 is below 1"),
    (MODEL + 'dataset = {split = "test"}\n', "models[0].dataset.split", "'test' is not one of train, val, trainval"),
    (MODEL + 'dataset = {path = "x"}\n', "models[0].dataset.path", "unknown key"),
    (MODEL + 'int8 = {export = "x", mode = "naive"}\n', "models[0].int8.mode", "has no effect with a shipped INT8 export"),
    (MODEL + 'int8 = {mode = "kl"}\n', "models[0].int8.mode", "'kl' is not one of naive, entropy, none"),
    (MODEL + 'int8 = {batches = true}\n', "models[0].int8.batches", "expected an integer, got True"),
    (MODEL + 'int8 = {split = "tra"}\n', "models[0].int8.split", "'tra' is not one of train, val, trainval"),
    (MODEL + 'int8 = {exclude = "head"}\n', "models[0].int8.exclude", "expected a list of strings"),
    ('[[models]]\nexport = "x"\ndataset = {name = "coco"}\nint8 = {exclude = ["head.block.4"]}\n', "models[0].int8.exclude", "an exported network does not have"),
    (MODEL + 'tolerances = {miou = 1}\n', "models[0].tolerances.miou", "unknown key"),
    (MODEL + 'tolerances = {miou_points = -1}\n', "models[0].tolerances.miou_points", "outside"),
    (MODEL + 'min_speedup = {avx2 = "fast"}\n', "models[0].min_speedup.avx2", "expected a number"),
    (MODEL + 'name = "my model"\n', "models[0].name", "must start with a letter or digit"),
    (MODEL + MODEL, "models[1].name", "'fcn_resnet101_voc' names two models"),
    (MODEL + 'weights = ""\n', "models[0].weights", "empty path"),
    (MODEL + 'peer = ["tensorrt"]\n', "models[0].peer[0]", "'tensorrt' is not one of onnxruntime, openvino"),
    (MODEL + 'peer = ["openvino", "openvino"]\n', "models[0].peer[1]", "'openvino' is named twice"),
    (MODEL + 'name = "fcn+openvino"\n', "models[0].name", "ends like a peer runtime's row"),
    ('case_timeout = 0\n' + MODEL, "case_timeout", "is outside"),
    ('strict_changes = "yes"\n' + MODEL, "strict_changes", "expected true or false"),
])
def test_malformed_configuration_is_one_error_naming_file_and_key(tmp_path, text, key, problem):
    path = tmp_path / "segcheck.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        project.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: key '{key}': ") and problem in message and "\n" not in message, message


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "segcheck.toml"
    path.write_text("[[models]\nnetwork = ")
    with pytest.raises(ConfigError, match=rf"^{path}: invalid TOML \("):
        project.load(path)
    results = tmp_path / "last-run.json"  # another kind of file given as the configuration says what one is
    results.write_text('{"format": 4}')
    with pytest.raises(ConfigError, match=r"; fix the file \(a configuration is segcheck.toml or pyproject.toml\)$"):
        project.load(results)


def _entry(tmp_path, text):
    (tmp_path / "segcheck.toml").write_text(text)
    return project.find(tmp_path).models[0]


def test_options_beat_the_configuration_which_beats_the_tier(tmp_path):
    entry = _entry(tmp_path, MODEL + 'dataset = {crop_size = 96, root = "voc"}\nint8 = {batches = 3}\n')
    run = RunConfig(tier="real", cache_dir=tmp_path / "cache")
    mc = resolve(entry, run)
    assert (mc.crop_size, mc.num_images, mc.calib.num_batches, mc.calib.batch_size) == (96, "all", 3, 32)
    assert (mc.root, mc.root_source, mc.weights.kind) == (tmp_path / "voc", "the configuration", "store")
    mc = resolve(entry, run.with_(crop_size=128, num_images=5, calib={"num_batches": 1}, roots={"pascal_voc": tmp_path / "opt"}))
    assert (mc.crop_size, mc.num_images, mc.calib.num_batches, mc.root, mc.root_source) == (128, 5, 1, tmp_path / "opt", "--voc-root")
    assert mc.setting() == {"mode": "val", "crop_size": 128, "batch_size": 1, "num_images": 5}


@pytest.mark.parametrize("tier", ["synthetic", "real"])
def test_a_calib_split_the_dataset_lacks_is_refused_when_the_run_is_configured(tmp_path, tier):
    run = RunConfig(tier=tier, cache_dir=tmp_path / "cache")
    with pytest.raises(SegcheckError, match=r"^--calib-split 'bogus': pascal_voc has the splits train, val, trainval; choose one$"):
        resolve(_entry(tmp_path, MODEL), run.with_(calib={"split": "bogus"}))
    assert resolve(_entry(tmp_path, MODEL), run.with_(calib={"split": "val"})).calib.split == "val"


def test_the_synthetic_tier_stands_in_only_for_seedable_models(tmp_path):
    run = RunConfig(tier="synthetic", cache_dir=tmp_path / "cache")
    seeded = resolve(_entry(tmp_path, MODEL), run)
    assert (seeded.weights.kind, seeded.root, seeded.crop_size, seeded.num_images) == ("seeded", None, 64, 48)
    assert set(seeded.setting()) == {"mode", "crop_size", "batch_size", "num_images", "seed", "fit", "data"}  # INT8 is keyed apart
    for text, why in ((MODEL + 'weights = "mine.params"\n', "its own weights file"),
                      ('[[models]]\nnetwork = "fcn_resnet50_ade"\n', "no seeded stand-in")):
        with pytest.raises(MissingResource, match=f"the synthetic tier has {why}.*run it with --tier real"):
            resolve(_entry(tmp_path, text), run)


def test_this_repository_configures_the_tutorials_six_models():
    p = project.find(Path(__file__).resolve().parents[1])
    assert [m.name for m in p.models] == ["fcn_resnet101_voc", "fcn_resnet101_coco", "psp_resnet101_voc", "psp_resnet101_coco",
                                          "deeplab_resnet101_voc", "deeplab_resnet101_coco"]
    assert p.tier == "synthetic" and all(m.weights == project.STORE and m.int8_export is None for m in p.models)
