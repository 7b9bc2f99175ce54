"""The harmonization metrics and the two scoring protocols. They live in :mod:`common.metrics`, below
every package, because training and SycoNet's evaluation use them too; this is the name the
reports and the documentation use."""
from common.metrics import *  # noqa: F401,F403
from common.metrics import __all__  # noqa: F401
