"""The typed model config and the registries of families and cores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


class ConfigError(ValueError):
    """A config that names something unknown or holds a value out of range."""


ARCHS = {"conv1d": 1, "conv2d": 2, "transformer": 1, "relational": 2}  # arch -> spatial dims it serves


def check_arch_dims(arch: str, spatial_dims: int, task: str) -> None:
    """Raise unless arch serves a task with this many spatial dimensions (conv2d grids, the others strings)."""
    if ARCHS.get(arch) != spatial_dims:
        fits = [a for a, d in ARCHS.items() if d == spatial_dims]
        raise ConfigError(f"arch {arch!r} does not serve task {task}; archs for it: {', '.join(fits)}")


@dataclass(frozen=True)
class ModelConfig:
    family: str  # a registered family: explicit | recursive | deq | a plugin's
    arch: str  # conv1d | conv2d | transformer | relational (row/column/box message passing on grids)
    in_channels: int  # input channels after the task's encoding
    width: int = 64  # latent channels
    depth: int = 2  # residual units inside one block (one iteration / one explicit layer)
    layers: int = 20  # explicit: number of distinct blocks; others: the training iteration count
    heads: int = 4  # transformer only
    kernel: int = 3  # conv kernel size
    norm: bool = False  # group norm inside the block (DEQs use it for a stable fixed point)
    classes: int = 2  # output classes per cell (the task's `classes`; every shipped task predicts bits)
    bias: bool = True  # biases in the convolutions (False: a bias-free net, as in the published maze recipe)
    slots: int = 8  # memory family: slots of the external memory (fixed; it does not grow with the problem)
    window: int = 0  # transformer: each position attends to itself and the window - 1 before it (0: all before it)

    def __post_init__(self) -> None:
        from .registry import family_names

        if self.family not in family_names():
            raise ConfigError(f"unknown family {self.family!r}; known families: {', '.join(family_names())}")
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r}; known archs: {', '.join(ARCHS)}")
        for name, lo, hi in (("in_channels", 1, 16), ("width", 4, 1024), ("depth", 1, 16),
                             ("layers", 1, 256), ("heads", 1, 64), ("classes", 2, 256),
                             ("slots", 1, 256), ("window", 0, 4096)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"config field {name} must be an integer in {lo}..{hi}, got {v!r}")
        if isinstance(self.kernel, bool) or not isinstance(self.kernel, int) or self.kernel not in (1, 3, 5, 7):
            raise ConfigError(f"config field kernel must be one of 1, 3, 5, 7, got {self.kernel!r}")
        if self.arch == "transformer" and self.width % self.heads:
            raise ConfigError(f"transformer width {self.width} must be divisible by heads {self.heads}")
        for name in ("norm", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config field {name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Build from a dict; unknown keys are an error, not silently dropped."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        missing = [k for k in ("family", "arch", "in_channels") if k not in d]
        if missing:
            raise ConfigError(f"config is missing required keys {missing}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
