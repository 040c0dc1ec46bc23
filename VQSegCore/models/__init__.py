"""Where models live: the user's model store under $VQSEG_HOME/models and the read-only defaults in Resources/Models."""

from VQSegCore.models.locate import DEFAULT_MODEL_NAME, locate_model
from VQSegCore.models.store import SHIPPED, ModelStore, VersionInfo

__all__ = ["DEFAULT_MODEL_NAME", "SHIPPED", "ModelStore", "VersionInfo", "locate_model"]
