"""The implementation of the exported resource `provider.chunk-stream`:
componentize-py finds an exported interface's resources in a top-level module
named after the interface. Part of the plugbox_plugin SDK (keep it next to the
`plugbox_plugin` package); a plugin's own modules must not be named `provider`.
"""

from typing import Optional

import plugbox_plugin as _pb
from wit_world.exports import provider as _provider


class ChunkStream(_provider.ChunkStream):
    """A provider's stream: the chunks of the iterable `start_stream` returned."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)

    def next(self) -> Optional[str]:
        try:
            return _pb._body(next(self._chunks))
        except StopIteration:
            return None
        except _pb.LlmError as e:
            raise _pb._llm_failure(e) from None
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("chunk-stream.next", e)
            raise _pb._llm_failure(e) from None
