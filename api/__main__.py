"""``python -m api``: settings from the environment only (``GRAMLINK_API_*``)."""

import sys

from pydantic import ValidationError

from api.main import run
from api.settings import ApiSettings, describe
from runtime.logs import configure

try:
    settings = ApiSettings()  # type: ignore[call-arg]
except ValidationError as exc:
    print(f"error: {describe(exc)}", file=sys.stderr)  # noqa: T201
    sys.exit(2)
configure(settings.log_level)
sys.exit(run(settings))
