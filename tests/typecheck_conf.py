"""The runtime type checker that pytest runs over lca_interp (pyproject: --jaxtyping-packages).

beartype with PEP 484's numeric tower, so `omega=1` is accepted where a float is annotated, as
Python's typing rules say it should be. Imported only under test (beartype is a test extra).
"""

from beartype import BeartypeConf, beartype

typechecker = beartype(conf=BeartypeConf(is_pep484_tower=True))
