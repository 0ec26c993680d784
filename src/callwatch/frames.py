"""The wire between the web process and its intake process: numbered, length-prefixed frames."""

import struct

HEADER = struct.Struct(">II")  # payload length, request number

Frame = tuple[int, bytes]


def frame(number: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), number) + payload


class FrameBuffer:
    """Cuts a byte stream into (request number, payload) frames."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._data += data
        frames: list[Frame] = []
        offset, size = 0, len(self._data)
        while size - offset >= HEADER.size:
            length, number = HEADER.unpack_from(self._data, offset)
            end = offset + HEADER.size + length
            if end > size:
                break
            frames.append((number, bytes(self._data[offset + HEADER.size : end])))
            offset = end
        del self._data[:offset]
        return frames
