"""The wire between the web process and intake: frames come out as they went in."""

from callwatch.frames import FrameBuffer, frame


def test_frames_come_out_whole_however_the_stream_is_cut() -> None:
    frames = [(1, b"evt_1\n{}"), (2, b""), (4_000_000_000, b"x" * 300)]
    stream = b"".join(frame(number, payload) for number, payload in frames)

    for cut in range(len(stream) + 1):
        buffer = FrameBuffer()
        assert buffer.feed(stream[:cut]) + buffer.feed(stream[cut:]) == frames


def test_bytes_arriving_one_at_a_time_make_the_same_frames() -> None:
    frames = [(7, b"abc"), (8, b"de\nf")]
    buffer = FrameBuffer()
    stream = b"".join(frame(number, payload) for number, payload in frames)

    assert [got for byte in stream for got in buffer.feed(bytes([byte]))] == frames
