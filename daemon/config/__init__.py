"""Typed settings: config.toml, then secrets from the environment or $CREDENTIALS_DIRECTORY.

Every key has a safe default, so a file that sets only the upstream ids works. Unknown keys
are errors (a typo must not silently fall back to a default), and every error names the key
and says why, e.g. ``[timeouts] agent: must be a number > 0, got "fast"``.

    sections.py   one frozen dataclass per core [section], with its defaults and why
                  (each WhatsApp provider brings its own: daemon/channels/registry.py)
    storage.py    the same for [state], [redis] and [cache]
    checks.py     constraints of single keys, declared on their fields (daemon/fields.py)
    settings.py   Settings (every section plus the secrets), ConfigError
    load.py       TOML -> Settings, each value checked against its field's type
    validate.py   the declared checks, those across keys, and what serving needs
"""

from __future__ import annotations

from daemon.config.load import load as load
from daemon.config.load import parse as parse
from daemon.config.load import replace as replace
from daemon.config.load import section_types as section_types
from daemon.config.sections import AdminConfig as AdminConfig
from daemon.config.sections import AgentforceConfig as AgentforceConfig
from daemon.config.sections import BreakersConfig as BreakersConfig
from daemon.config.sections import ChannelConfig as ChannelConfig
from daemon.config.sections import ElevenLabsConfig as ElevenLabsConfig
from daemon.config.sections import HttpConfig as HttpConfig
from daemon.config.sections import InboxConfig as InboxConfig
from daemon.config.sections import LanesConfig as LanesConfig
from daemon.config.sections import LimitsConfig as LimitsConfig
from daemon.config.sections import LogConfig as LogConfig
from daemon.config.sections import LogLevel as LogLevel
from daemon.config.sections import RetriesConfig as RetriesConfig
from daemon.config.sections import ServerConfig as ServerConfig
from daemon.config.sections import TextsConfig as TextsConfig
from daemon.config.sections import TimeoutsConfig as TimeoutsConfig
from daemon.config.sections import UxConfig as UxConfig
from daemon.config.sections import VoiceConfig as VoiceConfig
from daemon.config.sections import VoiceReply as VoiceReply
from daemon.config.sections import toml_name as toml_name
from daemon.config.settings import ConfigError as ConfigError
from daemon.config.settings import Secrets as Secrets
from daemon.config.settings import Settings as Settings
from daemon.config.settings import secret_names as secret_names
from daemon.config.storage import CacheConfig as CacheConfig
from daemon.config.storage import DenyRule as DenyRule
from daemon.config.storage import FaqRule as FaqRule
from daemon.config.storage import RedisConfig as RedisConfig
from daemon.config.storage import RedisMode as RedisMode
from daemon.config.storage import StateBackend as StateBackend
from daemon.config.storage import StateConfig as StateConfig
from daemon.config.validate import validate_ready as validate_ready
from daemon.config.validate import validate_values as validate_values

# The canned texts live in daemon/texts.py; re-exported for the modules that read them here.
from daemon.texts import ARABIC as ARABIC
from daemon.texts import BUILT_IN_TEXTS as BUILT_IN_TEXTS
from daemon.texts import ENGLISH as ENGLISH
from daemon.texts import TextTable as TextTable
