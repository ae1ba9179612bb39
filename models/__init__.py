"""Models: cores, the families behind one forward contract, solvers and backward modes.

Public extension API: `register_family` (a family is an `IterativeModel` subclass registered by name),
`models.solvers.register_solver`, `models.implicit.register_backward`.
"""

from .base import UNROLLED as UNROLLED
from .base import IterativeModel as IterativeModel
from .base import IterState as IterState
from .base import NoSettings as NoSettings
from .base import TrainStep as TrainStep
from .base import Widget as Widget
from .config import ARCHS as ARCHS
from .config import ConfigError as ConfigError
from .config import ModelConfig as ModelConfig
from .deq import DEQModel as DEQModel
from .deq import DEQSettings as DEQSettings
from .ebm import EBMModel as EBMModel
from .ebm import EBMSettings as EBMSettings
from .explicit import ExplicitModel as ExplicitModel
from .memory import MemoryModel as MemoryModel
from .recursive import RecursiveModel as RecursiveModel
from .recursive import progressive_loss as progressive_loss
from .registry import UnknownFamily
from .registry import families as families
from .registry import family_names as family_names
from .registry import register_family as register_family


def get_family(name: str) -> type[IterativeModel]:
    """The family class registered under name; an unknown name raises ConfigError with the known ones."""
    from .registry import get_family as _get

    try:
        return _get(name)
    except UnknownFamily as e:
        raise ConfigError(str(e)) from None


def build_model(cfg: ModelConfig, seed: int = 0) -> IterativeModel:
    """The model a config describes, initialised deterministically from seed."""
    return get_family(cfg.family)(cfg, seed=seed)


def __getattr__(name: str):
    if name == "FAMILIES":  # the registered names at the time of asking (plugins add to them)
        return family_names()
    raise AttributeError(name)
