"""One committee member at run time (see member.py for the map of the parts)."""

from node.runtime.execution import Executable, ExecutedBlock
from node.runtime.member import Node
from node.runtime.options import NodeOptions

__all__ = ["Executable", "ExecutedBlock", "Node", "NodeOptions"]
