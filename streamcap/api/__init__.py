"""The OpenAI-compatible file transcription API, served on the caption server's port.

``POST /v1/audio/transcriptions`` and ``GET /v1/models`` (documented in ``docs/api.md``). The
pure parts do no I/O and are tested on their own:

* :mod:`.form`: multipart/form-data bytes in, fields and the file out (size-capped);
* :mod:`.request`: the API's errors and the validation of a transcription request;
* :mod:`.windows`: an upload's audio cut into speech windows of at most ~28 s by the VAD;
* :mod:`.transcript`: decoded windows in, segments and words out;
* :mod:`.render`: a transcript in each ``response_format``.

The shells: :mod:`.job` (a background job on the live worker thread, one window decode per
step), :mod:`.service` (the asyncio side: admission, upload decoding, the job, the answer) and
:mod:`.http` (HTTP/1.1 on the WebSocket server's connections, through ``h11``).
"""
