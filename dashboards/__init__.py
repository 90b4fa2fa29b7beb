"""Grafana as code: provisioning files now; the dashboards themselves come next.

``provisioning/`` is mounted by docker-compose at /etc/grafana/provisioning.
"""

from pathlib import Path

#: The provisioned InfluxDB datasource; every dashboard panel refers to it by this uid.
DATASOURCE_UID = "sct-influxdb"
PROVISIONING = Path(__file__).parent / "provisioning"
