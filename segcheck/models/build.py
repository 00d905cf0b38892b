"""Build GluonCV's segmentation networks at an explicit crop size, and load weights strictly.

Networks are always built with pretrained=False and pretrained_base=False: segcheck never downloads.
Pretrained weights come only from a file already in GluonCV's model store layout
($MXNET_HOME/models/<name>-<sha1[:8]>.params), checked against GluonCV's own sha1.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
from pathlib import Path

import mxnet as mx

from .. import atomic
from ..config.networks import Network
from ..config.recipes import check_crop
from ..errors import MissingResource, SegcheckError
from . import export


def build(network: Network, crop_size: int, aux: bool = False) -> mx.gluon.HybridBlock:
    """GluonCV's own architecture for `network` (auxiliary head only on request), uninitialised. Its base size is the
    crop size: GluonCV reads a network's base size only in multi-size evaluation, which segcheck does not run."""
    from gluoncv.model_zoo import get_model
    from gluoncv.model_zoo.segbase import get_segmentation_model

    if network.export is not None:
        raise SegcheckError(f"{network.export}: an exported network is imported, not built")
    check_crop(crop_size)
    kwargs = dict(pretrained=False, pretrained_base=False, aux=aux, crop_size=crop_size, base_size=crop_size)
    with contextlib.redirect_stdout(io.StringIO()):  # PSPNet prints its crop size
        if network.zoo:
            return get_model(network.zoo, **kwargs)
        return get_segmentation_model(model=network.arch, dataset=network.dataset, backbone=network.backbone, **kwargs)


