"""The multipart/form-data reader: parts from any split of the body, caps, hostile bodies."""

from __future__ import annotations

import pytest

from streamcap.api.form import MAX_FIELD_BYTES, MAX_PARTS, MultipartForm, boundary_of
from streamcap.api.request import ApiError

CT = "multipart/form-data; boundary=XyZ"


def field(name: str, value: bytes) -> bytes:
    return (b'--XyZ\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
            + value + b"\r\n")


def upload(name: str, filename: str, data: bytes) -> bytes:
    return (b'--XyZ\r\nContent-Disposition: form-data; name="' + name.encode()
            + b'"; filename="' + filename.encode() + b'"\r\nContent-Type: audio/wav\r\n\r\n'
            + data + b"\r\n")


END = b"--XyZ--\r\n"
AUDIO = bytes(range(256)) * 40 + b"\r\n--Xy not the boundary\r\n"  # binary, boundary-like


def parse(body: bytes, step: int, max_file: int = 1 << 20) -> list[tuple[str, str | None, bytes]]:
    form = MultipartForm(CT, max_file)
    for i in range(0, len(body), step):
        form.feed(body[i : i + step])
    return [(p.name, p.filename, p.data) for p in form.finish()]


@pytest.mark.parametrize("step", [1, 7, 100, 1 << 20])
def test_parts_come_out_whole_whatever_the_split(step: int) -> None:
    """Fields and a binary file come out byte for byte however the body is cut up."""
    body = field("model", b"whisper-1") + upload("file", "a.wav", AUDIO) + END
    assert parse(body, step) == [("model", None, b"whisper-1"), ("file", "a.wav", AUDIO)]


def test_an_oversize_file_is_refused_while_it_streams() -> None:
    """A file part over the cap raises 413 naming the setting before the body has ended."""
    form = MultipartForm(CT, 1000)
    form.feed(upload("file", "big.wav", b"x" * 600)[:-2])
    with pytest.raises(ApiError) as err:
        form.feed(b"x" * 600)
    assert err.value.status == 413 and "server.max_upload_mb" in err.value.message
    with pytest.raises(ApiError):  # the error sticks
        form.feed(b"more")


def test_a_long_text_field_and_too_many_parts_are_refused() -> None:
    """Text fields are capped at 64 KiB and a form at 32 parts."""
    with pytest.raises(ApiError, match="form field too long"):
        parse(field("prompt", b"a" * (MAX_FIELD_BYTES + 1)) + END, 4096)
    with pytest.raises(ApiError, match="too many form fields"):
        parse(field("prompt", b"a") * (MAX_PARTS + 1) + END, 4096)


@pytest.mark.parametrize("body, message", [
    (b"", "ends before its closing boundary"),
    (field("model", b"whisper-1"), "ends before its closing boundary"),
    (b"garbage without boundary", "malformed multipart body"),
    (b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n" + END, "no Content-Disposition"),
    (b'--XyZ\r\nContent-Disposition: attachment; name="a"\r\n\r\nx\r\n' + END, "not form-data"),
])
def test_hostile_bodies_get_one_line_errors(body: bytes, message: str) -> None:
    """Empty, cut, boundary-less and header-less bodies raise a 400 that says what is wrong."""
    with pytest.raises(ApiError) as err:
        parse(body, 5)
    assert err.value.status == 400 and message in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize("ctype, status", [
    (None, 400), ("application/json", 415), ("multipart/form-data", 400),
    ("multipart/form-data; boundary=" + "b" * 300, 400),
])
def test_bad_content_types_are_refused(ctype: str | None, status: int) -> None:
    """A missing, non-multipart or boundary-less Content-Type is refused with its status."""
    with pytest.raises(ApiError) as err:
        boundary_of(ctype)
    assert err.value.status == status
