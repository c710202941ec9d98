"""Hand-written NumPy references: the write-ups' models with their backward passes by hand.

They share nothing with the engine, so agreeing with them is evidence the engine is right,
and they are the baseline of the speed benchmarks.
"""

from models.reference.adder import ReferenceAdder
from models.reference.counter import ReferenceCounter
from models.reference.param import Param

__all__ = ["Param", "ReferenceAdder", "ReferenceCounter"]
