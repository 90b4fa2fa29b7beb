"""One typed configuration tree: defaults, then a TOML file, then ``SCT_<SECTION>__<KEY>``.

Validated once at start-up; each component receives its own section. A bad value stops
the program with a message naming the key (see :func:`load`).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from collector.errors import ConfigError
from devices import labels
from devices.schema import DEFAULT_DATABASE

Positive = Annotated[float, Field(gt=0)]


def _url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must look like {schemes[0]}://host:port")
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(Section):
    """The broker the collector subscribes to."""

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "sct-collector"
    topic_root: str = "sc"
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    #: Messages read from the broker but not yet decoded. Past it the collector stops
    #: reading the socket, so the broker holds the rest (nothing is dropped).
    max_pending_messages: Annotated[int, Field(ge=10)] = 10_000
    reconnect_min_s: Positive = 0.5
    reconnect_max_s: Positive = 30.0
    #: When the broker has sent nothing for this long while messages wait for their
    #: acknowledgement, the batch is written at once instead of at its age: a broker with a
    #: small in-flight window waits for those acknowledgements before it sends more.
    stall_flush_ms: Annotated[float, Field(gt=0, le=60_000)] = 3.0
    #: A trickle (fewer messages waiting than one pass takes) is left to pile up in the socket
    #: before it is taken, so one wake-up of the collector takes many messages, not one or
    #: two: less CPU a message at live rates, for some latency. As long as a few hundred
    #: messages take to arrive (``source.Gathering``), at most this long. 0: off.
    gather_ms: Annotated[float, Field(ge=0, le=1_000)] = 250.0
    #: TLS (``mqtts://`` URLs): the CA that signed the broker's certificate (default: the
    #: system's trust store); the server's name is always checked against the URL's host.
    ca_file: FilePath | None = None
    #: An optional client certificate and its key, for brokers that ask for one.
    cert_file: FilePath | None = None
    key_file: FilePath | None = None

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        return _url(value, ("mqtt", "tcp", "mqtts", "ssl"))

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> MqttSettings:
        for name in ("ca_file", "cert_file", "key_file"):
            if getattr(self, name) is not None and not self.tls:
                raise ValueError(f"{name} is for TLS: the url must be mqtts://host:port")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme in ("mqtts", "ssl")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for an ``mqtts://`` URL (certificate and host name verified),
        or None for plain MQTT."""
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file and self.key_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


class SourceSettings(Section):
    """Where messages come from: ``mqtt`` (one broker, the default) or ``amqp`` (partitioned
    queues on a RabbitMQ cluster; README, "Scaling out")."""

    kind: Literal["mqtt", "amqp"] = "mqtt"


