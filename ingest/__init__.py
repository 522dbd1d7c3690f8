"""Central ingest: MQTT (shared subscription) to InfluxDB, acknowledged only after the write."""
