"""What every training command's settings share: the run fields, the flags that set them, and how they resolve.

Resolution order, later wins: a settings class's defaults < the settings saved in the checkpoint named by
`--resume` < the flags given on the command line. So `python train.py codec --resume --out runs/x --max-steps
20000` continues run x with its own model and data settings and a new step budget.
"""

import argparse
import math
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class RunSettings:
    """What every training command shares: validation/checkpoint cadence, seed, Lightning's hardware flags."""

    valid_every: int = 500
    save_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0
    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    progress_bar: bool = True
    resume: str | None = None  # a checkpoint path, or "last" for OUT/checkpoints/last.ckpt

    def check_run(self) -> None:
        self.check_at_least(1, ("valid_every", "save_every", "log_every"))
        if self.keep_checkpoints == 0 or self.keep_checkpoints < -1:
            raise ValueError("--keep-checkpoints must be -1 (all) or at least 1")

    def check_at_least(self, minimum: int, names: tuple[str, ...]) -> None:
        """Raise ValueError, naming the flag, when one of these fields is below `minimum`."""
        for name in names:
            if getattr(self, name) < minimum:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {minimum}")

    def check_ranges(self, ranges: dict[str, tuple[float, float]]) -> None:
        """Raise ValueError, naming the flag, when a field (each number of a tuple field) is not a finite number in
        [low, high] of `ranges`, as the checkpoint loaders check a config's numbers; None (unset) is skipped."""
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else () if value is None else (value,)
            if not all(isinstance(v, int | float) and math.isfinite(v) and low <= v <= high for v in values):
                shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
                each = "each number of " if isinstance(value, tuple) else ""
                raise ValueError(f"{each}--{name.replace('_', '-')} must be in [{low:g}, {high:g}], got {shown}")

    def check_betas(self) -> None:
        """Both commands' Adam betas (a field of each subclass): exactly two numbers."""
        if len(self.betas) != 2:
            raise ValueError(f"--betas takes two numbers, got {self.betas}")

    def to_dict(self) -> dict:
        """Plain types only (str, numbers, tuples, None), so a checkpoint holding it loads with weights_only."""
        return asdict(self)


def parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def argument_adder(defaults):
    """`add(group, flag, help, **kwargs)`: a flag whose parsed default is absent (SUPPRESS) and whose help shows
    the default of the matching field of `defaults`."""

    def add(group, flag: str, help: str, **kwargs) -> None:  # noqa: A002 - argparse's own word
        default = getattr(defaults, flag.lstrip("-").replace("-", "_"))
        if default not in (None, ""):
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help = f"{help} (default: {shown})"
        group.add_argument(flag, default=argparse.SUPPRESS, help=help, **kwargs)

    return add


def add_run_arguments(run, add, strategy_help: str = "Lightning strategy: auto, ddp, fsdp, ...") -> None:
    """The flags every training command shares: validation/checkpoint cadence, seed, Lightning's own hardware
    flags, and --resume. `add` is the command's `argument_adder` (its defaults)."""
    add(run, "--valid-every", "validate every N steps", type=int)
    add(run, "--save-every", "checkpoint every N steps (and always at the end)", type=int)
    add(run, "--keep-checkpoints", "periodic checkpoints kept besides last.ckpt (-1: all)", type=int)
    add(run, "--log-every", "log training losses every N steps", type=int)
    add(run, "--seed", "random seed", type=int)
    add(run, "--accelerator", "Lightning accelerator: auto, cpu, gpu, ...")
    add(run, "--devices", "Lightning devices per node: a count, a list like 0,1, or auto")
    add(run, "--num-nodes", "Lightning nodes", type=int)
    add(run, "--strategy", strategy_help)
    add(run, "--precision", "Lightning precision: 32-true, bf16-mixed, 16-mixed")
    add(run, "--progress-bar", "show Lightning's progress bar", action=argparse.BooleanOptionalAction)
    run.add_argument("--resume", nargs="?", const="last", default=argparse.SUPPRESS, metavar="CKPT",
                     help="continue from a checkpoint this program wrote (no value: OUT/checkpoints/last.ckpt); "
                          "its saved settings are the defaults, flags given here override them")


def resolve_fields(settings, given: dict, saved: dict | None):
    """`settings` (a settings dataclass holding the defaults) < `saved` < `given`; "resume" is never inherited."""
    names = {f.name for f in fields(settings)}
    if saved:
        settings = replace(settings, **{k: v for k, v in saved.items() if k in names and k != "resume"})
    return replace(settings, **{k: v for k, v in given.items() if k in names})
