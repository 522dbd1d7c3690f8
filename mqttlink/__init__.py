"""MQTT client code shared by every GramLink process.

- :mod:`mqttlink.reasons`: the one table of MQTT v5 reason codes, by value, and
  what each means for a client (retry, stop, quarantine);
- :mod:`mqttlink.endpoint`: broker URLs (``mqtt://``, ``mqtts://``) and TLS files;
- :mod:`mqttlink.paho_link`: the one paho connection (gateway, API, simulator devices);
- :mod:`mqttlink.session` (with ``inbox`` and ``transport``): the one MQTT v5
  session over the ``mqtt5`` codec (ingest, the simulator's load generator);
- :mod:`mqttlink.takeover`: a session takeover inferred where the broker does not say so.

Imports :mod:`contract` and :mod:`runtime` only; gateway, ingest, api and
firmware_sim may all import it.
"""
