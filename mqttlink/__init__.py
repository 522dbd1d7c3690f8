"""MQTT client code shared by every GramLink process.

- :mod:`mqttlink.reasons`: the one table of MQTT v5 reason codes, by value, and
  what each means for a client (retry, stop, quarantine);
- :mod:`mqttlink.endpoint`: broker URLs (``mqtt://``, ``mqtts://``) and TLS files.

Imports :mod:`contract` and :mod:`runtime` only; gateway, ingest, api and
firmware_sim may all import it.
"""
