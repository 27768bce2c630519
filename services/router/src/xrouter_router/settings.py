"""The router's settings, read once from the environment at startup."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from xrouter_common.env import ConfigError, env_bool, env_decimal, env_float, env_int, env_str
from xrouter_common.tls import CertFiles, is_loopback, optional_path, require_files
from xrouter_router.domain.fx import Rate, configured
from xrouter_router.domain.plans import TIER_ORDER
from xrouter_router.domain.vat import DEFAULT_SCHEDULE, MOSCOW, VatSchedule

DEFAULT_CATALOG = Path(__file__).with_name("default_catalog.toml")
CBR_URL = "https://www.cbr.ru/scripts/XML_daily.asp"


def _plan_tier(env: Mapping[str, str] | None) -> str:
    tier = env_str("XROUTER_DEFAULT_PLAN_TIER", "free", env)
    if tier not in TIER_ORDER:
        raise ConfigError(f"XROUTER_DEFAULT_PLAN_TIER must be one of {list(TIER_ORDER)}, "
                          f"got {tier!r}")
    return tier


def _pii_ner(env: Mapping[str, str] | None) -> str:
    ner = env_str("XROUTER_PII_NER", "", env).lower()
    if ner not in ("", "natasha"):
        raise ConfigError(f"XROUTER_PII_NER must be 'natasha' or empty, got {ner!r}")
    return ner


def _fx_rates(env: Mapping[str, str] | None) -> tuple[Rate, ...]:
    try:
        return configured(env_str("XROUTER_FX_RATES", "", env))
    except ValueError as exc:
        raise ConfigError(f"XROUTER_FX_RATES: {exc}") from None


def _cbr_url(env: Mapping[str, str] | None) -> str:
    """The Central Bank's feed URL; "off" turns it off (an empty variable means unset, as every
    setting's does)."""
    url = env_str("XROUTER_FX_CBR_URL", CBR_URL, env)
    if url == "off":
        return ""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"XROUTER_FX_CBR_URL must be an http(s) URL or off, got {url[:64]!r}")
    return url


def _vat(env: Mapping[str, str] | None) -> VatSchedule:
    """XROUTER_VAT_SCHEDULE in XROUTER_VAT_TIMEZONE, parsed once: a bad value stops the start."""
    zone_name = env_str("XROUTER_VAT_TIMEZONE", "Europe/Moscow", env)
    try:
        zone = MOSCOW if zone_name == "Europe/Moscow" else ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"XROUTER_VAT_TIMEZONE must be an IANA time zone, got {zone_name!r}") \
            from None
    text = env_str("XROUTER_VAT_SCHEDULE", DEFAULT_SCHEDULE, env)
    try:
        return VatSchedule.parse(text, zone)
    except ValueError as exc:
        raise ConfigError(f"XROUTER_VAT_SCHEDULE {text!r}: {exc}") from None


def _grpc_tls(listen: str, env: Mapping[str, str] | None) -> CertFiles | None:
    """The router's mTLS files, or None for plaintext, which only a loopback listen address
    (embedded mode) or an explicit XROUTER_ROUTER_INSECURE=true allows."""
    files = CertFiles(optional_path(env_str("XROUTER_ROUTER_TLS_CERT", "", env)),
                      optional_path(env_str("XROUTER_ROUTER_TLS_KEY", "", env)),
                      optional_path(env_str("XROUTER_ROUTER_TLS_CLIENT_CA", "", env)))
    if not files.paths():
        if not is_loopback(listen) and not env_bool("XROUTER_ROUTER_INSECURE", False, env):
            raise ConfigError(
                f"XROUTER_ROUTER_LISTEN={listen} is not a loopback address: set "
                "XROUTER_ROUTER_TLS_CERT, XROUTER_ROUTER_TLS_KEY and XROUTER_ROUTER_TLS_CLIENT_CA "
                "(mutual TLS), or XROUTER_ROUTER_INSECURE=true to serve plaintext gRPC anyway")
        return None
    if None in (files.cert, files.key, files.ca):
        raise ConfigError("XROUTER_ROUTER_TLS_CERT, XROUTER_ROUTER_TLS_KEY and "
                          "XROUTER_ROUTER_TLS_CLIENT_CA go together (mutual TLS)")
    require_files("XROUTER_ROUTER_TLS_*", files)
    return files


