"""The storage of the Qarnot backend: its buckets, through the SDK's connection (its Bucket for creating,
listing and deleting, and its preconfigured S3 client, with the SDK's multipart settings, for transfers,
whose byte callbacks draw the progress bars). An object of its own, given what it needs; the backend
holds one and hands its bucket calls to it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

from qimg.errors import BackendError, QimgError, first_line
from qimg.launcher.backends.base import BucketView, BytesMoved, ObjectView
from qimg.launcher.backends.qarnot_config import QarnotSettings
from qimg.launcher.backends.qarnot_exchanges import Exchanges

T = TypeVar("T")


class QarnotStorage:
    """The buckets of one Qarnot connection (`qarnot.Connection`). Its S3 requests are bounded by the
    settings' request timeout and counted with the cluster's by `exchanges`."""

    def __init__(self, connection: Any, settings: QarnotSettings, exchanges: Exchanges) -> None:
        self.connection, self.settings = connection, settings
        exchanges.watch(connection.storage)  # the S3 endpoint the settings named
        if connection.s3client is not None:
            # The SDK's S3 client, and the one inside its S3 resource (Bucket.delete, list_files).
            for client in (connection.s3client, connection.s3resource.meta.client):
                bound_requests(client, connection.storage, settings.request_timeout)

    def _storage(self, what: str, action: Callable[[], T]) -> T:
        """One storage call with its failures turned into one-line errors."""
        from botocore.exceptions import BotoCoreError, ClientError
        from qarnot.exceptions import MissingBucketException

        if self.connection.s3client is None:
            raise BackendError(
                f"{what}: Qarnot at {self.settings.shown_url} has no bucket storage (its settings name none)"
            )
        try:
            return action()
        except (ClientError, BotoCoreError, MissingBucketException) as error:
            raise BackendError(f"{what}: {first_line(error)}") from None
        except OSError as error:  # this machine's side of a transfer: a file gone, a full disk
            raise QimgError(f"{what}: {error.strerror or error}") from None

    def buckets(self) -> list[BucketView]:
        # A lambda: the client is None without storage, which _storage checks first.
        listed = self._storage("listing buckets", lambda: self.connection.s3client.list_buckets())  # noqa: PLW0108
        views = []
        for item in listed.get("Buckets") or []:
            created = item.get("CreationDate")
            if isinstance(item.get("Name"), str):
                views.append(BucketView(item["Name"], created if isinstance(created, datetime) else None))
        return views

    def create_bucket(self, name: str) -> None:
        from botocore.exceptions import ClientError

        def create() -> None:
            try:
                self.connection.retrieve_bucket(name)  # HEAD: S3's create answers 200 for one we own
            except ClientError as error:
                if str(error.response.get("Error", {}).get("Code")) in {"404", "NoSuchBucket", "NotFound"}:
                    self.connection.create_bucket(name)
                    return
                raise
            raise BackendError(f"bucket {name} exists already: run again (the name takes a new suffix)")

        self._storage(f"creating bucket {name}", create)

    def delete_bucket(self, name: str) -> None:
        from qarnot.bucket import Bucket
        from qarnot.exceptions import MissingBucketException

        def delete() -> None:
            with contextlib.suppress(MissingBucketException):
                Bucket(self.connection, name, create=False).delete()

        self._storage(f"deleting bucket {name}", delete)

    def objects(self, bucket: str) -> list[ObjectView]:
        from qarnot.bucket import Bucket

        listed = self._storage(
            f"listing bucket {bucket}", lambda: Bucket(self.connection, bucket, create=False).list_files()
        )
        return [
            ObjectView(item.key, int(item.size))
            for item in listed
            if isinstance(item.key, str) and isinstance(item.size, int) and item.size >= 0
        ]

    def upload(self, bucket: str, key: str, source: BinaryIO | None, moved: BytesMoved) -> None:
        from qarnot.bucket import s3_multipart_config

        def send() -> None:
            if source is None:
                self.connection.s3client.put_object(Bucket=bucket, Key=key, Body=b"")
                return
            self.connection.s3client.upload_fileobj(
                source, bucket, key, Config=s3_multipart_config, Callback=moved
            )

        self._storage(f"uploading {key} to {bucket}", send)

    def download(self, bucket: str, key: str, target: BinaryIO, moved: BytesMoved) -> None:
        from qarnot.bucket import s3_multipart_config

        self._storage(
            f"downloading {key} from {bucket}",
            lambda: self.connection.s3client.download_fileobj(
                bucket, key, target, Config=s3_multipart_config, Callback=moved
            ),
        )


def bound_requests(s3client: Any, storage_url: str, timeout: float) -> None:
    """Every S3 request of the SDK's client sent with `timeout` (connect and read) instead of
    botocore's 60 s: the client's config is fixed when the SDK makes it, so its requests are sent
    here, through botocore's public `before-send` event and its own urllib3 session (as botocore
    would, with the proxies of the environment). botocore's retries stay ("standard": 3 attempts);
    the requests are counted with the cluster's (qarnot_exchanges)."""
    from botocore.httpsession import URLLib3Session
    from botocore.utils import get_environ_proxies

    session = URLLib3Session(proxies=get_environ_proxies(storage_url), timeout=(timeout, timeout))

    def send(request: Any, **_event: Any) -> Any:
        return session.send(request)

    s3client.meta.events.register("before-send.s3", send, unique_id="qimg-bounded-s3")
