"""Streaming resampler: tones keep their frequency, images/aliases are rejected, frame edges are seamless."""

import numpy as np
import pytest

from agent.audio.frames import Framer, frame_samples, split_frames, to_float32, to_int16
from agent.audio.resample import StreamResampler, resample

PAIRS = [
    (8000, 16000),
    (16000, 8000),
    (48000, 16000),
    (16000, 48000),
    (22050, 8000),
    (22050, 16000),
    (22050, 48000),
]


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def stream_in_frames(pcm: np.ndarray, rs: StreamResampler, frame_ms: int = 20) -> np.ndarray:
    out = [rs.process(f) for f in split_frames(pcm, rs.in_rate, frame_ms, pad=False)]
    out.append(rs.drain())
    return np.concatenate(out)


def band_energy(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(to_float32(x) * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[(freqs >= lo) & (freqs < hi)].sum())


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_tone_frequency_and_length_are_kept(src, dst):
    out = stream_in_frames(tone(1000, src), StreamResampler(src, dst))
    assert abs(len(out) - dst) <= dst * 0.005 + 2, "1 s in must give 1 s out"
    spec = np.abs(np.fft.rfft(to_float32(out)))
    peak = np.fft.rfftfreq(len(out), 1 / dst)[np.argmax(spec)]
    assert abs(peak - 1000) < 5
    level = np.sqrt(np.mean(to_float32(out[dst // 10 : -dst // 10]) ** 2))
    assert 0.9 < level / (0.5 / np.sqrt(2)) < 1.1, "passband gain must be ~1"


def test_upsampling_rejects_images():
    # 3 kHz at 8 kHz -> 16 kHz: a naive upsampler leaves an image at 8-3 = 5 kHz.
    out = stream_in_frames(tone(3000, 8000), StreamResampler(8000, 16000))
    ratio = band_energy(out, 16000, 4500, 8000) / band_energy(out, 16000, 2500, 3500)
    assert 10 * np.log10(ratio + 1e-30) < -60


def test_downsampling_rejects_aliases():
    # 6 kHz at 16 kHz -> 8 kHz is above the new Nyquist: it must vanish, not fold to 2 kHz.
    out = stream_in_frames(tone(6000, 16000), StreamResampler(16000, 8000))
    ref = stream_in_frames(tone(2000, 16000), StreamResampler(16000, 8000))
    ratio = band_energy(out, 8000, 0, 4000) / band_energy(ref, 8000, 0, 4000)
    assert 10 * np.log10(ratio + 1e-30) < -50


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_frame_by_frame_equals_one_piece(src, dst):
    """State carries across 20 ms frames: chunking changes nothing, so edges cannot click."""
    x = tone(440, src) // 2 + tone(1700, src) // 2
    framed = stream_in_frames(x, StreamResampler(src, dst))
    whole_rs = StreamResampler(src, dst)
    whole = np.concatenate([whole_rs.process(x), whole_rs.drain()])
    assert len(framed) == len(whole)
    # soxr's float-to-int16 rounding depends on block size: 2 LSB (-84 dBFS), never a step.
    assert np.max(np.abs(framed.astype(int) - whole.astype(int))) <= 2


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (22050, 8000), (48000, 16000)])
def test_no_discontinuity_at_frame_edges(src, dst):
    freq, amp = 440, 0.5
    out = to_float32(stream_in_frames(tone(freq, src, amp=amp), StreamResampler(src, dst)))
    body = out[dst // 20 : -dst // 20]  # skip filter warm-up and tail
    max_step = 2 * np.pi * freq / dst * amp  # steepest slope of the sine, per sample
    assert np.max(np.abs(np.diff(body))) < max_step * 1.05 + 2 / 32768


def test_same_rate_is_a_copy():
    rs = StreamResampler(16000, 16000)
    x = tone(440, 16000, 0.02)
    assert np.array_equal(rs.process(x), x)


def test_one_shot_resample_keeps_dtype():
    assert resample(tone(440, 8000), 8000, 16000).dtype == np.int16
    assert resample(to_float32(tone(440, 8000)), 8000, 16000).dtype == np.float32


def test_bad_quality_is_rejected():
    with pytest.raises(ValueError, match="quality"):
        StreamResampler(8000, 16000, quality="best")


@pytest.mark.parametrize(
    ("rate", "ms", "n"), [(8000, 20, 160), (16000, 10, 160), (16000, 30, 480), (48000, 20, 960)]
)
def test_frame_sizes(rate, ms, n):
    assert frame_samples(rate, ms) == n


def test_frame_size_must_be_10_20_30():
    with pytest.raises(ValueError):
        frame_samples(16000, 25)


def test_framer_rechunks_exactly():
    framer = Framer(16000, 20)
    pieces = [np.arange(i * 100, (i + 1) * 100, dtype=np.int16) for i in range(10)]
    frames = [f for p in pieces for f in framer.push(p)]
    assert [len(f) for f in frames] == [320, 320, 320]
    assert framer.pending == 1000 - 960
    assert np.array_equal(np.concatenate(frames), np.arange(960, dtype=np.int16))


def test_split_frames_pads_or_drops_the_tail():
    x = np.ones(700, dtype=np.int16)
    padded = list(split_frames(x, 16000, 20))
    assert len(padded) == 3 and padded[-1][60:].sum() == 0
    assert len(list(split_frames(x, 16000, 20, pad=False))) == 2


def test_int16_float_conversion_round_trips():
    x = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    assert np.array_equal(to_int16(to_float32(x)), x)
    assert to_int16(np.array([2.0, -2.0], dtype=np.float32)).tolist() == [32767, -32768]
