"""DataWarehouse: a self-hosted store for objects and backups.

Layers (dependencies point one way): ``cli``/``api`` -> ``service`` -> ``engine`` -> ``core``,
``storage`` and ``meta``. ``errors``, ``ids``, ``records``, ``config`` and ``clock`` are importable
from anywhere; ``wiring`` builds the concrete objects.
"""

__version__ = "0.1.0"
