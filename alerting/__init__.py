"""Alert rules and their evaluation, shared by the API and the alert engine.

Imports only ``contract`` among our packages; the API, the gateway and the engine may
import it.
"""
