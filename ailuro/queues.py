"""Queues (PanDA's sites / schedconfig): one TOML file read by the dispatcher and the factory.

Example (``queues.toml``)::

    [[queue]]
    name = "CERN_LOCAL"          # the computing_site jobs name
    vos = ["compass"]            # VOs served (empty or absent: any)
    labels = ["user", "managed"] # prod_source_labels served (empty or absent: any)
    backend = "local"            # local | slurm | htcondor | lsf
    max_running = 100            # brokerage capacity (0: unlimited)
    pass_env = ["CMT_*"]        # node variables passed to payloads beyond the default allow-list

    [queue.factory]              # pilot-factory limits for this queue
    max_queued = 10
    max_total = 50
    max_per_cycle = 5

    [queue.backend_options]      # backend-specific settings (partition, schedd, ...)
    partition = "debug"

The dispatcher uses ``name``, ``vos``, ``labels``, ``enabled`` and ``max_running``; the factory
also reads ``factory``, ``backend``, ``backend_options`` and ``pass_env``. Unknown keys are errors, so a typo
never silently falls back to a default.

Storage elements (DDM) live in the same file; a queue names the ones it reads inputs from
(``input_se``, first = preferred) and writes outputs to (``output_se``)::

    [[storage]]
    name = "CERN_EOS"                 # storage element name, as jobs and the catalog use it
    site = "CERN"
    kind = "disk"                     # disk | tape
    endpoints = ["root://eos.example//eos/compass", "http://eos.example:8443/eos/compass"]
    max_transfers = 4                 # concurrent transfers per DDM agent touching this SE

    [[storage]]
    name = "CERN_CASTOR"
    kind = "tape"
    endpoints = ["root://castor.example//castor/compass"]
    staging = "prepare"               # XRootD prepare -s, then query prepare until online
    staging_poll_s = 30               # first poll; later ones at half the time waited (<= 10x)
    staging_timeout_s = 259200        # a recall not online by then is a failed attempt
    pin_lifetime_s = 86400            # how long a recalled file stays on the disk buffer

    [[queue]]
    name = "CERN_LOCAL"
    input_se = ["CERN_EOS"]
    output_se = ["CERN_EOS"]

Fair share (a tree VO -> group -> user; admins change weights live with ``ailuro shares set``)::

    [shares]
    half_life_s = 86400               # usage halves in a day (HTCondor's default)

    [[share]]
    path = "compass/production"       # vo, vo/group or vo/group/user
    weight = 70
    labels = ["managed"]              # groups only: the prod_source_labels they take
    [[share]]
    path = "compass/analysis"
    weight = 30
    labels = ["user"]                 # its users (not listed) split it evenly
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ailuro.errors import InvalidArgument
from ailuro.names import check_identifier
from ailuro.vocabulary import BACKEND_NAMES

BACKENDS = BACKEND_NAMES
_ENV_PATTERN = re.compile(r"[A-Za-z_*?][A-Za-z0-9_*?]*\Z")
SE_KINDS = ("disk", "tape")


@dataclass(frozen=True, kw_only=True)
class FactoryLimits:
    """How many pilots a factory keeps for one queue (APF/Harvester-style limits)."""

    max_queued: int = 10
    """At most this many pilots waiting in the batch system."""
    max_total: int = 50
    """At most this many pilots queued plus running."""
    max_per_cycle: int = 5
    """At most this many submitted in one factory cycle."""
    idle_timeout_s: float = 300.0
    """A pilot that waited for work this long exits (passed to the pilot)."""


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    """One queue (site) that jobs run on."""

    name: str
    vos: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    backend: str = "local"
    enabled: bool = True
    max_running: int = 0
    factory: FactoryLimits = field(default_factory=FactoryLimits)
    backend_options: dict[str, Any] = field(default_factory=dict)
    input_se: tuple[str, ...] = ()
    """Storage elements the queue's pilots read inputs from (first = preferred); empty: no DDM."""
    output_se: tuple[str, ...] = ()
    """Storage elements outputs of the queue's jobs go to when a job names no ``destination_se``."""
    pass_env: tuple[str, ...] = ()
    """Variables (or shell patterns, ``CMT_*``) of the worker node's environment the queue's pilots
    pass on to payloads besides the default allow-list (the factory gives them as ``--pass-env``)."""
    pilot_environment: dict[str, str] = field(default_factory=dict)
    """Environment the factory gives this queue's pilots (over the factory-wide one)."""
    pilot_cores: int = 0
    """Cores the factory asks the batch system for per pilot (a partitionable pilot runs several
    narrow jobs or one wide job in them); 0: not set (one core, and brokerage does not check cores)."""
    pilot_memory_mb: int = 0
    """Memory the factory asks for per pilot, MiB (0: the batch system's default)."""

    def serves(self, *, vo: str, label: str) -> bool:
        """Whether jobs of this VO and prod_source_label may run here."""
        return self.enabled and (not self.vos or vo in self.vos) and (not self.labels or label in self.labels)