def logits(model, x: mx.nd.NDArray) -> mx.nd.NDArray:
    """The main output: GluonCV networks return a tuple, exported and INT8 SymbolBlocks one array or a list."""
    out = model(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def child(block, path: str):
    """The sub-block at dotted Gluon child path `path` (e.g. head.block.4); KeyError when absent."""
    for name in path.split("."):
        block = block._children[name]
    return block


def layers(block, kind, prefix: str = ""):
    """(dotted path, layer) of every sub-block of type `kind`, depth first in definition order."""
    for name, sub in block._children.items():
        path = f"{prefix}{name}"
        if isinstance(sub, kind):
            yield path, sub
        yield from layers(sub, kind, path + ".")


def gluoncv_sha1(network: Network) -> str:
    from gluoncv.model_zoo import model_store

    sha1 = model_store._model_sha1.get(network.store_name)
    if sha1 is None:
        raise MissingResource(f"GluonCV publishes no pretrained weights for {network.store_name}; "
                              "give a weights file (weights = \"path.params\" in the configuration, --resume PATH on the command line)")
    return sha1


def store_path(network: Network, home: Path) -> Path:
    """Where GluonCV's model store keeps the pretrained file for `network`."""
    return Path(home) / "models" / f"{network.store_name}-{gluoncv_sha1(network)[:8]}.params"


def file_sha1(path: Path) -> str:
    return atomic.digest(path, "sha1")


def pretrained_file(network: Network, home: Path) -> Path:
    """The verified pretrained file; MissingResource when absent, SegcheckError when its sha1 is wrong."""
    path = store_path(network, home)
    name = network.store_name
    if not path.is_file():
        raise MissingResource(
            f"pretrained weights for {name} not found at {path}; run `segcheck fetch weights {name}`, or copy {path.name} "
            f"from a machine where gluoncv.model_zoo.get_model('{name}', pretrained=True) has run, "
            "or set $MXNET_HOME to the folder holding models/"
        )
    actual, expected = file_sha1(path), gluoncv_sha1(network)
    if actual != expected:
        raise SegcheckError(
            f"{path}: sha1 {actual} does not match GluonCV's {expected} for {name}; the file is damaged or "
            f"from another release: replace it (`segcheck fetch weights {name}`); the gate itself never downloads"
        )
    return path


def load_params(net: mx.gluon.Block, path, ignore_prefixes: tuple = (), keep_prefixes: tuple = ()) -> None:
    """Load a save_parameters() file into `net` for inference, refusing missing, unexpected or mis-shaped parameters.

    Saved parameters under `ignore_prefixes` may be absent from the network (GluonCV's files hold the
    auxiliary head); the network's own under `keep_prefixes` may be absent from the file and keep
    their values.
    """
    path = Path(path)
    if not path.is_file():
        raise SegcheckError(f"{path}: weights file not found; fix the path (weights = ... in the configuration, --resume)")
    try:
        saved = mx.nd.load(str(path))
    except mx.base.MXNetError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        raise SegcheckError(f"{path}: not a readable MXNet params file ({first}); delete it and rebuild or re-copy it") from None
    if not isinstance(saved, dict):
        raise SegcheckError(f"{path}: holds unnamed arrays, not a save_parameters() file; delete it and rebuild")
    params = net._collect_params_with_prefix()
    missing = sorted(k for k in set(params) - set(saved) if not k.startswith(keep_prefixes))
    extra = sorted(k for k in set(saved) - set(params) if not k.startswith(ignore_prefixes))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise SegcheckError(f"{path}: parameters do not match the network ({detail}); the file is for another model")
    for name, param in params.items():
        if name in saved and param.shape and all(param.shape) and tuple(param.shape) != saved[name].shape:
            raise SegcheckError(f"{path}: parameter {name} has shape {saved[name].shape}, the network expects {param.shape}")
    # load_parameters would read the file a second time; inference needs no gradient buffers
    net.collect_params().setattr("grad_req", "null")
    net.collect_params().load_dict({params[k].name: v for k, v in saved.items() if k in params}, ctx=mx.cpu(),
                                   allow_missing=bool(keep_prefixes))


def random_weights(net: mx.gluon.HybridBlock, crop_size: int, seed: int = 0) -> None:
    """Initialise `net` with He-normal weights drawn by numpy (MXNet's own initialisers take seconds for
    tens of millions of values): for timing probes and tests, never for the gate's seeded models. Such a network
    only infers, so it gets no gradient buffers (half the time of its first forward)."""
    import numpy as np

    net.collect_params().setattr("grad_req", "null")
    net.initialize(mx.init.Zero(), force_reinit=True)
    materialise(net, crop_size)
    rng = np.random.default_rng(seed)
    for name, param in sorted(net.collect_params().items()):
        if name.endswith(("gamma", "running_var")):
            param.set_data(mx.nd.ones(param.shape))
        elif name.endswith("weight"):
            scale = np.sqrt(2.0 / max(int(np.prod(param.shape[1:])), 1))
            param.set_data(mx.nd.array(rng.standard_normal(param.shape, dtype=np.float32) * scale))


def materialise(net: mx.gluon.HybridBlock, crop_size: int) -> None:
    """Run one forward so that deferred shapes are known."""
    net(mx.nd.zeros((1, 3, crop_size, crop_size)))[0].wait_to_read()


# MXNet 1.8's subgraph builder fails on GluonCV's segmentation graphs with this check (build_subgraph.cc)
SUBGRAPH_BUG = "input_nid < simple_nodes->size()"
log = logging.getLogger("segcheck.build")
# The routes this process took other than the one asked for (a fusion fallback), each said once: a run reports them.
FALLBACKS: list = []


def hybridize_takes_backend() -> bool:
    return "backend" in inspect.signature(mx.gluon.HybridBlock.hybridize).parameters


def fuse(net: mx.gluon.HybridBlock, crop_size: int) -> mx.gluon.HybridBlock:
    """The network hybridized onto oneDNN with operator fusion, run once.

    MXNet >= 1.7: hybridize(backend='MKLDNN') (Gluon ignores MXNET_SUBGRAPH_BACKEND; 1.9.1 names the
    backend MKLDNN). mxnet-mkl 1.6 has no backend argument, and where hybridize(backend=...) breaks (MXNet 1.8's
    subgraph builder fails on these graphs: "Check failed: input_nid < simple_nodes->size()" in build_subgraph.cc),
    the graph goes through the same MKLDNN pass (get_backend_symbol) and runs as a SymbolBlock on the network's
    own parameters.
    """
    if hybridize_takes_backend():
        try:
            net.hybridize(backend="MKLDNN", static_alloc=True, static_shape=True)
            materialise(net, crop_size)
            return net
        except mx.base.MXNetError as err:
            if SUBGRAPH_BUG not in str(err):
                raise
            route = (f"hybridize(backend='MKLDNN') failed on MXNet {mx.__version__} ({SUBGRAPH_BUG}): FP32 was fused through "
                     "get_backend_symbol('MKLDNN') instead, as a user of this MXNet would have to")
            log.info(route)
            if route not in FALLBACKS:
                FALLBACKS.append(route)
    net.hybridize(static_alloc=True, static_shape=True)
    materialise(net, crop_size)
    fused = export.graph(net).get_backend_symbol("MKLDNN")
    block = mx.gluon.SymbolBlock(fused, mx.sym.var("data"), params=net.collect_params())
    block.hybridize(static_alloc=True, static_shape=True)
    block(mx.nd.zeros((1, 3, crop_size, crop_size)))
    mx.nd.waitall()
    return block
