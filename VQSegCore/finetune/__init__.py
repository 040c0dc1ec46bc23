"""Fine-tuning on a training pool with a promotion gate (see run.py)."""

from VQSegCore.finetune.gate import DEFAULT_MARGIN, Verdict, decide, score_models
from VQSegCore.finetune.holdout import held_out_count, split_for_validation
from VQSegCore.finetune.run import finetune

__all__ = ["DEFAULT_MARGIN", "Verdict", "decide", "finetune", "held_out_count", "score_models", "split_for_validation"]
