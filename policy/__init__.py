"""mqttgate.policy: users, roles, permissions, password hashes and topic decisions.

Pure decisions against immutable snapshots; reading the users file is the only I/O.
"""

from .auth import Authenticator, AuthResult
from .connection import ConnectionPolicy
from .loader import check_policy_file, load_policy
from .model import Access, Permission, PolicySnapshot, User
from .passwords import hash_password, verify_password
from .problems import PolicyLoadError, Problem
from .store import PolicyStore
from .topics import filter_covered_by, pattern_error, split_share, topic_matches
from .yamlsource import LineMap, load_yaml

__all__ = [
    "Access",
    "AuthResult",
    "Authenticator",
    "ConnectionPolicy",
    "LineMap",
    "Permission",
    "PolicyLoadError",
    "PolicySnapshot",
    "PolicyStore",
    "Problem",
    "User",
    "check_policy_file",
    "filter_covered_by",
    "hash_password",
    "load_policy",
    "load_yaml",
    "pattern_error",
    "split_share",
    "topic_matches",
    "verify_password",
]
