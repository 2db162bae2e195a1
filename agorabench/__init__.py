"""AgoraBench: which language model should generate your synthetic training data, and what is it worth."""
import warnings

# PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model, so every
# training and LoRA-student evaluation stage printed this FutureWarning; it is not ours to act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
