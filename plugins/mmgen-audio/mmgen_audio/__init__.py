"""mmgen plugin for audio: log-mel front end, mel encoder/decoder, Griffin-Lim inversion, WAV I/O."""
from mmgen import hookimpl
from mmgen_audio.modality import AudioModality
from mmgen_audio.conv import MelDecoder, MelEncoder
from mmgen_audio.mel import LogMel, MelToWave
from mmgen_audio.wav import read_wav, write_wav

__version__ = "0.1.0"
__all__ = ["AudioModality", "LogMel", "MelToWave", "MelEncoder", "MelDecoder", "read_wav", "write_wav"]


@hookimpl
def mmgen_register(registry):
    registry.add("modality", "audio", AudioModality, description="WAV/FLAC files (soundfile), resampling, log-mel features, WAV samples")
    registry.add("encoder", "audio.mel", MelEncoder, modality="audio", infer={"n_mels": "n_mels"},
                 description="conv over log-mels: [B, n_mels, frames] -> [B, out_features]")
    registry.add("decoder", "audio.mel", MelDecoder, modality="audio",
                 infer={"n_mels": "n_mels", "frames": "frames"},
                 description="transposed conv: [B, in_features] -> log-mel means [B, n_mels, frames]")
