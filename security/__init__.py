"""Broker security for a fleet: per-device secrets (Mosquitto password file), an ACL that
lets each device speak only for itself, a development CA with a server certificate for the
TLS listener, and the ``mosquitto.conf`` that uses them all (``sct security generate``).

Imports ``devices`` only: it reads the registry, it knows nothing of the collector.
"""