@dataclass(frozen=True, kw_only=True)
class StorageElementConfig:
    """One storage element (SE): where files live and how they are reached."""

    name: str
    site: str = ""
    kind: str = "disk"
    """``disk`` (readable at once) or ``tape`` (a file must be staged, bring-online, first)."""
    endpoints: tuple[str, ...] = ()
    """Base URLs, one per protocol, preferred first: ``root://host//path``, ``https://...``, ``file:///...``."""
    staging: str = "delay"
    """Tape only: how files are brought online. ``prepare``: the storage's own bring-online request
    (XRootD ``prepare -s``, polled with ``query prepare``; needs a ``root://`` first endpoint);
    ``delay``: modelled by the catalog (readable ``staging_latency_s`` after the request), for
    tape SEs whose protocol has no bring-online request (``file://``, WebDAV)."""
    staging_latency_s: float = 0.0
    """Tape with ``staging = "delay"``: time a bring-online request takes before the file is readable."""
    staging_poll_s: float = 30.0
    """Tape with ``staging = "prepare"``: first poll after the request; later polls wait half the
    time waited so far, at most 10 times this."""
    staging_timeout_s: float = 259200.0
    """Tape with ``staging = "prepare"``: a recall not online after this long is a failed attempt
    (retried with a new request, up to the request's attempts)."""
    pin_lifetime_s: float = 86400.0
    """Tape only: how long a staged file stays readable (on the disk buffer)."""
    max_transfers: int = 4
    """Concurrent transfers (and stagings) one DDM agent runs that read or write this SE."""

    @property
    def is_tape(self) -> bool:
        return self.kind == "tape"

    @property
    def stages_by_prepare(self) -> bool:
        """Recalls go through the storage's bring-online request (not the modelled delay)."""
        return self.is_tape and self.staging == "prepare"


@dataclass(frozen=True, kw_only=True)
class ShareEntry:
    """One ``[[share]]`` table: a node of the share tree."""

    path: str
    """``vo``, ``vo/group`` or ``vo/group/user``."""
    weight: float = 1.0
    """Its weight among its siblings (> 0)."""
    labels: tuple[str, ...] = ()
    """Groups only: ``prod_source_label`` values whose jobs are charged to this group."""


@dataclass(frozen=True, kw_only=True)
class SharesConfig:
    """The ``[shares]`` settings and ``[[share]]`` tables of a queue file."""

    entries: tuple[ShareEntry, ...] = ()
    """Configured nodes, in file order (a VO's groups are matched in this order)."""
    half_life_s: float = 86400.0
    """Usage halves in this many seconds (0: no decay)."""
    charge_s: float = 3600.0
    """Seconds charged per core for a job without a walltime limit."""
    default_weight: float = 1.0
    """Weight of nodes not configured."""


DEFAULT_QUEUES: tuple[QueueConfig, ...] = (QueueConfig(name="LOCAL"),)
"""Used when no queue file is given: one local queue that serves everyone."""