def database_url(env: Mapping[str, str] | None = None) -> str:
    """XROUTER_DATABASE_URL with XROUTER_DATABASE_TLS_* applied (sslmode=verify-full)."""
    url = env_str("XROUTER_DATABASE_URL", "", env)
    ca = env_str("XROUTER_DATABASE_TLS_CA", "", env)
    if not url or not ca:
        return url
    from xrouter_router.storage.sql.postgres import with_tls  # psycopg: cluster mode only

    return with_tls(url, ca=ca, cert=env_str("XROUTER_DATABASE_TLS_CERT", "", env),
                    key=env_str("XROUTER_DATABASE_TLS_KEY", "", env))


def _redis_tls(env: Mapping[str, str] | None) -> CertFiles | None:
    files = CertFiles(optional_path(env_str("XROUTER_REDIS_TLS_CERT", "", env)),
                      optional_path(env_str("XROUTER_REDIS_TLS_KEY", "", env)),
                      optional_path(env_str("XROUTER_REDIS_TLS_CA", "", env)))
    if not files.paths():
        return None
    if (files.cert is None) != (files.key is None):
        raise ConfigError("XROUTER_REDIS_TLS_CERT and XROUTER_REDIS_TLS_KEY go together")
    if not env_str("XROUTER_REDIS_URL", "", env).startswith("rediss://"):
        raise ConfigError("XROUTER_REDIS_TLS_* need a rediss:// XROUTER_REDIS_URL")
    require_files("XROUTER_REDIS_TLS_*", files)
    return files


