"""Wire protocols: how one run's events are framed for each kind of client."""

from chainserve.api.protocols.base import WireProtocol
from chainserve.api.protocols.native import NativeProtocol

__all__ = ["NativeProtocol", "WireProtocol"]
