"""What the ``torchseq <tool>`` commands share: settings read from ``--config`` and flags, and the
overrides they hand to ``torchseq fit``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from jsonargparse import ActionConfigFile, ArgumentParser

Settings = TypeVar("Settings")


def settings_from_command_line(
    cls: type[Settings], args: Sequence[str] | None, prog: str, description: str
) -> Settings:
    """``cls(**fields)`` with the fields read from ``--config FILE`` and ``--field value`` options.

    The config's keys are ``cls``'s constructor arguments (nested dataclasses as mappings), at the root.
    """
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(cls)
    settings = vars(parser.instantiate(parser.parse_args(args)))
    settings.pop("config", None)
    return cls(**settings)


def override_arguments(settings: Mapping[str, Any]) -> list[str]:
    """``{"trainer.max_epochs": 5, "optimizer.class_path": "torch.optim.SGD"}`` →
    ``["--trainer.max_epochs=5", "--optimizer.class_path=torch.optim.SGD"]``: LightningCLI overrides.

    Values other than strings are written as JSON, which jsonargparse reads back with their types.
    """
    arguments = []
    for key, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite number, got {value!r}")
        arguments.append(f"--{key}={value if isinstance(value, str) else json.dumps(value)}")
    return arguments
