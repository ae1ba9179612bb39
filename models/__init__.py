"""Models: cores, the three families behind one forward contract, solvers and backward modes."""

from .base import IterativeModel as IterativeModel
from .base import IterState as IterState
from .config import ARCHS as ARCHS
from .config import FAMILIES as FAMILIES
from .config import ConfigError as ConfigError
from .config import ModelConfig as ModelConfig
from .deq import DEQModel as DEQModel
from .explicit import ExplicitModel as ExplicitModel
from .recursive import RecursiveModel as RecursiveModel

_REGISTRY: dict[str, type[IterativeModel]] = {
    "explicit": ExplicitModel,
    "recursive": RecursiveModel,
    "deq": DEQModel,
}


def register_family(name: str, cls: type[IterativeModel]) -> None:
    _REGISTRY[name] = cls


def get_family(name: str) -> type[IterativeModel]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown family {name!r}; known families: {', '.join(_REGISTRY)}") from None


def build_model(cfg: ModelConfig, seed: int = 0) -> IterativeModel:
    """The model a config describes, initialised deterministically from seed."""
    return get_family(cfg.family)(cfg, seed=seed)
