"""``accelerate launch`` config files (data only): ddp, zero3, fsdp, multinode. See ``studio.training.launch``."""
