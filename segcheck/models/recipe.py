"""How INT8 thresholds are found (CalibRecipe): plain data, importable without MXNet."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import SegcheckError

CALIB_MODES = ("naive", "entropy", "none")
QUANTIZED_DTYPES = ("auto", "int8", "uint8")

# Layers kept in FP32 per architecture, as dotted Gluon child paths. Empty, as in the seed's test.py:
# measured on the synthetic tier, excluding the classifier changed INT8 accuracy by less than the noise.
EXCLUDE_LAYERS = {"fcn": (), "psp": (), "deeplab": ()}


@dataclass(frozen=True)
class CalibRecipe:
    """The seed's default is naive on 5 batches x 32 images."""

    mode: str = "naive"
    dtype: str = "auto"
    num_batches: int = 5
    batch_size: int = 32
    split: str = "train"  # disjoint from the evaluated val images; "val" reproduces the seed
    exclude: tuple = field(default=())  # extra dotted layer paths kept in FP32

    def __post_init__(self):
        if self.mode not in CALIB_MODES:
            raise SegcheckError(f"unknown calibration mode {self.mode!r}; choose one of {', '.join(CALIB_MODES)}")
        if self.dtype not in QUANTIZED_DTYPES:
            raise SegcheckError(f"unknown quantized dtype {self.dtype!r}; choose one of {', '.join(QUANTIZED_DTYPES)}")
        for name in ("num_batches", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SegcheckError(f"calibration {name} must be a positive integer, got {value!r}")

    @property
    def num_examples(self) -> int:
        return 0 if self.mode == "none" else self.num_batches * self.batch_size

    def label(self) -> str:
        if self.mode == "none":
            return f"none/{self.dtype}"
        return f"{self.mode}/{self.dtype}/{self.num_batches}x{self.batch_size}/{self.split}"

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
