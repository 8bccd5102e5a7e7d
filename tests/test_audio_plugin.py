"""The audio plugin: log-mel front end, Griffin-Lim inversion, mel encoder/decoder, WAV I/O."""
import math

import pytest
import torch

import mmgen
from mmgen import likelihoods, plugins
mmgen_audio = pytest.importorskip("mmgen_audio", reason="needs the audio plugin (mmgen-audio)")
LogMel, read_wav, write_wav = mmgen_audio.LogMel, mmgen_audio.read_wav, mmgen_audio.write_wav

SAMPLE_RATE = 16000


@pytest.fixture(scope="module", autouse=True)
def audio_plugin_only():
    """Load only the audio plugin, through its entry point."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(plugins.DISABLE_AUTOLOAD_ENV, raising=False)
        mp.setenv(plugins.ALLOW_LIST_ENV, "audio")
        plugins.reset()
        yield
    plugins.reset()


def chirp(seconds=0.5, f0=300.0, f1=3000.0, sample_rate=SAMPLE_RATE):
    """A linear sweep from f0 to f1 Hz at amplitude 0.5."""
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float32) / sample_rate
    phase = 2 * math.pi * (f0 * t + (f1 - f0) * t.square() / (2 * seconds))
    return 0.5 * torch.sin(phase)


def test_log_mel_shape_and_frequency_track():
    front = LogMel(sample_rate=SAMPLE_RATE, n_mels=64)
    wave = chirp()
    log_mel = front(wave)
    assert log_mel.shape == (1, 64, front.frames(wave.numel()))
    peak_bins = log_mel[0].argmax(dim=0)
    # a rising sweep: the loudest mel bin climbs from the start to the end
    assert peak_bins[-5:].float().mean() > peak_bins[:5].float().mean() + 20
    assert front(torch.stack([wave, wave])).shape == (2, 64, log_mel.shape[-1])
    with pytest.raises(ValueError, match=r"float waveform shaped \[T\] or \[B, T\]"):
        front(torch.zeros(1, 1, 100))


def test_mel_round_trip_through_griffin_lim():
    torch.manual_seed(0)
    front = LogMel(sample_rate=SAMPLE_RATE, n_mels=64)
    wave = chirp()
    log_mel = front(wave)
    rebuilt = front.inverse(n_iter=32)(log_mel, length=wave.numel())
    assert rebuilt.shape == (1, wave.numel())
    again = front(rebuilt[0])
    loud = log_mel > log_mel.max() - 6.0  # bins within ~26 dB of the peak
    assert (again[loud] - log_mel[loud]).abs().mean() < 1.0
    assert (again[0].argmax(0) - log_mel[0].argmax(0)).abs().le(1).float().mean() > 0.9
    falling = front(chirp(f0=3000.0, f1=300.0))
    assert (falling[loud] - log_mel[loud]).abs().mean() > 5.0  # the check above can fail


def tone(freq, seconds=0.4, sample_rate=SAMPLE_RATE):
    """A sine of ``freq`` Hz at amplitude 0.5 in the middle fifth of ``seconds`` of silence."""
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float32) / sample_rate
    on = (t > 0.4 * seconds) & (t < 0.6 * seconds)
    return 0.5 * torch.sin(2 * math.pi * freq * t) * on


def test_warp_scales_frequencies_through_the_mel_scale_and_stretches_time():
    front = LogMel(sample_rate=SAMPLE_RATE, n_mels=64)
    log_mel = front(torch.stack([tone(500.0), tone(2000.0)]))
    assert torch.allclose(front.warp(log_mel, 1.0, 1.0), log_mel, atol=1e-4)
    up = front.warp(log_mel, torch.tensor([1.3, 1.3]), torch.tensor([1.0, 1.0]))
    target = front(torch.stack([tone(650.0), tone(2600.0)]))
    loudest = lambda x: x.amax(2).argmax(1)  # noqa: E731 - the loudest mel bin of each clip
    assert (loudest(up) - loudest(target)).abs().le(1).all() and (loudest(up) >= loudest(log_mel) + 3).all()
    longer = front.warp(log_mel, torch.tensor([1.0, 1.0]), torch.tensor([1.5, 1.5]))
    sounding = lambda x: (x.amax(1) > x.max() - 6.0).sum(1).float()  # noqa: E731 - frames near the peak
    assert torch.allclose(sounding(longer), 1.5 * sounding(log_mel), rtol=0.2)
    with pytest.raises(ValueError, match=r"expected a log-mel shaped \[B, 64, frames >= 2\]"):
        front.warp(torch.zeros(2, 32, 10), 1.0, 1.0)


@pytest.mark.parametrize("frames", [16, 63, 101])
def test_mel_encoder_decoder_shapes(frames):
    enc = mmgen.build("encoder", "audio.mel", n_mels=40, out_features=24)
    dec = mmgen.build("decoder", "audio.mel", in_features=24, n_mels=40, frames=frames)
    log_mel = torch.randn(3, 40, frames)
    h = enc(log_mel)
    assert h.shape == (3, 24) and enc.out_features == 24
    out = dec(h)
    assert out.shape == log_mel.shape and dec.in_features == 24
    log_p = likelihoods.get("gaussian").log_prob(out, log_mel)
    assert log_p.shape == (3,)


def test_encoder_takes_front_end_output():
    front = LogMel(n_mels=32)
    enc = mmgen.build("encoder", "audio.mel", n_mels=32, out_features=8)
    assert enc(front(torch.stack([chirp(), chirp(f0=1000.0, f1=200.0)]))).shape == (2, 8)
    with pytest.raises(ValueError, match=r"audio.mel encoder expects \[B, 32, frames >= 4\]"):
        enc(torch.zeros(2, 64, 10))


def test_wav_round_trip(tmp_path):
    wave = chirp()
    write_wav(tmp_path / "mono.wav", wave, SAMPLE_RATE)
    read, rate = read_wav(tmp_path / "mono.wav")
    assert rate == SAMPLE_RATE and read.shape == (1, wave.numel()) and read.dtype == torch.float32
    assert (read[0] - wave).abs().max() <= 1.0 / 32768 + 1e-6  # 16-bit quantization

    stereo = torch.stack([wave, -wave])
    write_wav(tmp_path / "stereo.wav", stereo, 22050, subtype="FLOAT")
    read, rate = read_wav(tmp_path / "stereo.wav")
    assert rate == 22050 and torch.equal(read, stereo)

    write_wav(tmp_path / "loud.wav", torch.tensor([2.0, -3.0, 0.25]), SAMPLE_RATE)
    read, _ = read_wav(tmp_path / "loud.wav")
    assert torch.allclose(read[0], torch.tensor([1.0, -1.0, 0.25]), atol=1e-4)  # clipped, not wrapped
