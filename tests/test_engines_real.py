"""Each real engine loads from its shipped model and does one real job (HF_HUB_OFFLINE=1)."""

import os
import re
import threading

import numpy as np
import pytest

from agent.audio.frames import split_frames
from agent.audio.resample import resample
from agent.config import Config, STTConfig
from agent.engines.base import CancelToken, EngineTimeout, ModelError
from agent.engines.vad import WebRtcVAD
from agent.wer import normalize, wer
from tests.conftest import load_16k

pytestmark = pytest.mark.models
QUESTION = "utterances/cathy/arctic_a0024_1592747999.wav"
QUESTION_TEXT = "It was my reports from the north which chiefly induced people to buy."


def test_offline_mode_is_on():
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "tests must run with HF_HUB_OFFLINE=1 (make test sets it)"


@pytest.fixture(scope="module")
def padded_speech(speech_dir):
    """1.5 s of silence, the question, 1.5 s of silence, at 16 kHz."""
    pad = np.zeros(24000, dtype=np.int16)
    return np.concatenate([pad, load_16k(speech_dir / QUESTION), pad])


def speech_span(vad, pcm: np.ndarray, rate: int) -> tuple[float, float, int]:
    stream = vad.stream(rate)
    probs = [stream.process(f) for f in split_frames(pcm, rate, 20)]
    speech = [i for i, p in enumerate(probs) if p >= 0.5]
    assert speech, "no speech detected"
    return speech[0] * 0.02, (speech[-1] + 1) * 0.02, len(speech)


@pytest.mark.parametrize("rate", [16000, 8000])
@pytest.mark.parametrize("engine", ["silero", "webrtc"])
def test_vad_finds_the_speech_and_not_the_silence(engine, rate, padded_speech, silero):
    vad = silero if engine == "silero" else WebRtcVAD(2)
    pcm = padded_speech if rate == 16000 else resample(padded_speech, 16000, 8000)
    start, end, _ = speech_span(vad, pcm, rate)
    # The speech sits between 1.5 s and 1.5 + 3.6 s.
    assert 1.3 < start < 1.9
    assert 4.7 < end < 5.5


def test_silero_streams_are_independent_and_resettable(padded_speech, silero):
    a, b = silero.stream(16000), silero.stream(16000)
    frames = list(split_frames(padded_speech, 16000, 20))
    first = [a.process(f) for f in frames]
    for f in frames[:150]:
        b.process(f)  # b's state must not leak into a
    a.reset()
    assert [a.process(f) for f in frames] == pytest.approx(first, abs=1e-6)
    assert max(first) > 0.9 and first[10] < 0.1


def test_silero_rejects_unsupported_rates(silero):
    with pytest.raises(ValueError, match="8000 or 16000"):
        silero.stream(44100)


def test_stt_transcribes_real_speech(stt, padded_speech):
    result = stt.transcribe(padded_speech)
    assert wer(QUESTION_TEXT, result.text) < 0.15, result.text
    assert 0.5 < result.confidence <= 1.0
    assert result.no_speech_prob < 0.5
    assert result.audio_s == pytest.approx(len(padded_speech) / 16000)
    assert result.processing_s > 0 and result.rtf > 0


def test_stt_accepts_float32_and_telephone_audio(stt, padded_speech):
    line = resample(resample(padded_speech, 16000, 8000), 8000, 16000).astype(np.float32) / 32768
    assert wer(QUESTION_TEXT, stt.transcribe(line).text) < 0.2


def test_stt_returns_nothing_for_silence_and_noise(stt):
    assert stt.transcribe(np.zeros(48000, dtype=np.int16)).text == ""
    noise = np.random.default_rng(0).normal(0, 2000, 48000).astype(np.int16)
    assert stt.transcribe(noise).text == ""


def test_stt_prompt_and_hotwords_are_accepted(stt, padded_speech):
    result = stt.transcribe(padded_speech, prompt="Reports from the north.", hotwords="north reports")
    assert "north" in result.text.lower()


