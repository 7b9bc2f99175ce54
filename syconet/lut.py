"""The 3D LUT engine, SycoNet's core. It lives in :mod:`common.lut`, below every package, because
the benchmark's colour processes (``domains.transfer``) render looks with it too; this is the name
the documentation uses."""
from common.lut import *  # noqa: F401,F403
from common.lut import __all__  # noqa: F401
