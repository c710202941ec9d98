"""Hand-written NumPy references: the write-ups' models with their backward passes by hand.

They share nothing with the engine (not even the parameter names: the adder's are the
write-up's W_in, b_in, W_rec, b_rec, S_0, W_out, b_out; `minigrad.models.comparison` maps
them to the engine's), so agreeing with them is evidence the engine is right, and they are
the baseline of the speed benchmarks.
"""

from .adder import ReferenceAdder
from .counter import ReferenceCounter
from .param import Param

__all__ = ["Param", "ReferenceAdder", "ReferenceCounter"]
