"""The caller's voice codecs: G.711 (ours, pure numpy) and G.722 (FFmpeg's, through PyAV)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


class Codec(Protocol):
    name: str
    rate: int  # audio sample rate

    def encode(self, pcm: np.ndarray) -> bytes: ...

    def decode(self, payload: bytes) -> np.ndarray: ...


class G711:
    rate = 8000

    def __init__(self, name: str) -> None:
        self.name = name
        self._enc, self._dec = (ulaw_encode, ulaw_decode) if name == "PCMU" else (alaw_encode, alaw_decode)

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._enc(pcm).tobytes()

    def decode(self, payload: bytes) -> np.ndarray:
        return self._dec(payload)


class G722:
    """Stateful (ADPCM): one instance per direction of one call."""

    name = "G722"
    rate = 16000

    def __init__(self) -> None:
        import av

        self._av = av
        self._enc = av.CodecContext.create("g722", "w")
        self._enc.sample_rate, self._enc.format, self._enc.layout = 16000, "s16", "mono"
        self._dec = av.CodecContext.create("g722", "r")
        self._dec.sample_rate, self._dec.layout = 16000, "mono"
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        frame = self._av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, self._pts
        self._pts += len(pcm)
        return b"".join(bytes(p) for p in self._enc.encode(frame))

    def decode(self, payload: bytes) -> np.ndarray:
        frames = self._dec.decode(self._av.Packet(payload))
        if not frames:
            return np.zeros(len(payload) * 2, dtype=np.int16)
        return np.concatenate([f.to_ndarray().ravel() for f in frames]).astype(np.int16)


def make_codec(name: str) -> Codec:
    if name in ("PCMU", "PCMA"):
        return G711(name)
    if name == "G722":
        return G722()
    raise ValueError(f"unsupported codec {name!r} (PCMU, PCMA, G722)")
