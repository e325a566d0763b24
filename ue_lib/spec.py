"""The run specification: the six parameters that say which run a notebook belongs to.

`ue run`, `ue train`, `ue sweep` and every notebook's papermill `parameters` cell carry the
same six values; `RunSpec` is parsed and validated once (types, the profile name, every
override, the domains, every loss parameter) and converts to papermill parameters and back:

    spec = RunSpec(profile="smoke", out_dir="runs/smoke", overrides={"kl.temperature": 0.1})
    pm.execute_notebook(..., parameters=spec.to_parameters())   # the runner
    spec = RunSpec.from_parameters(globals())                    # a notebook's first cell

Torch-free at import (the runner uses it before any kernel starts); validating the loss
parameters imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .config import Validated
from .profiles import Profile, load_profile

# set (to "1") in the environment of the kernels `ue run` starts: a notebook run headless, where
# nobody can use a widget (`ue_lib.runfolder.RunFolder.interactive` shows none there)
HEADLESS_ENV = "UE_HEADLESS"


@dataclass(frozen=True)
class RunSpec(Validated):
    profile: str = "mini"  # smoke | mini | scratch | paper
    out_dir: str = "runs/mini"  # the run folder: models, figures, results
    seed: int = 0  # base seed (notebook 04 repeats over the profile's seeds offset by it)
    domains: str = ""  # comma-separated domains; empty: the profile's
    overrides: dict = field(default_factory=dict)  # profile settings to change
    models_dir: str = ""  # where models are kept and reused; empty: <out_dir>/models

    def check(self) -> None:
        object.__setattr__(self, "_settings", load_profile(self.profile, self.domains or None,
                                                           self.overrides))

    @property
    def settings(self) -> Profile:
        """The profile with this run's domains and overrides applied (validated)."""
        return self._settings

    @property
    def models_root(self) -> Path:
        return Path(self.models_dir) if self.models_dir else Path(self.out_dir) / "models"

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_parameters(cls, values: dict) -> RunSpec:
        """From a mapping holding (at least) the six parameters, e.g. a notebook's globals()."""
        missing = [n for n in cls.parameter_names() if n not in values]
        if missing:
            raise ValueError(f"run parameters missing: {', '.join(missing)}")
        return cls(**{n: values[n] for n in cls.parameter_names()})

    def to_parameters(self) -> dict:
        """Papermill parameters, with the folders made absolute (kernels run in the run folder)."""
        return {"profile": self.profile, "out_dir": str(Path(self.out_dir).resolve()),
                "seed": self.seed, "domains": self.domains, "overrides": dict(self.overrides),
                "models_dir": str(Path(self.models_dir).resolve()) if self.models_dir else ""}
