"""The embedded Valkey's two users, their passwords in the data dir, and its ACL file.

``documind up`` starts valkey-server on 127.0.0.1 with ``--aclfile`` (see
:class:`libs.common.valkey_server.ValkeyServer`); a client that does not
authenticate gets ``NOAUTH`` for every command:

* ``documind``, the services' user. Its password is ``DATA_DIR/valkey.secret``
  and reaches the services only inside ``DOCUMIND_VALKEY_URL``
  (``redis://documind:<password>@127.0.0.1:<port>/0``). Its rule,
  :data:`SERVICE_RULES`: every key and channel, every command except Valkey's
  ``@dangerous`` category (CONFIG, DEBUG, FLUSHALL, FLUSHDB, SHUTDOWN, SAVE,
  BGSAVE, REPLICAOF, MONITOR, ACL SETUSER, MODULE, CLUSTER's admin subcommands,
  CLIENT KILL/LIST, INFO, KEYS, SORT, RESTORE, MIGRATE, SWAPDB, ...: no service
  runs any of them), nor SCRIPT FLUSH/KILL and FUNCTION (the services share one
  script cache and use no functions).
* ``default``, the operator's: every command, password in
  ``DATA_DIR/valkey-admin.secret``. No service and not even the supervisor uses
  it (Valkey is stopped by SIGTERM, and the start-up ping goes as ``documind``);
  it is there so that the operator can inspect or repair the embedded data
  (``INFO``, ``CONFIG GET``, ``SLOWLOG``) without restarting Valkey differently.

Both secrets are created on the first start that finds them missing (a data dir
from before they existed too), mode 0600, and reused ever after. The ACL file
(``users.acl`` in Valkey's own directory, 0600) is rewritten at every start from
them and holds only their SHA-256, so a newer rule applies on the next start.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from libs.common.secret_file import ensure_secret, write_private

SERVICE_USER: Final = "documind"
ADMIN_USER: Final = "default"
SERVICE_SECRET_FILE: Final = "valkey.secret"
ADMIN_SECRET_FILE: Final = "valkey-admin.secret"
ACL_FILE: Final = "users.acl"
# Every key (~*) and channel (&*); every command but the @dangerous category and what
# would break or replace the scripts every service relies on.
SERVICE_RULES: Final = "~* &* +@all -@dangerous -script|flush -script|kill -function"
ADMIN_RULES: Final = "~* &* +@all"


@dataclass(frozen=True)
class ValkeyUsers:
    """The passwords of the embedded Valkey's service and admin users."""

    service_password: str
    admin_password: str

    def __repr__(self) -> str:
        return "ValkeyUsers(<redacted>)"

    @classmethod
    def ensure(cls, data_dir: Path) -> ValkeyUsers:
        """The passwords kept in ``data_dir``, each created (0600) when missing."""
        service, _ = ensure_secret(data_dir / SERVICE_SECRET_FILE)
        admin, _ = ensure_secret(data_dir / ADMIN_SECRET_FILE)
        return cls(service, admin)

    def acl_text(self) -> str:
        """The ACL file's content: each user on, its password as a SHA-256 only."""
        return "".join(
            f"user {name} reset on #{_sha256(password)} {rules}\n"
            for name, password, rules in (
                (ADMIN_USER, self.admin_password, ADMIN_RULES),
                (SERVICE_USER, self.service_password, SERVICE_RULES),
            )
        )

    def write_acl_file(self, directory: Path) -> Path:
        path = directory / ACL_FILE
        write_private(path, self.acl_text())
        return path

    def url(self, host: str, port: int, *, admin: bool = False, db: int = 0) -> str:
        """A ``redis://`` URL with the service user's credentials (or the admin's)."""
        user, password = (ADMIN_USER, self.admin_password) if admin else (SERVICE_USER, self.service_password)
        return f"redis://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{db}"


def _sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()
