"""The one settings module. Everything that differs between machines comes from
environment variables (see the README's table); bad values stop start-up."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from webadmin.auth.config import directory_settings
from webadmin.env import env_bool, env_int, env_list, env_secret, env_str, env_url
from webadmin.middleware import static_file_headers

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var"))).resolve()
STORAGE_DIR = Path(env_str("STORAGE_DIR", str(DATA_DIR / "store"))).resolve()

SECRET_KEY = env_secret("SECRET_KEY") or ""
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set; `make run` creates one in var/secret_key")
# The key that encrypts mail-source passwords and client secrets at rest. It is
# kept out of the database on purpose; losing it means re-entering the secrets.
SOURCE_SECRET_KEY = env_secret("SOURCE_SECRET_KEY") or SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "archive",
    "archive.integrity",
    "archive.exports",
    "archive.retention",
    "mailsources",
    "webadmin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "webadmin.middleware.ContentSecurityPolicyMiddleware",
    "webadmin.middleware.OutageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the browser's Accept-Language, or the language cookie
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "archive.integrity.audit.AuditContextMiddleware",  # who changed a user or group (the audit log)
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webadmin.urls"
WSGI_APPLICATION = "webadmin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",  # LANGUAGE_CODE, LANGUAGES for the language menu
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "archive.context_processors.archive_settings",
                "webadmin.auth.views.sign_in_options",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'webadmin.sqlite3'}")
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
except Exception as exc:  # dj_database_url raises several types for bad URLs
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} is not usable: {exc}") from None
if _db["ENGINE"] == "django.db.backends.mysql":
    _db.setdefault("OPTIONS", {}).update({"charset": "utf8mb4", "isolation_level": "read committed"})
    _db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    if env_str("TEST_DATABASE_NAME"):
        _db["TEST"]["NAME"] = env_str("TEST_DATABASE_NAME")
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes; a busy timeout instead
    # of "database is locked" when the two briefly collide.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    _db["CONN_MAX_AGE"] = 0
else:
    raise ImproperlyConfigured(f"DATABASE_URL: unsupported database {_db['ENGINE']!r} (use sqlite:// or mysql://)")
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "archive:table"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# English, German (Swiss spelling), French and Italian: locale/*/LC_MESSAGES/django.po, compiled by
# scripts/common.sh (ensure_translations). The user's choice (the top bar's menu, Django's set_language)
# is kept in the language cookie for a year; without it the browser's Accept-Language decides.
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("it", "Italiano")]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["webadmin.formats"]  # English keeps its ISO dates (webadmin/formats/en)
LANGUAGE_COOKIE_NAME = "webadmin_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_HTTPONLY = True
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True  # Django 5.2 always localises dates and numbers by the active language (USE_L10N is gone)
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
# Serve straight from the app/static folders too, so a missed collectstatic cannot break the UI.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# --- Uploads: limits enforced while the body streams in (archive/uploads.py) ---
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 512 * 1024 * 1024, minimum=1)  # per file
MAX_UPLOAD_REQUEST_BYTES = env_int("MAX_UPLOAD_REQUEST_BYTES", 2 * MAX_UPLOAD_BYTES, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("MAX_UPLOAD_FILES", 100, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "archive.uploads.UploadLimitHandler",  # first: sees every chunk before it is kept
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- Login throttling (django-axes; webadmin/login_throttle.py) ---
# Failed logins are counted per account and per client address, each on its own;
# at AXES_FAILURE_LIMIT the account or address is locked out for a cool-off that
# doubles with every lockout of the last day. An administrator lifts a lockout
# under /webadmin/manage/axes/accessattempt/ (or `manage.py axes_reset`).
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last, as axes asks
AUTHENTICATION_BACKENDS = [
    "webadmin.login_throttle.ThrottlingBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_MINUTES = env_int("AXES_COOLOFF_MINUTES", 15, minimum=1)
AXES_COOLOFF_MAX_MINUTES = env_int("AXES_COOLOFF_MAX_MINUTES", 24 * 60, minimum=AXES_COOLOFF_MINUTES)
AXES_COOLOFF_TIME = "webadmin.login_throttle.cool_off"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_USERNAME_CALLABLE = "webadmin.login_throttle.normalized_username"
AXES_LOCKOUT_CALLABLE = "webadmin.login_throttle.lockout_response"
# A failure while locked out neither extends the lockout nor reaches a password check.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A login does not reset the counts: the address's count would go with it, and an
# attacker with one account of their own could keep spraying guesses at others.
AXES_RESET_ON_SUCCESS = False
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # the lockout history the growing cool-off reads
AXES_SENSITIVE_PARAMETERS = ["password"]
if env_bool("BEHIND_PROXY", False):
    AXES_CLIENT_IP_CALLABLE = "webadmin.login_throttle.client_ip_behind_proxy"

# --- Directory sign-in and the second factor (webadmin/auth/, README "Directory sign-in") ---
# OpenID Connect (OIDC_CLIENT_ID, OIDC_ISSUER …) and LDAP / Active Directory (LDAP_URI …)
# are each on when configured; their backends come after the local accounts', behind
# the throttling. The TOTP second step applies to password sign-ins of accounts with an
# authenticator; administrators with a local account must set one up (on by default:
# a WebAdmin administrator sees every archived mail, one guessed or phished password
# must not be enough). Wrong codes count as failed logins (django-axes), so django-otp's
# own time-based throttle is off.
_directory = directory_settings()
globals().update({k: v for k, v in _directory.items() if k != "DIRECTORY_BACKENDS"})
AUTHENTICATION_BACKENDS += _directory["DIRECTORY_BACKENDS"]
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp", "django_otp.plugins.otp_static"]
TOTP_REQUIRED_FOR_STAFF = env_bool("TOTP_REQUIRED_FOR_STAFF", True)
OTP_TOTP_ISSUER = env_str("TOTP_ISSUER", "WebAdmin")
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_STATIC_THROTTLE_FACTOR = 0

# --- Security: secure by default, relaxed only for plain-HTTP local use. ---
HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
# Only a header: the domain joins browsers' preload list only if someone submits it.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if env_bool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"  # views that must be framed (file viewer, mail body) allow same-origin

# --- Hardening (issue 11: bounded search, security headers on static files) ---
# Static files get the pages' CSP, X-Frame-Options and nosniff (webadmin/middleware.py).
WHITENOISE_ADD_HEADERS_FUNCTION = static_file_headers
# One search's SQL statements together may run this long; past it the table
# says "too complex — narrow it" (archive/search/budget.py).
SEARCH_TIME_BUDGET_MS = env_int("SEARCH_TIME_BUDGET_MS", 900, minimum=100)


# --- Celery: broker, queues and routing, the schedule, housekeeping ---
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.split("://", 1)[0] not in {"filesystem", "redis", "rediss", "memory"}:
    raise ImproperlyConfigured(f"CELERY_BROKER_URL={CELERY_BROKER_URL!r}: use redis://host:6379/0 or filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "queue"),
        "data_folder_out": str(_broker / "queue"),
        "control_folder": str(_broker / "control"),
        "processed_folder": str(_broker / "processed"),
        "store_processed": False,
    }
    for _sub in ("queue", "control", "processed"):
        (_broker / _sub).mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Three queues, so that a sync never waits behind derived work: "sync" (mail source
# runs and their dispatcher) gets a worker of its own; "processing" (parsing archived
# mail into parts, housekeeping) and "extraction" (text for search) share the others.
# Queue names are file-name safe for the filesystem broker of `make run` (no dots).
CELERY_TASK_DEFAULT_QUEUE = "processing"  # anything not routed below
CELERY_TASK_ROUTES = {
    "mailsources.tasks.sync_source": {"queue": "sync"},
    "mailsources.tasks.dispatch_due_sources": {"queue": "sync"},
    # The processing task lives in archive.tasks under its old registered name (queued
    # messages keep working).
    "mailsources.tasks.process_mail_documents": {"queue": "processing"},
    "archive.tasks.processing_sweep": {"queue": "processing"},
    "archive.tasks.*extract*": {"queue": "extraction"},
    "archive.housekeeping_tasks.*": {"queue": "processing"},
    "archive.exports.tasks.*": {"queue": "processing"},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = TIME_ZONE
MAIL_DISPATCH_SECONDS = env_int("MAIL_DISPATCH_SECONDS", 30, minimum=1)
# Housekeeping (archive/housekeeping.py): temporary files of the store and of uploads
# older than this are removed; orphan blobs are only reported, never deleted.
HOUSEKEEPING_SECONDS = env_int("HOUSEKEEPING_SECONDS", 3600, minimum=60)
TEMP_FILE_MAX_AGE_HOURS = env_int("TEMP_FILE_MAX_AGE_HOURS", 24, minimum=1)
# Uploads larger than FILE_UPLOAD_MAX_MEMORY_SIZE are spooled here (not /tmp), so
# that the ones a killed web process left behind can be found and swept.
FILE_UPLOAD_TEMP_DIR = str(Path(env_str("FILE_UPLOAD_TEMP_DIR", str(DATA_DIR / "upload-tmp"))).resolve())
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
# Mail processing's state (archive/processing.py): a claim older than STALE was lost
# with its worker; PENDING: queued that long ago and not started (its message lost);
# a transient failure is retried after RETRY seconds, doubling up to an hour; a mail
# whose claim was lost MAX_LOST times fails permanently (it kills its worker).
MAIL_PROCESSING_SWEEP_SECONDS = env_int("MAIL_PROCESSING_SWEEP_SECONDS", 120, minimum=10)
MAIL_PROCESSING_STALE_SECONDS = env_int("MAIL_PROCESSING_STALE_SECONDS", 900, minimum=60)
MAIL_PROCESSING_PENDING_SECONDS = env_int("MAIL_PROCESSING_PENDING_SECONDS", 600, minimum=60)
MAIL_PROCESSING_RETRY_SECONDS = env_int("MAIL_PROCESSING_RETRY_SECONDS", 60, minimum=1)
MAIL_PROCESSING_MAX_LOST = env_int("MAIL_PROCESSING_MAX_LOST", 5, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-mail-sources": {
        "task": "mailsources.tasks.dispatch_due_sources",
        "schedule": float(MAIL_DISPATCH_SECONDS),
    },
    # Mail processing's safety net (archive/processing.py): lost, stuck or transiently
    # failed processing is queued again.
    "processing-sweep": {"task": "archive.tasks.processing_sweep", "schedule": float(MAIL_PROCESSING_SWEEP_SECONDS)},
    # Text extraction's safety net: files whose task was lost get queued again.
    "extraction-sweep": {"task": "archive.tasks.extraction_sweep", "schedule": 600.0},
    # How common words are, for the MariaDB search planner (archive/search/statistics.py).
    "search-statistics": {"task": "archive.tasks.refresh_search_statistics", "schedule": 86400.0},
    # Index entries of an older token stream checked and rewritten (archive/search/upgrade.py); idle once done.
    "search-index-upgrade": {"task": "archive.tasks.upgrade_search_index", "schedule": 60.0},
    "temporary-files-sweep": {
        "task": "archive.housekeeping_tasks.temporary_files_sweep",
        "schedule": float(HOUSEKEEPING_SECONDS),
    },
    # Reads the whole store: once a day.
    "orphan-blobs-report": {"task": "archive.housekeeping_tasks.orphan_blobs_report", "schedule": 86400.0},
}

# --- Exports with proof and procedure documentation (archive/exports) ---
# Built exports (ZIP files, server-side directories) and procedure documentation
# generations live here; exports are removed by housekeeping after RETENTION_DAYS.
EXPORT_DIR = Path(env_str("EXPORT_DIR", str(DATA_DIR / "exports"))).resolve()
EXPORT_RETENTION_DAYS = env_int("EXPORT_RETENTION_DAYS", 14, minimum=1)
CELERY_BEAT_SCHEDULE["exports-expire"] = {"task": "archive.exports.tasks.exports_expire", "schedule": 3600.0}

# --- Retention (archive/retention): the deletion lock, expiry approvals ---
# "Revisionssicher": nothing is deleted before its retention end, and only through
# an approved expiry list (archive/retention/lock.py refuses every other delete).
RETENTION_DELETION_LOCK = env_bool("RETENTION_DELETION_LOCK", True)
# An expiry list needs the approval of two different administrators.
RETENTION_TWO_APPROVERS = env_bool("RETENTION_TWO_APPROVERS", False)
# A deleted document's blob stays this long before it is removed (if nothing references it).
RETENTION_BLOB_GRACE_SECONDS = env_int("RETENTION_BLOB_GRACE_SECONDS", 3600, minimum=0)
CELERY_BEAT_SCHEDULE["retention-expiry"] = {"task": "archive.retention.tasks.expiry_daily", "schedule": 86400.0}

# --- Dashboard (WebAdmin home, WebDMS overview): precomputed daily figures, alarms ---
# The figures of today and yesterday are recomputed this often; every day once a night.
DASHBOARD_REFRESH_SECONDS = env_int("DASHBOARD_REFRESH_SECONDS", 300, minimum=30)
CELERY_BEAT_SCHEDULE.update(
    {
        "dashboard-figures-today": {
            "task": "webadmin.tasks.refresh_dashboard_figures",
            "schedule": float(DASHBOARD_REFRESH_SECONDS),
        },
        "dashboard-figures-all": {
            "task": "webadmin.tasks.refresh_dashboard_figures",
            "schedule": 86400.0,
            "kwargs": {"full": True},
        },
    }
)
CELERY_TASK_ROUTES["webadmin.tasks.*"] = {"queue": "processing"}
# Alarm: a file waits for text extraction longer than this.
DASHBOARD_COVERAGE_STALL_MINUTES = env_int("DASHBOARD_COVERAGE_STALL_MINUTES", 60, minimum=1)
# Alarm: an enabled mail source's last finished run is older than this many intervals.
DASHBOARD_SOURCE_STALL_INTERVALS = env_int("DASHBOARD_SOURCE_STALL_INTERVALS", 3, minimum=1)

# --- Integrity (archive/integrity/): trusted timestamps and verification ---
# The RFC 3161 TSA that timestamps both chains' heads every ANCHOR_INTERVAL seconds;
# its answers must verify against TSA_CA_FILE (PEM roots), and, if set, be signed
# by exactly TSA_CERT_FILE. No TSA_URL: no anchors (the WebAdmin home says so).
TSA_URL = env_str("TSA_URL", "")
TSA_CA_FILE = env_str("TSA_CA_FILE", "")
TSA_CERT_FILE = env_str("TSA_CERT_FILE", "")
ANCHOR_INTERVAL = env_int("ANCHOR_INTERVAL", 3600, minimum=60)
# Scheduled verification: a sample of VERIFY_SAMPLE_SIZE documents daily, everything
# every VERIFY_FULL_INTERVAL_DAYS days.
VERIFY_SAMPLE_SIZE = env_int("VERIFY_SAMPLE_SIZE", 200, minimum=1)
VERIFY_FULL_INTERVAL_DAYS = env_int("VERIFY_FULL_INTERVAL_DAYS", 30, minimum=1)
# Off only for `make bench`, to measure what the ledger costs (archive/integrity/ledger.py).
INTEGRITY_LEDGER = env_bool("INTEGRITY_LEDGER", True)
CELERY_BEAT_SCHEDULE.update(
    {
        "integrity-anchor": {"task": "archive.integrity.tasks.anchor_heads", "schedule": float(ANCHOR_INTERVAL)},
        "integrity-verify": {"task": "archive.integrity.tasks.scheduled_verification", "schedule": 86400.0},
    }
)
CELERY_TASK_ROUTES["archive.integrity.tasks.*"] = {"queue": "processing"}

# --- Text extraction for search (archive/extraction.py): limits per file ---
EXTRACTION_TIMEOUT_SECONDS = env_int("EXTRACTION_TIMEOUT_SECONDS", 60, minimum=1)
EXTRACTION_MEMORY_MB = env_int("EXTRACTION_MEMORY_MB", 1024, minimum=128)
# CPU seconds per file (RLIMIT_CPU, moved on before each file of a reused child).
EXTRACTION_CPU_SECONDS = env_int("EXTRACTION_CPU_SECONDS", EXTRACTION_TIMEOUT_SECONDS, minimum=1)
# A worker process's extractor child is replaced after this many files or MB of input.
EXTRACTION_CHILD_MAX_FILES = env_int("EXTRACTION_CHILD_MAX_FILES", 500, minimum=1)
EXTRACTION_CHILD_MAX_INPUT_MB = env_int("EXTRACTION_CHILD_MAX_INPUT_MB", 512, minimum=1)
EXTRACTION_MAX_BYTES = env_int("EXTRACTION_MAX_BYTES", 200 * 1024 * 1024, minimum=1)
EXTRACTION_MAX_TEXT_CHARS = env_int("EXTRACTION_MAX_TEXT_CHARS", 2_000_000, minimum=1000)
EXTRACTION_MAX_ATTEMPTS = env_int("EXTRACTION_MAX_ATTEMPTS", 3, minimum=1)
EXTRACTION_RETRY_SECONDS = env_int("EXTRACTION_RETRY_SECONDS", 300, minimum=1)
SEARCH_MAX_INDEX_CHARS = env_int("SEARCH_MAX_INDEX_CHARS", 4_000_000, minimum=10_000)

# --- Mail ingestion ---
MAIL_MAX_MESSAGE_BYTES = env_int("MAIL_MAX_MESSAGE_BYTES", 100 * 1024 * 1024, minimum=1024)
# Imports of existing archives (MBOX, .eml, .msg, PST): the server directory WebAdmin lists,
# and the limits that keep a hostile ZIP from filling the disk (bytes unpacked per member, in all).
IMPORT_DIR = Path(env_str("IMPORT_DIR", str(DATA_DIR / "import"))).resolve()
IMPORT_ZIP_MAX_MEMBER_BYTES = env_int("IMPORT_ZIP_MAX_MEMBER_BYTES", 200 * 1024 * 1024, minimum=1024)
IMPORT_ZIP_MAX_TOTAL_BYTES = env_int("IMPORT_ZIP_MAX_TOTAL_BYTES", 20 * 1024 * 1024 * 1024, minimum=1024)
IMPORT_ZIP_MAX_RATIO = env_int("IMPORT_ZIP_MAX_RATIO", 200, minimum=1)
MAIL_MAX_MIME_DEPTH = env_int("MAIL_MAX_MIME_DEPTH", 20, minimum=1)
MAIL_MAX_MIME_PARTS = env_int("MAIL_MAX_MIME_PARTS", 500, minimum=1)
MAIL_SOURCE_LEASE_SECONDS = env_int("MAIL_SOURCE_LEASE_SECONDS", 900, minimum=30)
GRAPH_AUTHORITY_HOST = env_url("GRAPH_AUTHORITY_HOST", "https://login.microsoftonline.com")
GRAPH_URL = env_url("GRAPH_URL", "https://graph.microsoft.com")
# Graph's request window per app + mailbox (10,000 per 600 s); the client paces itself under it.
# Change it only for a scaled-down test or bench Graph.
GRAPH_RATE_LIMIT_REQUESTS = env_int("GRAPH_RATE_LIMIT_REQUESTS", 10_000, minimum=10)
GRAPH_RATE_LIMIT_SECONDS = env_int("GRAPH_RATE_LIMIT_SECONDS", 600, minimum=1)
# Mailboxes of one Microsoft 365 source synced at the same time (each within its own Graph
# budget), and at most this many mailboxes at once in one worker process, all sources together.
GRAPH_MAILBOXES_PER_SOURCE = env_int("GRAPH_MAILBOXES_PER_SOURCE", 4, minimum=1)
GRAPH_MAILBOXES_PER_WORKER = env_int("GRAPH_MAILBOXES_PER_WORKER", 8, minimum=1)
# Extra CA bundle for in-house IMAP servers / a test Graph; system CAs otherwise.
MAIL_CA_FILE = env_str("MAIL_CA_FILE", "") or None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- REST API (api/: Django REST framework + drf-spectacular; tokens in api/tokens.py) ---
# /api/v1/ with token (Authorization: Bearer …) or session auth (with CSRF); the
# OpenAPI 3 schema at /api/schema/, Swagger UI at /api/docs/ (served from static).
import re as _re  # noqa: E402

INSTALLED_APPS += ["rest_framework", "drf_spectacular", "drf_spectacular_sidecar", "api"]
# Requests per token (per user for sessions, per address without credentials): N/s, N/min, N/hour, N/day.
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "600/min")
if not _re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", API_RATE_LIMIT):
    raise ImproperlyConfigured(f"API_RATE_LIMIT={API_RATE_LIMIT!r}: use e.g. 600/min")
# The rate limit's counts must be shared by every web process: files under DATA_DIR
# (all processes of one machine: `make run`, SQLite or MariaDB), or a Redis given as
# API_CACHE_URL when the web processes run on several machines.
_api_cache_url = env_str("API_CACHE_URL", "")
if _api_cache_url and not _api_cache_url.startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured(f"API_CACHE_URL={_api_cache_url!r}: use redis://host:6379/N, or leave it empty")
CACHES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "api": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _api_cache_url, "KEY_PREFIX": "api"}
        if _api_cache_url
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "api-cache"),
            "OPTIONS": {"MAX_ENTRIES": 10_000},  # one entry per token, user or address in the window
        }
    ),
}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # enforces CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.ApiRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "WebAdmin API",
    "DESCRIPTION": "Documents, files, access links, uploads and mail sources of the archive.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DocumentKindEnum": "archive.models.DocumentKind",
        "SourceKindEnum": "mailsources.models.SourceKind",
    },
}
