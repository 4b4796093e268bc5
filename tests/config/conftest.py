"""Stand-ins for components that later issues bring (thinning extensions, quantizers).

With them registered, the original's schedules that use those classes can be checked for
everything else (names, timing, arguments) already. They replace the registries only for the test
that asks for them.
"""

from __future__ import annotations

import sys
import types

import pytest

from distiller.registry import Registry
from distiller.scheduler import EXTENSIONS, ExtensionPolicy


class StubRemover(ExtensionPolicy):
    """Signature of the original's FilterRemover/ChannelRemover/StructureRemover."""

    def __init__(self, name, thinning_func_str, arch, dataset):
        super().__init__()
        self.name = name
        self.thinning_func_str = thinning_func_str
        self.arch, self.dataset = arch, dataset


class StubPACTQuantizer:
    def __init__(
        self,
        model,
        optimizer,
        bits_activations=32,
        bits_weights=32,
        bits_bias=None,
        overrides=None,
        act_clip_init_val=8.0,
    ):
        self.model, self.optimizer, self.overrides = model, optimizer, overrides
        self.prepared = 0

    def prepare_model(self, dummy_input=None):
        self.prepared += 1

    def quantize_params(self):
        pass


class StubPostTrainLinearQuantizer:
    def __init__(
        self,
        model,
        bits_activations=8,
        bits_parameters=8,
        bits_accum=32,
        overrides=None,
        mode="SYMMETRIC",
        clip_acts="NONE",
        per_channel_wts=False,
        model_activation_stats=None,
        fp16=False,
        clip_n_stds=None,
        clip_half_range=False,
        scale_approx_mult_bits=None,
        inputs_quant_auto_fallback=True,
        save_fp_weights=False,
    ):
        self.model = model


@pytest.fixture
def stub_extensions(monkeypatch):
    """A registry of extensions that also holds stand-in thinning extensions."""
    import distiller.scheduler as scheduler_pkg

    registry: Registry = Registry("extension")
    for name, cls in EXTENSIONS.items():
        registry.register(name, cls)
    for name in ("FilterRemover", "ChannelRemover", "StructureRemover"):
        if name not in registry:
            registry.register(name, type(name, (StubRemover,), {}))
    monkeypatch.setattr(scheduler_pkg, "EXTENSIONS", registry)
    return registry


@pytest.fixture
def stub_quantizers(monkeypatch):
    """A ``distiller.quantization`` with stand-in quantizers, when the real one does not exist yet."""
    try:
        import distiller.quantization as real  # noqa: F401

        registry = real.QUANTIZERS
        missing = [n for n in ("PACTQuantizer", "PostTrainLinearQuantizer") if n not in registry]
        if not missing:
            return registry
    except ModuleNotFoundError:
        pass
    module = types.ModuleType("distiller.quantization")
    module.QUANTIZERS = Registry("quantizer")
    module.QUANTIZERS.register("PACTQuantizer", StubPACTQuantizer)
    module.QUANTIZERS.register("PostTrainLinearQuantizer", StubPostTrainLinearQuantizer)
    monkeypatch.setitem(sys.modules, "distiller.quantization", module)
    return module.QUANTIZERS
