"""Deploy: export a hybridized model to <prefix>-symbol.json and <prefix>-0000.params, and import it back.

Also loads the INT8 symbols GluonCV ships for the six seed models (get_model('fcn_resnet101_voc_int8'))
without its network-bound path: the symbol comes from GluonCV's own compressed copy and the weights
from a local FP32 network.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import mxnet as mx

from .. import atomic
from ..config.networks import Network
from ..errors import SegcheckError


def files(prefix) -> tuple[Path, Path]:
    prefix = str(prefix)
    return Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")


def digest(prefix) -> str:
    """The deploy pair's contents (symbol, then params), as the INT8 key of a shipped INT8 file: export:<sha256[:16]>.
    A missing file is one error naming it."""
    found = []
    for path in files(prefix):
        if not path.is_file():
            raise SegcheckError(f"{path}: not found; fix the configuration's int8.export (or --model-prefix)")
        found.append(atomic.digest_of(path))
    return "export:" + hashlib.sha256("\n".join(found).encode()).hexdigest()[:16]


def export(block: mx.gluon.HybridBlock, prefix) -> tuple[Path, Path]:
    """Write the seed's deploy pair for `block` (already run once); each file replaced atomically."""
    symbol, params = files(prefix)
    folder = symbol.parent
    atomic.ensure_writable(folder, "choose a writable --model-prefix")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        staged = Path(tmp) / symbol.name.replace("-symbol.json", "")
        unrun = SegcheckError(f"{prefix}: the model has not run since it was hybridized, so it has no graph to export; run it once first")
        try:
            block.export(str(staged), epoch=0)
        except RuntimeError:
            raise unrun from None
        if not mx.nd.load(f"{staged}-0000.params"):
            raise unrun
        os.replace(f"{staged}-0000.params", params)
        os.replace(f"{staged}-symbol.json", symbol)
    return symbol, params


def round_trip(block: mx.gluon.HybridBlock, prefix, inputs) -> None:
    """The seed's deploy step, checked: `block` exported to `prefix` and imported again as the seed's --deploy does
    must give its main output exactly on each of `inputs`; an AssertionError naming the mismatch where it does not."""
    import numpy as np

    from .build import logits  # build imports this module

    export(block, prefix)
    deployed = load(prefix)
    for x in inputs:
        np.testing.assert_array_equal(logits(deployed, x).asnumpy(), logits(block, x).asnumpy())


def graph(block: mx.gluon.HybridBlock) -> mx.sym.Symbol:
    """The graph a hybridized block runs (fused or quantized), as HybridBlock.export would write it, kept in memory."""
    cached = getattr(block, "_cached_graph", ())
    if not cached:
        raise SegcheckError("the model has not run since it was hybridized, so it has no graph yet; run it once first")
    return cached[1]


def graph_json(block: mx.gluon.HybridBlock) -> str:
    """graph(block) as the JSON text of a -symbol.json file."""
    return graph(block).tojson()


def load(prefix) -> mx.gluon.SymbolBlock:
    """Import a deploy pair as the seed's --deploy does, with one clear error per broken file."""
    symbol, params = files(prefix)
    for path in (symbol, params):
        if not path.is_file():
            raise SegcheckError(f"{path}: not found; run the calibration first or fix --model-prefix")
    try:
        json.loads(symbol.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SegcheckError(f"{symbol}: not a valid symbol file ({err}); export the model again") from None
    try:
        block = mx.gluon.SymbolBlock.imports(str(symbol), ["data"], str(params), ctx=mx.cpu())
    except (mx.base.MXNetError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SegcheckError(f"{params}: cannot be loaded into {symbol.name} ({first}); export the model again") from None
    block.hybridize(static_alloc=True, static_shape=True)
    return block


GLUONCV_SYMBOL_PREFIX = {"fcn": "fcn0_", "psp": "pspnet0_", "deeplab": "deeplabv30_"}
GLUONCV_INT8_CROP = 480  # the shipped symbols are fixed to 480x480 inputs


def gluoncv_int8_symbol(network: Network) -> str:
    """The INT8 symbol JSON GluonCV ships for `network` (one of the six ResNet-101 seed models)."""
    from gluoncv.model_zoo.quantized.quantized import _compressed_int8_json
    from gluoncv.utils.compress_json import get_compressed_model

    name = f"{network.name}_int8"
    if name not in _compressed_int8_json:
        raise SegcheckError(f"GluonCV ships no INT8 symbol for {network.name}; it has {', '.join(sorted(_compressed_int8_json))}")
    return get_compressed_model(name, _compressed_int8_json)


def gluoncv_int8_block(network: Network, fp32_with_aux: mx.gluon.HybridBlock) -> mx.gluon.SymbolBlock:
    """GluonCV's shipped INT8 symbol bound to the (initialised) weights of a local FP32 network built with aux=True.

    The network's own name prefix is mapped onto the one the shipped symbol uses, and each parameter is
    filed as the symbol's argument or auxiliary state, as HybridBlock.export would file it.
    """
    text = gluoncv_int8_symbol(network)
    aux_states = set(mx.sym.load_json(text).list_auxiliary_states())
    ours, expected = fp32_with_aux.prefix, GLUONCV_SYMBOL_PREFIX[network.arch]
    params = {}
    for name, param in fp32_with_aux.collect_params().items():
        key = name.replace(ours, expected, 1)
        params[f"{'aux' if key in aux_states else 'arg'}:{key}"] = param.data()
    # SymbolBlock.imports, without writing the parameters to a file to read them back
    block = mx.gluon.SymbolBlock(mx.sym.load_json(text), mx.sym.var("data"))
    block.collect_params().setattr("grad_req", "null")
    block.collect_params().load_dict(params, ctx=mx.cpu(), cast_dtype=True, dtype_source="saved")
    block.hybridize(static_alloc=True, static_shape=True)
    return block
