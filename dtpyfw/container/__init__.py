"""ServiceContainer, request scopes, and dependency-injector's wiring vocabulary."""

from dependency_injector import containers, providers

from dtpyfw.container._markers import Closing, Provide, Provider, inject
from dtpyfw.container._service import ServiceContainer, ServiceContainerInstance
from dtpyfw.core.scope import Scope, Scoped, ascope, scope

__all__ = [
    "Closing",
    "Provide",
    "Provider",
    "Scope",
    "Scoped",
    "ServiceContainer",
    "ServiceContainerInstance",
    "ascope",
    "containers",
    "inject",
    "providers",
    "scope",
]
