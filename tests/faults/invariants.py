"""The invariants every fault, property and simulation run must keep.

They live in the package (`triplegain_fsm.simulate.invariants`), since the simulator checks
them after every step; the fault matrix and the property tests load this file through
their conftest and get the very same checks (and helpers such as `Bot`).
"""
from triplegain_fsm.simulate import invariants as _package

globals().update({name: value for name, value in vars(_package).items() if not name.startswith("__")})