class AmqpSettings(Section):
    """The RabbitMQ cluster of the ``amqp`` source, and the topology ``sct cluster setup``
    declares on it. Devices publish over MQTT to RabbitMQ's MQTT plugin; the collectors
    consume the partition queues over AMQP 0-9-1."""

    #: The cluster's nodes, tried in turn (``SCT_AMQP__URLS='["amqp://h1:5672/", ...]'``).
    urls: list[str] = Field(default_factory=lambda: ["amqp://127.0.0.1:5672/"], min_length=1)
    #: Override the URLs' user and password (keeps the secret out of the URL list).
    username: str | None = None
    password: SecretStr | None = None
    #: Names of the exchanges, queues and streams (``<prefix>.partition.<n>``, ...).
    prefix: str = Field("sct", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    #: Partition queues; fixed once chosen (a community's partition is a hash modulo it).
    partitions: Annotated[int, Field(ge=1, le=1024)] = 16
    #: Messages the broker sends each consumer before waiting for acknowledgements: with
    #: acknowledgements held until InfluxDB has the readings, this is the backpressure.
    prefetch: Annotated[int, Field(ge=1, le=65_535)] = 2_000
    #: The collectors sharing the partitions (their ``metrics.instance``): each subscribes
    #: first to its share (round robin over the sorted names); without it, to a half picked
    #: by a hash of its own name.
    peers: list[str] = Field(default_factory=list)
    #: How long a collector waits before standing by on the partitions not its own.
    standby_delay_s: Annotated[float, Field(ge=0)] = 5.0
    #: Deliveries after which a message that keeps failing goes to the dead letters
    #: (reason ``poison``); x-delivery-limit of the partition queues.
    delivery_limit: Annotated[int, Field(ge=1)] = 5
    #: A partition queue's bound; past it RabbitMQ refuses publishes (the MQTT device is
    #: disconnected and publishes again later) instead of dropping.
    max_length: Annotated[int, Field(ge=1000)] = 5_000_000
    #: The dead-letter stream's size bound (oldest records go first).
    deadletter_max_mb: Positive = 10_240.0
    #: How often the statistical detectors' state of the active partitions is saved to the
    #: broker (and at shutdown), for a collector that takes them over; at most 12 h (the
    #: state streams keep a day).
    state_every_s: Annotated[float, Field(gt=0, le=43_200)] = 900.0
    connect_timeout_s: Positive = 10.0
    reconnect_min_s: Positive = 0.5
    reconnect_max_s: Positive = 30.0

    @field_validator("urls")
    @classmethod
    def _amqp_urls(cls, value: list[str]) -> list[str]:
        return [_url(url, ("amqp", "amqps")) for url in value]

    def credentials(self, url: str) -> str:
        """``url`` with ``username``/``password`` put in, when set."""
        if self.username is None:
            return url
        parts = urlsplit(url)
        secret = self.password.get_secret_value() if self.password else ""
        netloc = f"{quote(self.username, safe='')}:{quote(secret, safe='')}@" \
                 f"{parts.hostname}{':' + str(parts.port) if parts.port else ''}"
        return parts._replace(netloc=netloc).geturl()


class InfluxSettings(Section):
    """Where readings are written, and how."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = DEFAULT_DATABASE
    username: str | None = None
    password: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    create_database: bool = True
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5_000
    flush_interval_s: Positive = 1.0
    #: When the broker stalls with messages unacknowledged, the batch is written once it is
    #: this old (at once when the broker's learnt in-flight window is full). 100 ms, not 20:
    #: a live fleet's trickle then costs the collector about 70 µs of CPU a message instead
    #: of about 100 (fewer, larger writes: each write and its acknowledgements are socket
    #: writes, which cost more than a message's decoding), for at most 80 ms more latency.
    min_batch_age_ms: Annotated[float, Field(ge=0, le=60_000)] = 100.0
    max_pending_batches: Annotated[int, Field(ge=1)] = 8
    timeout_s: Positive = 10.0
    retry_min_s: Positive = 0.2
    retry_max_s: Positive = 30.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _url(value, ("http", "https")).rstrip("/")

    @model_validator(mode="after")
    def _v2_needs_org_bucket_token(self) -> InfluxSettings:
        # Checked here, before anything connects: found at the first write it was a crash.
        if self.api == "v2":
            missing = [k for k in ("org", "bucket", "token") if not getattr(self, k)]
            if missing:
                raise ValueError(f"{missing[0]}: required when api is v2 (missing: "
                                 f"{', '.join(missing)})")
        return self


class RegistrySettings(Section):
    path: Path = Path("registry.yaml")


class StorageSettings(Section):
    """The collector's own files: dead letters, the spool (and later detector state)."""

    dir: Path = Path("var")
    deadletter_max_mb: Positive = 1024.0
    #: The spool holds batches while InfluxDB cannot take them; when full, the collector
    #: stops taking from the broker (which keeps the messages) instead of dropping.
    spool_max_mb: Positive = 2048.0
    #: Raise the ``spool_nearly_full`` alert at this share of ``spool_max_mb``.
    spool_alert_pct: Annotated[float, Field(gt=0, le=100)] = 80.0


class ValidationSettings(Section):
    """What the decoder accepts."""

    max_payload_bytes: Annotated[int, Field(ge=64)] = 256 * 1024
    max_age_days: Positive = 30.0
    max_future_s: Annotated[float, Field(ge=0)] = 300.0


class DetectSettings(Section):
    """Detection: the domain rules' thresholds and the statistical detectors.

    Defaults and where they come from are in the README (section Detection).
    """

    enabled: bool = True
    statistical: bool = True          # outlier / level-shift alerts on the fields below
    #: ``surprise``: one detector per watched field; ``t2``: one detector over all of a
    #: device's watched fields: the T² pair over two or more, the levels model over one
    #: (issue 14; README, Detection).
    statistical_model: Literal["surprise", "t2"] = "t2"
    #: ``t2``'s false-alarm budget: statistical alerts per device per 100 days of normal data
    #: (the T² pair's threshold; the levels model has none to place).
    statistical_alerts_per_100_days: Positive = 1.0
    #: A tenth of the detector state (one segment in turn) saved this often; all of it at
    #: shutdown. After a crash a device's state is at most ten times this old.
    snapshot_s: Positive = 60.0
    lamp_dark_lux: Annotated[float, Field(ge=0)] = 10.0
    lamp_daylight_lux: Annotated[float, Field(ge=0)] = 1000.0
    lamp_power_tolerance: Annotated[float, Field(gt=0, le=1)] = 0.3
    bin_full_pct: Annotated[float, Field(gt=0, le=100)] = 90.0
    bin_fire_temp_c: float = 60.0
    bin_temp_rise_c_per_h: Positive = 15.0
    bin_max_hours_between_collections: dict[str, float] = Field(default_factory=lambda: {
        "kitchen": 24.0, "other": 36.0, "recyclable": 72.0, "hazardous": 24.0 * 8})
    turbidity_max_ntu: Positive = 1.0
    chlorine_min_mg_l: Annotated[float, Field(ge=0)] = 0.05
    ph_min: float = 6.5
    ph_max: float = 8.5
    pressure_drop_pct: Annotated[float, Field(gt=0, lt=100)] = 30.0
    leak_night_rise_pct: Positive = 30.0
    leak_nights: Annotated[int, Field(ge=1)] = 3
    level_rise_pct_per_h: Positive = 20.0
    denied_in_a_row: Annotated[int, Field(ge=2)] = 3
    denied_window_s: Positive = 300.0
    battery_low_pct: Annotated[float, Field(ge=0, le=100)] = 20.0
    stuck_readings: Annotated[int, Field(ge=3)] = 30
    silent_factor: Positive = 5.0     # silent when no reading for this many usual intervals
    silent_min_s: Positive = 600.0    # ... and at least this long


class KpiSettings(Section):
    """The green-community indicators: window, schedule and thresholds.

    Defaults and where they come from are in the README (section Green-community KPIs).
    """

    window_days: Positive = 30.0
    interval_s: Positive = 3600.0        # the collector recomputes this often
    online_window_h: Positive = 24.0     # a device is online when it reported within this
    lamps_per_100_households: Annotated[float, Field(ge=0)] = 2.0
    lamp_availability: Annotated[float, Field(ge=0, le=1)] = 0.95
    energy_saving: Annotated[float, Field(ge=0, le=1)] = 0.20
    bin_overflow_rate_max: Annotated[float, Field(ge=0, le=1)] = 0.05
    water_quality_compliance: Annotated[float, Field(ge=0, le=1)] = 0.95
    leak_indicator_max: Positive = 0.5   # inlet's daily minimum flow over its daily mean
    security_per_100_households: Annotated[float, Field(ge=0)] = 3.0
    device_online_rate: Annotated[float, Field(ge=0, le=1)] = 0.95
    #: An indicator that needs only a stretch of readings (not a whole night) is judged once
    #: the community's first reading of it is this old.
    min_history_h: Positive = 1.0
    #: The milestone in force: the year the board, ``sct kpi`` and the report judge by.
    target_year: int = 2022
    #: The share of a city's urban communities meeting every indicator, by year (the
    #: provincial three-year plan: 30 % by 2021, 60 % by 2022).
    city_targets: dict[int, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {2021: 0.30, 2022: 0.60})
    #: The count of green communities each city needs, by year (2020: at least 5 in each
    #: city with districts, at least 2 in Dingzhou and Xinji).
    city_minimums: dict[int, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {2020: 5})
    city_minimums_county_level: dict[int, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {2020: 2})
    #: city id -> its number of urban communities: a share's denominator. A city left out
    #: counts the registry's communities of that city (the registry may hold only the
    #: communities retrofitted so far, so set it).
    city_communities: dict[str, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)

    @field_validator("city_communities")
    @classmethod
    def _known_cities(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - {c.id for c in labels.CITIES})
        if unknown:
            raise ValueError(f"unknown city {', '.join(unknown)} (one of "
                             f"{', '.join(c.id for c in labels.CITIES)})")
        return value

    def plan(self) -> dict[int, str]:
        """year -> ``count`` (a number of green communities: ``city_minimums``) or ``share``
        (of the city's urban communities: ``city_targets``), in year order."""
        counts = {*self.city_minimums, *self.city_minimums_county_level}
        return {y: "count" if y in counts else "share"
                for y in sorted(counts | set(self.city_targets))}

    @property
    def target_share(self) -> float:
        """The share target of ``target_year`` (0 when that year sets a count instead), as
        the dashboards and the report show it."""
        return self.city_targets.get(self.target_year, 0.0)


class UiSettings(Section):
    """What operators read: the dashboards, ``sct kpi``, ``sct report`` and alert messages."""

    #: ``zh`` (Chinese, the default) or ``en``. Ids and tags in InfluxDB do not change.
    language: labels.Language = "zh"


class MetricsSettings(Section):
    instance: str = "sct-1"
    interval_s: Positive = 10.0
    #: Raise the ``write_stalled`` alert when readings wait and nothing was written for this
    #: long.
    stall_alert_s: Positive = 60.0


class Settings(BaseSettings):
    """The whole configuration tree."""

    model_config = SettingsConfigDict(
        env_prefix="SCT_", env_nested_delimiter="__", extra="forbid", case_sensitive=False,
    )

    source: SourceSettings = SourceSettings()
    mqtt: MqttSettings = MqttSettings()
    amqp: AmqpSettings = AmqpSettings()
    influx: InfluxSettings = InfluxSettings()
    registry: RegistrySettings = RegistrySettings()
    storage: StorageSettings = StorageSettings()
    validation: ValidationSettings = ValidationSettings()
    metrics: MetricsSettings = MetricsSettings()
    detect: DetectSettings = DetectSettings()
    kpi: KpiSettings = KpiSettings()
    ui: UiSettings = UiSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over the TOML file over the defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load(path: str | Path | None = None) -> Settings:
    """Read the configuration: the TOML file at ``path`` (if any) under the environment.

    Raises:
        ConfigError: the file is missing or unreadable, or a value is invalid; the message
            names every bad key as ``section.key`` and its environment variable.
    """
    toml_file = None
    if path is not None:
        toml_file = Path(path)
        if not toml_file.is_file():
            raise ConfigError(f"configuration file {toml_file} does not exist")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=toml_file)

    try:
        loaded = _FromFile()
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from exc
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"configuration file {toml_file}: {exc}") from exc
    return loaded


def _explain(exc: ValidationError) -> str:
    """One line naming each bad key and its environment variable.

    A cross-field rule (a model validator) says which key it is about by starting its
    message with ``<key>: ``."""
    parts = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        msg = str(err["msg"]).removeprefix("Value error, ")
        head, sep, rest = msg.partition(": ")
        if sep and head.isidentifier() and len(loc) == 1:
            loc, msg = [*loc, head], rest
        env = "SCT_" + "__".join(part.upper() for part in loc)
        parts.append(f"{'.'.join(loc)}: {msg} (set in the TOML file or {env})")
    return "invalid configuration: " + "; ".join(parts)