@dataclass(frozen=True, slots=True)
class RouterSettings:
    listen: str
    catalog_path: Path
    master_key: str
    attempt_timeout: float
    stream_idle_timeout: float
    connect_timeout: float
    max_attempts: int
    pool_size: int
    shutdown_grace: float
    metrics_port: int
    request_log: bool = True
    # Redis Cluster shared by the replicas (deployment statistics); "" = in-process (embedded).
    redis_url: str = ""
    # Embedded mode: where the SQLite database (keys, accounts, ledger) and the key secret live.
    data_dir: Path = Path(".xrouter")
    # HMAC secret for key hashes; embedded mode creates one in data_dir when unset.
    key_secret: str = field(default="", repr=False)
    key_cache_ttl: float = 30.0
    # Prompt-cache affinity: seconds a served prompt prefix goes back to its deployment (0: off).
    prompt_affinity: float = 300.0
    # Bounds of the key cache: known keys (LRU) and unknown hashes (forged keys), apart.
    key_cache_size: int = 10_000
    key_cache_negative_size: int = 1_000
    # The plan of an account whose plan the operator never set: its management keys may create
    # keys up to this tier, with at most its limits.
    default_plan_tier: str = "free"
    # PostgreSQL (a multi-host conninfo for HA); "" = SQLite in data_dir (embedded).
    database_url: str = field(default="", repr=False)
    database_pool_size: int = 10
    # Degraded modes when Redis fails: rate limits admit (fail open), credits refuse (fail closed).
    limits_fail_open: bool = True
    credits_fail_open: bool = False
    # RUB per account per replica a paid request may reserve while Redis cannot check credits.
    credits_outage_allowance: Decimal = Decimal(0)
    # The request path's Redis commands on the router's own connections (storage/redis/lane.py);
    # off: every command through redis-py's cluster client.
    redis_lane: bool = True
    # How long the limits and credits scripts may take before the degraded policies answer.
    redis_timeout: float = 0.5
    # A dotenv file of provider credentials (the `provider-keys` secret); None = environment only.
    provider_keys_file: Path | None = None
    # The address /metrics listens on: every interface (containers, scraped by Prometheus), or
    # 127.0.0.1 on a single server whose Prometheus runs on the same host.
    metrics_host: str = "0.0.0.0"
    # The personal-data guard's NER detector of names and places ("" none; "natasha").
    pii_ner: str = ""
    # Exchange rates to RUB (domain/fx.py): fixed ones ("USD=92.5,EUR=100.1", they win), and the
    # Central Bank's daily XML ("" = off; from_env: CBR_URL unless "off"), fetched every
    # fx_cbr_interval seconds while the catalog has a currency no fixed rate covers.
    fx_rates: tuple[Rate, ...] = ()
    fx_cbr_url: str = ""
    fx_cbr_interval: float = 3600.0
    # VAT rates by date (catalog prices are net; generations are charged gross), in the days of
    # XROUTER_VAT_TIMEZONE.
    vat: VatSchedule = field(default_factory=lambda: VatSchedule.parse(DEFAULT_SCHEDULE))
    # Gateway <-> router mutual TLS (certificate, key, client CA); None: plaintext.
    grpc_tls: CertFiles | None = None
    # Redis TLS (rediss:// URLs): the CA bundle, and a client certificate and key if Redis asks.
    redis_tls: CertFiles | None = None
    # grpc.health.v1 alone, in plaintext, for probes that speak no TLS (kubelet); "" = none.
    health_listen: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RouterSettings:
        if env_str("XROUTER_DATABASE_URL", "", env) and not env_str("XROUTER_KEY_SECRET", "", env):
            raise ConfigError("XROUTER_KEY_SECRET must be set with XROUTER_DATABASE_URL (the "
                              "same on every replica: keys are stored as HMACs under it)")
        master_key = env_str("XROUTER_MASTER_KEY", "", env)
        if not master_key:
            raise ConfigError("XROUTER_MASTER_KEY must be set (the API key the router accepts)")
        listen = env_str("XROUTER_ROUTER_LISTEN", "127.0.0.1:50051", env)
        return cls(
            listen=listen,
            grpc_tls=_grpc_tls(listen, env),
            redis_tls=_redis_tls(env),
            health_listen=env_str("XROUTER_ROUTER_HEALTH_LISTEN", "", env),
            catalog_path=Path(env_str("XROUTER_CATALOG", str(DEFAULT_CATALOG), env)),
            master_key=master_key,
            attempt_timeout=env_float("XROUTER_ATTEMPT_TIMEOUT", 60.0, env, minimum=0.1),
            stream_idle_timeout=env_float("XROUTER_STREAM_IDLE_TIMEOUT", 120.0, env, minimum=0.1),
            connect_timeout=env_float("XROUTER_CONNECT_TIMEOUT", 5.0, env, minimum=0.1),
            max_attempts=env_int("XROUTER_MAX_ATTEMPTS", 5, env, minimum=1),
            pool_size=env_int("XROUTER_UPSTREAM_POOL_SIZE", 256, env, minimum=1),
            shutdown_grace=env_float("XROUTER_SHUTDOWN_GRACE", 30.0, env),
            metrics_port=env_int("XROUTER_ROUTER_METRICS_PORT", 9100, env),
            metrics_host=env_str("XROUTER_ROUTER_METRICS_HOST", "0.0.0.0", env),
            request_log=env_bool("XROUTER_REQUEST_LOG", True, env),
            redis_url=env_str("XROUTER_REDIS_URL", "", env),
            data_dir=Path(env_str("XROUTER_DATA_DIR", ".xrouter", env)),
            key_secret=env_str("XROUTER_KEY_SECRET", "", env),
            key_cache_ttl=env_float("XROUTER_KEY_CACHE_TTL", 30.0, env, minimum=0.0),
            prompt_affinity=env_float("XROUTER_PROMPT_AFFINITY_SECONDS", 300.0, env, minimum=0.0),
            key_cache_size=env_int("XROUTER_KEY_CACHE_SIZE", 10_000, env, minimum=1),
            key_cache_negative_size=env_int("XROUTER_KEY_CACHE_NEGATIVE_SIZE", 1_000, env,
                                            minimum=1),
            default_plan_tier=_plan_tier(env),
            database_url=database_url(env),
            database_pool_size=env_int("XROUTER_DATABASE_POOL_SIZE", 10, env, minimum=1),
            limits_fail_open=env_bool("XROUTER_LIMITS_FAIL_OPEN", True, env),
            credits_fail_open=env_bool("XROUTER_CREDITS_FAIL_OPEN", False, env),
            credits_outage_allowance=env_decimal("XROUTER_CREDITS_OUTAGE_ALLOWANCE", Decimal(0), env),
            redis_lane=env_bool("XROUTER_REDIS_LANE", True, env),
            redis_timeout=env_float("XROUTER_REDIS_TIMEOUT", 0.5, env, minimum=0.01),
            pii_ner=_pii_ner(env),
            provider_keys_file=Path(keys_file) if (keys_file := env_str(
                "XROUTER_PROVIDER_KEYS_FILE", "", env)) else None,
            fx_rates=_fx_rates(env),
            fx_cbr_url=_cbr_url(env),
            fx_cbr_interval=env_float("XROUTER_FX_CBR_INTERVAL", 3600.0, env, minimum=1.0),
            vat=_vat(env),
        )
