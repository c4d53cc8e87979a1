"""Remove what crashes left in the blob store: ``python -m libs.common.blobstore.sweep``.

The blobs of every document that is no longer registered in Valkey and whose newest
blob is older than ``--older-than`` seconds (an upload between its put and its SUBMIT
is younger). Safe to run at any time, from any machine that reaches Valkey and the blob
store with the services' settings (``DOCUMIND_*``), e.g. daily from cron.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from libs.common import keys
from libs.common.blobstore._build import build_blob_store
from libs.common.blobstore._documents import sweep_orphans
from libs.common.cluster_client import ready
from libs.common.logs import configure_logging
from libs.common.sentinel import SentinelTarget
from libs.common.service import connect
from libs.common.settings import CommonSettings

DEFAULT_OLDER_THAN_S = 3600.0


async def sweep(settings: CommonSettings, older_than_s: float) -> list[str]:
    """The ids of the documents whose blobs were removed."""
    client = connect(
        settings.valkey_url,
        0,
        client_name="documind-blob-sweep",
        cluster=settings.valkey_cluster,
        sentinel=SentinelTarget.of(settings),
    )
    try:
        await ready(client)

        async def registered(document_id: str) -> bool:
            return bool(await client.exists(keys.document(document_id).hash))

        store = build_blob_store(settings)
        return await sweep_orphans(store, registered, older_than_s=older_than_s, now=time.time())
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.common.blobstore.sweep", description=__doc__)
    parser.add_argument(
        "--older-than",
        type=float,
        default=DEFAULT_OLDER_THAN_S,
        help="seconds a document's newest blob must be old (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    settings = CommonSettings()
    configure_logging(settings.log_level, "blob-sweep", settings.log_format)
    removed = asyncio.run(sweep(settings, args.older_than))
    print(f"removed the blobs of {len(removed)} unregistered documents")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
