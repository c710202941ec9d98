"""The `minigrad` command: train the write-ups' models, and compare them with hand-coded
backprop.

    minigrad train counter            RProp from (w_x, w_rec) = (-1.5, 2), SPEC 1
    minigrad train adder              the tutorial's small adder (--preset large|keras)
    minigrad compare counter|adder    engine vs hand-coded: loss, gradients, time per step
    minigrad add A B --model PATH     a saved adder adds two numbers
    minigrad eval adder --model PATH  a saved adder's accuracy on fresh sums
    minigrad graph counter|adder      the loss's computation graph as Graphviz DOT

`train ... --plot DIR` draws the figures (needs matplotlib), `--save PATH` keeps the model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import experiments
from .plots import MatplotlibMissing
from .presets import PRESETS


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit code 2) instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minigrad", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model and show what it learned")
    models = train.add_subparsers(dest="model", required=True, parser_class=_Parser)
    counter = models.add_parser("counter", help="the linear RNN that counts ones (SPEC 1)")
    counter.add_argument("--iterations", type=_positive_int, default=500)
    counter.add_argument("--w-x", type=float, default=-1.5, help="start of w_x (default -1.5)")
    counter.add_argument("--w-rec", type=float, default=2.0, help="start of w_rec (default 2)")
    counter.add_argument("--eta-plus", type=float, default=1.2)
    counter.add_argument("--eta-minus", type=float, default=0.5)
    counter.add_argument("--step-init", type=_positive_float, default=0.001)
    _common(counter)
    _outputs(counter, "counter")
    counter.set_defaults(run=experiments.train_counter)

    adder = models.add_parser("adder", help="the RNN that adds binary numbers (SPEC 2, 3)")
    adder.add_argument("--preset", choices=sorted(PRESETS), default="small",
                       help="small (7 bits, 3 states), large (13 bits, 32), "
                            "keras (8 bits, 16 sigmoid)")
    adder.add_argument("--epochs", type=_positive_int, help="passes over the data")
    adder.add_argument("--batch-size", type=_positive_int, help="samples per minibatch")
    adder.add_argument("--samples", type=_positive_int, help="training samples")
    adder.add_argument("--lr", type=_positive_float, help="learning rate")
    adder.add_argument("--decay", type=float,
                       help="RMSProp's decay of the mean square (presets small, large: 0.5)")
    adder.add_argument("--momentum", type=float, help="Nesterov momentum (small, large: 0.8)")
    adder.add_argument("--eps", type=_positive_float, help="RMSProp's epsilon (1e-6)")
    adder.add_argument("--restarts", type=_nonnegative_int, default=0,
                       help="start again from a fresh initialisation, up to this many times, "
                            "while a run ends below 100%% whole-sum accuracy")
    adder.add_argument("--test-samples", type=_positive_int, default=1000,
                       help="fresh sums for the held-out accuracy (default 1000)")
    _common(adder)
    _outputs(adder, "adder")
    adder.set_defaults(run=experiments.train_adder)

    compare = commands.add_parser("compare", help="engine vs hand-coded backprop")
    compare.add_argument("model", choices=["counter", "adder"])
    compare.add_argument("--preset", choices=sorted(PRESETS), default="small")
    compare.add_argument("--batch-size", type=_positive_int, default=100)
    compare.add_argument("--repeats", type=_positive_int, default=200,
                         help="timed steps of each (default 200)")
    compare.add_argument("--seed", type=_nonnegative_int, default=0)
    compare.set_defaults(run=experiments.compare)

    add = commands.add_parser("add", help="a saved adder adds two numbers")
    add.add_argument("a", type=_nonnegative_int, metavar="A")
    add.add_argument("b", type=_nonnegative_int, metavar="B")
    add.add_argument("--model", required=True, metavar="PATH",
                     help="a model saved by `minigrad train adder --save PATH`")
    add.add_argument("--preset", choices=sorted(PRESETS),
                     help="refuse a model saved with another preset")
    add.set_defaults(run=experiments.add_numbers)

    evaluate = commands.add_parser("eval", help="a saved model's accuracy on fresh data")
    evaluate.add_argument("model_kind", choices=["adder"], metavar="adder")
    evaluate.add_argument("--model", required=True, metavar="PATH",
                          help="a model saved by `minigrad train adder --save PATH`")
    evaluate.add_argument("--preset", choices=sorted(PRESETS),
                          help="refuse a model saved with another preset")
    evaluate.add_argument("--samples", type=_positive_int, default=1000,
                          help="fresh sums (default 1000)")
    evaluate.add_argument("--seed", type=_nonnegative_int, default=0,
                          help="seed of the sums (default 0)")
    evaluate.set_defaults(run=experiments.evaluate_adder)

    graph = commands.add_parser("graph", help="the loss's computation graph as Graphviz DOT")
    graph.add_argument("model", choices=["counter", "adder"])
    graph.add_argument("--steps", type=_positive_int, default=3,
                       help="timesteps of the sequence (default 3)")
    graph.add_argument("--batch-size", type=_positive_int, default=2,
                       help="sequences in the batch (default 2)")
    graph.add_argument("--preset", choices=sorted(PRESETS), default="small",
                       help="the adder's architecture (default small)")
    graph.set_defaults(run=experiments.print_graph)
    return parser


def _outputs(parser: argparse.ArgumentParser, model: str) -> None:
    parser.add_argument("--plot", metavar="DIR",
                        help="draw the figures into DIR (PNG; needs matplotlib)")
    parser.add_argument("--save", metavar="PATH", help=f"write the trained {model} to PATH (.npz)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=_nonnegative_int, default=None,
                        help="random seed (default: the preset's, one that converges)")
    parser.add_argument("--quiet", action="store_true", help="print only the results")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[Any], int | None] = args.run
    try:
        # Overflow and invalid values stop the run with one line instead of warnings and
        # a garbage result (underflow, e.g. exp(-1000) in sigmoid, is harmless).
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            return run(args) or 0
    except MatplotlibMissing as error:
        print(f"minigrad: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # a bad combination of values: one line, as argparse does
        print(f"minigrad: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"minigrad: error: the computation diverged ({error}); try a smaller learning "
              "rate or another start", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minigrad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes it at exit)
        return 0
    except OSError as error:  # a --plot directory that cannot be written, and the like
        print(f"minigrad: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