def test_stt_base_model_is_selectable(speech_dir):
    from agent.engines.factory import load_stt

    base = load_stt(Config(stt=STTConfig(model="base")))
    text = base.transcribe(load_16k(speech_dir / "utterances/cathy/arctic_a0039_1592747670.wav")).text
    assert wer("The ship should be in within a week or ten days.", text) < 0.3, text


def test_stt_bad_model_folder_is_a_clear_error(tmp_path):
    from agent.engines.stt import WhisperSTT

    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelError, match=re.escape(str(tmp_path))):
        WhisperSTT(tmp_path)


def test_tts_speaks_the_text_it_is_given_as_one_chunk(tts):
    (short,) = tts.synthesize("Hello there.")
    (long,) = tts.synthesize(" Hello there. We are open from nine to five. ")
    assert long.text == "Hello there. We are open from nine to five."
    assert tts.sample_rate == 22050 and long.sample_rate == 22050
    assert long.duration_s > short.duration_s + 1.0 and short.duration_s > 0.3
    peak = int(np.abs(long.pcm).max())
    assert 0.6 * 32767 < peak <= 0.81 * 32767, "normalised to the configured volume (0.8)"


def test_tts_says_nothing_when_cancelled_first(tts):
    token = CancelToken()
    token.cancel()
    assert list(tts.synthesize("One. Two.", cancel=token)) == []


def test_tts_speech_is_understood_by_stt(tts, stt):
    # Piper samples noise (VITS), so the audio differs run to run and tiny.en sometimes hears
    # "place transfer meet to ...": the words that carry the meaning must come through.
    pcm = np.concatenate([c.pcm for c in tts.synthesize("Please transfer me to the billing department.")])
    words = set(normalize(stt.transcribe(resample(pcm, 22050, 16000)).text))
    assert {"transfer", "billing", "department"} <= words, words


def test_tts_bad_voice_is_a_clear_error(tmp_path):
    from agent.engines.tts import PiperTTS

    voice = tmp_path / "v.onnx"
    voice.write_bytes(b"junk")
    with pytest.raises(ModelError, match=r"v\.onnx"):
        PiperTTS(voice)


MESSAGES = [
    {"role": "system", "content": "You are a receptionist at a dental clinic. Answer in one short sentence."},
    {"role": "user", "content": "What are your opening hours?"},
]


def test_llm_streams_a_reply(llm):
    pieces = list(llm.stream_chat(MESSAGES, max_tokens=40))
    assert len(pieces) > 3, "tokens must arrive one by one"
    assert len("".join(pieces).split()) >= 3


def test_llm_stops_mid_stream_when_cancelled(llm):
    token = CancelToken()
    pieces = []
    for piece in llm.stream_chat(MESSAGES, cancel=token, max_tokens=100):
        pieces.append(piece)
        if len(pieces) == 3:
            token.cancel()
    assert len(pieces) == 3
    assert list(llm.stream_chat(MESSAGES, max_tokens=5)), "the model is usable after a cancel"


def test_llm_times_out(llm):
    with pytest.raises(EngineTimeout):
        list(llm.stream_chat(MESSAGES, cancel=CancelToken(timeout_s=1e-6), max_tokens=50))


def test_llm_is_shared_safely_by_concurrent_calls(llm):
    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = "".join(llm.stream_chat(MESSAGES, max_tokens=12, temperature=0.0))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 3
    assert len(set(results.values())) == 1, "same prompt at temperature 0 gives the same reply"


def test_llm_prime_and_token_count(llm):
    llm.prime(MESSAGES[:1])
    assert 5 < llm.count_tokens(MESSAGES[0]["content"]) < 40


def test_llm_bad_gguf_is_a_clear_error(tmp_path):
    from agent.engines.llm import LlamaLLM

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelError, match=r"broken\.gguf"):
        LlamaLLM(bad)
