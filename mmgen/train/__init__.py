"""One training loop for every model family: ``Trainer(model, data, run_dir=..., config=...).fit()``."""
from mmgen.train.checkpoint import CheckpointError
from mmgen.train.trainer import RunExistsError, TrainConfig, Trainer, TrainingDiverged

__all__ = ["Trainer", "TrainConfig", "TrainingDiverged", "CheckpointError", "RunExistsError"]
