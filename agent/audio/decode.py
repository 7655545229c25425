"""Audio files in memory (WAV, FLAC, MP3, OGG/Opus, WebM...) to 16 kHz mono int16, and back, with PyAV."""

from __future__ import annotations

import io

import av
import numpy as np


class AudioError(ValueError):
    """Not audio we can read: `unsupported` (no decoder, not a media file) or bad content."""

    def __init__(self, message: str, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def decode_audio(data: bytes, rate: int = 16000, max_seconds: float = 600.0) -> np.ndarray:
    """The first audio stream of `data`, mixed to mono and resampled to `rate`. Raises
    AudioError for what is not audio, has no audio stream, is cut short before any sound, or
    runs past `max_seconds`."""
    if not data:
        raise AudioError("the upload is empty")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, IndexError) as exc:
        raise AudioError(f"not an audio file this server can read ({type(exc).__name__})", True) from None
    with container:
        if not container.streams.audio:
            raise AudioError("the file has no audio stream", True)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        pieces: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1)
                    pieces.append(pcm)
                    total += len(pcm)
                if total > max_seconds * rate:
                    raise AudioError(f"longer than {max_seconds:.0f} s")
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:  # truncated or corrupt: keep what decoded, if anything
            if not pieces:
                raise AudioError(f"the audio could not be decoded ({type(exc).__name__})") from None
    if not pieces or not sum(len(p) for p in pieces):
        raise AudioError("the file holds no audio samples")
    return np.concatenate(pieces).astype(np.int16)


CODECS = {"wav": "pcm_s16le", "flac": "flac", "mp3": "libmp3lame", "ogg": "libopus", "webm": "libopus"}


def encode_audio(pcm: np.ndarray, rate: int, fmt: str = "ogg") -> bytes:
    """Mono int16 PCM as a `fmt` file (wav, flac, mp3, or Opus in ogg or webm at 48 kHz)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        codec = CODECS[fmt]
        stream = out.add_stream(codec, rate=48000 if codec == "libopus" else rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        sample_format = stream.format.name if stream.format else "s16"
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=stream.rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