_QUEUE_KEYS = {
    "name",
    "vos",
    "labels",
    "backend",
    "enabled",
    "max_running",
    "factory",
    "backend_options",
    "input_se",
    "output_se",
    "pass_env",
    "pilot_environment",
    "pilot_cores",
    "pilot_memory_mb",
}
_STORAGE_KEYS = {
    "name",
    "site",
    "kind",
    "endpoints",
    "staging",
    "staging_latency_s",
    "staging_poll_s",
    "staging_timeout_s",
    "pin_lifetime_s",
    "max_transfers",
}
STAGING_MODES = ("delay", "prepare")
"""Values of a storage element's ``staging`` key."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_FACTORY_KEYS = {"max_queued", "max_total", "max_per_cycle", "idle_timeout_s"}


def _named_tables(
    entries: list[Any], prefix: str, allowed: set[str] | frozenset[str], what: str
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(field path, table, name)`` of each ``[[...]]`` table, after the checks every kind shares:
    a table, only ``allowed`` keys, a non-empty ``name`` not used twice."""
    seen: set[str] = set()
    for i, raw in enumerate(entries):
        where = f"{prefix}[{i}]"
        if not isinstance(raw, dict):
            raise InvalidArgument("must be a table", field=where)
        unknown = set(raw) - allowed
        if unknown:
            raise InvalidArgument(f"unknown key(s) {sorted(unknown)}", field=where)
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgument("must be a non-empty string", field=f"{where}.name")
        check_identifier(name, f"{where}.name")  # names become log directories and storage paths
        if name in seen:
            raise InvalidArgument(f"duplicate {what} {name!r}", field=f"{where}.name")
        seen.add(name)
        yield where, raw, name


def parse_queues(data: dict[str, Any], *, source: str = "queues") -> tuple[QueueConfig, ...]:
    """Build queue configs from parsed TOML; ``InvalidArgument`` names the bad key."""
    entries = data.get("queue", [])
    extra = set(data) - {"queue", "storage", "share", "shares"}
    if extra:
        raise InvalidArgument(f"unknown top-level key(s) {sorted(extra)}", field=source)
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument("expected at least one [[queue]] table", field=f"{source}.queue")
    queues: list[QueueConfig] = []
    for where, raw, name in _named_tables(entries, f"{source}.queue", _QUEUE_KEYS, "queue name"):
        backend = raw.get("backend", "local")
        if backend not in BACKENDS:
            raise InvalidArgument(f"must be one of {', '.join(BACKENDS)}, not {backend!r}", field=f"{where}.backend")
        fac = raw.get("factory", {})
        if not isinstance(fac, dict) or set(fac) - _FACTORY_KEYS:
            raise InvalidArgument(f"allowed keys are {sorted(_FACTORY_KEYS)}", field=f"{where}.factory")
        for key, value in fac.items():
            if not isinstance(value, int | float) or value < 0:
                raise InvalidArgument("must be a number >= 0", field=f"{where}.factory.{key}")
        max_running = raw.get("max_running", 0)
        if not isinstance(max_running, int) or max_running < 0:
            raise InvalidArgument("must be an integer >= 0", field=f"{where}.max_running")
        pilot_cores = raw.get("pilot_cores", 0)
        if not isinstance(pilot_cores, int) or isinstance(pilot_cores, bool) or not 0 <= pilot_cores <= 1024:
            raise InvalidArgument("must be an integer from 0 to 1024", field=f"{where}.pilot_cores")
        pilot_memory_mb = raw.get("pilot_memory_mb", 0)
        if not isinstance(pilot_memory_mb, int) or isinstance(pilot_memory_mb, bool) or pilot_memory_mb < 0:
            raise InvalidArgument("must be an integer >= 0", field=f"{where}.pilot_memory_mb")
        for key in ("vos", "labels", "input_se", "output_se", "pass_env"):
            value = raw.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidArgument("must be a list of strings", field=f"{where}.{key}")
        for pattern in raw.get("pass_env", []):
            if not _ENV_PATTERN.match(pattern):
                raise InvalidArgument(f"{pattern!r} is not a variable name or pattern", field=f"{where}.pass_env")
        options = raw.get("backend_options", {})
        if not isinstance(options, dict):
            raise InvalidArgument("must be a table", field=f"{where}.backend_options")
        environment = raw.get("pilot_environment", {})
        if not isinstance(environment, dict) or not all(
            isinstance(k, str) and _ENV_NAME.fullmatch(k) and isinstance(v, str) for k, v in environment.items()
        ):
            raise InvalidArgument(
                'must be a table of NAME = "value" strings (names: letters, digits, _)',
                field=f"{where}.pilot_environment",
            )
        queues.append(
            QueueConfig(
                name=name,
                vos=tuple(raw.get("vos", [])),
                labels=tuple(raw.get("labels", [])),
                backend=backend,
                enabled=bool(raw.get("enabled", True)),
                max_running=max_running,
                factory=FactoryLimits(**fac),
                backend_options=dict(options),
                input_se=tuple(raw.get("input_se", [])),
                output_se=tuple(raw.get("output_se", [])),
                pass_env=tuple(raw.get("pass_env", [])),
                pilot_environment=dict(environment),
                pilot_cores=pilot_cores,
                pilot_memory_mb=pilot_memory_mb,
            )
        )
    known_se = {se.name for se in parse_storage(data, source=source)}
    for i, q in enumerate(queues):
        for key in ("input_se", "output_se"):
            for name in getattr(q, key):
                if name not in known_se:
                    raise InvalidArgument(f"unknown storage element {name!r}", field=f"{source}.queue[{i}].{key}")
    return tuple(queues)


