"""kombu's filesystem transport, with messages published whole.

kombu's own transport creates a message's file, then writes it; a worker that polls the
folder in between takes the empty file and stops ("Unrecoverable error: JSONDecodeError",
kombu issue #1551), which several workers publishing retries while they poll make
likely. Here a message is written under a name no reader takes, then renamed into place
(a rename within one folder is atomic). Selected with ``CELERY_BROKER_TRANSPORT`` (see
:data:`.brokers.FILESYSTEM_TRANSPORT`); the ``filesystem://`` URL and its options stay.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

#: Added to a message's name while it is written: readers take only ``*.<queue>.msg``.
PARTIAL = ".part"


class Channel(filesystem.Channel):
    def _put(  # type: ignore[override]  # the signature of kombu's filesystem channel
        self, queue: str, payload: dict[str, Any], **kwargs: Any
    ) -> None:
        """Put a message on ``queue``: written whole, then renamed into the folder."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        try:
            with open(path + PARTIAL, "wb") as partial:
                partial.write(str_to_bytes(dumps(payload)))
            os.replace(path + PARTIAL, path)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
