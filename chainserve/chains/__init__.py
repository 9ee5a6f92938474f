"""LangChain chains served by chainserve; framework-free so they can be reused outside HTTP."""

from chainserve.chains.models.factory import ModelConfig, ModelInfo, build_model, describe_model
from chainserve.chains.registry import ChainSpec, RegisteredChain, build_registry

__all__ = [
    "ChainSpec",
    "ModelConfig",
    "ModelInfo",
    "RegisteredChain",
    "build_model",
    "build_registry",
    "describe_model",
]
