"""dichotomy predict: the switch's time and class for a preset, from the theory and the exact limits, untrained."""

from __future__ import annotations

import json

from dichotomy.cli.common import EXIT_OK, choices, count, one_of
from dichotomy.cli.train import OPTIONS
from dichotomy.experiments import predict as predict_module
from dichotomy.experiments import presets
from dichotomy.refimpl import checks

NAME = "predict"


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    pr = command("predict", "what a run will do and when, before training it: t*, the two limits, the verdict",
                 "Train nothing: solve the preset's kernel and late limits, and print t* = ln α / λ (in time and "
                 "steps), both limits' train and test metrics, the verdict (grokking, misgrokking or no switch), "
                 "the steps a run needs to see the switch end, and with --budget the λ that fits it in a step "
                 "budget. It says when it is asked outside the theory's domain (docs/user-guide.md, 'Predict').")
    pr.add_argument("preset", **one_of("preset", presets.PRESETS), metavar="PRESET",
                    help=f"the preset ({choices(presets.PRESETS)})")
    for flag, (_, kind, text, closed) in OPTIONS.items():
        if closed is None:
            pr.add_argument(flag, type=kind, default=None, help=text)
        else:
            pr.add_argument(flag, default=None, **one_of(*closed), help=text)
    pr.add_argument("--budget", type=count, default=None, metavar="STEPS",
                    help="the λ that puts the end of the switch inside this many steps")
    pr.add_argument("--json", action="store_true", help="print the prediction as JSON (for scripts)")


def run(args) -> int:
    changes = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, *_) in OPTIONS.items()}
    preset = presets.override(presets.get(args.preset), **{k: v for k, v in changes.items() if v is not None})
    budget = None if args.budget is None else checks.positive_int("--budget", args.budget)
    prediction = predict_module.predict(preset, args.preset, budget=budget)
    print(json.dumps(prediction.to_json(), indent=2) if args.json else prediction.summary())
    return EXIT_OK