def parse_storage(data: dict[str, Any], *, source: str = "queues") -> tuple[StorageElementConfig, ...]:
    """Build storage-element configs from the ``[[storage]]`` tables; ``InvalidArgument`` names the bad key."""
    entries = data.get("storage", [])
    if not isinstance(entries, list):
        raise InvalidArgument("expected [[storage]] tables", field=f"{source}.storage")
    out: list[StorageElementConfig] = []
    for where, raw, name in _named_tables(entries, f"{source}.storage", _STORAGE_KEYS, "storage element"):
        kind = raw.get("kind", "disk")
        if kind not in SE_KINDS:
            raise InvalidArgument(f"must be one of {', '.join(SE_KINDS)}, not {kind!r}", field=f"{where}.kind")
        endpoints = raw.get("endpoints", [])
        if (
            not isinstance(endpoints, list)
            or not endpoints
            or not all(isinstance(e, str) and "://" in e for e in endpoints)
        ):
            raise InvalidArgument("must be a non-empty list of URLs (scheme://...)", field=f"{where}.endpoints")
        numbers: dict[str, Any] = {}
        for key in ("staging_latency_s", "staging_poll_s", "staging_timeout_s", "pin_lifetime_s", "max_transfers"):
            if key in raw:
                value = raw[key]
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise InvalidArgument("must be a number >= 0", field=f"{where}.{key}")
                numbers[key] = value
        if "max_transfers" in numbers and (
            not isinstance(numbers["max_transfers"], int) or numbers["max_transfers"] < 1
        ):
            raise InvalidArgument("must be an integer >= 1", field=f"{where}.max_transfers")
        if numbers.get("staging_poll_s", 1) <= 0:
            raise InvalidArgument("must be a number > 0", field=f"{where}.staging_poll_s")
        site = raw.get("site", "")
        if not isinstance(site, str):
            raise InvalidArgument("must be a string", field=f"{where}.site")
        staging = raw.get("staging", "delay")
        if staging not in STAGING_MODES:
            raise InvalidArgument(
                f"must be one of {', '.join(STAGING_MODES)}, not {staging!r}", field=f"{where}.staging"
            )
        if staging == "prepare" and (
            kind != "tape" or endpoints[0].split("://", 1)[0].lower() not in ("root", "xroot")
        ):
            raise InvalidArgument('prepare needs kind = "tape" and a root:// first endpoint', field=f"{where}.staging")
        out.append(
            StorageElementConfig(
                name=name, site=site, kind=kind, endpoints=tuple(endpoints), staging=staging, **numbers
            )
        )
    return tuple(out)


