"""One interface battery: every model and every engine through the same checks (sklearn's estimator checks).

A model module must keep the :class:`dichotomy.refimpl.models.Model` protocol, and every per-model fact the
package asks for must exist for every entry of ``MODELS``. An engine must keep the engine protocol
(refimpl/engine.py) on every model's small standard problem: the same parameter names, shapes and metrics as the
reference, steps counted, state that resumes bit for bit, and a reason (never a crash) for what it does not take.
A fourth model or engine is run through all of it by being registered.
"""

import dataclasses

import numpy as np
import pytest

from dichotomy import bench
from dichotomy.cli.train import OPTIONS
from dichotomy.experiments import presets
from dichotomy.kernels import BACKENDS, BackendUnavailable, get_backend
from dichotomy.peers import adapters, crosscheck
from dichotomy.refimpl import data, models
from dichotomy.refimpl.engine import ReferenceEngine, RunSpec

MODEL_NAMES = list(models.MODELS)


# --- the model protocol and the per-model facts --------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_model_keeps_the_protocol(name):
    module = models.MODELS[name]
    assert models.missing(module) == []
    assert isinstance(module, models.Model)
    assert module.NAME == name and module.INPUTS in ("features", "index-pairs")
    assert dataclasses.is_dataclass(module.Config) and module.Config.__dataclass_params__.frozen


def test_missing_names_what_a_module_lacks():
    import types

    half = types.ModuleType("half")
    half.NAME = "half"
    assert "forward" in models.missing(half) and "QUICK_PRESET" in models.missing(half)
    assert not isinstance(half, models.Model)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_per_model_fact_exists(name):
    module = models.MODELS[name]
    assert presets.get(presets.DEFAULT_PRESET[name]).model == name  # its quick preset trains it
    assert name in adapters.FORWARDS  # PyTorch and JAX can run it
    assert any(w.model == name for w in bench.WORKLOADS.values())  # dichotomy bench times it
    m, config, params, ds, lr, wd = crosscheck.problem(name)  # its small standard problem builds
    assert m is module and ds.loss == module.STANDARD_LOSS and lr > 0 and wd >= 0
    assert set(params) == set(module.shapes(config))
    nbytes, flops = module.step_work(config, len(ds.y_train))
    assert nbytes >= 0 and flops > 0
    generator, data_args, model_args = module.bench_problem(next(w.size for w in bench.WORKLOADS.values()
                                                                 if w.model == name))
    assert generator in data.GENERATORS


def test_every_model_option_has_a_command_line_flag():
    """A Config field a user may set (not a dimension the dataset fixes) is a `dichotomy train` override."""
    flags = {field for field, *_ in OPTIONS.values()}
    for module in models.MODELS.values():
        fields = dataclasses.fields(module.Config)
        given = set(module.SMALL_PROBLEM["model"])
        fixed = {f.name for f in fields if f.default is dataclasses.MISSING} - given  # config_for's dimensions
        settable = {f.name for f in fields} - fixed
        assert settable <= flags, (module.NAME, sorted(settable - flags))


# --- the engine protocol, every engine on every model ---------------------------------------------------------

def _engine_or_skip(backend: str):
    try:
        return get_backend(backend).engine
    except BackendUnavailable as e:
        pytest.skip(str(e))


def _build(backend: str, name: str, B: int = 2):
    factory = _engine_or_skip(backend)
    module, config, params, ds, lr, wd = crosscheck.problem(name)
    runs = [RunSpec(config, {k: v.copy() for k, v in params.items()}, lr, wd * (1 + b)) for b in range(B)]
    reason = factory.unsupported(module, runs, ds, "float64", None)
    if reason is not None:
        pytest.skip(f"{backend} does not take {name}: {reason}")
    return Case(lambda: factory(module, runs, ds, probe=ds.X_test[:3]),
                ReferenceEngine(module, runs, ds, probe=ds.X_test[:3]), module, config, factory, ds)


@dataclasses.dataclass
class Case:
    """One engine on one model's small problem, beside the reference engine on the same runs."""

    make: object
    reference: ReferenceEngine
    module: object
    config: object
    factory: object
    data: data.Dataset


def check_counts_steps_and_runs(case):
    engine = case.make()
    assert engine.B == 2 and engine.step == 0
    assert engine.diverged_at.dtype == np.int64 and engine.diverged_at.shape == (2,)
    engine.advance(3)
    engine.advance(4)
    assert engine.step == 7 and np.all(engine.diverged_at == -1)


def check_params_are_named_and_shaped_like_the_reference(case):
    engine = case.make()
    engine.advance(5)
    for p in engine.params():
        assert {k: v.shape for k, v in p.items()} == case.module.shapes(case.config)
        assert all(v.dtype == np.float64 for v in p.values())


def check_metrics_are_the_reference_metrics(case):
    engine = case.make()
    engine.advance(5)
    case.reference.advance(5)
    for got, want in zip(engine.metrics(), case.reference.metrics(), strict=True):
        assert list(got) == list(want)
        assert all(isinstance(v, float) for v in got.values())
        np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-9, atol=1e-12)


def check_outputs_have_the_reference_shapes(case):
    engine = case.make()
    for split in ("train", "test", "probe"):
        for got, want in zip(engine.outputs(split), case.reference.outputs(split), strict=True):
            assert got.shape == np.shape(want) and got.dtype == np.float64


def check_state_resumes_bit_for_bit(case):
    first, second = case.make(), case.make()
    first.advance(6)
    second.load_state(first.state())
    first.advance(5)
    second.advance(5)
    assert second.step == first.step == 11
    for a, b in zip(first.params(), second.params(), strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def check_a_refusal_is_a_reason(case):
    runs = [RunSpec(case.config, case.make().params()[0], 0.1, 0.0)]
    reason = case.factory.unsupported(case.module, runs, case.data, "float16", None)
    assert isinstance(reason, str) and "float16" in reason


CHECKS = [check_counts_steps_and_runs, check_params_are_named_and_shaped_like_the_reference,
          check_metrics_are_the_reference_metrics, check_outputs_have_the_reference_shapes,
          check_state_resumes_bit_for_bit, check_a_refusal_is_a_reason]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__[len("check_"):])
@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("backend", [b if b != "cupy" else pytest.param(b, marks=pytest.mark.gpu) for b in BACKENDS])
def test_every_engine_keeps_the_protocol(backend, name, check):
    check(_build(backend, name))
