"""What one request may reach: a tenant's collections (all of them, or some), and who asks.

The gateway builds an :class:`Access` from the request's API key; the stores take
it and answer "not found" for anything outside it, exactly as for something that
does not exist (another tenant's collection, document or job is a 404, never a 403).
Code acting for the system itself (workers, maintenance) passes no access.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.decode import as_text
from libs.common.keys import DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class Access:
    tenant: str = DEFAULT_TENANT
    # The API key asking ("" for the system, or with authentication off).
    key_id: str = ""
    # None: every collection of the tenant.
    collections: frozenset[str] | None = None

    def sees(self, collection: str) -> bool:
        """Whether ``collection`` of this tenant is within reach."""
        return self.collections is None or collection in self.collections

    def owns(self, tenant: str, collection: str) -> bool:
        """Whether a thing of ``tenant``'s ``collection`` is within reach."""
        return tenant == self.tenant and self.sees(collection)


def reaches(access: Access | None, tenant: str | bytes | None, collection: str | bytes | None) -> bool:
    """Whether ``access`` (None: the system, which reaches everything) reaches a job or
    document of ``tenant``'s ``collection``, as read from its hash (no tenant: the default's)."""
    if access is None:
        return True
    return access.owns(as_text(tenant or DEFAULT_TENANT), as_text(collection or ""))
