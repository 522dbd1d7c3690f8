"""Real Mosquitto and InfluxDB processes run as background services under a home directory."""

from gramlink.services.influx import InfluxService
from gramlink.services.mosquitto import MosquittoService
from gramlink.services.process import ServiceError

__all__ = ["InfluxService", "MosquittoService", "ServiceError"]
