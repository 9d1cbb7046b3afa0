"""An incremental multipart/form-data reader with a size cap (pure: bytes in, parts out)."""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header

from .request import ApiError, Part

__all__ = ["MAX_FIELD_BYTES", "MAX_PARTS", "MultipartForm", "Part", "boundary_of"]

MAX_FIELD_BYTES = 64 * 1024  # a text field (prompt, language, ...) longer than this is an error
MAX_PARTS = 32


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a ``Content-Type`` header; raises :class:`ApiError`."""
    if not content_type:
        raise ApiError(400, "missing Content-Type: send multipart/form-data")
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise ApiError(
            415,
            f"Content-Type {content_type[:60]!r} is not multipart/form-data",
            code="unsupported_media_type",
        )
    boundary = params.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise ApiError(400, "multipart/form-data without a valid boundary")
    return boundary


class MultipartForm:
    """Feed the request body in any pieces; :meth:`finish` returns the parts.

    A file part over ``max_file_bytes`` raises :class:`ApiError` 413 as soon as it is seen, so
    an oversize upload is never held whole; text fields are capped at 64 KiB, parts at 32.
    """

    def __init__(self, content_type: str | None, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self._parts: list[Part] = []
        self._headers: dict[str, bytes] = {}
        self._field = b""
        self._value = b""
        self._data = bytearray()
        self._ended = False
        self._error: ApiError | None = None
        self._parser = MultipartParser(boundary_of(content_type), {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }, max_header_count=8)

    # -- callbacks of the parser ---------------------------------------------------------

    def _part_begin(self) -> None:
        if len(self._parts) >= MAX_PARTS:
            raise ApiError(400, f"too many form fields (at most {MAX_PARTS})")
        self._headers = {}
        self._field = self._value = b""
        self._data = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value
        self._field = self._value = b""

    def _is_file(self) -> bool:
        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        return b"filename" in params

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if self._is_file():
            if len(self._data) > self.max_file_bytes:
                mb = self.max_file_bytes / (1024 * 1024)
                raise ApiError(413, f"file: the upload is larger than {mb:g} MB "
                               "(server.max_upload_mb)", param="file",
                               code="file_too_large")
        elif len(self._data) > MAX_FIELD_BYTES:
            raise ApiError(400, f"form field too long (over {MAX_FIELD_BYTES} bytes)")

    def _part_end(self) -> None:
        disposition = self._headers.get("content-disposition")
        if disposition is None:
            raise ApiError(400, "a form part has no Content-Disposition header")
        kind, params = parse_options_header(disposition)
        name = params.get(b"name")
        if kind != b"form-data" or name is None:
            raise ApiError(400, "a form part is not form-data with a name")
        filename = params.get(b"filename")
        ctype = self._headers.get("content-type")
        self._parts.append(Part(
            name=name.decode("utf-8", "replace"),
            data=bytes(self._data),
            filename=None if filename is None else filename.decode("utf-8", "replace"),
            content_type=None if ctype is None else ctype.decode("latin-1"),
        ))
        self._data = bytearray()

    def _end(self) -> None:
        self._ended = True

    # -- the interface -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse the next piece of the body; raises :class:`ApiError` (and keeps raising it)."""
        if self._error is not None:
            raise self._error
        try:
            self._parser.write(data)
        except ApiError as exc:
            self._error = exc
            raise
        except Exception as exc:  # python-multipart raises its own errors on malformed input
            self._error = ApiError(400, f"malformed multipart body: {exc}")
            raise self._error from None

    def finish(self) -> list[Part]:
        """The parts, once the whole body was fed; raises :class:`ApiError` if it was cut."""
        if self._error is not None:
            raise self._error
        try:
            self._parser.finalize()
        except Exception as exc:
            raise ApiError(400, f"malformed multipart body: {exc}") from None
        if not self._ended:
            raise ApiError(400, "malformed multipart body: it ends before its closing boundary")
        return list(self._parts)
