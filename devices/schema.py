"""The InfluxDB contract (CONTRACT section 4): every measurement, tag and field name, once.

Collector, simulators and dashboards import names from here, never spell them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.payloads import KINDS, TELEMETRY_MODELS, reading_fields

DEFAULT_DATABASE = "smart_community"
PRECISION = "ms"

# Measurements besides the one per kind.
EVENT = "event"
DEVICE_STATUS = "device_status"
ALERT = "alert"
COMMUNITY_KPI = "community_kpi"
#: The green-community indicators, each a float field of ``community_kpi`` (with a bool
#: ``<name>_ok``); ``meets`` is 1.0 when all pass. How they are computed: collector/kpi.py.
KPI_INDICATORS = ("lamps_per_100_households", "lamp_availability", "energy_saving",
                  "bin_overflow_rate", "water_quality_compliance", "leak_indicator",
                  "security_per_100_households", "device_online_rate")
KPI_MEETS = "meets"
#: ``community_kpi``'s bool: some indicator lacks the data for a verdict (the community is
#: being assessed: it neither meets nor fails); per indicator, ``<name>_enough``.
KPI_ASSESSING = "assessing"
#: The community's display name (the registry's ``name``), a string field.
KPI_NAME = "name"
#: One point a community per KPI run: tags ``city``, ``community``, ``label`` (the name and
#: the id, what the dashboards' community variable shows), field ``name``.
COMMUNITY_INFO = "community_info"
LABEL = "label"
#: Per city, each KPI run: communities meeting / assessing / failing, the share's
#: denominator and each milestone's verdict (collector/goal.py).
CITY_KPI = "city_kpi"
#: ``city_kpi``'s city tag for the province's total.
PROVINCE = "province"


def community_label(name: str, community_id: str) -> str:
    """``槐中路社区 (sjz-yuhua-001)``: a name people know, and the id it stands for. The
    dashboards' community variable shows it and filters on the id in the brackets."""
    return f"{name} ({community_id})"


COLLECTOR = "collector"

# Tag keys.
CITY = "city"
DISTRICT = "district"
COMMUNITY = "community"
DEVICE = "device"
KIND = "kind"
TYPE = "type"
INSTANCE = "instance"

#: Tags of every per-kind measurement, before the kind-specific one.
READING_TAGS = (CITY, DISTRICT, COMMUNITY, DEVICE)

#: The registry attribute that becomes a tag for the kinds that have one.
KIND_TAG: dict[str, str] = {"waste_bin": "category", "water_meter": "role"}
KIND_TAG_VALUES: dict[str, tuple[str, ...]] = {
    "category": ("kitchen", "recyclable", "hazardous", "other"),
    "role": ("inlet", "building", "rainwater"),
}

#: The reading fields of each kind's measurement.
FIELDS: dict[str, tuple[str, ...]] = {
    kind: reading_fields(TELEMETRY_MODELS[kind]) for kind in KINDS
}

EVENT_TAGS = (CITY, COMMUNITY, DEVICE, KIND, TYPE)
EVENT_COUNT_FIELD = "n"
#: Event fields written besides ``n=1i``: value (float), result, method, code (text).
EVENT_VALUE_FIELDS = ("value", "result", "method", "code")
STATUS_TAGS = (CITY, COMMUNITY, DEVICE, KIND)
STATUS_ONLINE = "online"
STATUS_REASON = "reason"
#: The device's position from the registry, written with every status so that a map panel
#: (Grafana's geomap) needs nothing but InfluxDB. An addition to the contract's fields.
STATUS_LAT = "lat"
STATUS_LON = "lon"


def measurement(kind: str) -> str:
    """The measurement holding ``kind``'s telemetry."""
    return kind


FieldValue = float | int | bool | str


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point. ``fields`` keep their Python type: float, int, bool or str.

    Integers are written with the ``i`` suffix; readings are always floats, so a
    reading field never changes type.
    """

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    ts_ms: int
