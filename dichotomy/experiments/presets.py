"""Named configurations of the paper's experiments and their quick CPU-scale versions (docs/user-guide.md).

A preset names a model, a dataset generator with its arguments, the model's own hyper-parameters, and the
optimizer settings. :func:`build` turns a preset plus overrides into everything :func:`dichotomy.run.driver.run`
needs. Dimensions that the dataset fixes (d, or D = 2p and out = p) are taken from the dataset, so they
can never disagree. Paper values and their sources are in docs/paper.md §3 and §5.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import checks, data, models

RUN_KEYS = ("lr", "wd", "steps", "seed", "init_seed", "dataset")  # preset fields an override may replace
PAPER_NAMES = {"lambda": "wd", "eta": "lr", "depth": "L"}  # the paper's words for a field: --grid lambda=...


@dataclass(frozen=True)
class Preset:
    """One experiment: model name, dataset generator and arguments, model arguments, optimizer, seeds."""

    model: str
    dataset: str
    data_args: dict
    model_args: dict
    lr: float
    wd: float
    steps: int
    seed: int
    init_seed: int = 0
    description: str = ""

    def __post_init__(self):  # fail before a (possibly large) dataset is drawn
        checks.positive("learning rate lr", self.lr)
        checks.positive("weight decay wd", self.wd, allow_zero=True)
        checks.step_count("steps", self.steps)


_DIAG = dict(model="diagonal-net", model_args={"alpha": 128.0, "L": 2}, lr=0.01, seed=24181325235)
_MC = dict(model="matrix-completion", dataset="multiplication_table", seed=35235125)
_MLP = dict(model="relu-mlp", dataset="modular_arithmetic", seed=2435253235)

PRESETS: dict[str, Preset] = {
    "fig1a": Preset(**_DIAG, dataset="sparse_linear_classification", wd=1e-3, steps=2_000_000,
                    data_args={"d": 100_000, "n_train": 256, "n_test": 10_000, "k": 3},
                    description="Fig. 1a grokking: diagonal net, sparse +-1 data (X_test is 1 GB of int8)"),
    "fig1a-quick": Preset(**_DIAG, dataset="sparse_linear_classification", wd=1e-2, steps=100_000,
                          data_args={"d": 2_000, "n_train": 100, "n_test": 2_000, "k": 3},
                          description="Fig. 1a at d = 2000, lambda x10: test accuracy ~53% then 100%"),
    "fig1b": Preset(**_DIAG, dataset="l2_separated_gaussians", wd=1e-3, steps=20_000_000,
                    data_args={"d": 100_000, "n_train": 32, "n_test": 10_000, "gamma": 25.0},
                    description="Fig. 1b misgrokking: L2-separated Gaussians (X_test is 8 GB of float64)"),
    "fig1b-quick": Preset(**_DIAG, dataset="l2_separated_gaussians", wd=1e-2, steps=100_000,
                          data_args={"d": 10_000, "n_train": 32, "n_test": 1_000, "gamma": 12.0},
                          description="Fig. 1b at d = 1e4, gamma = 12, lambda x10: test accuracy ~100% then "
                                      "falls (gamma keeps the L2 classifier's signal/noise ~ sqrt(2) gamma^2 "
                                      "/ sqrt(d) near the paper's)"),
    "fig2a": Preset(**_MLP, lr=0.002, wd=1e-4, steps=100_000_000,
                    data_args={"p": 97, "op": "+", "train_fraction": 0.4},
                    model_args={"h": 1024, "L": 2, "init_scale": 1.0, "zero_last_layer": False},
                    description="Fig. 2a modular addition, He init (GPU scale: 1e8 steps)"),
    "fig2a-quick": Preset(**_MLP, lr=0.5, wd=1e-3, steps=30_000,
                          data_args={"p": 31, "op": "+", "train_fraction": 0.7},
                          model_args={"h": 128, "L": 2, "init_scale": 1.0, "zero_last_layer": False},
                          description="Fig. 2a at p = 31 (70% train), h = 128, lr x250, lambda x10: test "
                                      "accuracy 0% after train fit, then ~89%"),
    "fig3": Preset(**_MC, lr=0.1, wd=1e-4, steps=10_000_000,
                   data_args={"d": 97, "train_fraction": 0.05}, model_args={"alpha": 10.0, "sigma": 0.0},
                   description="Fig. 3 matrix completion, multiplication table, 5% observed"),
    "fig3-quick": Preset(**_MC, lr=0.1, wd=2e-3, steps=50_000,
                         data_args={"d": 97, "train_fraction": 0.05}, model_args={"alpha": 10.0, "sigma": 0.0},
                         description="Fig. 3 with lambda x20: the same 0.1015 plateau, a transition 20x "
                                     "sooner"),
}

DEFAULT_PRESET = {name: module.QUICK_PRESET for name, module in models.MODELS.items()}  # each model says which


def get(name: str) -> Preset:
    """The preset registered under ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise errors.ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def override(preset: Preset, **changes) -> Preset:
    """A copy of ``preset`` with run settings, dataset arguments or model arguments replaced by name.

    A name that is neither a run setting (lr, wd, steps, seed, init_seed, dataset) nor an argument of the
    preset's dataset generator or model config raises :class:`ConfigError`. A new ``dataset`` keeps those of
    the preset's dataset arguments that its generator takes.
    """
    run = {k: changes.pop(k) for k in RUN_KEYS if k in changes}
    data_args, model_args = dict(preset.data_args), dict(preset.model_args)
    generator = data.GENERATORS.get(run.get("dataset", preset.dataset))
    takes = inspect.signature(generator).parameters if generator is not None else {}
    if generator is not None and run.get("dataset", preset.dataset) != preset.dataset:
        # another dataset keeps only the preset's arguments it takes (d, n_train, ...), not the old one's own (k)
        data_args = {k: v for k, v in data_args.items() if k in takes}
    model_fields = {f.name for f in dataclasses.fields(models.get(preset.model).Config)}
    for key, value in changes.items():
        if key in takes:
            data_args[key] = value
        elif key in model_fields:
            model_args[key] = value
        else:
            raise errors.ConfigError(f"option {key!r} does not apply to {preset.model} with dataset "
                                     f"{run.get('dataset', preset.dataset)}")
    return dataclasses.replace(preset, data_args=data_args, model_args=model_args, **run)


def model_config(preset: Preset, dataset: data.Dataset):
    """The model's Config: the preset's model arguments plus the dimensions fixed by ``dataset``."""
    try:
        return models.get(preset.model).config_for(dataset, **preset.model_args)
    except TypeError as e:
        raise errors.ConfigError(f"{preset.model}: {e}") from None


def build(preset: Preset):
    """Draw the dataset and the initial parameters of ``preset``.

    Returns
    -------
    module, config, params, dataset
        Ready for ``dichotomy.run.driver.run(module, config, params, dataset, lr=preset.lr, ...)``.
    """
    dataset = data.make(preset.dataset, preset.seed, **preset.data_args)
    module = models.get(preset.model)
    config = model_config(preset, dataset)
    return module, config, module.init(config, np.random.default_rng(preset.init_seed)), dataset