_SHARES_KEYS = {"half_life_s", "charge_s", "default_weight"}
_SHARE_KEYS = {"path", "weight", "labels"}
_SHARE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")


def check_share_path(path: Any, field_name: str) -> tuple[str, ...]:
    """The parts of a share path ``vo[/group[/user]]`` (``vo//user``: a VO without groups)."""
    if not isinstance(path, str) or len(path) > 255:
        raise InvalidArgument("must be a string of at most 255 characters", field=field_name)
    parts = tuple(path.split("/"))
    ok = 1 <= len(parts) <= 3 and all(_SHARE_PART.match(p) for p in parts if p) and parts[0] and parts[-1]
    if not ok or (len(parts) == 2 and not parts[1]):
        raise InvalidArgument(f"{path!r} is not vo, vo/group or vo/group/user", field=field_name)
    return parts


def check_share_weight(weight: Any, field_name: str) -> float:
    """A share weight: a finite number > 0 and at most 1e6."""
    if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0 < weight <= 1e6:
        raise InvalidArgument("must be a number > 0 and at most 1000000", field=field_name)
    return float(weight)


def parse_shares(data: dict[str, Any], *, source: str = "queues") -> SharesConfig:
    """The fair-share tree of a queue file; ``InvalidArgument`` names the bad key."""
    settings = data.get("shares", {})
    if not isinstance(settings, dict) or set(settings) - _SHARES_KEYS:
        raise InvalidArgument(f"allowed keys are {sorted(_SHARES_KEYS)}", field=f"{source}.shares")
    for key, value in settings.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise InvalidArgument("must be a number >= 0", field=f"{source}.shares.{key}")
    entries = data.get("share", [])
    if not isinstance(entries, list):
        raise InvalidArgument("expected [[share]] tables", field=f"{source}.share")
    out: list[ShareEntry] = []
    seen: set[str] = set()
    for i, raw in enumerate(entries):
        where = f"{source}.share[{i}]"
        if not isinstance(raw, dict) or set(raw) - _SHARE_KEYS:
            raise InvalidArgument(f"must be a table with keys {sorted(_SHARE_KEYS)}", field=where)
        parts = check_share_path(raw.get("path"), f"{where}.path")
        path = "/".join(parts)
        if path in seen:
            raise InvalidArgument(f"duplicate share {path!r}", field=f"{where}.path")
        seen.add(path)
        labels = raw.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
            raise InvalidArgument("must be a list of strings", field=f"{where}.labels")
        if labels and len(parts) != 2:
            raise InvalidArgument("only a group (vo/group) takes labels", field=f"{where}.labels")
        weight = check_share_weight(raw.get("weight", 1.0), f"{where}.weight")
        out.append(ShareEntry(path=path, weight=weight, labels=tuple(labels)))
    return SharesConfig(entries=tuple(out), **{k: float(v) for k, v in settings.items()})


def load_shares(path: str | Path | None) -> SharesConfig:
    """The share tree of a queue file (empty without a file)."""
    if path is None:
        return SharesConfig()
    return parse_shares(_read_toml(Path(path)), source=str(path))


def load_storage(path: str | Path | None) -> tuple[StorageElementConfig, ...]:
    """The ``[[storage]]`` tables of a queue file (none without a file)."""
    if path is None:
        return ()
    return parse_storage(_read_toml(Path(path)), source=str(path))


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"no such file: {p}", field="queues") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{p}: {exc}", field="queues") from None


def load_queues(path: str | Path | None) -> tuple[QueueConfig, ...]:
    """Read a queue file; ``None`` gives :data:`DEFAULT_QUEUES`."""
    if path is None:
        return DEFAULT_QUEUES
    p = Path(path)
    return parse_queues(_read_toml(p), source=str(p))
