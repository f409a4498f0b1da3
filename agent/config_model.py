"""The agent's configuration as plain dataclasses (filled and validated by agent/config.py).

Times on the bus are milliseconds, as technicians read them off datasheets; poll intervals and
batching ages are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMAT_VERSION = 1


@dataclass
class GatewayConfig:
    site: str
    id: str
    prefix: str = "fieldlink"
    payload: str = "senml"  # "senml" or "compact"
    health_interval: float = 60.0
    # where the gateway stands, for lighting schedules (sunrise, sunset, local time): all or none
    latitude: float | None = None  # degrees, north positive
    longitude: float | None = None  # degrees, east positive
    timezone: str | None = None  # an IANA name, compiled to an offset table (agent/lighting/zones.py)
    district: str | None = None  # the city district the gateway serves (birth; fleet report per district)


@dataclass(frozen=True)
class Endpoint:
    """One broker address the gateway may use: `[broker] host`/`port`, or an entry of `endpoints`.

    TLS files and credentials are the endpoint's own when its table sets them (`own`), else those of
    `[broker]`; `where` is the config key that defines it, for messages ("broker" or
    "broker.endpoints[1]")."""

    url: str  # mqtt://host:port or mqtts://host:port, as shown in logs, health and the state file
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log
    where: str = "broker"
    own: tuple[str, ...] = ()

    def key(self, name: str) -> str:
        """The config key a setting of this endpoint comes from, e.g. broker.endpoints[1].ca_file."""
        if name in ("host", "port") and self.where != "broker":
            return self.where
        return "%s.%s" % (self.where if name in self.own else "broker", name)


@dataclass
class BrokerConfig:
    host: str = "localhost"
    port: int = 1883
    client_id: str | None = None  # default: "<prefix>-<site>-<gateway>"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive: int = 30
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    puback_timeout: float = 30.0  # a session whose oldest pack waits longer for its PUBACK is ended
    # several brokers (a cluster's nodes, a pair): tried in turn, docs/broker.md "Endpoints"
    endpoints: list[Endpoint] = field(default_factory=list)
    probe_interval: float = 1.5  # a known-good endpoint that went away is retried this often (jittered)
    probe_window: float = 300.0  # ... for this long; then the backoff grows to reconnect_max
    connect_timeout: float = 5.0  # TCP connect (per address) and TLS handshake
    persistent_session: bool = True  # clean session off: subscriptions and queued commands survive
    session_expiry: int = 86400  # MQTT 5: seconds the broker keeps the session after a disconnect
    mqtt_version: str = "auto"  # "auto" (5, else 3.1.1), "5" or "3.1.1"

    def endpoint_list(self) -> list[Endpoint]:
        """The endpoints in the order given; `host`/`port` alone is one endpoint."""
        if self.endpoints:
            return list(self.endpoints)
        scheme = "mqtts" if self.tls else "mqtt"
        return [Endpoint(url="%s://%s:%d" % (scheme, _url_host(self.host), self.port), host=self.host,
                         port=self.port, tls=self.tls, ca_file=self.ca_file, cert_file=self.cert_file,
                         key_file=self.key_file, username=self.username, password=self.password)]


def _url_host(host: str) -> str:
    return "[%s]" % host if ":" in host else host


@dataclass
class OutboxConfig:
    path: str = "/var/lib/fieldlink/outbox.sqlite"
    max_bytes: int = 64 * 1024 * 1024
    fsync: str = "normal"  # "full": fsync every commit; "normal": the WAL fsynced within `sync_every` s
    sync_every: float = 1.0  # fsync "normal": seconds a commit may wait for its fsync (0: checkpoints only)
    inflight: int = 20  # packs published and awaiting PUBACK at once
    memory_bytes: int = 8 * 1024 * 1024  # packs held in memory while the disk cannot take them


@dataclass
class BatchConfig:
    max_records: int = 200
    max_age: float = 5.0
    max_bytes: int = 16 * 1024
    adaptive: bool = True  # an idle uplink publishes each poll at once; false: packs close at the limits only
    linger: float = 0.25  # while idle, a fresh reading waits up to this long (from its time) for others


@dataclass
class CommandsConfig:
    """Remote control from `…/cmd` (docs/commands.md)."""

    signed: str = "switching"  # "switching" | "all" | "none": which commands need a COSE_Mac0
    key_file: str | None = None  # 32 random bytes as 64 hex characters (one key per line, rotation: two)
    max_bytes: int = 4096  # a command payload above this is refused before it is decoded
    queue: int = 32  # commands waiting per bus; the excess is acked "busy"
    id_window: int = 86400  # seconds an id is remembered without an exp; also the longest exp ahead
    id_store: str | None = None  # default: command-ids.sqlite beside the outbox
    # the keys read from key_file (never shown: repr=False)
    keys: list[bytes] = field(default_factory=list, repr=False)


@dataclass
class BusConfig:
    name: str
    port: str  # device path (/dev/ttyUSB0) or URL (socket://host:502, rfc2217://, loop://)
    baud: int = 9600
    parity: str = "N"  # N, E, O
    bytesize: int = 8
    stopbits: int = 1
    timeout_ms: int = 500  # response timeout
    turnaround_ms: int = 0  # wait after a reply before the next request
    pause_ms: int = 0  # extra silence between requests
    line: int = 0  # line in the config file, for messages


@dataclass
class DeviceConfig:
    id: str
    bus: str
    profile: str
    address: str  # Modbus unit as decimal text, DL/T 645 12 digits, CJ/T 188 14 digits
    interval: float = 10.0
    points: list[str] | None = None  # None: all points of the profile
    max_registers: int | None = None  # override for quirky devices
    single_point_requests: bool = False
    options: dict = field(default_factory=dict, repr=False)  # the profile's options overridden (secrets)
    # for the smart-city indicators (docs/indicators.md): what a meter or network sensor serves
    # ({households}, {network, length_m}) and how many lamps a lamp controller switches
    serves: dict | None = None
    lights: int | None = None
    line: int = 0


@dataclass
class RuleConfig:
    device: str
    point: str
    kind: str = "threshold"
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0.0
    line: int = 0


@dataclass
class LightingConfig:
    """Street-lighting schedules at run time (docs/lighting.md)."""

    store: str = "schedules.json"  # replaced schedules (signed commands), beside the outbox by default
    alarm_after: float = 300.0  # seconds a lamp may differ from its schedule before a `lighting` alarm


@dataclass
class Config:
    path: str
    gateway: GatewayConfig
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    buses: list[BusConfig] = field(default_factory=list)
    devices: list[DeviceConfig] = field(default_factory=list)
    rules: list[RuleConfig] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)  # [groups]: name -> device ids
    schedules: list[dict] = field(default_factory=list)  # [[schedules]] tables, checked
    lighting: LightingConfig = field(default_factory=LightingConfig)
    format_version: int = FORMAT_VERSION
    # Filled by agent/config.py (acquisition side): site profile folders from the top-level
    # `profiles` key, and the loaded Profile of every model the devices use (model -> Profile).
    profile_dirs: list[str] = field(default_factory=list)
    profiles: dict = field(default_factory=dict)

    def topic(self, leaf: str) -> str:
        """`<prefix>/<site>/<gateway>/<leaf>`."""
        g = self.gateway
        return "%s/%s/%s/%s" % (g.prefix, g.site, g.id, leaf)
